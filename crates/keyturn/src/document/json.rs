//! JSON: finding handle sites and their byte spans with a small scanner behind serde_json.
//!
//! Strictness is serde_json's: the text is first deserialized into `IgnoredAny`, which rejects
//! comments, trailing commas, single quotes, bad numbers, bad escapes, control characters in
//! strings and trailing text, and whose messages never quote the source. The scanner then walks
//! the validated text once, iteratively, keeping only what sites need: the path (keys are decoded
//! only when they hold an escape) and the span of each string value that is a handle, quotes
//! included. It never panics: anything it does not expect becomes an error.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::quote::double_quoted_end;
use super::sites::{Collector, KeyText, Segment, line_column};
use super::{DocumentError, MAX_DEPTH, Splice, Walk};
use crate::handle::parse_handle;

/// Finds the handle sites of a JSON document.
pub(super) fn walk(text: &str) -> Result<Walk, DocumentError> {
    // A leading byte order mark is allowed (and kept): editors on Windows write one.
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.bytes().all(is_whitespace) {
        return Err(DocumentError::NotACollection);
    }
    if let Err(error) = serde_json::from_str::<IgnoredAny>(body) {
        return Err(syntax_error(&error));
    }
    Scanner {
        text,
        collector: Collector::new("JSON"),
        frames: Vec::new(),
    }
    .run()
}

/// An open object or array.
#[derive(Debug)]
enum Frame {
    Object {
        keys_start: usize,
        /// The key just read, until its value is done.
        key: Option<usize>,
    },
    Array {
        index: usize,
    },
}

struct Scanner<'t> {
    text: &'t str,
    collector: Collector<'t>,
    frames: Vec<Frame>,
}

impl<'t> Scanner<'t> {
    fn run(mut self) -> Result<Walk, DocumentError> {
        let text = self.text;
        let bytes = text.as_bytes();
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut at = skip_whitespace(bytes, text.len() - body.len());
        if !matches!(bytes.get(at), Some(b'{' | b'[')) {
            return Err(DocumentError::NotACollection);
        }
        loop {
            at = skip_whitespace(bytes, at);
            let Some(&byte) = bytes.get(at) else {
                return Err(self.layout_error(at));
            };
            match byte {
                b'{' | b'[' => {
                    if self.frames.len() >= MAX_DEPTH {
                        return Err(DocumentError::TooDeep {
                            format: "JSON",
                            limit: MAX_DEPTH,
                        });
                    }
                    self.enter();
                    self.frames.push(if byte == b'{' {
                        Frame::Object {
                            keys_start: self.collector.keys_len(),
                            key: None,
                        }
                    } else {
                        Frame::Array { index: 0 }
                    });
                    at += 1;
                }
                b'}' | b']' => {
                    if let Some(Frame::Object { keys_start, .. }) = self.frames.pop() {
                        self.collector.sort_keys(keys_start)?;
                        self.collector.truncate_keys(keys_start);
                    }
                    at += 1;
                    if self.frames.is_empty() {
                        break;
                    }
                    self.collector.leave();
                    self.value_done();
                }
                b',' | b':' => at += 1,
                b'"' => {
                    let end = double_quoted_end(bytes, at);
                    let raw = text
                        .get(at + 1..end.saturating_sub(1))
                        .ok_or_else(|| self.layout_error(at))?;
                    if let Some(Frame::Object {
                        key: key @ None, ..
                    }) = self.frames.last_mut()
                    {
                        *key = Some(self.collector.push_key(KeyText::Text(decode(raw))));
                    } else {
                        self.string_value(raw, at..end)?;
                        self.value_done();
                    }
                    at = end;
                }
                _ => {
                    let rest = bytes.get(at..).unwrap_or_default();
                    at += rest
                        .iter()
                        .position(|&byte| is_whitespace(byte) || matches!(byte, b',' | b']' | b'}'))
                        .unwrap_or(rest.len());
                    self.value_done();
                }
            }
        }
        self.collector.finish(text)
    }

    /// Records a site if the string value at `span` (its raw text `raw`) is a handle.
    fn string_value(
        &mut self,
        raw: &'t str,
        span: std::ops::Range<usize>,
    ) -> Result<(), DocumentError> {
        let value = decode(raw);
        let Some(handle) = parse_handle(&value) else {
            return Ok(());
        };
        let handle = self.collector.name(handle)?;
        let splice = self.collector.add_splice(Splice {
            lead: span.start..span.start,
            keep: span.start..span.start,
            span,
            handle,
        })?;
        self.enter();
        let added = self.collector.add_site(handle, splice);
        self.collector.leave();
        added
    }

    /// Descends into the value that starts now (nothing at the top level).
    fn enter(&mut self) {
        match self.frames.last() {
            Some(Frame::Object {
                key: Some(index), ..
            }) => self.collector.enter(Segment::Key(*index)),
            Some(Frame::Array { index }) => self.collector.enter(Segment::Index(*index)),
            Some(Frame::Object { key: None, .. }) => self.collector.enter(Segment::Hidden),
            None => {}
        }
    }

    /// Moves the innermost container past the value just finished.
    fn value_done(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Object { key, .. }) => *key = None,
            Some(Frame::Array { index }) => *index += 1,
            None => {}
        }
    }

    fn layout_error(&self, at: usize) -> DocumentError {
        let (line, column) = line_column(self.text, at);
        DocumentError::Layout { line, column }
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_whitespace(bytes: &[u8], at: usize) -> usize {
    at + bytes
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&byte| is_whitespace(byte))
        .count()
}

/// The value of a validated JSON string's raw text. An unpaired surrogate escape becomes
/// U+FFFD, as in Go's `encoding/json`.
fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        rest = &rest[backslash + 1..];
        let mut chars = rest.chars();
        let escaped = chars.next();
        rest = chars.as_str();
        match escaped {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let (c, after) = unicode_escape(rest);
                out.push(c);
                rest = after;
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes the four hex digits after `\u` (and a low surrogate escape following a high one);
/// returns the character and the text after it.
fn unicode_escape(rest: &str) -> (char, &str) {
    let hex = |text: &str| {
        text.get(..4)
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
    };
    let Some(first) = hex(rest) else {
        return (char::REPLACEMENT_CHARACTER, rest);
    };
    let rest = &rest[4..];
    if (0xd800..0xdc00).contains(&first)
        && let Some(low_digits) = rest.strip_prefix("\\u")
        && let Some(second) = hex(low_digits)
        && (0xdc00..0xe000).contains(&second)
    {
        let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
        return (
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
            &low_digits[4..],
        );
    }
    (
        char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER),
        rest,
    )
}

/// A serde_json error without its position suffix (reported separately).
fn syntax_error(error: &serde_json::Error) -> DocumentError {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    DocumentError::Syntax {
        format: "JSON",
        message: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
        line: error.line(),
        column: error.column(),
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes() {
        for (raw, expected) in [
            ("plain", "plain"),
            (r#"a\nb\t\"\\\/"#, "a\nb\t\"\\/"),
            (r"\u0045NC[x]", "ENC[x]"),
            (r"\ud83d\ude00", "😀"),
            (r"\ud83dx", "\u{fffd}x"),
            (r"\ude00", "\u{fffd}"),
            (r"\u00e9", "é"),
        ] {
            assert_eq!(decode(raw), expected, "raw {raw:?}");
        }
    }
}
