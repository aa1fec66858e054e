//! What a backend answered, as pure functions over bytes: per-handle classification (spec
//! §2.3), the texts of per-handle failures (§2.4), and the scrubbing of values out of anything
//! the backend said besides them (its per-handle error texts and its stderr).
//!
//! Invariant: no text built here contains a value the backend returned in the same answer.
//! Parse errors are described from their category and position only, never with serde's text
//! for data errors (which quotes the offending input, e.g. a value given as a bare string).

use keyturn_protocol::{Entry, Response};
use serde_json::error::Category;
use zeroize::Zeroizing;

use super::{Fetched, HandleError};
use crate::DOCS_URL;
use crate::metrics::FailureKind;
use crate::secret::Secret;

/// What replaces a value in scrubbed text.
pub(crate) const MASK: &str = "********";

/// How much of the end of stderr an error text carries, in bytes.
pub(crate) const STDERR_TAIL: usize = 1024;

/// Classifies every handle of `handles` (distinct) against `response`, in order.
pub(crate) fn classify(
    mut response: Response,
    handles: &[String],
    remove_trailing_line_break: bool,
) -> Fetched {
    let any_error = handles.iter().any(|handle| {
        response
            .get(handle)
            .is_some_and(|entry| error_text(entry).is_some())
    });
    let scrubber = if any_error {
        Scrubber::new(
            response
                .values()
                .filter_map(|entry| entry.value.as_deref().map(String::as_str)),
        )
    } else {
        Scrubber::default()
    };
    handles
        .iter()
        .map(|handle| {
            let result = match response.remove(handle) {
                None => Err(handle_error(
                    FailureKind::Missing,
                    format!(
                        "secret handle '{handle}' was not resolved by the secret_backend_command. \
                         Ensure your script returns the handle in the expected JSON format. \
                         Docs: {DOCS_URL}"
                    ),
                )),
                Some(entry) => match error_text(&entry) {
                    Some(text) => Err(handle_error(
                        FailureKind::Error,
                        format!(
                            "an error occurred while resolving '{handle}': {}",
                            escape_controls(&scrubber.scrub(text))
                        ),
                    )),
                    None => resolved(entry, remove_trailing_line_break).ok_or_else(|| {
                        handle_error(
                            FailureKind::Empty,
                            format!(
                                "resolved secret for '{handle}' is empty. Check that the secret \
                                 exists in your backend and has a non-empty value. If using \
                                 secret_backend_remove_trailing_line_break, trailing newlines \
                                 are stripped. Docs: {DOCS_URL}"
                            ),
                        )
                    }),
                },
            };
            (handle.clone(), result)
        })
        .collect()
}

/// Describes a response parse error without quoting any of the input.
pub(crate) fn describe_parse_error(error: &serde_json::Error) -> String {
    match error.classify() {
        // serde_json's syntax and end-of-input texts are fixed phrases plus a position.
        Category::Syntax | Category::Eof | Category::Io => error.to_string(),
        Category::Data => format!(
            "expected an object mapping each handle to {{\"value\": string, \"error\": string}} \
             at line {} column {}",
            error.line(),
            error.column()
        ),
    }
}

