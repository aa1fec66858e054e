//! What a backend answered, as pure functions over bytes: decoding and per-handle
//! classification, the texts of per-handle failures (the Agent's wording), and the scrubbing of
//! values out of anything the backend said besides them (its per-handle error texts and its
//! stderr).
//!
//! Decoding accepts exactly what [`keyturn_protocol::parse_response`] accepts, but goes
//! straight from the stdout buffer to one slot per requested handle: names and values are
//! borrowed from the buffer where they hold no escapes, and only requested values are copied,
//! once, into a [`Secret`]. This keeps a 10,000-handle answer close to the cost of the spawn.
//!
//! Two decoders produce those slots. A fast scanner reads only the common shape — entries
//! whose fields are `value` and `error`, each at most once, as strings without escapes or as
//! `null`, around JSON whitespace — and gives up at the first byte outside it; serde_json then
//! decodes the whole answer from the start and alone decides what is accepted and how it
//! fails. Everything the scanner accepts is valid JSON that serde_json decodes to the same
//! slots, so acceptance and results do not depend on which decoder answered. Answer keys are
//! matched by trying the handle after the last one matched before hashing, so an answer in
//! request order costs no hashing.
//!
//! Invariant: no text built here contains a value the backend returned in the same answer, nor
//! a value keyturn already holds (see [`Known`]). Parse errors are described from their
//! category and position only, never with serde's text for data errors (which quotes the
//! offending input, e.g. a value given as a bare string).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use zeroize::Zeroizing;

use super::FailureKind;
use super::{Fetched, HandleError};
use crate::DOCS_URL;
use crate::printable::Printable;
use crate::secret::Secret;
use keyturn_protocol::scrub::{Scrubber, escape_controls};

/// Every value keyturn already holds (its last-known-good values, whatever their handle): they
/// are scrubbed from the backend's texts too, since a failing backend may repeat an old value
/// (`rotation of <old value> failed`). Called only when a text needs scrubbing.
pub(crate) type Known<'a> = dyn Fn() -> Vec<Secret> + Sync + 'a;

/// The distinct handles of one run, in first-seen order, and where each one sits.
pub(crate) struct Requested<'a> {
    /// Distinct handles, in first-seen order (the payload's `secrets`).
    pub(crate) handles: Vec<&'a str>,
    /// Handle to its position in `handles`. foldhash, randomly seeded: handles are short, and
    /// SipHash made this map as costly as decoding a 10,000-handle answer.
    index: HashMap<&'a str, usize, foldhash::fast::RandomState>,
}

impl<'a> Requested<'a> {
    /// De-duplicates `handles`, keeping first-seen order. Borrows them: the one copy of each
    /// name is made for the result, once the answer is in.
    pub(crate) fn new(handles: &'a [String]) -> Requested<'a> {
        let mut index = HashMap::with_capacity_and_hasher(
            handles.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut distinct = Vec::with_capacity(handles.len());
        for handle in handles {
            let next = distinct.len();
            index.entry(handle.as_str()).or_insert_with(|| {
                distinct.push(handle.as_str());
                next
            });
        }
        Requested {
            handles: distinct,
            index,
        }
    }
}

/// Finds the slot of an answer key: first the handle after the last one found, then the index.
struct Lookup<'r> {
    handles: &'r [&'r str],
    index: &'r HashMap<&'r str, usize, foldhash::fast::RandomState>,
    next: usize,
}

impl<'r> Lookup<'r> {
    fn new(requested: &'r Requested<'r>) -> Lookup<'r> {
        Lookup {
            handles: &requested.handles,
            index: &requested.index,
            next: 0,
        }
    }

    fn slot(&mut self, key: &str) -> Option<usize> {
        let at = match self.handles.get(self.next) {
            Some(&handle) if handle == key => self.next,
            _ => *self.index.get(key)?,
        };
        self.next = at + 1;
        Some(at)
    }
}

/// One slot per requested handle: the entry the answer gave it, if any.
type Decoded<'a> = Vec<Option<RawEntry<'a>>>;

