//! `keyturn::audit::scan` on any bytes: never panics, and every non-blank line is counted once,
//! as a record or as invalid.

#![no_main]

use keyturn::audit::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scanned = scan(data);
    let lines = data
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(scanned.records.len() + scanned.invalid_lines, lines);
    assert_eq!(
        scanned.torn_tail,
        data.last().is_some_and(|&byte| byte != b'\n')
    );
});
