//! `file.json` and `file.yaml`: one file of top-level `key: value` pairs; a handle is a key.
//!
//! Config: `file_path` (required), `max_file_read_size` (bytes, default 10 MiB, as Datadog's
//! connector). The file is read once per request, whatever the number of handles.
//!
//! Values: JSON follows [`crate::value`] (strings as they are, numbers and booleans as written,
//! objects and arrays as their JSON text, `null` an error). YAML scalars are returned as their
//! text: a quoted scalar as its string, a plain scalar exactly as written, so `pin: 0123` gives
//! `0123` and `enabled: yes` gives `yes` (what Datadog's connector returns, and what a YAML 1.1
//! reader would not). `~`/`null`, mappings and sequences are per-handle errors.
//!
//! Invariant: errors name the file, the key and the kind of problem; a parse error gives only
//! its line and column, because parser messages may quote the file, which holds secrets.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use saphyr::Scalar;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::backends::Outcome;
use crate::settings::{Settings, SettingsError};
use crate::value::{self, ValueError};

/// Default cap on the size of a secrets file, as Datadog's connector.
pub(crate) const DEFAULT_MAX_FILE_READ_SIZE: u64 = 10 * 1024 * 1024;

/// Which parser reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `file.json`: a JSON object.
    Json,
    /// `file.yaml`: a YAML mapping.
    Yaml,
}

/// A failure of the whole file, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// The configuration is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file is not valid JSON or YAML.
    #[error("{path}: invalid {format} at line {line}, column {column}")]
    Syntax {
        path: PathBuf,
        format: &'static str,
        line: usize,
        column: usize,
    },
    /// The file nests collections deeper than any secrets file should.
    #[error("{path}: collections nest deeper than {limit} levels (line {line})")]
    TooDeep {
        path: PathBuf,
        limit: usize,
        line: usize,
    },
    /// The file parses but its top level is not an object/mapping.
    #[error("{path}: the top level must be {expected} of secret names to values")]
    NotAMapping {
        path: PathBuf,
        expected: &'static str,
    },
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    /// The process may not read the file.
    #[error("{path}: permission denied")]
    PermissionDenied { path: PathBuf },
    /// The path names a directory, a FIFO or a device.
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    /// The file is over the configured cap.
    #[error("{path}: larger than max_file_read_size ({limit} bytes)")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The file is not UTF-8 text.
    #[error("{path}: not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    /// Any other I/O failure.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// Resolves `handles` against the file named by `file_path`.
pub(crate) fn resolve(
    format: Format,
    settings: &Settings<'_>,
    handles: &[&str],
) -> Result<Vec<Outcome>, FileError> {
    let path = Path::new(settings.required_string("file_path", " (the secrets file to read)")?);
    let limit = max_file_read_size(settings)?;
    let text = read_text(path, limit)?;
    let table = match format {
        Format::Json => parse_json(&text, path)?,
        Format::Yaml => parse_yaml(&text, path)?,
    };
    Ok(handles
        .iter()
        .map(|handle| match table.get(*handle) {
            None => Err(format!("key {handle:?} not found in {}", path.display())),
            Some(Err(error)) => Err(format!("key {handle:?} in {} {error}", path.display())),
            Some(Ok(value)) => Ok(Zeroizing::new(value.as_str().to_owned())),
        })
        .collect())
}

/// The `max_file_read_size` setting; 0 or absent means the default.
pub(crate) fn max_file_read_size(settings: &Settings<'_>) -> Result<u64, SettingsError> {
    Ok(settings
        .u64("max_file_read_size")?
        .filter(|limit| *limit > 0)
        .unwrap_or(DEFAULT_MAX_FILE_READ_SIZE))
}

/// Reads a whole UTF-8 regular file of at most `limit` bytes.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<Zeroizing<String>, ReadError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound {
            path: path.to_owned(),
        },
        io::ErrorKind::PermissionDenied => ReadError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => ReadError::Io {
            path: path.to_owned(),
            cause: source,
        },
    };
    // Opening a FIFO would block until a writer comes: only regular files are opened.
    if !std::fs::metadata(path).map_err(io_error)?.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(io_error)?;
    let too_large = || ReadError::TooLarge {
        path: path.to_owned(),
        limit,
    };
    if file.metadata().map_err(io_error)?.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(error) => {
            // Wipe the rejected bytes too.
            drop(Zeroizing::new(error.into_bytes()));
            Err(ReadError::NotUtf8 {
                path: path.to_owned(),
            })
        }
    }
}

