//! How a backend may print a value on stderr: the model the scrubber's tests and the `scrub`
//! fuzz target share. Built only for tests and for fuzzing (`cargo fuzz` sets `--cfg
//! fuzzing`): never in a shipped build, not part of the API.

use std::fmt::Write as _;

/// How a backend may print a value on stderr: the escapings the scrubber must see through.
#[derive(Debug, Clone, Copy)]
pub enum Escaping {
    /// As it is.
    Raw,
    /// serde_json: `"`, `\`, and controls.
    Serde,
    /// Python's `json.dumps`: also every non-ASCII character as `\uXXXX`.
    Python,
    /// Go's `encoding/json`: also `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
    Go,
    /// Every character but `"`, `\`, newline and tab as upper-case `\uXXXX`.
    Everything,
}

impl Escaping {
    /// Every escaping.
    pub const ALL: [Escaping; 5] = [
        Escaping::Raw,
        Escaping::Serde,
        Escaping::Python,
        Escaping::Go,
        Escaping::Everything,
    ];
}

/// `value` as a backend printing it with `escaping` writes it.
pub fn escape(value: &str, escaping: Escaping) -> String {
    let mut out = String::new();
    for c in value.chars() {
        let unicode = |out: &mut String, upper: bool| {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a `String` cannot fail.
                let _ = if upper {
                    write!(out, "\\u{unit:04X}")
                } else {
                    write!(out, "\\u{unit:04x}")
                };
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
            (Escaping::Go, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => unicode(&mut out, false),
            _ => out.push(c),
        }
    }
    out
}
