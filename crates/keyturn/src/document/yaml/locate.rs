//! Locating a handle's text in the source: byte positions and what each splice covers.
//!
//! Positions: saphyr counts characters, not bytes; [`CharIndex`] converts them with a cursor that
//! moves mostly forward, so the conversion is linear in the text. A handle's splice covers its
//! scalar token only: anchors and tags written before it stay (an alias keeps pointing at the
//! substituted value), except a lone `!` tag, which is dropped: PyYAML and ruamel read
//! `! "yes"` as a boolean. For a block scalar the splice runs from the `|`/`>` indicator to the
//! end of its content, and the comment on the header line is written back after the value.

use saphyr_parser::{ScalarStyle, Span};

use crate::document::path::Name;
use crate::document::quote::double_quoted_end;
use crate::document::{DocumentError, Splice};

/// Finds byte positions in the text being walked.
pub(super) struct Locator<'t> {
    text: &'t str,
    chars: CharIndex<'t>,
}

impl<'t> Locator<'t> {
    pub(super) fn new(text: &'t str) -> Locator<'t> {
        Locator {
            text,
            chars: CharIndex::new(text),
        }
    }

    /// The splice of an alias (`*name`) to a handle whose own text is not replaced (one written
    /// inside a mapping key): the alias itself is replaced by the value.
    pub(super) fn alias(&mut self, handle: Name, span: Span) -> Result<Splice, DocumentError> {
        let start = self.chars.byte(span.start.index());
        let end = self.chars.byte(span.end.index());
        let name_ok = self
            .text
            .as_bytes()
            .get(start.min(end)..end)
            .is_some_and(|name| {
                name.iter()
                    .skip(1)
                    .all(|byte| !matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}'))
            });
        if self.text.as_bytes().get(start) != Some(&b'*') || end <= start + 1 || !name_ok {
            return Err(DocumentError::Layout {
                line: span.start.line(),
                column: span.start.col() + 1,
            });
        }
        Ok(Splice {
            span: start..end,
            lead: start..start,
            keep: start..start,
            handle,
        })
    }

    /// Finds the source text of a handle scalar: its splice. A lone `!` tag is dropped with the
    /// value's text (anything else written before the scalar stays). `previous_end` is the
    /// character index where the event before this scalar ended (a block scalar's event starts
    /// at its content, after the header).
    pub(super) fn scalar(
        &mut self,
        handle: Name,
        style: ScalarStyle,
        properties: Properties,
        span: Span,
        previous_end: usize,
    ) -> Result<Splice, DocumentError> {
        let has_properties = properties != Properties::None;
        let layout_error = || DocumentError::Layout {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let bytes = self.text.as_bytes();
        let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
        // Without properties a flow scalar's event starts exactly at the scalar; a block
        // scalar's event starts at its content, after the header.
        let start = if has_properties {
            skip_to_content(bytes, self.chars.byte(span.start.index()))
        } else if block {
            skip_to_content(bytes, self.chars.byte(previous_end))
        } else {
            self.chars.byte(span.start.index())
        };
        let token_end = self.chars.byte(span.end.index());
        let expected = match style {
            ScalarStyle::Plain => b'E',
            ScalarStyle::DoubleQuoted => b'"',
            ScalarStyle::SingleQuoted => b'\'',
            ScalarStyle::Literal => b'|',
            ScalarStyle::Folded => b'>',
        };
        if bytes.get(start) != Some(&expected) {
            return Err(layout_error());
        }
        let (end, keep) = match style {
            ScalarStyle::Plain => (token_end, start..start),
            ScalarStyle::DoubleQuoted => (double_quoted_end(bytes, start), start..start),
            ScalarStyle::SingleQuoted => (closing_single_quote(bytes, start), start..start),
            ScalarStyle::Literal | ScalarStyle::Folded => {
                // `start` holds the indicator (checked above), so these ranges are in bounds.
                let header_end = start
                    + 1
                    + bytes
                        .get(start + 1..)
                        .unwrap_or_default()
                        .iter()
                        .take(2)
                        .take_while(|byte| matches!(byte, b'1'..=b'9' | b'+' | b'-'))
                        .count();
                let line_end = bytes
                    .get(header_end..)
                    .unwrap_or_default()
                    .iter()
                    .position(|byte| matches!(byte, b'\n' | b'\r'))
                    .map_or(bytes.len(), |offset| header_end + offset);
                // The header line's comment is kept; trailing blanks alone are not.
                let keep_end = if bytes
                    .get(header_end..line_end)
                    .unwrap_or_default()
                    .iter()
                    .all(|byte| matches!(byte, b' ' | b'\t'))
                {
                    header_end
                } else {
                    line_end
                };
                let content_end = bytes
                    .get(..token_end)
                    .unwrap_or(bytes)
                    .iter()
                    .rposition(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
                    .map_or(0, |last| last + 1);
                if content_end <= line_end {
                    return Err(layout_error());
                }
                (content_end, header_end..keep_end)
            }
        };
        if end > token_end || end <= start {
            return Err(layout_error());
        }
        // PyYAML and ruamel resolve a plain-looking value under `!` (`! "yes"`) as a bool or a
        // number; without the tag every reader takes the quoted value as a string.
        let (span_start, lead) = match properties {
            Properties::NonSpecificTag => {
                let from = self.chars.byte(span.start.index());
                match non_specific_tag(bytes, from, start) {
                    Some((tag, after)) => (tag, after..start),
                    None => (start, start..start),
                }
            }
            Properties::Some | Properties::None => (start, start..start),
        };
        Ok(Splice {
            span: span_start..end,
            lead,
            keep,
            handle,
        })
    }
}

/// From `at`, skips what may stand between a node's start and its scalar: white space, line
/// breaks, comments, indicators (`:`, `-`, `?`, `,`, `[`, `{`), anchors and tags. Returns where
/// the scalar starts.
fn skip_to_content(bytes: &[u8], mut at: usize) -> usize {
    const BOM: &[u8] = "\u{feff}".as_bytes();
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        at += match rest {
            [
                b' ' | b'\t' | b'\r' | b'\n' | b':' | b'-' | b'?' | b',' | b'[' | b'{',
                ..,
            ] => 1,
            [0xef, ..] if rest.starts_with(BOM) => BOM.len(),
            [b'#', ..] => rest
                .iter()
                .position(|byte| matches!(byte, b'\n' | b'\r'))
                .unwrap_or(rest.len()),
            [b'!', b'<', ..] => rest
                .iter()
                .position(|&byte| byte == b'>')
                .map_or(rest.len(), |offset| offset + 1),
            [b'&' | b'!', ..] => rest
                .iter()
                .position(|byte| {
                    matches!(
                        byte,
                        b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                    )
                })
                .unwrap_or(rest.len()),
            _ => return at,
        };
    }
}

/// What is written before a handle scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Properties {
    None,
    /// An anchor or a tag other than `!`, or both.
    Some,
    /// The non-specific tag `!` (maybe with an anchor).
    NonSpecificTag,
}

/// Among the properties written from `at` to the scalar at `content`, where the lone `!` tag
/// (also written `!<!>`) starts, and where what follows it starts (its spaces and tabs
/// skipped). `None` when it is not found as such.
fn non_specific_tag(bytes: &[u8], mut at: usize, content: usize) -> Option<(usize, usize)> {
    let properties = bytes.get(..content)?;
    let blank = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\r' | b'\n');
    while let Some(&byte) = properties.get(at) {
        let rest = properties.get(at..)?;
        match byte {
            b'&' | b'!' => {
                let len = rest.iter().position(blank).unwrap_or(rest.len());
                if matches!(rest.get(..len), Some([b'!'] | [b'!', b'<', b'!', b'>'])) {
                    let spaces = rest
                        .get(len..)?
                        .iter()
                        .take_while(|&&byte| byte == b' ' || byte == b'\t')
                        .count();
                    return Some((at, at + len + spaces));
                }
                at += len;
            }
            b'#' => {
                at += rest
                    .iter()
                    .position(|&byte| byte == b'\n')
                    .unwrap_or(rest.len());
            }
            _ => at += 1,
        }
    }
    None
}

/// The end (exclusive) of the single-quoted scalar starting at `start`.
fn closing_single_quote(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'\'' {
            if bytes.get(at + 1) == Some(&b'\'') {
                at += 2;
            } else {
                return at + 1;
            }
        } else {
            at += 1;
        }
    }
    bytes.len()
}

