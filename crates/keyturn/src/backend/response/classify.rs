//! Classifying each requested handle from its slot of a decoded answer, as the Agent checks
//! (missing, error, empty, in that order), with the Agent's texts; per-handle error texts are
//! scrubbed of every value of the answer and of every value keyturn already holds.

use keyturn_protocol::scrub::{Scrubber, escape_controls};

use super::decode::{Decoded, Lookup, RawEntry, Requested, Scanner, decode};
use super::values::answer_values;
use crate::DOCS_URL;
use crate::backend::{FailureKind, HandleError};
use crate::printable::Printable;
use crate::secret::Secret;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The outcome of each distinct requested handle, in the order of [`Requested::handles`]
/// ([`Requested::named`] pairs them with the caller's names).
pub(crate) type Classified = Vec<Result<Secret, HandleError>>;

/// Decodes `stdout` and classifies every requested handle, in order. Fails, without quoting
/// any value, when `stdout` is not a valid response. Error texts are scrubbed of every value of
/// the answer and of every value in `held`: the values keyturn already holds (its last known
/// good values, whatever their handle), since a failing backend may repeat an old value
/// (`rotation of <old value> failed`).
pub(crate) fn classify(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
    held: &[Secret],
) -> Result<Classified, serde_json::Error> {
    let slots = decode(stdout, requested)?;
    Ok(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        held,
    ))
}

/// [`classify`] when it needs no held values: `Ok(None)` when the answer carries per-handle
/// error texts (the caller then classifies it with the values it holds), the result of
/// [`classify`] otherwise.
pub(crate) fn classify_without_error_texts(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
) -> Result<Option<Classified>, serde_json::Error> {
    let slots = decode(stdout, requested)?;
    if any_error_text(&slots) {
        return Ok(None);
    }
    Ok(Some(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        &[],
    )))
}

/// [`classify`] for stdout that may not be complete yet: the result when the fast scanner reads
/// `stdout` as a whole answer without per-handle error texts, `None` otherwise (the caller then
/// classifies once stdout is complete). What it returns is what [`classify`] returns for the
/// same bytes: the scanner accepts nothing that serde_json decodes differently, and without
/// error texts nothing is scrubbed, so nothing depends on the values keyturn holds.
pub(crate) fn classify_early(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
) -> Option<Classified> {
    let slots = Scanner::new(stdout)?.answer(Lookup::new(requested))?;
    if any_error_text(&slots) {
        return None;
    }
    Some(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        &[],
    ))
}

/// Classifies every requested handle from its slot of the answer `stdout` (as the Agent
/// checks: missing, error, empty, in that order).
fn sort_out(
    stdout: &[u8],
    requested: &Requested<'_>,
    slots: Decoded<'_>,
    remove_trailing_line_break: bool,
    held: &[Secret],
) -> Classified {
    let scrubber = if any_error_text(&slots) {
        // The slots were decoded from `stdout`, so it is an answer.
        let values = answer_values(stdout).unwrap_or_default();
        Scrubber::new(
            values
                .iter()
                .map(|value| value.as_str())
                .chain(held.iter().map(Secret::expose)),
        )
    } else {
        Scrubber::default()
    };
    // Each handle's value, when it has one (no error text, not empty): read twice (to size the
    // buffer, then to fill it) rather than listed.
    let value = |slot| value_of(slot, remove_trailing_line_break);
    // Every value in one zeroizing buffer of its final size, shared by their `Secret`s.
    let mut buffer = Zeroizing::new(String::with_capacity(
        slots.iter().filter_map(value).map(str::len).sum(),
    ));
    for value in slots.iter().filter_map(value) {
        buffer.push_str(value);
    }
    let buffer = Arc::new(buffer);
    let mut at = 0;
    requested
        .handles
        .iter()
        .zip(&slots)
        .map(|(handle, slot)| {
            let shown = Printable(handle);
            match slot {
                None => Err(handle_error(
                    FailureKind::Missing,
                    format!(
                        "secret handle '{shown}' was not resolved by the secret_backend_command. \
                         Ensure your script returns the handle in the expected JSON format. \
                         Docs: {DOCS_URL}"
                    ),
                )),
                Some(entry) => match entry.error_text() {
                    Some(text) => Err(handle_error(
                        FailureKind::Error,
                        format!(
                            "an error occurred while resolving '{shown}': {}",
                            escape_controls(&scrubber.scrub(text))
                        ),
                    )),
                    None => {
                        let secret = value(slot).and_then(|value| {
                            let range = at..at + value.len();
                            at = range.end;
                            Secret::shared(&buffer, range)
                        });
                        secret.ok_or_else(|| {
                            handle_error(
                                FailureKind::Empty,
                                format!(
                                    "resolved secret for '{shown}' is empty. Check that the \
                                     secret exists in your backend and has a non-empty value. \
                                     If using secret_backend_remove_trailing_line_break, \
                                     trailing newlines are stripped. Docs: {DOCS_URL}"
                                ),
                            )
                        })
                    }
                },
            }
        })
        .collect()
}

/// The value of a slot, when it has one: no error text, not empty.
fn value_of<'s>(
    slot: &'s Option<RawEntry<'_>>,
    remove_trailing_line_break: bool,
) -> Option<&'s str> {
    let entry = slot.as_ref()?;
    match entry.error_text() {
        Some(_) => None,
        None => entry.resolved(remove_trailing_line_break),
    }
}

