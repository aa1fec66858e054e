//! `keyturn::Settings::from_yaml_str` on any text: never panics.

#![no_main]

use keyturn::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_yaml_str(text) {
        // Reading the same text twice gives the same settings.
        assert_eq!(Settings::from_yaml_str(text).ok(), Some(settings));
    }
});
