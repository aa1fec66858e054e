//! Helpers shared by the fuzz targets: how one fuzz input becomes a document plus the values a
//! backend returns for its handles.
//!
//! An input is the document text, optionally followed by a `0xFF` byte and "value material".
//! `0xFF` never occurs in UTF-8, so every seed can be a plain YAML or JSON file, and the fuzzer
//! still controls the values through the bytes after the last `0xFF`. Without material, values
//! are derived from the handles themselves, so they still carry the document's own characters.

use std::collections::HashMap;

use keyturn::document::DocumentError;
use keyturn::{Document, Format};
use zeroize::Zeroizing;

/// Values a backend might return that could break a document if written carelessly.
pub const HOSTILE: &[&str] = &[
    "",
    "password1\n",
    "a: b",
    "# c",
    "- x",
    "-",
    "yes",
    "on",
    "0755",
    "1e3",
    "~",
    "null",
    "\"",
    "'",
    "\\",
    "\\\"",
    "ENC[x]",
    "\u{85}",
    "x\u{2028}y\u{2029}",
    "\u{feff}",
    "\t",
    "\r\n",
    " lead",
    "trail ",
    "\u{0}\u{7}\u{1b}\u{7f}\u{9f}",
    "é😀",
    "multi\nline\n",
    "|",
    ">",
    "[a]",
    "{a: 1}",
    "&a",
    "*a",
    "!!int 3",
    "%YAML 1.1",
    "---",
    "...",
    "\u{fffe}\u{ffff}",
    "}]\"}]",
];

/// A fuzz input split into the document text and the value material.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The document, valid UTF-8.
    pub text: &'a str,
    /// Bytes after the last `0xFF` (empty when there is none).
    pub material: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` at its last `0xFF`; `None` when the text part is not UTF-8.
    pub fn split(data: &'a [u8]) -> Option<Input<'a>> {
        let (text, material) = match data.iter().rposition(|&byte| byte == 0xff) {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &data[data.len()..]),
        };
        Some(Input {
            text: std::str::from_utf8(text).ok()?,
            material,
        })
    }
}

/// The value of each distinct handle, or no entry when the handle stays unresolved. Handle `i`
/// is steered by material byte `i` (or, past the material, by the handle's own bytes).
pub fn values(handles: &[&str], material: &[u8]) -> HashMap<String, String> {
    let free_text = String::from_utf8_lossy(material);
    let mut values = HashMap::new();
    for (index, handle) in handles.iter().enumerate() {
        let selector = material.get(index).copied().map_or_else(
            || {
                handle.bytes().fold(index, |sum, byte| {
                    sum.wrapping_mul(31).wrapping_add(usize::from(byte))
                })
            },
            usize::from,
        );
        let value = match selector % 8 {
            0 => continue,
            1..=4 => HOSTILE[(selector / 8) % HOSTILE.len()].to_owned(),
            // The document's own characters, around the structure a careless writer would break.
            5 => format!("{handle}\n\"#: ENC[{handle}]\\"),
            // A value that is itself a handle must be written literally, never resolved again.
            6 => format!("ENC[{handle}]"),
            _ => free_text.chars().skip(index).take(64).collect(),
        };
        values.insert((*handle).to_owned(), value);
    }
    values
}

/// Strips a leading byte order mark, which keyturn keeps but serde_json does not read.
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// A document that parsed, the values chosen for its handles, and its rendering with them.
pub struct Rendered {
    /// The parsed input.
    pub document: Document,
    /// The value of each resolved handle.
    pub values: HashMap<String, String>,
    /// The output of `render`.
    pub output: Zeroizing<String>,
}

/// Parses `input` as `format` and renders it. `None` when the text is not a valid document.
/// Panics on what is a bug whatever the input: a `Layout` error, a rendering with nothing
/// resolved that is not the input byte for byte, or `render_to` writing other bytes than
/// `render` returns.
pub fn parse_and_render(input: Input<'_>, format: Format) -> Option<Rendered> {
    let document = match Document::parse(input.text.to_owned(), format) {
        Ok(document) => document,
        Err(error @ DocumentError::Layout { .. }) => panic!("walker bug: {error}"),
        Err(_) => return None,
    };
    assert_eq!(document.render(|_| None).as_str(), input.text);
    let values = values(&document.handles(), input.material);
    let output = document.render(|handle| values.get(handle).map(String::as_str));
    // Written in pieces as it renders, the output is the same.
    let mut written = Vec::new();
    document
        .render_to(
            |handle| values.get(handle).map(String::as_str),
            &mut written,
        )
        .expect("writing to a vector");
    assert!(
        written == output.as_bytes(),
        "render_to differs from render"
    );
    Some(Rendered {
        document,
        values,
        output,
    })
}