/// Decodes `stdout` into one slot per requested handle: the scanner, or serde_json when the
/// scanner gives up.
fn decode<'a>(
    stdout: &'a [u8],
    requested: &Requested<'_>,
) -> Result<Decoded<'a>, serde_json::Error> {
    match Scanner::new(stdout).and_then(|scanner| scanner.answer(Lookup::new(requested))) {
        Some(slots) => Ok(slots),
        None => decode_with_serde(stdout, requested),
    }
}

/// The decoder of record: serde_json over the whole answer.
fn decode_with_serde<'a>(
    stdout: &'a [u8],
    requested: &Requested<'_>,
) -> Result<Decoded<'a>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(stdout);
    let slots = Slots {
        lookup: Lookup::new(requested),
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(slots)
}

/// Decodes `stdout` and classifies every requested handle, in order. Fails, without quoting
/// any value, when `stdout` is not a valid response. Error texts are scrubbed of every value of
/// the answer and of every value `known` returns.
pub(crate) fn classify(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
    known: &Known<'_>,
) -> Result<Fetched, serde_json::Error> {
    let slots = decode(stdout, requested)?;
    Ok(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        known,
    ))
}

/// [`classify`] for stdout that may not be complete yet: the result when the fast scanner reads
/// `stdout` as a whole answer without per-handle error texts, `None` otherwise (the caller then
/// classifies once stdout is complete). What it returns is what [`classify`] returns for the
/// same bytes: the scanner accepts nothing that serde_json decodes differently, and without
/// error texts nothing is scrubbed, so nothing depends on when `known` would be asked.
pub(crate) fn classify_early(
    stdout: &[u8],
    requested: &Requested<'_>,
    remove_trailing_line_break: bool,
) -> Option<Fetched> {
    let slots = Scanner::new(stdout)?.answer(Lookup::new(requested))?;
    if any_error_text(&slots) {
        return None;
    }
    Some(sort_out(
        stdout,
        requested,
        slots,
        remove_trailing_line_break,
        &Vec::new,
    ))
}

/// Classifies every requested handle from its slot of the answer `stdout` (as the Agent
/// checks: missing, error, empty, in that order).
fn sort_out(
    stdout: &[u8],
    requested: &Requested<'_>,
    slots: Decoded<'_>,
    remove_trailing_line_break: bool,
    known: &Known<'_>,
) -> Fetched {
    let scrubber = if any_error_text(&slots) {
        // The slots were decoded from `stdout`, so it is an answer.
        let values = answer_values(stdout).unwrap_or_default();
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
    requested
        .handles
        .iter()
        .zip(slots)
        .map(|(handle, slot)| {
            let shown = Printable(handle);
            let result = match slot {
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
                    None => entry.resolved(remove_trailing_line_break).ok_or_else(|| {
                        handle_error(
                            FailureKind::Empty,
                            format!(
                                "resolved secret for '{shown}' is empty. Check that the secret \
                                 exists in your backend and has a non-empty value. If using \
                                 secret_backend_remove_trailing_line_break, trailing newlines \
                                 are stripped. Docs: {DOCS_URL}"
                            ),
                        )
                    }),
                },
            };
            ((*handle).to_owned(), result)
        })
        .collect()
}

/// Whether some entry carries a per-handle error text.
fn any_error_text(slots: &Decoded<'_>) -> bool {
    slots
        .iter()
        .flatten()
        .any(|entry| entry.error_text().is_some())
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

/// The values of `output` when it is a valid answer: what to scrub from the backend's other
/// texts. `None` when it is not an answer (a value there cannot be told apart reliably, so
/// callers withhold those texts instead of scrubbing them). Every entry's value counts, those
/// of a handle the answer repeats included (a map would keep only the last one, and the
/// backend may still print the others).
pub(crate) fn answer_values(output: &[u8]) -> Option<Vec<Zeroizing<String>>> {
    // Accepts exactly what `keyturn_protocol::parse_response` accepts: an object of entries,
    // then only whitespace.
    let mut deserializer = serde_json::Deserializer::from_slice(output);
    let values = deserializer.deserialize_map(AllValues).ok()?;
    deserializer.end().ok()?;
    Some(values)
}

/// Collects the value of every entry of an answer object, in order, repeated keys included.
struct AllValues;

impl<'de> Visitor<'de> for AllValues {
    type Value = Vec<Zeroizing<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of handles")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            let entry: keyturn_protocol::Entry = map.next_value()?;
            values.extend(entry.value);
        }
        Ok(values)
    }
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
struct Slots<'r> {
    lookup: Lookup<'r>,
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

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Option<RawEntry<'de>>> = Vec::new();
        slots.resize_with(self.lookup.handles.len(), || None);
        while let Some(handle) = map.next_key::<Text<'de>>()? {
            let entry: RawEntry<'de> = map.next_value()?;
            if let Some(slot) = self
                .lookup
                .slot(handle.as_str())
                .and_then(|at| slots.get_mut(at))
            {
                *slot = Some(entry);
            }
        }
        Ok(slots)
    }
}