/// The values to scrub from stderr when a run failed: those of the response when `output`
/// parses, else every string or number in a value position except under an `"error"` key (an
/// unparsable answer may carry values anywhere: `{"h":"v"}`, `{"h":{"value":42}}`, or cut
/// short in the middle of one).
pub(crate) fn values_in_output(output: &[u8]) -> Vec<Zeroizing<String>> {
    if let Ok(response) = keyturn_protocol::parse_response(output) {
        return response
            .into_values()
            .filter_map(|entry| entry.value)
            .collect();
    }
    let mut values = Vec::new();
    let mut under_error = false;
    let mut at = 0;
    while at < output.len() {
        let start = at;
        at = match output[at] {
            b'"' => string_end(output, at),
            b'-' | b'0'..=b'9' => {
                at + output[at..]
                    .iter()
                    .take_while(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .count()
            }
            _ => {
                at += 1;
                continue;
            }
        };
        let token = &output[start..at];
        if output[at..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':') {
            under_error = token == b"\"error\"";
            continue;
        }
        if !under_error {
            let decoded = serde_json::from_slice::<String>(token).unwrap_or_else(|_| {
                String::from_utf8_lossy(token.strip_prefix(b"\"").unwrap_or(token)).into_owned()
            });
            values.push(Zeroizing::new(decoded));
        }
        under_error = false;
    }
    values
}

/// Replaces every known value in a text by [`MASK`].
#[derive(Default)]
pub(crate) struct Scrubber {
    /// Distinct non-empty needles, longest first, so a value is masked before its prefixes.
    needles: Vec<Zeroizing<String>>,
}

impl Scrubber {
    /// A scrubber for `values`: each as returned, without its trailing line breaks, and in its
    /// JSON-escaped form (how a backend that logs its own answer would print it).
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut needles: Vec<Zeroizing<String>> = Vec::new();
        for value in values {
            let trimmed = value.trim_end_matches(['\r', '\n']);
            let escaped = Zeroizing::new(serde_json::to_string(value).unwrap_or_default());
            let escaped = escaped
                .get(1..escaped.len().saturating_sub(1))
                .unwrap_or_default();
            for needle in [value, trimmed, escaped] {
                if !needle.is_empty() {
                    needles.push(Zeroizing::new(needle.to_owned()));
                }
            }
        }
        needles.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Scrubber { needles }
    }

    /// `text` with every needle replaced by [`MASK`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = Zeroizing::new(text.to_owned());
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = Zeroizing::new(text.replace(needle.as_str(), MASK));
            }
        }
        text.as_str().to_owned()
    }

    /// The last [`STDERR_TAIL`] bytes of `stderr` (at most), scrubbed, as valid UTF-8 with
    /// control characters escaped. Scrubbing runs on a window that reaches one longest needle
    /// further back, so a value crossing the cut is masked too.
    pub(crate) fn stderr_tail(&self, stderr: &[u8]) -> String {
        let longest = self.needles.first().map_or(0, |needle| needle.len());
        let window = &stderr[stderr.len().saturating_sub(STDERR_TAIL + longest)..];
        let text = Zeroizing::new(String::from_utf8_lossy(window).into_owned());
        let scrubbed = Zeroizing::new(self.scrub(&text));
        let mut start = scrubbed.len().saturating_sub(STDERR_TAIL);
        while !scrubbed.is_char_boundary(start) {
            start += 1;
        }
        escape_controls(scrubbed[start..].trim())
    }
}

/// Escapes control characters (newlines included) so a backend's text stays on one line.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn handle_error(kind: FailureKind, message: String) -> HandleError {
    HandleError { kind, message }
}

fn error_text(entry: &Entry) -> Option<&str> {
    entry.error.as_deref().filter(|text| !text.is_empty())
}

/// The value of a non-error entry, `None` when empty (after stripping line breaks if asked).
fn resolved(entry: Entry, remove_trailing_line_break: bool) -> Option<Secret> {
    let mut value = entry.value?;
    if remove_trailing_line_break {
        let kept = value.trim_end_matches(['\r', '\n']).len();
        value.truncate(kept);
    }
    (!value.is_empty()).then(|| Secret::from(value))
}

