//! `keyturn::Settings::from_yaml_str` on any text: never panics, and every duration it reads is
//! at most `MAX_DURATION` (issue 9.14: a huge one overflowed a deadline).

#![no_main]

use keyturn::Settings;
use keyturn::settings::MAX_DURATION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_yaml_str(text) {
        assert!(settings.timeout() <= MAX_DURATION);
        assert!(
            settings
                .refresh_interval()
                .is_none_or(|d| d <= MAX_DURATION)
        );
        assert!(
            settings
                .refresh_trigger_interval()
                .is_none_or(|d| d <= MAX_DURATION)
        );
        // Reading the same text twice gives the same settings.
        assert_eq!(Settings::from_yaml_str(text).ok(), Some(settings));
    }
});
