//! `keyturn_protocol::parse_response` on any bytes: never panics; what it accepts encodes and
//! decodes back to the same response, and an entry's `Debug` never shows its value.
//!
//! The library's per-handle classification (`keyturn::backend`'s `classify`) is crate-private
//! and only reachable through `backend::fetch`, which runs a process per call; it is not fuzzed
//! here.

#![no_main]

use keyturn_protocol::{Entry, encode_response, parse_response};
use libfuzzer_sys::fuzz_target;

const REDACTED_DEBUG: &str = "Entry { value: Some(\"<redacted>\"), error: None }";

fuzz_target!(|data: &[u8]| {
    let Ok(response) = parse_response(data) else {
        return;
    };
    let encoded = encode_response(&response);
    match parse_response(&encoded) {
        Ok(again) => assert_eq!(
            again, response,
            "re-encoded response reads back differently"
        ),
        Err(error) => panic!("re-encoded response does not parse: {error}"),
    }
    for entry in response.values() {
        if entry.value.is_some() {
            let debug = format!(
                "{:?}",
                Entry {
                    value: entry.value.clone(),
                    error: None
                }
            );
            assert_eq!(debug, REDACTED_DEBUG);
        }
    }
});
