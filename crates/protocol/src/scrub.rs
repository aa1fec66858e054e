//! Scrubbing values out of text: what a backend said besides its answer (its per-handle error
//! texts and the tail of its stderr) in keyturn, and error texts in `keyturn-backend`. One
//! scrubber and one mask ([`MASK`]) for both executables.
//!
//! A text is searched twice: as it is, and as its JSON-unescaped view (every `\"`, `\\`, `\/`,
//! `\b`, `\f`, `\n`, `\r`, `\t` and `\uXXXX`, surrogate pairs included, read as the character it
//! stands for), so a value is found however a backend's JSON library escaped it: serde's
//! controls-only form, Python's `ensure_ascii` (`\u00e4`), Go's HTML-safe `\u003c`/`\u0026`,
//! upper- or lower-case hex, or any mix. Every occurrence of every needle in either view is
//! mapped back to the bytes of the text it came from, and the union of those byte ranges is
//! masked: overlapping values are masked whole, not only up to where the first one ends.
//!
//! The user info of every URL (`scheme://user:password@host`) is redacted as well: a backend
//! echoing its configured address would otherwise print a password keyturn never handled.
//!
//! Invariant: the stderr tail is cut from the raw bytes *before* masking, and every occurrence
//! that touches the cut window is masked whole, wherever it starts.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use zeroize::Zeroizing;

/// What replaces a value in scrubbed text (and the user info of a URL).
pub const MASK: &str = crate::REDACTED_USERINFO;

/// How much of the end of stderr an error text carries, in bytes.
pub const STDERR_TAIL: usize = 1024;

/// The most raw bytes one byte of a value can take once escaped: `<` as `\u003c` is 6 bytes
/// for 1; a 4-byte character as a surrogate pair is 12 bytes for 4.
const ESCAPED_GROWTH: usize = 6;

/// How many leading bytes of a needle index it.
const PREFIX: usize = 4;

/// Replaces every known value in a text by [`MASK`].
///
/// Needles are indexed by a keyed hash of their first 4 bytes (`PREFIX`), so the cost is one
/// lookup per position of each view, whatever the number of needles (a refresh of 10,000
/// handles that all fail with an error text stays linear).
#[derive(Default)]
pub struct Scrubber {
    /// Distinct non-empty needles, longest first.
    needles: Vec<Zeroizing<String>>,
    /// Indexes into `needles` (ascending, so longest first) by the hash of their first
    /// [`PREFIX`] bytes. Keyed hashes, so no plain fragment of a value is kept as a key.
    by_prefix: HashMap<u64, Vec<usize>>,
    /// Indexes of the needles shorter than [`PREFIX`] bytes.
    short: Vec<usize>,
    hasher: RandomState,
}

