//! Resolved values are wiped before their memory is freed: each value type that holds a secret
//! is dropped while the [`Recording`] allocator watches its buffer. A plain `String` is checked
//! too, to show that the check does see a value left in freed memory.

use keyturn::{Document, Format, Secret};
use keyturn_zeroize_check::{Outcome, Recording, check};
use zeroize::Zeroizing;

#[global_allocator]
static ALLOCATOR: Recording = Recording;

const VALUE: &str = "correct horse battery staple";

#[test]
fn the_check_sees_a_plain_string_left_in_freed_memory() {
    assert_eq!(
        check(|| VALUE.to_owned(), |value| value.as_bytes()),
        Outcome::NotZeroed
    );
}

#[test]
fn a_secret_is_zeroed_when_dropped() {
    assert_eq!(
        check(|| Secret::new(VALUE), |secret| secret.expose().as_bytes()),
        Outcome::Zeroed
    );
    assert_eq!(
        check(
            || Secret::from(Zeroizing::new(VALUE.to_owned())),
            |secret| secret.expose().as_bytes()
        ),
        Outcome::Zeroed
    );
}

#[test]
fn clones_of_a_secret_share_one_buffer_zeroed_when_the_last_is_dropped() {
    let original = Secret::new(VALUE);
    // A dropped clone leaves the buffer to the original: it is not freed, so not wiped yet.
    assert_eq!(
        check(|| original.clone(), |clone| clone.expose().as_bytes()),
        Outcome::NotFreed
    );
    let clone = original.clone();
    assert_eq!(clone.expose().as_ptr(), original.expose().as_ptr());
    drop(original);
    assert_eq!(
        check(move || clone, |secret| secret.expose().as_bytes()),
        Outcome::Zeroed
    );
}

#[test]
fn a_secret_with_spare_capacity_is_zeroed_when_dropped() {
    let make = || {
        let mut value = String::with_capacity(256);
        value.push_str(VALUE);
        Secret::new(value)
    };
    assert_eq!(
        check(make, |secret| secret.expose().as_bytes()),
        Outcome::Zeroed
    );
}

#[test]
fn a_rendered_document_is_zeroed_when_dropped() {
    let document = Document::parse("password: ENC[db]\n".to_owned(), Format::Yaml).unwrap();
    assert_eq!(
        check(
            || document.render(|_| Some(VALUE)),
            |rendered| rendered.as_bytes()
        ),
        Outcome::Zeroed
    );
}

#[test]
fn a_backend_response_value_is_zeroed_when_dropped() {
    let answer = format!(r#"{{"db":{{"value":"{VALUE}","error":null}}}}"#);
    assert_eq!(
        check(
            || keyturn_protocol::parse_response(answer.as_bytes()).unwrap(),
            |response| response["db"].value.as_deref().unwrap().as_bytes()
        ),
        Outcome::Zeroed
    );
}

#[test]
fn a_rendered_environment_is_zeroed_when_dropped() {
    use std::os::unix::ffi::OsStrExt;

    let environment = keyturn::exec::Environment::new([("KEY".into(), "ENC[k]".into())]);
    assert_eq!(
        check(
            || environment.render(|_| Some(Secret::new(VALUE))),
            |rendered| rendered.vars()[0].1.as_bytes()
        ),
        Outcome::Zeroed
    );
}

/// A value fetched from a backend sits inside the answer it came in, shared with the answer's
/// other values: that buffer is wiped when the last of them is dropped.
#[test]
fn a_fetched_value_in_its_answer_is_zeroed_when_dropped() {
    use keyturn::backend::{BackendSpec, FetchOptions, PermissionCheck, fetch};
    let answer = format!(r#"{{"first":{{"value":"other"}},"db":{{"value":"{VALUE}"}}}}"#);
    let spec = BackendSpec::new("sh")
        .with_args([
            "-c",
            "cat >/dev/null; printf '%s' \"$1\"",
            "sh",
            answer.as_str(),
        ])
        .with_check(PermissionCheck::Skip);
    let options = FetchOptions::new(std::time::Duration::from_secs(30), 1 << 20);
    let handles = ["first".to_owned(), "db".to_owned()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetched = || runtime.block_on(fetch(&spec, &options, &handles)).unwrap();
    assert_eq!(
        check(fetched, |fetched| {
            let value = fetched[1].1.as_ref().unwrap().expose();
            assert_eq!(value, VALUE);
            value.as_bytes()
        }),
        Outcome::Zeroed
    );
}
