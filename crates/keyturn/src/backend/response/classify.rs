//! Classifying each requested handle from its slot of a decoded answer, as the Agent checks
//! (missing, error, empty, in that order), with the Agent's texts; per-handle error texts are
//! scrubbed of every value of the answer and of every value keyturn already holds.

use keyturn_protocol::scrub::{Scrubber, escape_controls};

use super::decode::{Decoded, Lookup, RawEntry, Requested, Scanner, decode};
use super::values::answer_values;
use crate::DOCS_URL;
use crate::backend::{FailureKind, HandleError};
use crate::printable::Printable;
use crate::secret::{Buffer, Secret};
use std::ops::Range;
use std::sync::Arc;

/// The outcome of each distinct requested handle, in the order of [`Requested::handles`]
/// ([`Requested::named`] pairs them with the caller's names).
pub(crate) type Classified = Vec<Result<Secret, HandleError>>;

/// A classification whose values are not in `Secret`s yet: each is a range of the answer, or of
/// `decoded` (values that held escapes, decoded). [`Pending::settle`] gives them the answer
/// itself once the caller owns it, so that no value is copied; [`Pending::copied`] copies them.
pub(crate) struct Pending {
    results: Results,
    decoded: Buffer,
}

/// The outcome of each distinct handle, before its value is in a `Secret`.
enum Results {
    /// As [`sort_out`] classifies any answer.
    Sorted(Vec<Result<Place, HandleError>>),
    /// As [`classify_early`] reads an answer without error texts: 12 bytes per handle (values
    /// are in the answer, whose length fits a `u32`), the errors of the handles without a value
    /// on the side, in handle order.
    Early {
        slots: Vec<Slot>,
        errors: Vec<HandleError>,
    },
}

/// What an answer without error texts gave one handle (its last entry, as the decoders keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    /// An entry with no value, or an empty one.
    Empty,
    /// An entry with an error text: the answer is classified the general way instead.
    ErrorText,
    /// The value, at `start..start + len` of the answer.
    Value {
        start: u32,
        len: u32,
    },
}

impl Slot {
    /// The value's range of the answer; for a handle without a value, the next of `errors`
    /// (they are kept in handle order).
    fn range(
        self,
        errors: &mut impl Iterator<Item = HandleError>,
    ) -> Result<Range<usize>, HandleError> {
        match self {
            Slot::Value { start, len } => {
                let start = start as usize;
                Ok(start..start + len as usize)
            }
            Slot::Missing | Slot::Empty | Slot::ErrorText => {
                Err(errors.next().unwrap_or_else(unlocated))
            }
        }
    }
}

/// Where a value is.
enum Place {
    /// A range of the answer.
    Answer(Range<usize>),
    /// A range of [`Pending::decoded`].
    Decoded(Range<usize>),
}

impl Pending {
    /// The values as ranges of `answer`, the bytes this was classified from (moved, not copied:
    /// it is wiped when the last value is dropped).
    pub(crate) fn settle(self, answer: Buffer) -> Classified {
        let answer = Arc::new(answer);
        let results = match self.results {
            Results::Early { slots, errors } => {
                let mut errors = errors.into_iter();
                return slots
                    .into_iter()
                    .map(|slot| {
                        Secret::shared(&answer, slot.range(&mut errors)?).ok_or_else(unlocated)
                    })
                    .collect();
            }
            Results::Sorted(results) => results,
        };
        let decoded = Arc::new(self.decoded);
        results
            .into_iter()
            .map(|result| {
                let (buffer, range) = match result? {
                    Place::Answer(range) => (&answer, range),
                    Place::Decoded(range) => (&decoded, range),
                };
                Secret::shared(buffer, range).ok_or_else(unlocated)
            })
            .collect()
    }

    /// The values copied out of `answer`, the bytes this was classified from, into one buffer
    /// of their own.
    pub(crate) fn copied(self, answer: &[u8]) -> Classified {
        let Pending { results, decoded } = self;
        let results = match results {
            Results::Sorted(results) => results,
            Results::Early { slots, errors } => {
                let mut errors = errors.into_iter();
                slots
                    .into_iter()
                    .map(|slot| slot.range(&mut errors).map(Place::Answer))
                    .collect()
            }
        };
        let text = |place: &Place| match place {
            Place::Answer(range) => answer
                .get(range.clone())
                .and_then(|bytes| std::str::from_utf8(bytes).ok()),
            Place::Decoded(range) => decoded.as_str().get(range.clone()),
        };
        let values = || results.iter().filter_map(|result| result.as_ref().ok());
        // Sized once: a buffer that grew would leave copies of values behind.
        let mut buffer = String::with_capacity(values().filter_map(text).map(str::len).sum());
        for value in values().filter_map(text) {
            buffer.push_str(value);
        }
        let buffer = Arc::new(Buffer::new(buffer));
        let mut at = 0;
        results
            .into_iter()
            .map(|result| {
                let value = text(&result?).ok_or_else(unlocated)?;
                let range = at..at + value.len();
                at = range.end;
                Secret::shared(&buffer, range).ok_or_else(unlocated)
            })
            .collect()
    }
}

/// A value that is not where classification found it. Not reached: the places come from the
/// same bytes.
fn unlocated() -> HandleError {
    handle_error(
        FailureKind::InvalidResponse,
        "a value could not be located in the backend's answer".to_owned(),
    )
}

/// [`classify_pending`] with the values copied into a buffer of their own (what the tests
/// compare every other classification with).
#[cfg(test)]
pub(crate) fn classify(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
    held: &[Secret],
) -> Result<Classified, serde_json::Error> {
    let pending = classify_pending(stdout, requested, remove_trailing_line_break, held)?;
    Ok(pending.copied(stdout))
}