/// Whether some entry carries a per-handle error text.
fn any_error_text(slots: &Decoded<'_>) -> bool {
    slots
        .iter()
        .flatten()
        .any(|entry| entry.error_text().is_some())
}

fn handle_error(kind: FailureKind, message: String) -> HandleError {
    HandleError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::response::tests::classify_str;

    fn check(
        output: &str,
        handles: &[&str],
        strip: bool,
        expected: &[(&str, Result<&str, FailureKind>)],
    ) {
        let handles: Vec<String> = handles.iter().map(|h| (*h).to_owned()).collect();
        let fetched = classify_str(output, &handles, strip);
        let got: Vec<(&str, Result<&str, FailureKind>)> = fetched
            .iter()
            .map(|(h, r)| {
                (
                    h.as_str(),
                    r.as_ref().map(Secret::expose).map_err(|e| e.kind),
                )
            })
            .collect();
        assert_eq!(got, expected, "{output}");
    }

    #[test]
    fn classification_order_and_rules() {
        use FailureKind::{Empty, Error, Missing};
        check(
            r#"{}"#,
            &["h1", "h2"],
            false,
            &[("h1", Err(Missing)), ("h2", Err(Missing))],
        );
        check(
            r#"{"h":{"value":"v","error":"e"}}"#,
            &["h"],
            false,
            &[("h", Err(Error))],
        );
        check(
            r#"{"h":{"value":"v","error":""}}"#,
            &["h"],
            false,
            &[("h", Ok("v"))],
        );
        check(
            r#"{"h":{"value":null}}"#,
            &["h"],
            false,
            &[("h", Err(Empty))],
        );
        check(r#"{"h":{"value":""}}"#, &["h"], false, &[("h", Err(Empty))]);
        check(r#"{"h":{}}"#, &["h"], false, &[("h", Err(Empty))]);
        check(
            r#"{"h":{"value":"some data\r\n"}}"#,
            &["h"],
            true,
            &[("h", Ok("some data"))],
        );
        check(
            r#"{"h":{"value":"a\n\r\n\r"}}"#,
            &["h"],
            true,
            &[("h", Ok("a"))],
        );
        check(
            r#"{"h":{"value":"a\n"}}"#,
            &["h"],
            false,
            &[("h", Ok("a\n"))],
        );
        check(
            r#"{"h":{"value":"\r\n"}}"#,
            &["h"],
            true,
            &[("h", Err(Empty))],
        );
        check(
            r#"{"h":{"value":" a "}}"#,
            &["h"],
            true,
            &[("h", Ok(" a "))],
        );
        check(
            r#"{"h1":{"value":"v1"},"h2":{"value":"v2"},"h3":{"value":"v3"}}"#,
            &["h2", "h1"],
            false,
            &[("h2", Ok("v2")), ("h1", Ok("v1"))],
        );
    }

    fn error_texts(results: impl IntoIterator<Item = Result<Secret, HandleError>>) -> Vec<String> {
        results
            .into_iter()
            .map(|r| r.unwrap_err().message)
            .collect()
    }

    #[test]
    fn per_handle_texts() {
        let fetched = classify_str(
            r#"{"e":{"error":"boom: leaked-v\nline2"},"x":{"value":"leaked-v"},"y":{"value":""}}"#,
            &["m".into(), "e".into(), "y".into()],
            false,
        );
        assert_eq!(
            error_texts(fetched.into_iter().map(|(_, result)| result)),
            [
                format!(
                    "secret handle 'm' was not resolved by the secret_backend_command. Ensure your script returns the handle in the expected JSON format. Docs: {DOCS_URL}"
                ),
                "an error occurred while resolving 'e': boom: <redacted>\\nline2".to_owned(),
                format!(
                    "resolved secret for 'y' is empty. Check that the secret exists in your backend and has a non-empty value. If using secret_backend_remove_trailing_line_break, trailing newlines are stripped. Docs: {DOCS_URL}"
                ),
            ]
        );
    }

    // What the caller already holds is scrubbed too, longest first.
    #[test]
    fn per_handle_texts_are_scrubbed_of_known_values() {
        let requested = [String::from("a"), String::from("b")];
        let known = [Secret::new("old-a-value"), Secret::new("old-a")];
        let fetched = classify(
            br#"{"a":{"error":"no old-a-value"},"b":{"error":"b is old-a-value, not old-a"}}"#,
            &Requested::new(&requested),
            false,
            &known,
        )
        .unwrap();
        assert_eq!(
            error_texts(fetched),
            [
                "an error occurred while resolving 'a': no <redacted>",
                "an error occurred while resolving 'b': b is <redacted>, not <redacted>",
            ]
        );
        // Many needles sharing a prefix, and needles shorter than the indexed prefix.
        let values: Vec<String> = (0..2000).map(|i| format!("QZXJ-{i}-JXZQ")).collect();
        let scrubber = Scrubber::new(values.iter().map(String::as_str).chain(["ab", "é"]));
        assert_eq!(
            scrubber.scrub("QZXJ-1999-JXZQ QZXJ-7 ab é QZXJ-0-JXZQx"),
            "<redacted> QZXJ-7 <redacted> <redacted> <redacted>x"
        );
    }
}
