//! Decoding an answer: straight from the stdout buffer to one slot per requested handle.
//!
//! Decoding accepts exactly what [`keyturn_protocol::parse_response`] accepts, but names and
//! values are borrowed from the buffer where they hold no escapes, and only requested values
//! are copied, once, into the one buffer that the answer's [`Secret`](crate::Secret)s share.
//! This keeps a 10,000-handle answer close to the cost of the spawn.
//!
//! Two decoders produce those slots. A fast scanner reads only the common shape — entries
//! whose fields are `value` and `error`, each at most once, as strings without escapes or as
//! `null`, around JSON whitespace — and gives up at the first byte outside it; serde_json then
//! decodes the whole answer from the start and alone decides what is accepted and how it
//! fails. Everything the scanner accepts is valid JSON that serde_json decodes to the same
//! slots, so acceptance and results do not depend on which decoder answered. Answer keys are
//! matched by trying the handle after the last one matched before hashing, so an answer in
//! request order costs no hashing.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use zeroize::Zeroizing;

/// The distinct handles of one run, in first-seen order, and where each one sits.
pub(crate) struct Requested<'a> {
    /// Distinct handles, in first-seen order (the payload's `secrets`).
    pub(crate) handles: Vec<&'a str>,
    /// For each of `handles`, its position in the list it was built from, so that a result
    /// is paired with the caller's own name for the handle (no copy of it is made here).
    positions: Vec<usize>,
    /// Handle to its place in `handles`, built the first time an answer key comes out of
    /// request order (most answers never need it), then kept for every later decode of the run.
    index: OnceLock<Index<'a>>,
}

/// Handle to its position among the distinct handles. foldhash, randomly seeded: handles are
/// short, and SipHash made this map as costly as decoding a 10,000-handle answer.
type Index<'a> = HashMap<&'a str, usize, foldhash::fast::RandomState>;

/// An index of `handles` (the first position of each).
fn index<'a>(handles: &[&'a str]) -> Index<'a> {
    let mut index =
        HashMap::with_capacity_and_hasher(handles.len(), foldhash::fast::RandomState::default());
    for (at, handle) in handles.iter().enumerate() {
        index.entry(*handle).or_insert(at);
    }
    index
}

impl<'a> Requested<'a> {
    /// De-duplicates `handles`, keeping first-seen order. Borrows them: no name is copied. The
    /// map that finds duplicates is dropped here: most answers come in request order and never
    /// need one, so it is not held while the answer is read.
    pub(crate) fn new<S: AsRef<str>>(handles: &'a [S]) -> Requested<'a> {
        // A table of places in `distinct` (not of names): a third of the memory a map from
        // names would touch, and touching it is most of this step's cost. Seeded at random: the
        // names come from documents and backend answers.
        let state = foldhash::fast::RandomState::default();
        let mut seen: HashTable<usize> = HashTable::with_capacity(handles.len());
        let mut distinct: Vec<&'a str> = Vec::with_capacity(handles.len());
        let mut positions = Vec::with_capacity(handles.len());
        for (position, handle) in handles.iter().enumerate() {
            let handle = handle.as_ref();
            let hash = state.hash_one(handle);
            let place = seen.entry(
                hash,
                |&at| distinct.get(at) == Some(&handle),
                |&at| distinct.get(at).map_or(0, |known| state.hash_one(known)),
            );
            if let hashbrown::hash_table::Entry::Vacant(slot) = place {
                slot.insert(distinct.len());
                distinct.push(handle);
                positions.push(position);
            }
        }
        distinct.shrink_to_fit();
        positions.shrink_to_fit();
        Requested {
            handles: distinct,
            positions,
            index: OnceLock::new(),
        }
    }

    /// Pairs the result of each distinct handle (`results`, in the order of
    /// [`Requested::handles`]) with its name in `given`, the list this was built from.
    pub(crate) fn named<S: Clone, T>(&self, given: &[S], results: Vec<T>) -> Vec<(S, T)> {
        // Sized once (a `filter_map` gives no size hint, and the list would double its way up).
        let mut named = Vec::with_capacity(results.len());
        for (&position, result) in self.positions.iter().zip(results) {
            if let Some(name) = given.get(position) {
                named.push((name.clone(), result));
            }
        }
        named
    }
}

/// Finds the slot of an answer key: first the handle after the last one found, then the
/// requested handles' index (built once, at the first key out of request order).
pub(super) struct Lookup<'r, 'a> {
    requested: &'r Requested<'a>,
    next: usize,
}

impl<'r, 'a> Lookup<'r, 'a> {
    pub(super) fn new(requested: &'r Requested<'a>) -> Lookup<'r, 'a> {
        Lookup { requested, next: 0 }
    }