/// The fast decoder of the common answer shape (see the module doc). Every method returns
/// `None` as soon as the input leaves that shape, valid JSON or not.
struct Scanner<'a> {
    input: &'a [u8],
    /// `input` as text: checked once as a whole, so strings are sliced without checking each.
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    /// `None` when `input` is not UTF-8 (serde_json then decides how that fails).
    fn new(input: &'a [u8]) -> Option<Scanner<'a>> {
        let text = std::str::from_utf8(input).ok()?;
        Some(Scanner { input, text, at: 0 })
    }

    /// The whole answer: an object of entries, then only whitespace.
    fn answer(mut self, mut lookup: Lookup<'_>) -> Option<Decoded<'a>> {
        let mut slots: Decoded<'a> = Vec::new();
        slots.resize_with(lookup.handles.len(), || None);
        self.skip_whitespace();
        self.expect(b'{')?;
        self.skip_whitespace();
        if !self.eat(b'}') {
            loop {
                let handle = self.string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
                let entry = self.entry()?;
                if let Some(slot) = lookup.slot(handle).and_then(|at| slots.get_mut(at)) {
                    *slot = Some(entry);
                }
                self.skip_whitespace();
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
                self.skip_whitespace();
            }
        }
        self.skip_whitespace();
        (self.at == self.input.len()).then_some(slots)
    }

    /// `{}` or an object whose only fields are `value` and `error`, each at most once.
    fn entry(&mut self) -> Option<RawEntry<'a>> {
        if let Some(entry) = self.compact_entry() {
            return Some(entry);
        }
        let mut entry = RawEntry {
            value: None,
            error: None,
        };
        let (mut seen_value, mut seen_error) = (false, false);
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.eat(b'}') {
            return Some(entry);
        }
        loop {
            let field = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let rest = self.input.get(self.at..).unwrap_or_default();
            let text = if rest.starts_with(b"null") {
                self.at += 4;
                None
            } else {
                Some(Text::Borrowed(self.string()?))
            };
            match field {
                "value" if !seen_value => (seen_value, entry.value) = (true, text),
                "error" if !seen_error => (seen_error, entry.error) = (true, text),
                _ => return None,
            }
            self.skip_whitespace();
            if self.eat(b'}') {
                return Some(entry);
            }
            self.expect(b',')?;
            self.skip_whitespace();
        }
    }

    /// The shape nearly every backend writes, matched whole: `{"value":"…"}` or
    /// `{"value":"…","error":null}` without whitespace. `None`, with nothing consumed, for
    /// anything else: [`Scanner::entry`] then reads it field by field, to the same result.
    fn compact_entry(&mut self) -> Option<RawEntry<'a>> {
        const OPEN: &[u8] = br#"{"value":""#;
        const NO_ERROR: &[u8] = br#","error":null}"#;
        let start = self.at + OPEN.len();
        if !self.input.get(self.at..)?.starts_with(OPEN) {
            return None;
        }
        let len = plain_prefix(self.input.get(start..)?);
        let quote = start + len;
        if self.input.get(quote) != Some(&b'"') {
            return None;
        }
        let tail = self.input.get(quote + 1..)?;
        let end = if tail.starts_with(b"}") {
            quote + 2
        } else if tail.starts_with(NO_ERROR) {
            quote + 1 + NO_ERROR.len()
        } else {
            return None;
        };
        let value = self.text.get(start..quote)?;
        self.at = end;
        Some(RawEntry {
            value: Some(Text::Borrowed(value)),
            error: None,
        })
    }

    /// A string literal without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = self.input.get(self.at..).unwrap_or_default();
        let len = plain_prefix(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        // Both ends sit next to an ASCII quote, so on character boundaries.
        let text = self.text.get(self.at..self.at + len)?;
        self.at += len + 1;
        Some(text)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.input.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }
}