impl Scrubber {
    /// A scrubber for `values`: each as returned and without its trailing line breaks. Escaped
    /// forms need no needle of their own: the unescaped view of a text finds them.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut needles: Vec<Zeroizing<String>> = Vec::new();
        for value in values {
            let trimmed = value.trim_end_matches(['\r', '\n']);
            for needle in [value, trimmed] {
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

    /// `text` with every occurrence of a needle, escaped or not, replaced by [`MASK`]
    /// (overlapping or adjacent occurrences by one mask), and the user info of every URL in it
    /// redacted.
    pub fn scrub(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let masked = Zeroizing::new(render(bytes, 0, &self.matches(bytes)));
        crate::redact_userinfo(&masked).into_owned()
    }

    /// The last [`STDERR_TAIL`] bytes of `stderr` (at most), cut on the raw bytes, then with
    /// every occurrence that touches them masked whole; valid UTF-8 with control characters
    /// escaped.
    pub fn stderr_tail(&self, stderr: &[u8]) -> String {
        let mut cut = stderr.len().saturating_sub(STDERR_TAIL);
        // Start on a character, not in the middle of one.
        while stderr.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) {
            cut += 1;
        }
        // An occurrence that ends inside the window starts at most one escaped longest needle
        // before it; back up over a run of backslashes so escapes pair up as they were written.
        let longest = self.needles.first().map_or(0, |needle| needle.len());
        let mut from = cut.saturating_sub(longest.saturating_mul(ESCAPED_GROWTH));
        while from > 0 && stderr.get(from - 1) == Some(&b'\\') {
            from -= 1;
        }
        let searched = stderr.get(from..).unwrap_or_default();
        let masked: Vec<Range<usize>> = self
            .matches(searched)
            .into_iter()
            .map(|range| range.start + from..range.end + from)
            .collect();
        let tail = Zeroizing::new(render(stderr, cut, &masked));
        escape_controls(&crate::redact_userinfo(tail.trim()))
    }

    /// The merged, sorted byte ranges of `text` covered by an occurrence of a needle in `text`
    /// itself or in its unescaped view.
    fn matches(&self, text: &[u8]) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        if self.needles.is_empty() {
            return found;
        }
        for at in 0..text.len() {
            if let Some(len) = self.longest_at(text.get(at..).unwrap_or_default()) {
                found.push(at..at + len);
            }
        }
        if text.contains(&b'\\') {
            // Two readings of the escapes, both searched. A value printed as it is may end in a
            // backslash that would pair with the one opening an escaped value right after it:
            // in the second reading no escape starts inside a raw match. But a raw match may
            // also end on the first backslash of an escape that belongs to an escaped value
            // printed over it (two values sharing characters): the plain reading finds that.
            let raw = merge(found.clone());
            let readings = if raw.is_empty() {
                vec![Unescaped::new(text, &[])]
            } else {
                vec![Unescaped::new(text, &[]), Unescaped::new(text, &raw)]
            };
            for view in readings {
                for at in 0..view.bytes.len() {
                    if let Some(len) = self.longest_at(view.bytes.get(at..).unwrap_or_default()) {
                        found.push(view.source(at..at + len));
                    }
                }
            }
        }
        merge(found)
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
            .filter_map(|&index| self.needles.get(index))
            .filter(|needle| rest.starts_with(needle.as_bytes()))
            .map(|needle| needle.len())
            .max()
    }
}

/// Escapes control characters (newlines included) so a backend's text stays on one line (see
/// [`crate::printable`]).
pub fn escape_controls(text: &str) -> String {
    crate::printable::printable(text)
}

/// Sorts `ranges` and merges those that overlap or touch.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_unstable_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// `bytes[from..]` as text, each of the (merged, sorted) `masked` ranges that reach into it
/// replaced whole by one [`MASK`]; bytes that are not UTF-8 become U+FFFD.
fn render(bytes: &[u8], from: usize, masked: &[Range<usize>]) -> String {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().saturating_sub(from)));
    let mut at = from;
    for range in masked.iter().filter(|range| range.end > from) {
        let start = range.start.max(at);
        out.push_str(&String::from_utf8_lossy(
            bytes.get(at..start).unwrap_or_default(),
        ));
        out.push_str(MASK);
        at = range.end.max(at);
    }
    out.push_str(&String::from_utf8_lossy(
        bytes.get(at..).unwrap_or_default(),
    ));
    out.as_str().to_owned()
}

/// A text read as the inside of a JSON string: escapes replaced by what they stand for, every
/// other byte kept. Each byte of the view knows the range of text bytes it came from.
struct Unescaped {
    bytes: Zeroizing<Vec<u8>>,
    /// For each byte of `bytes`, the range of the text it came from (the whole escape for
    /// every byte of an escaped character).
    sources: Vec<Range<usize>>,
}

