//! Writing a value as a quoted scalar that is at once a JSON string and a YAML double-quoted
//! scalar.
//!
//! The output is one line: `"` + the value with escapes + `"`. Escaped are `"` and `\`, every
//! character YAML does not allow unescaped in a stream (C0 controls including tab, DEL, C1
//! controls, U+FFFE, U+FFFF), the characters YAML 1.1 readers treat as line breaks (U+0085,
//! U+2028, U+2029) and the byte order mark U+FEFF. Only escapes that JSON, YAML 1.2 and YAML 1.1
//! (PyYAML, libyaml, Go yaml.v2/v3) all read the same way are used: `\"`, `\\`, `\b`, `\t`,
//! `\n`, `\f`, `\r` and `\uXXXX`. Every other character is written as is.
//!
//! Invariant: whatever the value, the output is a single scalar in any YAML context (block or
//! flow) and in JSON, and it reads back as exactly the value; in YAML a double-quoted scalar is
//! always a string, so `yes`, `0755`, `~` or `ENC[x]` stay strings.

/// Appends `value` quoted and escaped to `out`.
pub(super) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    if is_plain(value) {
        out.push_str(value);
        out.push('"');
        return;
    }
    let mut plain_from = 0;
    for (at, c) in value.char_indices() {
        if let Some(escape) = escape(c) {
            out.push_str(&value[plain_from..at]);
            escape.write(out);
            plain_from = at + c.len_utf8();
        }
    }
    out.push_str(&value[plain_from..]);
    out.push('"');
}

/// [`push_quoted`] for a value whose [`quoted_len`] is known: a value whose quoted form is only
/// its two quotes longer holds nothing to escape (every escape is longer than the character it
/// stands for), so it is copied without being read again.
pub(super) fn push_quoted_sized(out: &mut String, value: &str, quoted_len: usize) {
    if quoted_len == value.len() + 2 {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        push_quoted(out, value);
    }
}

/// The length in bytes of what [`push_quoted`] appends for `value`.
pub(super) fn quoted_len(value: &str) -> usize {
    if is_plain(value) {
        return 2 + value.len();
    }
    2 + value
        .chars()
        .map(|c| escape(c).map_or(c.len_utf8(), |escape| escape.len()))
        .sum::<usize>()
}

/// Whether `value` is written as is: printable ASCII without `"` or `\\` (most values), checked
/// on bytes instead of decoded characters, 16 at a time without a branch per byte (which the
/// compiler turns into vector instructions).
fn is_plain(value: &str) -> bool {
    let plain = |byte: u8| (b' '..=b'~').contains(&byte) & (byte != b'"') & (byte != b'\\');
    let mut chunks = value.as_bytes().chunks_exact(16);
    for chunk in &mut chunks {
        if !chunk.iter().fold(true, |all, &byte| all & plain(byte)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&byte| plain(byte))
}

/// The end (exclusive, after the closing quote) of the quoted text starting at `start` (the
/// opening `"`): a JSON string or a YAML double-quoted scalar, both of which escape with `\`.
/// The text's length when it is not closed.
pub(super) fn double_quoted_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// How one character that cannot be written as is gets written.
#[derive(Debug, Clone, Copy)]
enum Escape {
    /// A backslash and this character.
    Short(char),
    /// `\u` and four hex digits.
    Unicode(u32),
}

impl Escape {
    fn len(self) -> usize {
        match self {
            Escape::Short(_) => 2,
            Escape::Unicode(_) => 6,
        }
    }

    fn write(self, out: &mut String) {
        match self {
            Escape::Short(c) => {
                out.push('\\');
                out.push(c);
            }
            Escape::Unicode(code) => {
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.extend(char::from_digit((code >> shift) & 0xf, 16));
                }
            }
        }
    }
}

/// The escape for `c`, or `None` when it is written as is.
fn escape(c: char) -> Option<Escape> {
    match c {
        '"' => Some(Escape::Short('"')),
        '\\' => Some(Escape::Short('\\')),
        '\u{8}' => Some(Escape::Short('b')),
        '\t' => Some(Escape::Short('t')),
        '\n' => Some(Escape::Short('n')),
        '\u{c}' => Some(Escape::Short('f')),
        '\r' => Some(Escape::Short('r')),
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{feff}'
        | '\u{fffe}'
        | '\u{ffff}' => Some(Escape::Unicode(u32::from(c))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use saphyr::LoadableYamlNode;

    use super::{escape, is_plain, push_quoted, push_quoted_sized, quoted_len};

    /// `push_quoted_sized` copies a value whose quoted form is two bytes longer without
    /// looking for escapes: that holds because every escape is longer than its character.
    #[test]
    fn every_escape_is_longer_than_its_character() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            if let Some(escape) = escape(c) {
                assert!(escape.len() > c.len_utf8(), "{c:?}");
            }
        }
    }

    #[track_caller]
    fn check(value: &str, expected: &str) {
        let mut out = String::new();
        push_quoted(&mut out, value);
        assert_eq!(out, expected, "value {value:?}");
        let mut sized = String::new();
        push_quoted_sized(&mut sized, value, quoted_len(value));
        assert_eq!(sized, expected, "sized, value {value:?}");
        assert_eq!(quoted_len(value), expected.len(), "length for {value:?}");
        let json: String = serde_json::from_str(&out).expect("valid JSON string");
        assert_eq!(json, value, "JSON reads {out} back differently");
        let yaml = saphyr::Yaml::load_from_str(&format!("k: {out}")).expect("valid YAML");
        assert_eq!(
            yaml[0]["k"].as_str(),
            Some(value),
            "YAML reads {out} back differently"
        );
    }

    #[test]
    fn the_plain_fast_path_is_exactly_the_ascii_that_needs_no_escape() {
        for c in (0u8..=127).map(char::from) {
            assert_eq!(is_plain(&c.to_string()), escape(c).is_none(), "{c:?}");
        }
        assert!(!is_plain("é"), "non-ASCII text takes the exact path");
        // Wherever one such character sits in a longer value (a 16-byte chunk or the rest).
        let base = "a".repeat(40);
        assert!(is_plain(&base));
        for at in 0..base.len() {
            for c in ['"', '\\', '\n', '\u{7f}', 'é'] {
                let mut value = base.clone();
                value.insert(at, c);
                assert!(!is_plain(&value), "{c:?} at {at}");
            }
        }
    }

    #[test]
    fn escapes() {
        check("", r#""""#);
        check("plain", r#""plain""#);
        check("password1\n", r#""password1\n""#);
        check("a\"b\\c", r#""a\"b\\c""#);
        check("\t\r\u{8}\u{c}", r#""\t\r\b\f""#);
        check("\u{0}\u{1b}\u{7f}", r#""\u0000\u001b\u007f""#);
        check("x\u{85}y\u{2028}z\u{2029}", r#""x\u0085y\u2028z\u2029""#);
        check("\u{feff}bom", r#""\ufeffbom""#);
        check("\u{9f}\u{a0}", "\"\\u009f\u{a0}\"");
        check("\u{fffe}\u{ffff}", r#""\ufffe\uffff""#);
        check("é😀", "\"é😀\"");
    }

    #[test]
    fn values_that_look_like_yaml_stay_strings() {
        for value in [
            "yes", "on", "y", "no", "0755", "1e3", "~", "null", "true", "-", "- a", "a: b", "# c",
            "&a", "*a", "!!int 3", "ENC[x]", "[1]", "{a: 1}", "|", ">", "'", "%x", "@", "`",
            " lead", "trail ",
        ] {
            check(value, &format!("\"{value}\""));
        }
    }
}