    fn slot(&mut self, key: &str) -> Option<usize> {
        let requested = self.requested;
        let at = match requested.handles.get(self.next) {
            Some(&handle) if handle == key => self.next,
            _ => *requested
                .index
                .get_or_init(|| index(&requested.handles))
                .get(key)?,
        };
        self.next = at + 1;
        Some(at)
    }
}

/// One slot per requested handle: the entry the answer gave it, if any.
pub(super) type Decoded<'a> = Vec<Option<RawEntry<'a>>>;

/// Decodes `stdout` into one slot per requested handle: the scanner, or serde_json when the
/// scanner gives up.
pub(super) fn decode<'a>(
    stdout: &'a [u8],
    requested: &Requested<'_>,
) -> Result<Decoded<'a>, serde_json::Error> {
    match Scanner::new(stdout).and_then(|scanner| scanner.answer(Lookup::new(requested))) {
        Some(slots) => Ok(slots),
        None => decode_with_serde(stdout, requested),
    }
}

/// The decoder of record: serde_json over the whole answer.
pub(super) fn decode_with_serde<'a>(
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

/// One entry of the answer, as [`keyturn_protocol::Entry`] reads it, borrowing where it can.
#[derive(Deserialize)]
pub(super) struct RawEntry<'a> {
    #[serde(default, borrow)]
    pub(super) value: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub(super) error: Option<Text<'a>>,
}

impl RawEntry<'_> {
    pub(super) fn error_text(&self) -> Option<&str> {
        self.error
            .as_ref()
            .map(Text::as_str)
            .filter(|text| !text.is_empty())
    }

    /// The value, `None` when empty (after stripping line breaks if asked).
    pub(super) fn resolved(&self, remove_trailing_line_break: bool) -> Option<&str> {
        let mut value = self.value.as_ref()?.as_str();
        if remove_trailing_line_break {
            value = value.trim_end_matches(['\r', '\n']);
        }
        (!value.is_empty()).then_some(value)
    }
}

/// A JSON string borrowed from the input, or decoded into a zeroizing buffer when it held
/// escapes.
pub(super) enum Text<'a> {
    Borrowed(&'a str),
    Owned(Zeroizing<String>),
}

impl Text<'_> {
    pub(super) fn as_str(&self) -> &str {
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
struct Slots<'r, 'a> {
    lookup: Lookup<'r, 'a>,
}

impl<'de> DeserializeSeed<'de> for Slots<'_, '_> {
    type Value = Vec<Option<RawEntry<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_, '_> {
    type Value = Vec<Option<RawEntry<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of handles")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Option<RawEntry<'de>>> = Vec::new();
        slots.resize_with(self.lookup.requested.handles.len(), || None);
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
pub(super) struct Scanner<'a> {
    input: &'a [u8],
    /// `input` as text: checked once as a whole, so strings are sliced without checking each.
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    /// `None` when `input` is not UTF-8 (serde_json then decides how that fails).
    pub(super) fn new(input: &'a [u8]) -> Option<Scanner<'a>> {
        let text = std::str::from_utf8(input).ok()?;
        Some(Scanner { input, text, at: 0 })
    }

    /// The whole answer: an object of entries, then only whitespace.
    pub(super) fn answer(self, lookup: Lookup<'_, '_>) -> Option<Decoded<'a>> {
        let mut slots: Decoded<'a> = Vec::new();
        slots.resize_with(lookup.requested.handles.len(), || None);
        self.answer_with(lookup, |at, entry| {
            if let Some(slot) = slots.get_mut(at) {
                *slot = Some(entry);
            }
            Some(())
        })?;
        Some(slots)
    }

    /// [`Scanner::answer`], handing each entry of a requested handle to `entry_of` with the
    /// handle's place among the requested ones (entries of other handles are read and dropped)
    /// instead of keeping them; `None` as soon as `entry_of` says so.
    pub(super) fn answer_with(
        mut self,
        mut lookup: Lookup<'_, '_>,
        mut entry_of: impl FnMut(usize, RawEntry<'a>) -> Option<()>,
    ) -> Option<()> {
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
                if let Some(at) = lookup.slot(handle) {
                    entry_of(at, entry)?;
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
        (self.at == self.input.len()).then_some(())
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
    use crate::backend::response::classify::classify;
    use keyturn_protocol::parse_response;

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
                classify(bad.as_bytes(), &Requested::new(&requested), false, &[]).unwrap_err(),
            ] {
                let text = describe_parse_error(&error);
                for secret in ["hunter2", "424242", "hun"] {
                    assert!(!text.contains(secret), "{bad} -> {text}");
                }
            }
        }
    }
}