/// Converts saphyr's character indexes to byte offsets. Keeps a cursor: converting positions in
/// increasing order costs one pass over the text in total; ASCII text converts for free.
struct CharIndex<'t> {
    bytes: &'t [u8],
    ascii: bool,
    char_at: usize,
    byte_at: usize,
}

impl<'t> CharIndex<'t> {
    fn new(text: &'t str) -> CharIndex<'t> {
        CharIndex {
            bytes: text.as_bytes(),
            ascii: text.is_ascii(),
            char_at: 0,
            byte_at: 0,
        }
    }

    /// The byte offset of character `index` (the text's length when past the end).
    fn byte(&mut self, index: usize) -> usize {
        if self.ascii {
            return index.min(self.bytes.len());
        }
        while self.char_at > index && self.byte_at > 0 {
            self.byte_at -= 1;
            while self.byte_at > 0
                && self
                    .bytes
                    .get(self.byte_at)
                    .is_some_and(|&byte| byte & 0xc0 == 0x80)
            {
                self.byte_at -= 1;
            }
            self.char_at -= 1;
        }
        let (mut char_at, mut byte_at) = (self.char_at, self.byte_at);
        while char_at < index && byte_at < self.bytes.len() {
            // Eight ASCII bytes at a time: most of a configuration file is ASCII.
            if index - char_at >= 8
                && let Some(Ok(word)) = self
                    .bytes
                    .get(byte_at..byte_at + 8)
                    .map(<[u8; 8]>::try_from)
                && u64::from_le_bytes(word) & 0x8080_8080_8080_8080 == 0
            {
                char_at += 8;
                byte_at += 8;
                continue;
            }
            // In bounds by the loop's condition: the check compiles away.
            let Some(&lead) = self.bytes.get(byte_at) else {
                break;
            };
            byte_at += match lead {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            char_at += 1;
        }
        (self.char_at, self.byte_at) = (char_at, byte_at);
        byte_at.min(self.bytes.len())
    }
}
