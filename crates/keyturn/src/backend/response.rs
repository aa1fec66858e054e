//! What a backend answered, as pure functions over bytes: decoding and per-handle
//! classification (spec §2.3), the texts of per-handle failures (§2.4), and the scrubbing of
//! values out of anything the backend said besides them (its per-handle error texts and its
//! stderr).
//!
//! Decoding accepts exactly what [`keyturn_protocol::parse_response`] accepts, but goes
//! straight from the stdout buffer to one slot per requested handle: names and values are
//! borrowed from the buffer where they hold no escapes, and only requested values are copied,
//! once, into a [`Secret`]. This keeps a 10,000-handle answer close to the cost of the spawn.
//!
//! Invariant: no text built here contains a value the backend returned in the same answer, nor
//! a value keyturn already holds (see [`Known`]). Parse errors are described from their
//! category and position only, never with serde's text for data errors (which quotes the
//! offending input, e.g. a value given as a bare string).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
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

/// Every value keyturn already holds (its last-known-good values, whatever their handle): they
/// are scrubbed from the backend's texts too, since a failing backend may repeat an old value
/// (`rotation of <old value> failed`). Called only when a text needs scrubbing.
pub(crate) type Known<'a> = dyn Fn() -> Vec<Secret> + Sync + 'a;

/// The distinct handles of one run, in first-seen order, and where each one sits.
pub(crate) struct Requested<'a> {
    /// Distinct handles, in first-seen order (the payload's `secrets`).
    pub(crate) handles: Vec<String>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Requested<'a> {
    /// De-duplicates `handles`, keeping first-seen order.
    pub(crate) fn new(handles: &'a [String]) -> Requested<'a> {
        let mut index = HashMap::with_capacity(handles.len());
        let mut distinct = Vec::with_capacity(handles.len());
        for handle in handles {
            let next = distinct.len();
            index.entry(handle.as_str()).or_insert_with(|| {
                distinct.push(handle.clone());
                next
            });
        }
        Requested {
            handles: distinct,
            index,
        }
    }
}