/// The index just past the JSON string literal starting at `start` (a `"`), or the end.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_protocol::parse_response;

    fn check(
        output: &str,
        handles: &[&str],
        strip: bool,
        expected: &[(&str, Result<&str, FailureKind>)],
    ) {
        let handles: Vec<String> = handles.iter().map(|h| (*h).to_owned()).collect();
        let fetched = classify(parse_response(output.as_bytes()).unwrap(), &handles, strip);
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

    #[test]
    fn per_handle_texts() {
        let fetched = classify(
            parse_response(br#"{"e":{"error":"boom: leaked-v\nline2"},"x":{"value":"leaked-v"},"y":{"value":""}}"#)
                .unwrap(),
            &["m".into(), "e".into(), "y".into()],
            false,
        );
        let texts: Vec<String> = fetched
            .into_iter()
            .map(|(_, r)| r.unwrap_err().message)
            .collect();
        assert_eq!(
            texts,
            [
                format!(
                    "secret handle 'm' was not resolved by the secret_backend_command. Ensure your script returns the handle in the expected JSON format. Docs: {DOCS_URL}"
                ),
                "an error occurred while resolving 'e': boom: ********\\nline2".to_owned(),
                format!(
                    "resolved secret for 'y' is empty. Check that the secret exists in your backend and has a non-empty value. If using secret_backend_remove_trailing_line_break, trailing newlines are stripped. Docs: {DOCS_URL}"
                ),
            ]
        );
    }

    #[test]
    fn parse_errors_never_quote_input() {
        for bad in [
            r#"{"h":"hunter2"}"#,
            r#"{"h":{"value":424242}}"#,
            r#"{"h":{"value":["hunter2"]}}"#,
            r#"["hunter2"]"#,
            r#""hunter2""#,
            r#"{"h":{"value":"hunter2"}} hunter2"#,
            r#"{"h":{"value":"hunter2""#,
            r#"hunter2"#,
            "{\"h\":{\"value\":\"hun\u{1}ter2\"}}",
            r#"{"h":{"value":"hunter2\x"}}"#,
        ] {
            let error = parse_response(bad.as_bytes()).unwrap_err();
            let text = describe_parse_error(&error);
            for secret in ["hunter2", "424242", "hun"] {
                assert!(!text.contains(secret), "{bad} -> {text}");
            }
        }
    }

    #[test]
    fn values_are_found_in_broken_output() {
        let check = |output: &str, expected: &[&str]| {
            let values = values_in_output(output.as_bytes());
            let values: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
            assert_eq!(values, expected, "{output}");
        };
        // Valid: exactly the values.
        check(
            r#"{"a":{"value":"x1","error":"e1","ttl":3},"value":{"value":"x\"2"}}"#,
            &["x1", "x\"2"],
        );
        check(r#"{"a":{"error":"e"}}"#, &[]);
        // Broken: everything in a value position but error texts.
        check(r#"{"a":{"value": "trunc"#, &["trunc"]);
        check(
            r#"{"a":{"value":"ok"}} trailing "value": "also""#,
            &["ok", "also"],
        );
        check(
            r#"{"a":"bare","b":{"value":424242,"error":"e"}}"#,
            &["bare", "424242"],
        );
        check(r#"["s1", -1.5e3, {"error":"e"}"#, &["s1", "-1.5e3"]);
        check(r#"{"a":{"value":"\u00e9t\u00e9"}} x"#, &["été"]);
    }

    #[test]
    fn scrubbing() {
        let scrubber = Scrubber::new(["s3cret\n", "a\"b", "s3"]);
        assert_eq!(
            scrubber.scrub("x s3cret y s3cret\n z"),
            "x ******** y ******** z"
        );
        assert_eq!(
            scrubber.scrub(r#"{"value":"a\"b"} a"b"#),
            r#"{"value":"********"} ********"#
        );
        assert_eq!(scrubber.scrub("s3 s3c"), "******** ********c");
        let long = format!("{}s3cret{}", "x".repeat(5000), "y".repeat(1020));
        let tail = scrubber.stderr_tail(long.as_bytes());
        assert!(tail.len() <= STDERR_TAIL, "{}", tail.len());
        assert!(tail.ends_with(&"y".repeat(1020)));
        assert!(!tail.contains("cret"), "{tail}");
        assert_eq!(
            scrubber.stderr_tail(b"bad \xff utf8\n\x1b[31m"),
            "bad \u{fffd} utf8\\n\\u{1b}[31m"
        );
    }
}
