//! Text from documents and backends (handles, key paths, a backend's words) as it is printed in
//! a log line, an error or the status: every control character, line or paragraph separator and
//! bidirectional formatting character escaped (`\n`, `\u{1b}`), so such text can neither
//! break a line, forge another, colour a terminal nor reorder what is shown.
//!
//! Invariant: every error text and log line that quotes a handle or a key path formats it
//! through [`Printable`]. JSON output (API answers, the audit file, JSON logs) needs no more:
//! JSON escapes control characters itself.

use std::fmt;

/// Displays its text with the characters that could change how it reads escaped.
#[derive(Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            let (plain, tail) = rest.split_at(at);
            f.write_str(plain)?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                write!(f, "{}", c.escape_default())?;
            }
            rest = chars.as_str();
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// `text` with the characters that could change how it reads escaped (see [`Printable`]).
pub fn printable(text: &str) -> String {
    Printable(text).to_string()
}

/// Whether `c` is escaped: a control character (C0, DEL, C1), a line or paragraph separator,
/// or a bidirectional formatting character.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_bidi_are_escaped() {
        assert_eq!(printable("plain/ü/é"), "plain/ü/é");
        assert_eq!(
            printable("a\nb\r\x1b[31m\x7f\u{85}\u{2028}\u{202e}z"),
            "a\\nb\\r\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}\\u{202e}z"
        );
    }
}