impl Unescaped {
    /// The view of `text`, where no escape starts inside one of the (merged, sorted) ranges of
    /// `opaque`.
    fn new(text: &[u8], opaque: &[Range<usize>]) -> Unescaped {
        let mut view = Unescaped {
            bytes: Zeroizing::new(Vec::with_capacity(text.len())),
            sources: Vec::with_capacity(text.len()),
        };
        let mut opaque = opaque.iter().peekable();
        let mut at = 0;
        while let Some(&byte) = text.get(at) {
            while opaque.next_if(|range| range.end <= at).is_some() {}
            let inside = opaque.peek().is_some_and(|range| range.start <= at);
            let (decoded, len) = if byte == b'\\' && !inside {
                unescape(text.get(at..).unwrap_or_default()).unwrap_or((EncodedChar::byte(byte), 1))
            } else {
                (EncodedChar::byte(byte), 1)
            };
            for &b in decoded.as_bytes() {
                view.bytes.push(b);
                view.sources.push(at..at + len);
            }
            at += len;
        }
        view
    }

    /// The range of the text that the view's `range` came from.
    fn source(&self, range: Range<usize>) -> Range<usize> {
        let start = self
            .sources
            .get(range.start)
            .map_or(0, |source| source.start);
        let end = range
            .end
            .checked_sub(1)
            .and_then(|last| self.sources.get(last))
            .map_or(start, |source| source.end);
        start..end
    }
}

/// One character as UTF-8 (or one raw byte), without allocating.
struct EncodedChar {
    buf: [u8; 4],
    len: usize,
}

impl EncodedChar {
    fn byte(byte: u8) -> EncodedChar {
        EncodedChar {
            buf: [byte, 0, 0, 0],
            len: 1,
        }
    }