/// Secret name to its text, or to why that entry cannot be used. Texts are shared: YAML entries
/// that alias one anchor hold one copy of its text.
type Table = BTreeMap<String, Entry>;

/// One entry's text, or why it cannot be used.
type Entry = Result<Rc<Zeroizing<String>>, ValueError>;

fn parse_json(text: &str, path: &Path) -> Result<Table, FileError> {
    let object: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(text).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => FileError::NotAMapping {
                path: path.to_owned(),
                expected: "an object",
            },
            _ => FileError::Syntax {
                path: path.to_owned(),
                format: "JSON",
                line: error.line(),
                column: error.column(),
            },
        })?;
    Ok(object
        .into_iter()
        .map(|(key, raw)| (key, value::json_text(&raw).map(Rc::new)))
        .collect())
}

/// How deep collections may nest in a YAML secrets file. The file is one level of names to
/// values; the bound only keeps a hostile file (`- - - - ...`) from overflowing the stack of
/// the recursive loader.
const MAX_YAML_DEPTH: usize = 64;

/// Refuses YAML that nests deeper than [`MAX_YAML_DEPTH`], from the event stream alone, before
/// anything recursive sees it.
fn check_depth(text: &str, path: &Path) -> Result<(), FileError> {
    use saphyr_parser::{Event, Parser};

    let mut depth = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        // Syntax errors are reported by the real parse that follows.
        let Ok((event, span)) = next else {
            return Ok(());
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_YAML_DEPTH {
            return Err(FileError::TooDeep {
                path: path.to_owned(),
                limit: MAX_YAML_DEPTH,
                line: span.start.line(),
            });
        }
    }
    Ok(())
}

/// Reads the top-level mapping from the parser's events, without building a tree: only
/// top-level entries and anchored scalars are kept, and an alias shares its anchor's text, so
/// an alias bomb costs nothing (saphyr's loader copies an anchor's tree for every alias).
fn parse_yaml(text: &str, path: &Path) -> Result<Table, FileError> {
    use saphyr_parser::{Event, Parser};

    let not_a_mapping = || FileError::NotAMapping {
        path: path.to_owned(),
        expected: "a mapping",
    };
    let syntax = |line: usize, column: usize| FileError::Syntax {
        path: path.to_owned(),
        format: "YAML",
        line,
        column,
    };
    check_depth(text, path)?;
    let source = SourceText::new(text);
    let mut anchors: HashMap<usize, Entry> = HashMap::new();
    let mut table = Table::new();
    // Anchor and kind of every open collection; the top-level mapping is the first.
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut documents = 0;
    let mut saw_mapping = false;
    // Inside the top-level mapping: the key just read (`None` inside when it is not text).
    let mut key: Option<(Option<String>, usize, usize)> = None;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) =
            next.map_err(|error| syntax(error.marker().line(), error.marker().col() + 1))?;
        // A complete node at the top level of the mapping, as a key or as a value.
        let mut top: Option<Entry> = None;
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(not_a_mapping());
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if open.is_empty() {
                    if !is_map {
                        return Err(not_a_mapping());
                    }
                    saw_mapping = true;
                }
                open.push((anchor, is_map));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (anchor, is_map) = open.pop().unwrap_or_default();
                let entry = Err(if is_map {
                    ValueError::Mapping
                } else {
                    ValueError::Sequence
                });
                if anchor > 0 {
                    anchors.insert(anchor, entry.clone());
                }
                if open.len() == 1 {
                    top = Some(entry);
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if open.is_empty() {
                    return Err(not_a_mapping());
                }
                if open.len() == 1 || anchor > 0 {
                    let node =
                        saphyr::Yaml::value_from_cow_and_metadata(value, style, tag.as_ref());
                    let written = || {
                        // The span starts at the node's properties (`&anchor`, `!tag`), if any.
                        let mut text = source.slice(span.start.index(), span.end.index())?;
                        while text.starts_with(['&', '!']) {
                            let end = text.find([' ', '\t', '\n', '\r'])?;
                            text = text[end..].trim_start();
                        }
                        Some(text)
                    };
                    let entry = scalar_text(&node, &written).map(Rc::new);
                    if anchor > 0 {
                        anchors.insert(anchor, entry.clone());
                    }
                    if open.len() == 1 {
                        top = Some(entry);
                    }
                }
            }
            Event::Alias(anchor) => {
                if open.len() == 1 {
                    top = Some(
                        anchors
                            .get(&anchor)
                            .cloned()
                            .unwrap_or(Err(ValueError::Invalid)),
                    );
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        let Some(entry) = top else {
            continue;
        };
        match key.take() {
            None => {
                let text = entry.ok().map(|text| text.as_str().to_owned());
                key = Some((text, span.start.line(), span.start.col() + 1));
            }
            Some((None, _, _)) => {}
            Some((Some(name), line, column)) => {
                if table.insert(name, entry).is_some() {
                    return Err(syntax(line, column));
                }
            }
        }
    }
    if !saw_mapping {
        return Err(not_a_mapping());
    }
    Ok(table)
}