/// The length of the longest prefix of `bytes` without `"`, `\\` or a control character,
/// eight bytes at a time while no byte of a word can be one of them.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Nonzero when some byte of `word` is below `n` (n <= 0x80): the classic SWAR test.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        let hit = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if hit != 0 {
            break;
        }
        at += 8;
    }
    let rest = bytes.get(at..).unwrap_or_default();
    at + rest.iter().position(|&b| special(b)).unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_protocol::parse_response;

    fn classify_str(output: &str, handles: &[String], strip: bool) -> Fetched {
        classify(
            output.as_bytes(),
            &Requested::new(handles),
            strip,
            &Vec::new,
        )
        .unwrap()
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
        let known = || vec![Secret::new("old-a-value"), Secret::new("old-a")];
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
            // The scanner's edges: each is either in its shape or left to serde_json.
            " \t\r\n{ \"h\" :\n{ \"value\" : \"v\" , \"error\" : null } } \n",
            r#"{"h":{"error":null,"value":null}}"#,
            r#"{"h":{"value":nul}}"#,
            r#"{"h":{"value":nullx}}"#,
            r#"{"h":{"value":"v"},}"#,
            r#"{"h":{"value":"v",}}"#,
            r#"{"h":{"value":"v"}}}"#,
            r#"{"h":{"value":"v" "error":"e"}}"#,
            r#"{"h" {"value":"v"}}"#,
            r#"{"h":{"value":"v","error":"e","error":"f"}}"#,
            r#"{"h":{"value":null,"value":"w"}}"#,
            r#"{"h":{"valu\u0065":"v"}}"#,
            r#"{"\u0068":{"value":"v"}}"#,
            r#"{"h":{"value":"v\""}}"#,
            r#"{"h":{"value":"v\x"}}"#,
            r#"{"h":{"value":"v","ttl":[1,{"a":null}]}}"#,
            r#"{"h":{"value":true}}"#,
            r#"{"":{"value":"v"},"h":{"value":"w"}}"#,
            "{\"h\":{\"value\":\"a\u{7f}\u{e9}\u{1F511}\"}}",
            "{\"h\":{\"value\":\"a\u{1}\"}}",
            "{\"h\":{\"value\":\"a\tb\"}}",
            "\u{feff}{\"h\":{\"value\":\"v\"}}",
            "{\"h\":{\"value\":\"v\"}}\u{c}",
            "{\"h\":{\"value\":\"v\"}}\0",
            r#"{"h":{"value":"v"}}x"#,
            // The compact entry and its near misses.
            r#"{"h":{"value":"","error":null}}"#,
            r#"{"h":{"value":"v","error":null },"h\"2":{"value":"w" }}"#,
            r#"{"h":{"value":"v","error":nul}}"#,
            r#"{"h":{"value":"v","error":null,"error":null}}"#,
            r#"{"h":{"value":"v","error":null,"value":"w"}}"#,
            r#"{"h":{"value":"v"},"h\"2":{"value":"w","error":"e"}}"#,
            r#"{"h":{"value":"v"#,
            r#"{"h":{"value":"v""#,
            r#"{"h":{"value":"v","error":null"#,
            r#"{"h":{"value":"v""#,
            r#"{"h":{"value":"#,
            r#"{"h":"#,
            r#"{"#,
            r#"{"h":{"value":"v"}} {"h":{"value":"w"}}"#,
            r#"{"h\"2":{"value":"v"},"h":{"value":"w"},"h":{"error":"e"}}"#,
        ] {
            check_parity(input.as_bytes(), &requested);
            let theirs = parse_response(input.as_bytes());
            let ours = classify(
                input.as_bytes(),
                &Requested::new(&requested),
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
        for input in [
            &b"{\"h\":{\"value\":\"a\xff\"}}"[..],
            b"{\"h\xc3\":{\"value\":\"v\"}}",
            b"{\"h\":{\"value\":\"\xed\xa0\x80\"}}",
        ] {
            check_parity(input, &requested);
            assert!(classify(input, &Requested::new(&requested), false, &Vec::new).is_err());
        }
        for common in [
            &b" {\"h\" : {\"value\":\"v\", \"error\":null},\"x\":{}}\n"[..],
            br#"{"h":{"value":"first"},"h":{"value":"last"},"x":{"error":"e"}}"#,
        ] {
            let requested = Requested::new(&requested);
            assert!(
                Scanner::new(common)
                    .and_then(|scanner| scanner.answer(Lookup::new(&requested)))
                    .is_some()
            );
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

    /// What a decoder made of an answer, in comparable form.
    fn view(slots: &Decoded<'_>) -> Vec<Option<(Option<String>, Option<String>)>> {
        let text = |text: &Option<Text<'_>>| text.as_ref().map(|t| t.as_str().to_owned());
        slots
            .iter()
            .map(|slot| {
                slot.as_ref()
                    .map(|entry| (text(&entry.value), text(&entry.error)))
            })
            .collect()
    }

    /// The scanner only answers for inputs serde_json decodes to the same slots, and the
    /// decoder as a whole accepts exactly what the protocol crate accepts.
    fn check_parity(input: &[u8], handles: &[String]) {
        let requested = Requested::new(handles);
        let serde = decode_with_serde(input, &requested);
        if let Some(scanned) =
            Scanner::new(input).and_then(|scanner| scanner.answer(Lookup::new(&requested)))
        {
            let serde = serde.as_ref().unwrap_or_else(|error| {
                panic!(
                    "{} scanned, serde_json: {error}",
                    String::from_utf8_lossy(input)
                )
            });
            assert_eq!(
                view(&scanned),
                view(serde),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let ours = decode(input, &requested).map(|slots| view(&slots));
        let theirs = parse_response(input);
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            ours.ok(),
            serde.ok().map(|slots| view(&slots)),
            "{}",
            String::from_utf8_lossy(input)
        );
        check_early(input, &requested);
    }

    /// One handle's classification, comparable: the value, or the failure kind and text.
    type Outcome = (String, Result<String, (FailureKind, String)>);

    /// What a classification says, comparable.
    fn outcomes(fetched: &Fetched) -> Vec<Outcome> {
        fetched
            .iter()
            .map(|(handle, result)| {
                let result = match result {
                    Ok(secret) => Ok(secret.expose().to_owned()),
                    Err(error) => Err((error.kind, error.message.clone())),
                };
                (handle.clone(), result)
            })
            .collect()
    }

    /// An early classification, when there is one, is the classification.
    fn check_early(input: &[u8], requested: &Requested<'_>) {
        for strip in [false, true] {
            if let Some(early) = classify_early(input, requested, strip) {
                let full = classify(input, requested, strip, &Vec::new).unwrap_or_else(|error| {
                    panic!(
                        "{} classified early, serde_json: {error}",
                        String::from_utf8_lossy(input)
                    )
                });
                assert_eq!(
                    outcomes(&early),
                    outcomes(&full),
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn early_classification_needs_a_whole_answer_without_error_texts() {
        let handles = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let requested = Requested::new(&handles);
        let answer = br#" {"b":{"value":"2\r\n"},"a":{"value":"1","error":null},"c":{}} "#;
        // The escaped value sends the scanner to serde_json: no early answer.
        assert!(classify_early(answer, &requested, true).is_none());
        let answer = br#" {"b":{"value":"2"},"a":{"value":"1","error":null},"c":{}}"#;
        let early = classify_early(answer, &requested, false).expect("a whole plain answer");
        assert_eq!(
            outcomes(&early),
            outcomes(&classify(answer, &requested, false, &Vec::new).unwrap())
        );
        // No prefix is a whole answer.
        for end in 0..answer.len() {
            assert!(
                classify_early(&answer[..end], &requested, false).is_none(),
                "{}",
                String::from_utf8_lossy(&answer[..end])
            );
        }
        // Per-handle error texts wait for the whole output (they are scrubbed of what keyturn
        // holds at that time).
        let with_error = br#"{"a":{"error":"no such secret"},"b":{"value":"2"}}"#;
        assert!(classify_early(with_error, &requested, false).is_none());
        assert!(classify(with_error, &requested, false, &Vec::new).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Answers built from JSON-ish tokens, mostly near the scanner's shape.
        #[test]
        fn scanner_and_serde_agree(tokens in proptest::collection::vec(
            proptest::sample::select(&[
                "{", "}", ":", ",", " ", "\n", "\"h\"", "\"h\\\"2\"", "\"x\"",
                "\"value\"", "\"error\"", "\"v\"", "\"\"", "null", "nul", "1", "[", "]",
                "\"a\\n\"", "\"\u{e9}\"", "\"\u{1}\"", "\"", "\\", "{\"h\":{\"value\":",
                "{\"value\":\"v\"}", "{\"error\":\"e\"}", "{}", "\"value\":null",
            ][..]),
            0..24,
        )) {
            let requested = [String::from("h"), String::from("h\"2")];
            check_parity(tokens.concat().as_bytes(), &requested);
        }

        /// Well-formed answers with entries in any order, duplicates and extra handles.
        #[test]
        fn scanner_and_serde_agree_on_answers(entries in proptest::collection::vec(
            (
                proptest::sample::select(&["h0", "h1", "h2", "other", "value"][..]),
                proptest::collection::vec(
                    (
                        proptest::sample::select(&["value", "error", "ttl"][..]),
                        proptest::sample::select(&["\"v\"", "null", "\"\"", "\"a\\tb\"", "3"][..]),
                    ),
                    0..4,
                ),
                proptest::sample::select(&["", " ", "\n\t"][..]),
            ),
            0..8,
        )) {
            let answer = entries
                .iter()
                .map(|(handle, fields, space)| {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|(field, value)| format!("{space}\"{field}\"{space}:{space}{value}"))
                        .collect();
                    format!("\"{handle}\":{space}{{{}}}", fields.join(","))
                })
                .collect::<Vec<_>>()
                .join(",");
            let requested: Vec<String> = ["h2", "h0", "h1"].map(String::from).to_vec();
            check_parity(format!("{{{answer}}}").as_bytes(), &requested);
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_prefix_is_the_first_special_byte(
            bytes in proptest::collection::vec(
                proptest::sample::select(&[0u8, 0x1f, b' ', b'"', b'\\', b'a', 0x7f, 0x80, 0xe9, 0xff][..]),
                0..40,
            )
        ) {
            let naive = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(plain_prefix(&bytes), naive);
        }
    }

    #[test]
    fn plain_prefix_stops_at_the_first_special_byte() {
        let base = "abcdefghijklmnopqrstuvwxyz\u{e9}\u{7f}\u{1F511}";
        assert_eq!(plain_prefix(base.as_bytes()), base.len());
        for special in ["\"", "\\", "\0", "\u{1}", "\n", "\u{1f}"] {
            for at in 0..=base.len() {
                if !base.is_char_boundary(at) {
                    continue;
                }
                let text = format!("{}{special}{}", &base[..at], &base[at..]);
                assert_eq!(plain_prefix(text.as_bytes()), at, "{text:?}");
            }
        }
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
                classify(
                    bad.as_bytes(),
                    &Requested::new(&requested),
                    false,
                    &Vec::new,
                )
                .unwrap_err(),
            ] {
                let text = describe_parse_error(&error);
                for secret in ["hunter2", "424242", "hun"] {
                    assert!(!text.contains(secret), "{bad} -> {text}");
                }
            }
        }
    }

    #[test]
    fn answer_values_are_the_values_of_a_valid_answer_only() {
        let check = |output: &str, expected: Option<&[&str]>| {
            let values = answer_values(output.as_bytes());
            let values: Option<Vec<&str>> = values
                .as_ref()
                .map(|v| v.iter().map(|v| v.as_str()).collect());
            assert_eq!(values.as_deref(), expected, "{output}");
        };
        check(
            r#"{"a":{"value":"x1","error":"e1","ttl":3},"value":{"value":"x\"2"}}"#,
            Some(&["x1", "x\"2"]),
        );
        check(r#"{"a":{"error":"e"}}"#, Some(&[]));
        check(r#"{"a":{"value": "trunc"#, None);
        check(r#"{"a":{"value":"ok"}} trailing"#, None);
        check(r#"{"a":"bare"}"#, None);
        // Issue 9.4c: a repeated handle's first value is a value too.
        check(
            r#"{"a":{"value":"first"},"b":{"value":"x"},"a":{"value":"second"}}"#,
            Some(&["first", "x", "second"]),
        );
    }
}
