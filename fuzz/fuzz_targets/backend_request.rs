//! A keyturn-backend request (`keyturn_protocol::Request::from_json`) on any bytes: never panics,
//! and a request that reads encodes to bytes that read back as the same request, whatever its
//! `secret_backend_timeout` (issue 9.14: the largest one made keyturn-backend exit 101).

#![no_main]

use keyturn_protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::from_json(data) {
        let again = Request::from_json(&request.to_json()).ok();
        assert!(again.as_ref() == Some(&request));
    }
});