/// The text of a YAML scalar: a string as parsed, any other scalar exactly as `written`.
fn scalar_text<'a>(
    node: &saphyr::Yaml<'_>,
    written: &dyn Fn() -> Option<&'a str>,
) -> Result<Zeroizing<String>, ValueError> {
    use saphyr::Yaml;
    match node {
        Yaml::Value(Scalar::String(text)) => Ok(Zeroizing::new(text.to_string())),
        Yaml::Value(Scalar::Null) => Err(ValueError::Null),
        Yaml::Value(Scalar::Boolean(_) | Scalar::Integer(_) | Scalar::FloatingPoint(_)) => {
            written()
                .map(|text| Zeroizing::new(text.to_owned()))
                .ok_or(ValueError::Invalid)
        }
        Yaml::Representation(text, _, _) => Ok(Zeroizing::new(text.to_string())),
        Yaml::Tagged(_, inner) => scalar_text(inner, written),
        Yaml::Mapping(_) => Err(ValueError::Mapping),
        Yaml::Sequence(_) => Err(ValueError::Sequence),
        Yaml::Alias(_) | Yaml::BadValue => Err(ValueError::Invalid),
    }
}

/// The YAML source with a character-to-byte index: parser spans count characters.
struct SourceText<'a> {
    text: &'a str,
    /// Byte offset of every character, plus the end of the text.
    offsets: Vec<usize>,
}

impl<'a> SourceText<'a> {
    fn new(text: &'a str) -> SourceText<'a> {
        let offsets = text
            .char_indices()
            .map(|(offset, _)| offset)
            .chain(std::iter::once(text.len()))
            .collect();
        SourceText { text, offsets }
    }

    /// Characters `start..end`, trimmed of the spaces a plain scalar's span may include.
    fn slice(&self, start: usize, end: usize) -> Option<&'a str> {
        let (from, to) = (*self.offsets.get(start)?, *self.offsets.get(end)?);
        self.text.get(from..to).map(str::trim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: Format, text: &str, expected: &[(&str, Result<&str, ValueError>)]) {
        let path = Path::new("secrets");
        let table = match format {
            Format::Json => parse_json(text, path),
            Format::Yaml => parse_yaml(text, path),
        }
        .unwrap_or_else(|error| panic!("{text}: {error}"));
        let got: Vec<(&str, Result<&str, ValueError>)> = table
            .iter()
            .map(|(key, value)| {
                (
                    key.as_str(),
                    value
                        .as_ref()
                        .map(|text| text.as_str())
                        .map_err(|error| *error),
                )
            })
            .collect();
        let mut expected = expected.to_vec();
        expected.sort_by_key(|(key, _)| *key);
        assert_eq!(got, expected, "{text}");
    }

    fn check_error(format: Format, text: &str, expected: &str) {
        let error = match format {
            Format::Json => parse_json(text, Path::new("s")),
            Format::Yaml => parse_yaml(text, Path::new("s")),
        }
        .unwrap_err()
        .to_string();
        assert_eq!(error, expected);
    }

    #[test]
    fn deep_yaml_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}x\n", "- ".repeat(100_000));
        check_error(
            Format::Yaml,
            &deep,
            "s: collections nest deeper than 64 levels (line 1)",
        );
        let flow = format!("a: {}x{}\n", "[".repeat(200), "]".repeat(200));
        check_error(
            Format::Yaml,
            &flow,
            "s: collections nest deeper than 64 levels (line 1)",
        );
        // JSON values are kept as raw text (no recursion): a deep one is just a long value.
        let json = format!("{{\"a\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_json(&json, Path::new("s")).unwrap().len(), 1);
    }