    fn char(c: char) -> EncodedChar {
        let mut buf = [0; 4];
        let len = c.encode_utf8(&mut buf).len();
        EncodedChar { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The character a JSON escape at the start of `text` stands for, and the escape's length;
/// `None` when `text` does not start with a valid escape (a lone surrogate is not one).
fn unescape(text: &[u8]) -> Option<(EncodedChar, usize)> {
    let simple = match text.get(1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let unit = hex4(text.get(2..6)?)?;
            if !(0xD800..0xE000).contains(&unit) {
                return Some((EncodedChar::char(char::from_u32(unit)?), 6));
            }
            if unit >= 0xDC00 || text.get(6..8)? != b"\\u" {
                return None;
            }
            let low = hex4(text.get(8..12)?)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?;
            return Some((EncodedChar::char(c), 12));
        }
        _ => return None,
    };
    Some((EncodedChar::byte(simple), 2))
}

/// Four hex digits, either case.
fn hex4(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scrubbing() {
        let scrubber = Scrubber::new(["s3cret\n", "a\"b", "s3"]);
        assert_eq!(
            scrubber.scrub("x s3cret y s3cret\n z"),
            "x <redacted> y <redacted> z"
        );
        assert_eq!(
            scrubber.scrub(r#"{"value":"a\"b"} a"b"#),
            r#"{"value":"<redacted>"} <redacted>"#
        );
        assert_eq!(scrubber.scrub("s3 s3c"), "<redacted> <redacted>c");
        // Issue 9.17: a URL's user info, whoever printed it.
        assert_eq!(
            scrubber.scrub("no route to https://ops:pw-9@vault:8200/v1"),
            "no route to https://<redacted>@vault:8200/v1"
        );
        assert_eq!(
            scrubber.stderr_tail(b"GET http://ops:pw-9@vault failed\n"),
            "GET http://<redacted>@vault failed"
        );
        let long = format!("{}s3cret{}", "x".repeat(5000), "y".repeat(1020));
        // The window is `cret` and the `y`s: the value it ends is masked whole.
        let tail = scrubber.stderr_tail(long.as_bytes());
        assert_eq!(tail, format!("{MASK}{}", "y".repeat(1020)));
        assert_eq!(
            scrubber.stderr_tail(b"bad \xff utf8\n\x1b[31m"),
            "bad \u{fffd} utf8\\n\\u{1b}[31m"
        );
    }

    // Issue 9.4a: a value that starts before the window and ends inside it is masked whole.
    #[test]
    fn a_value_crossing_the_cut_is_masked() {
        let value = "0123456789abcdefghij";
        let scrubber = Scrubber::new([value]);
        for inside in 1..value.len() {
            let stderr = format!(
                "{}{value}{}",
                "x".repeat(3000),
                "y".repeat(STDERR_TAIL - inside)
            );
            let tail = scrubber.stderr_tail(stderr.as_bytes());
            assert_eq!(tail, format!("{MASK}{}", "y".repeat(STDERR_TAIL - inside)));
        }
        // Masking a long value before the cut must not pull the cut back over the start of
        // another value (the window is cut from the raw bytes, not from the masked text).
        let (short, long) = ("short-value-0123456", "L".repeat(200));
        let scrubber = Scrubber::new([short, long.as_str()]);
        let stderr = format!("{}{short}{long}{}", "x".repeat(3000), "y".repeat(1005));
        let tail = scrubber.stderr_tail(stderr.as_bytes());
        assert_eq!(tail, format!("{MASK}{}", "y".repeat(1005)));
    }

    // Issue 9.4b: escapings of Python's `json.dumps` and Go's `encoding/json`, any hex case.
    #[test]
    fn escaped_values_are_masked() {
        let scrubber = Scrubber::new(["pässwörd<&>'🔑\n"]);
        for text in [
            r#"{"value": "p\u00e4ssw\u00f6rd<&>'\ud83d\udd11\n"}"#,
            r#"{"value":"pässwörd\u003c\u0026\u003e'🔑\n"}"#,
            r#"p\u00E4ssw\u00F6rd\u003C\u0026\u003E\u0027\uD83D\uDD11"#,
            r#"pässwörd<&>'🔑\n"#,
        ] {
            let scrubbed = scrubber.scrub(text);
            assert!(!scrubbed.contains("ssw"), "{text}: {scrubbed}");
            assert!(scrubbed.contains(MASK), "{text}: {scrubbed}");
        }
        // An escaped backslash is one character: `\\u0041` is a backslash and `u0041`.
        let scrubber = Scrubber::new(["A-secret-value"]);
        assert_eq!(
            scrubber.scrub(r"\\u0041-secret-value \u0041-secret-value"),
            r"\\u0041-secret-value <redacted>"
        );
        // Invalid escapes and lone surrogates stay as they are.
        assert_eq!(scrubber.scrub(r"\x \ud800 \u12"), r"\x \ud800 \u12");
    }

    // Issue 9.4d: overlapping values are masked as their union.
    #[test]
    fn overlapping_values_are_masked_whole() {
        let scrubber = Scrubber::new(["abcdefgh", "efghijkl"]);
        assert_eq!(scrubber.scrub("<abcdefghijkl>"), "<<redacted>>");
        assert_eq!(scrubber.scrub("abcdefghefghijkl"), "<redacted>");
        let scrubber = Scrubber::new(["xxxxxxxx-long", "long-yyyyyyyy"]);
        assert_eq!(
            scrubber.stderr_tail(b"xxxxxxxx-long-yyyyyyyy end"),
            "<redacted> end"
        );
    }

    /// How a backend may print a value on stderr.
    #[derive(Debug, Clone, Copy)]
    enum Escaping {
        Raw,
        Serde,
        Python,
        Go,
        Everything,
    }

    fn escape(value: &str, escaping: Escaping) -> String {
        let mut out = String::new();
        for c in value.chars() {
            let unicode = |out: &mut String, upper: bool| {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if upper {
                        out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            };
            match (escaping, c) {
                (Escaping::Raw, _) => out.push(c),
                (_, '"') => out.push_str("\\\""),
                (_, '\\') => out.push_str("\\\\"),
                (_, '\n') => out.push_str("\\n"),
                (_, '\t') => out.push_str("\\t"),
                (Escaping::Everything, _) => unicode(&mut out, true),
                (_, c) if c < ' ' => unicode(&mut out, false),
                (Escaping::Python, c) if !c.is_ascii() || c == '\x7f' => unicode(&mut out, false),
                (Escaping::Go, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                    unicode(&mut out, false)
                }
                _ => out.push(c),
            }
        }
        out
    }

    fn escaping() -> impl Strategy<Value = Escaping> {
        prop_oneof![
            Just(Escaping::Raw),
            Just(Escaping::Serde),
            Just(Escaping::Python),
            Just(Escaping::Go),
            Just(Escaping::Everything),
        ]
    }

    /// Values from an alphabet the filler never uses (nor the mask, nor hex digits and `u`).
    fn value() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[g-tvwxyz<>&'\"\\\\\n\t\x01äö€🔑\u{2028}]{8,40}").unwrap()
    }

    /// Every substring of `text` of `len` characters.
    fn fragments(text: &str, len: usize) -> std::collections::HashSet<String> {
        let chars: Vec<char> = text.chars().collect();
        chars
            .windows(len)
            .map(|window| window.iter().collect())
            .collect()
    }

    /// Found by the property test: a value printed as it is (`<g&<vvg\\`) ends on the first
    /// backslash of the escape `\\\\` of a second value that shares its last characters and
    /// is printed, escaped, over it.
    #[test]
    fn a_raw_match_ending_inside_an_escape_does_not_hide_the_escaped_value() {
        let first = "<g&<vvg\\";
        let second = "vvg\\\u{20ac}\u{1}g&\\\u{e4}\u{1}\\";
        let scrubber = Scrubber::new([first, second]);
        // Both printed once, overlapping, with serde's escaping.
        let printed = "<g&<vvg\\\\\u{20ac}\\u0001g&\\\\\u{e4}\\u0001\\\\";
        assert_eq!(scrubber.scrub(printed), MASK);
        assert_eq!(scrubber.stderr_tail(printed.as_bytes()), MASK);
    }

    proptest! {
        // Issue 9.4: random values, escapings and window positions. A value may start with the
        // last characters of the one before it, and is then sometimes printed overlapping it.
        #[test]
        fn no_fragment_of_a_value_survives(
            drawn in proptest::collection::vec((value(), any::<bool>()), 1..5),
            prints in proptest::collection::vec(
                (any::<proptest::sample::Index>(), escaping(), 0usize..300, any::<bool>()),
                1..12,
            ),
            end in 0usize..1500,
        ) {
            let mut values: Vec<String> = Vec::new();
            for (value, chained) in drawn {
                let head: String = match values.last() {
                    Some(last) if chained => last.chars().skip(last.chars().count() - 4).collect(),
                    _ => String::new(),
                };
                values.push(head + &value);
            }
            let mut stderr = String::new();
            for (which, escaping, filler, overlap) in &prints {
                let at = which.index(values.len());
                stderr.push_str(&" QRS,".repeat(*filler));
                let mut printed = values[at].clone();
                if let Some(next) = values.get(at + 1).filter(|_| *overlap) {
                    // Printed once, sharing the characters they have in common.
                    let shared: String = printed.chars().skip(printed.chars().count() - 4).collect();
                    if let Some(rest) = next.strip_prefix(&shared) {
                        printed.push_str(rest);
                    }
                }
                stderr.push_str(&escape(&printed, *escaping));
            }
            stderr.push_str(&"Z".repeat(end));
            let scrubber = Scrubber::new(values.iter().map(String::as_str));
            let tail = fragments(&scrubber.stderr_tail(stderr.as_bytes()), 8);
            let scrubbed = fragments(&scrubber.scrub(&stderr), 8);
            for value in &values {
                for escaping in [
                    Escaping::Raw, Escaping::Serde, Escaping::Python, Escaping::Go,
                    Escaping::Everything,
                ] {
                    let printed = escape(value, escaping);
                    for fragment in fragments(&escape_controls(&printed), 8) {
                        prop_assert!(!tail.contains(&fragment), "{fragment:?} in the tail");
                    }
                    for fragment in fragments(&printed, 8) {
                        prop_assert!(!scrubbed.contains(&fragment), "{fragment:?} scrubbed");
                    }
                }
            }
        }
    }
}