/// Decodes `stdout` and classifies every requested handle, in order. Fails, without quoting
/// any value, when `stdout` is not a valid response. Error texts are scrubbed of every value of
/// the answer and of every value `known` returns.
pub(crate) fn classify(
    stdout: &[u8],
    requested: Requested<'_>,
    remove_trailing_line_break: bool,
    known: &Known<'_>,
) -> Result<Fetched, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(stdout);
    let slots = Slots {
        index: &requested.index,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    let any_error = slots
        .iter()
        .flatten()
        .any(|entry| entry.error_text().is_some());
    let scrubber = if any_error {
        let values = values_in_output(stdout);
        let held = known();
        Scrubber::new(
            values
                .iter()
                .map(|value| value.as_str())
                .chain(held.iter().map(Secret::expose)),
        )
    } else {
        Scrubber::default()
    };
    let fetched = requested
        .handles
        .into_iter()
        .zip(slots)
        .map(|(handle, slot)| {
            let result = match slot {
                None => Err(handle_error(
                    FailureKind::Missing,
                    format!(
                        "secret handle '{handle}' was not resolved by the secret_backend_command. \
                         Ensure your script returns the handle in the expected JSON format. \
                         Docs: {DOCS_URL}"
                    ),
                )),
                Some(entry) => match entry.error_text() {
                    Some(text) => Err(handle_error(
                        FailureKind::Error,
                        format!(
                            "an error occurred while resolving '{handle}': {}",
                            escape_controls(&scrubber.scrub(text))
                        ),
                    )),
                    None => entry.resolved(remove_trailing_line_break).ok_or_else(|| {
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
            (handle, result)
        })
        .collect();
    Ok(fetched)
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
///
/// A text is scanned once, left to right; at each position the longest needle that starts
/// there is masked. Needles are indexed by a keyed hash of their first [`PREFIX`] bytes, so the
/// cost is one lookup per position of the text, whatever the number of needles (a refresh of
/// 10,000 handles that all fail with an error text stays linear).
#[derive(Default)]
pub(crate) struct Scrubber {
    /// Distinct non-empty needles, longest first.
    needles: Vec<Zeroizing<String>>,
    /// Indexes into `needles` (ascending, so longest first) by the hash of their first
    /// [`PREFIX`] bytes. Keyed hashes, so no plain fragment of a value is kept as a key.
    by_prefix: HashMap<u64, Vec<usize>>,
    /// Indexes of the needles shorter than [`PREFIX`] bytes.
    short: Vec<usize>,
    hasher: RandomState,
}

/// How many leading bytes of a needle index it.
const PREFIX: usize = 4;

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
        let mut scrubber = Scrubber {
            needles,
            ..Scrubber::default()
        };
        for (index, needle) in scrubber.needles.iter().enumerate() {
            match needle.as_bytes().get(..PREFIX) {
                Some(prefix) => scrubber
                    .by_prefix
                    .entry(scrubber.hasher.hash_one(prefix))
                    .or_default()
                    .push(index),
                None => scrubber.short.push(index),
            }
        }
        scrubber
    }

    /// `text` with every needle replaced by [`MASK`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Zeroizing::new(String::with_capacity(text.len()));
        let (mut at, mut copied) = (0, 0);
        while at < bytes.len() {
            match self.longest_at(&bytes[at..]) {
                // A needle is valid UTF-8, so it starts and ends on character boundaries.
                Some(len) => {
                    out.push_str(text.get(copied..at).unwrap_or_default());
                    out.push_str(MASK);
                    at += len;
                    copied = at;
                }
                None => at += 1,
            }
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        out.as_str().to_owned()
    }

    /// The length of the longest needle `rest` starts with.
    fn longest_at(&self, rest: &[u8]) -> Option<usize> {
        let indexed = rest
            .get(..PREFIX)
            .and_then(|prefix| self.by_prefix.get(&self.hasher.hash_one(prefix)))
            .into_iter()
            .flatten();
        indexed
            .chain(&self.short)
            .filter(|&&index| rest.starts_with(self.needles[index].as_bytes()))
            .min()
            .map(|&index| self.needles[index].len())
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

/// One entry of the answer, as [`keyturn_protocol::Entry`] reads it, borrowing where it can.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(default, borrow)]
    value: Option<Text<'a>>,
    #[serde(default, borrow)]
    error: Option<Text<'a>>,
}

impl RawEntry<'_> {
    fn error_text(&self) -> Option<&str> {
        self.error
            .as_ref()
            .map(Text::as_str)
            .filter(|text| !text.is_empty())
    }

    /// The value, `None` when empty (after stripping line breaks if asked).
    fn resolved(&self, remove_trailing_line_break: bool) -> Option<Secret> {
        let mut value = self.value.as_ref()?.as_str();
        if remove_trailing_line_break {
            value = value.trim_end_matches(['\r', '\n']);
        }
        (!value.is_empty()).then(|| Secret::new(value))
    }
}

/// A JSON string borrowed from the input, or decoded into a zeroizing buffer when it held
/// escapes.
enum Text<'a> {
    Borrowed(&'a str),
    Owned(Zeroizing<String>),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'a>, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text::Borrowed(text))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text::Owned(Zeroizing::new(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text::Owned(Zeroizing::new(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Decodes the answer object into one slot per requested handle; entries of handles not
/// requested are decoded (so their shape is checked) and dropped.
struct Slots<'i> {
    index: &'i HashMap<&'i str, usize>,
}

impl<'de> DeserializeSeed<'de> for Slots<'_> {
    type Value = Vec<Option<RawEntry<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_> {
    type Value = Vec<Option<RawEntry<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of handles")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Option<RawEntry<'de>>> = Vec::new();
        slots.resize_with(self.index.len(), || None);
        while let Some(handle) = map.next_key::<Text<'de>>()? {
            let entry: RawEntry<'de> = map.next_value()?;
            if let Some(slot) = self
                .index
                .get(handle.as_str())
                .and_then(|&at| slots.get_mut(at))
            {
                *slot = Some(entry);
            }
        }
        Ok(slots)
    }
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

    fn classify_str(output: &str, handles: &[String], strip: bool) -> Fetched {
        classify(output.as_bytes(), Requested::new(handles), strip, &Vec::new).unwrap()
    }

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

    fn error_texts(fetched: Fetched) -> Vec<String> {
        fetched
            .into_iter()
            .map(|(_, r)| r.unwrap_err().message)
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
            error_texts(fetched),
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

    // What the caller already holds is scrubbed too, longest first.
    #[test]
    fn per_handle_texts_are_scrubbed_of_known_values() {
        let requested = [String::from("a"), String::from("b")];
        let known = || vec![Secret::new("old-a-value"), Secret::new("old-a")];
        let fetched = classify(
            br#"{"a":{"error":"no old-a-value"},"b":{"error":"b is old-a-value, not old-a"}}"#,
            Requested::new(&requested),
            false,
            &known,
        )
        .unwrap();
        assert_eq!(
            error_texts(fetched),
            [
                "an error occurred while resolving 'a': no ********",
                "an error occurred while resolving 'b': b is ********, not ********",
            ]
        );
        // Many needles sharing a prefix, and needles shorter than the indexed prefix.
        let values: Vec<String> = (0..2000).map(|i| format!("QZXJ-{i}-JXZQ")).collect();
        let scrubber = Scrubber::new(values.iter().map(String::as_str).chain(["ab", "é"]));
        assert_eq!(
            scrubber.scrub("QZXJ-1999-JXZQ QZXJ-7 ab é QZXJ-0-JXZQx"),
            "******** QZXJ-7 ******** ******** ********x"
        );
    }

    #[test]
    fn decoding_accepts_what_the_protocol_crate_accepts() {
        let requested = [String::from("h"), String::from("h\"2")];
        for input in [
            r#"{}"#,
            r#"{"h":{"value":"v"},"x":{"value":"w","error":null,"other":[1]}}"#,
            r#"{"h":{"value":"a\u00e9\n"},"h\"2":{"error":"e\t"}}"#,
            r#"{"h":{"value":"first"},"h":{"value":"last"}}"#,
            r#"{"h":["v","e"]}"#,
            r#"{"h":{"value":"v","value":"w"}}"#,
            r#"{"x":{"value":1}}"#,
            r#"{"h":"v"}"#,
            r#"[]"#,
            r#"{"h":{}} {}"#,
            r#"{"h":{"value":"v"}"#,
            "",
        ] {
            let theirs = parse_response(input.as_bytes());
            let ours = classify(
                input.as_bytes(),
                Requested::new(&requested),
                false,
                &Vec::new,
            );
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{input}");
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                for (handle, result) in ours {
                    let expected = theirs.get(&handle).and_then(|entry| entry.value.as_deref());
                    let got = result.as_ref().ok().map(|secret| secret.expose());
                    if got.is_some() {
                        assert_eq!(got, expected.map(String::as_str), "{input}");
                    }
                }
            }
        }
        let fetched = classify_str(
            r#"{"h":{"value":"first"},"h":{"value":"last"}}"#,
            &requested[..1],
            false,
        );
        assert_eq!(fetched[0].1.as_ref().unwrap().expose(), "last");
        let fetched = classify_str(r#"{"h\"2":{"value":"\u00e9"}}"#, &requested[1..], false);
        assert_eq!(fetched[0].1.as_ref().unwrap().expose(), "é");
        let handles = [String::from("a"), String::from("b"), String::from("a")];
        assert_eq!(Requested::new(&handles).handles, ["a", "b"]);
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
            let requested = [String::from("h")];
            for error in [
                parse_response(bad.as_bytes()).unwrap_err(),
                classify(bad.as_bytes(), Requested::new(&requested), false, &Vec::new).unwrap_err(),
            ] {
                let text = describe_parse_error(&error);
                for secret in ["hunter2", "424242", "hun"] {
                    assert!(!text.contains(secret), "{bad} -> {text}");
                }
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