    /// Issue 9, item 2: saphyr's loader copied an anchor's tree for every alias (a 1 MiB
    /// anchor under 2,000 keys: 2 GB); entries that alias one anchor now share its text, and
    /// aliases to collections cost nothing.
    #[test]
    fn yaml_aliases_share_their_anchor_text() {
        let mut text = format!("big: &b \"{}\"\n", "x".repeat(1 << 20));
        for i in 0..2_000 {
            text.push_str(&format!("k{i}: *b\n"));
        }
        text.push_str("l0: &l0 [*b, *b, *b, *b]\n");
        for level in 1..20 {
            let previous = level - 1;
            text.push_str(&format!(
                "l{level}: &l{level} [*l{previous}, *l{previous}, *l{previous}, *l{previous}]\n"
            ));
        }
        text.push_str("pin: &pin 0123\ncopy: *pin\n*b : 1\n");
        let table = parse_yaml(&text, Path::new("s")).unwrap();
        let (Ok(big), Ok(copy)) = (&table["big"], &table["k1999"]) else {
            panic!("big and k1999 are texts");
        };
        assert!(Rc::ptr_eq(big, copy));
        assert_eq!(table["l19"], Err(ValueError::Sequence));
        assert_eq!(
            table["copy"].as_deref().map(|text| text.as_str()),
            Ok("0123")
        );
        assert_eq!(table.len(), 2_000 + 1 + 20 + 2 + 1);
    }

    #[test]
    fn json_values() {
        check(
            Format::Json,
            r#"{"a":"x","n":0.10,"b":false,"o":{"k":1},"z":null,"e":""}"#,
            &[
                ("a", Ok("x")),
                ("n", Ok("0.10")),
                ("b", Ok("false")),
                ("o", Ok(r#"{"k":1}"#)),
                ("z", Err(ValueError::Null)),
                ("e", Ok("")),
            ],
        );
    }

    #[test]
    fn yaml_plain_scalars_keep_their_text() {
        check(
            Format::Yaml,
            "pin: 0123\nflag: yes\nbool: true\nexp: 1e3\noct: 0o17\nquoted: \"0123\"\n\
             single: 'it''s'\nplain: hello world  # comment\nnull1: ~\nnull2:\n\
             map: {a: b}\nlist: [1]\nblock: |\n  line1\n  line2\nunicode: héllo ☃ 42\n\
             num_after_unicode: 3.14\n123: numeric key\n",
            &[
                ("pin", Ok("0123")),
                ("flag", Ok("yes")),
                ("bool", Ok("true")),
                ("exp", Ok("1e3")),
                ("oct", Ok("0o17")),
                ("quoted", Ok("0123")),
                ("single", Ok("it's")),
                ("plain", Ok("hello world")),
                ("null1", Err(ValueError::Null)),
                ("null2", Err(ValueError::Null)),
                ("map", Err(ValueError::Mapping)),
                ("list", Err(ValueError::Sequence)),
                ("block", Ok("line1\nline2\n")),
                ("unicode", Ok("héllo ☃ 42")),
                ("num_after_unicode", Ok("3.14")),
                ("123", Ok("numeric key")),
            ],
        );
    }

    #[test]
    fn whole_file_errors_give_position_not_content() {
        check_error(
            Format::Json,
            "{\"a\": \"hunter2\"",
            "s: invalid JSON at line 1, column 15",
        );
        check_error(
            Format::Json,
            "[\"hunter2\"]",
            "s: the top level must be an object of secret names to values",
        );
        check_error(
            Format::Yaml,
            "a: \"hunter2\n",
            "s: invalid YAML at line 1, column 4",
        );
        check_error(
            Format::Yaml,
            "- hunter2\n",
            "s: the top level must be a mapping of secret names to values",
        );
        check_error(
            Format::Yaml,
            "",
            "s: the top level must be a mapping of secret names to values",
        );
    }
}
