//! `keyturn::handle::parse_handle` on any string: never panics, and a handle it finds is exactly
//! the text between `ENC[` and the last `]` of the value trimmed of spaces and tabs.

#![no_main]

use keyturn::handle::parse_handle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    match parse_handle(value) {
        Some(handle) => assert_eq!(format!("ENC[{handle}]"), trimmed),
        None => {
            assert!(!(trimmed.len() >= 5 && trimmed.starts_with("ENC[") && trimmed.ends_with(']')))
        }
    }
});