/// Decodes `stdout` and classifies every requested handle, its values left in place: settle
/// them with the answer, or copy them. Fails, without quoting any value, when `stdout` is not a
/// valid response. Error texts are scrubbed of every value of the answer and of every value in
/// `held`: the values keyturn already holds (its last known good values, whatever their
/// handle), since a failing backend may repeat an old value (`rotation of <old value> failed`).
pub(crate) fn classify_pending(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
    held: &[Secret],
) -> Result<Pending, serde_json::Error> {
    let slots = decode(stdout, requested)?;
    Ok(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        held,
    ))
}

/// [`classify_pending`] when it needs no held values: `Ok(None)` when the answer carries
/// per-handle error texts (the caller then classifies it with the values it holds), the result
/// of [`classify_pending`] otherwise.
pub(crate) fn classify_without_error_texts(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
) -> Result<Option<Pending>, serde_json::Error> {
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

/// [`classify_pending`] for stdout that may not be complete yet: the result when the fast
/// scanner reads `stdout` as a whole answer without per-handle error texts, `None` otherwise
/// (the caller then classifies once stdout is complete). What it returns is what
/// [`classify_pending`] returns for the same bytes: the scanner accepts nothing that serde_json
/// decodes differently, and without error texts nothing is scrubbed, so nothing depends on the
/// values keyturn holds.
///
/// It keeps 12 bytes per handle (what a value is, where it is), not the decoded entries.
pub(crate) fn classify_early(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
) -> Option<Pending> {
    // Offsets in `u32`s; a longer answer is classified the general way.
    u32::try_from(stdout.len()).ok()?;
    let mut slots = vec![Slot::Missing; requested.handles.len()];
    Scanner::new(stdout)?.answer_with(Lookup::new(requested), |at, entry| {
        let slot = if entry.error_text().is_some() {
            Slot::ErrorText
        } else {
            match entry.resolved(remove_trailing_line_break) {
                // The scanner borrows every value from `stdout`.
                Some(value) => {
                    let start = value.as_ptr().addr().checked_sub(stdout.as_ptr().addr())?;
                    Slot::Value {
                        start: u32::try_from(start).ok()?,
                        len: u32::try_from(value.len()).ok()?,
                    }
                }
                None => Slot::Empty,
            }
        };
        // The last entry of a handle counts, as with the other decoders.
        *slots.get_mut(at)? = slot;
        Some(())
    })?;
    let mut errors = Vec::new();
    for (handle, slot) in requested.handles.iter().zip(&slots) {
        match slot {
            Slot::Value { .. } => {}
            Slot::Missing => errors.push(missing(handle)),
            Slot::Empty => errors.push(empty(handle)),
            Slot::ErrorText => return None,
        }
    }
    Some(Pending {
        results: Results::Early { slots, errors },
        decoded: Buffer::new(String::new()),
    })
}

/// The error of a handle the answer does not name.
fn missing(handle: &str) -> HandleError {
    let shown = Printable(handle);
    handle_error(
        FailureKind::Missing,
        format!(
            "secret handle '{shown}' was not resolved by the secret_backend_command. Ensure \
             your script returns the handle in the expected JSON format. Docs: {DOCS_URL}"
        ),
    )
}

/// The error of a handle whose value is empty.
fn empty(handle: &str) -> HandleError {
    let shown = Printable(handle);
    handle_error(
        FailureKind::Empty,
        format!(
            "resolved secret for '{shown}' is empty. Check that the secret exists in your \
             backend and has a non-empty value. If using \
             secret_backend_remove_trailing_line_break, trailing newlines are stripped. Docs: \
             {DOCS_URL}"
        ),
    )
}

/// Classifies every requested handle from its slot of the answer `stdout` (as the Agent
/// checks: missing, error, empty, in that order). A value borrowed from `stdout` is recorded as
/// its range there; a decoded one (it held escapes) is copied into one buffer of its own.
fn sort_out(
    stdout: &[u8],
    requested: &Requested<'_>,
    slots: Decoded<'_>,
    remove_trailing_line_break: bool,
    held: &[Secret],
) -> Pending {
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
    let value = |slot| value_of(slot, remove_trailing_line_break);
    // Where a value borrowed from `stdout` is in it.
    let in_answer = |value: &str| {
        let start = value.as_ptr().addr().checked_sub(stdout.as_ptr().addr())?;
        let end = start.checked_add(value.len())?;
        (end <= stdout.len()).then_some(start..end)
    };
    // The decoded values in one buffer of its final size (a buffer that grew would leave
    // copies behind).
    let mut decoded = String::with_capacity(
        slots
            .iter()
            .filter_map(value)
            .filter(|value| in_answer(value).is_none())
            .map(str::len)
            .sum(),
    );
    let mut results = Vec::with_capacity(slots.len());
    for (handle, slot) in requested.handles.iter().zip(&slots) {
        let shown = Printable(handle);
        let result = match slot {
            None => Err(missing(handle)),
            Some(entry) => match entry.error_text() {
                Some(text) => Err(handle_error(
                    FailureKind::Error,
                    format!(
                        "an error occurred while resolving '{shown}': {}",
                        escape_controls(&scrubber.scrub(text))
                    ),
                )),
                None => match value(slot) {
                    Some(value) => Ok(match in_answer(value) {
                        Some(range) => Place::Answer(range),
                        None => {
                            let start = decoded.len();
                            decoded.push_str(value);
                            Place::Decoded(start..decoded.len())
                        }
                    }),
                    None => Err(empty(handle)),
                },
            },
        };
        results.push(result);
    }
    Pending {
        results: Results::Sorted(results),
        decoded: Buffer::new(decoded),
    }
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
