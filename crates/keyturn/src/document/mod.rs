//! Configuration documents (YAML or JSON), the handles in them, and format-preserving
//! substitution.
//!
//! [`Document::parse`] finds every string value written `ENC[...]` and records where it is: its
//! key path (the [`HandleSite`]s) and the byte range of its source text (a private splice).
//! Sites are packed, with no allocation per site: handles and keys in one name buffer, paths in
//! one table (`path.rs`), offsets in `u32`s (hence [`MAX_TEXT`]); [`HandleSite`] is a view.
//! [`Document::render`] splices resolved values into the original text at those ranges, each
//! emitted as a double-quoted scalar, so that everything else (comments, key order, spacing,
//! anchors, the spelling of every other value) stays byte for byte.
//!
//! Which values are visited follows the Datadog Agent's walker (its newest, yaml v3 based one):
//! string values at any depth (mapping values and sequence elements), never keys, never
//! non-string scalars; a mapping with any non-string key is skipped with everything below it;
//! the top level must be a mapping or a sequence. YAML aliases and merge keys (`<<`) are expanded
//! for the purpose of paths the way yaml v3 expands them when decoding; see `yaml/` for the
//! details, and `json.rs` for the JSON scanner.
//!
//! Code map: `yaml/` and `json.rs` turn text into sites and splices, both through the shared
//! collector of `sites.rs` (key paths, duplicate keys); `tabs.rs` lets saphyr read
//! `key:<TAB>value` (the settings reader uses it too); `quote.rs` writes a value as a quoted
//! scalar. Tests: `tests.rs` (examples) and `tests/roundtrip.rs` (property tests).
//!
//! Invariants:
//! - Splices are sorted by start, do not overlap, and each lies on `char` boundaries of the text.
//!   Every splice is used by at least one site (a handle in a skipped mapping is never replaced).
//! - Several sites may share a splice (a YAML alias shares its anchor's text); it is written once.
//! - Errors never quote the document: a document may already hold resolved secrets.
//! - [`Document::render`] with no value resolved returns the source byte for byte.

mod json;
mod path;
mod quote;
mod sites;
mod tabs;
mod yaml;

use crate::printable::Printable;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

pub use path::{KeyPath, Segment};
use path::{Name, PathId, PathTable};
pub(crate) use tabs::readable as readable_yaml;

use zeroize::Zeroizing;

/// How deep collections may nest (serde_json's own default limit). Bounds the cost of key paths.
pub const MAX_DEPTH: usize = 128;

/// The largest document text, in bytes (1 GiB): a document's sites, paths and splices are kept
/// in `u32` offsets.
pub const MAX_TEXT: usize = 1 << 30;

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// YAML (also used for `.yml`).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format named by a file's extension: `.yaml`/`.yml` or `.json`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format named on a command line: `yaml` or `json`.
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One place in a document where a handle is used: a view of the document ([`Document::sites`]).
#[derive(Clone, Copy)]
pub struct HandleSite<'d> {
    document: &'d Document,
    site: Site,
}

impl<'d> HandleSite<'d> {
    /// The handle (text between `ENC[` and `]`).
    pub fn handle(&self) -> &'d str {
        self.site.handle.get(&self.document.names)
    }

    /// Key path from the root: map keys as written, sequence indexes in decimal. Cheap to
    /// clone; the document builds its paths the first time one is asked for.
    pub fn path(&self) -> &'d KeyPath {
        static ROOT: KeyPath = KeyPath::root();
        match self.site.path.index() {
            Some(index) => self.document.key_paths().get(index).unwrap_or(&ROOT),
            None => &ROOT,
        }
    }
}

impl fmt::Debug for HandleSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleSite")
            .field("handle", &self.handle())
            .field("path", self.path())
            .finish()
    }
}

impl PartialEq for HandleSite<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.handle() == other.handle() && self.path() == other.path()
    }
}

impl Eq for HandleSite<'_> {}

/// The sites of a document, in document order ([`Document::sites`]).
#[derive(Clone)]
pub struct Sites<'d> {
    document: &'d Document,
    sites: std::slice::Iter<'d, Site>,
}

impl Sites<'_> {
    /// Whether no site is left (none at all, for a document's whole list).
    pub fn is_empty(&self) -> bool {
        self.sites.len() == 0
    }
}

impl<'d> Iterator for Sites<'d> {
    type Item = HandleSite<'d>;

    fn next(&mut self) -> Option<HandleSite<'d>> {
        let site = *self.sites.next()?;
        Some(HandleSite {
            document: self.document,
            site,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.sites.size_hint()
    }
}

impl DoubleEndedIterator for Sites<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let site = *self.sites.next_back()?;
        Some(HandleSite {
            document: self.document,
            site,
        })
    }
}

impl ExactSizeIterator for Sites<'_> {}

impl fmt::Debug for Sites<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// A site as the document keeps it: 16 bytes, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Site {
    /// The handle, in the document's name buffer.
    handle: Name,
    /// The key path, in the document's path table.
    path: PathId,
    /// Index into the document's splices: the source text this site's value comes from.
    splice: u32,
}

/// Why a document could not be read. Never quotes the document's text (keys in a path are
/// quoted: they are never secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The text is not valid YAML or JSON.
    #[error("could not parse {format}: {message} at line {line}, column {column}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// What is wrong, without source text.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The top level is a scalar or empty.
    #[error("given data is not of expected type map not slice")]
    NotACollection,
    /// The YAML text holds more than one document (`---` after the first one).
    #[error(
        "could not parse YAML: a second document starts at line {line}; only one document per \
         file is supported"
    )]
    MultipleDocuments {
        /// 1-based line of the second document.
        line: usize,
    },
    /// A mapping has the same key twice.
    #[error("could not parse {format}: duplicate key at '{}'", Printable(.path))]
    DuplicateKey {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// Path of the duplicated key, segments joined with `/`.
        path: String,
    },
    /// A YAML merge key (`<<`) whose value is not a mapping or a sequence of mappings.
    #[error(
        "could not parse YAML: merge key '<<' at '{}' needs a mapping or a sequence of \
         mappings",
        Printable(.path)
    )]
    InvalidMerge {
        /// Path of the mapping holding the merge key, segments joined with `/`.
        path: String,
    },
    /// Collections nest deeper than [`MAX_DEPTH`] levels.
    #[error("could not parse {format}: collections nest deeper than {limit} levels")]
    TooDeep {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The limit that was passed.
        limit: usize,
    },
    /// YAML aliases expand into too many values (an "alias bomb").
    #[error("could not parse YAML: aliases expand into more than {limit} values")]
    ExcessiveAliasing {
        /// The limit that was passed.
        limit: usize,
    },
    /// An alias inside a mapping key refers to a handle that is replaced: the key would change
    /// and hold a secret (keys appear in paths, errors and reports, so they must never).
    #[error(
        "could not parse YAML: an alias inside a mapping key at '{}' refers to a handle; a \
         key cannot hold a secret",
        Printable(.path)
    )]
    HandleInKey {
        /// Path of the mapping holding the key, segments joined with `/`.
        path: String,
    },
    /// An alias used as a value copies a collection holding a handle written inside a mapping
    /// key, where it is never replaced.
    #[error(
        "could not parse YAML: the alias at '{}' copies a handle written inside a mapping \
         key, which cannot be replaced",
        Printable(.path)
    )]
    HandleFromKey {
        /// Path of the alias, segments joined with `/`.
        path: String,
    },
    /// A raw U+0085, U+2028 or U+2029: a line break for YAML 1.1 readers (Go's yaml.v3 and
    /// yaml.v2, which the Datadog Agent uses, and PyYAML) but not for YAML 1.2. The two readings
    /// can see different handles (`# c<U+0085>pw: ENC[db]` is a comment to one and a handle to
    /// the other), so such a document is refused rather than read one way.
    #[error(
        "could not parse YAML: a raw {name} at line {line}, column {column} is a line break \
         for YAML 1.1 readers (such as the Datadog Agent's) but not for YAML 1.2, so they would \
         read this document differently; remove it, or write it escaped in a double-quoted \
         string (\\{escape})"
    )]
    AmbiguousLineBreak {
        /// The character's name, e.g. `U+2028 (line separator)`.
        name: &'static str,
        /// Its escape in a double-quoted YAML string, e.g. `u2028`.
        escape: &'static str,
        /// 1-based line (lines end at `\n`).
        line: usize,
        /// 1-based column, in characters.
        column: usize,
    },
    /// A raw byte order mark (U+FEFF) anywhere but at the very start. YAML readers disagree on
    /// it: Go's yaml.v3 (like libyaml) and saphyr skip one that starts a line, PyYAML keeps it
    /// in the text (`\u{feff}pw` is another key), so such a document is refused.
    #[error(
        "could not parse YAML: a byte order mark (U+FEFF) at line {line}, column {column}: YAML \
         readers disagree on one that does not start the file (some skip it, some keep it in \
         the text); remove it, or write it escaped in a double-quoted string (\\uFEFF)"
    )]
    MisplacedByteOrderMark {
        /// 1-based line (lines end at `\n`).
        line: usize,
        /// 1-based column, in characters.
        column: usize,
    },
    /// The text is longer than [`MAX_TEXT`] bytes.
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// The source text of a handle's value could not be located. A bug, not a user error:
    /// reported instead of risking a corrupt output.
    #[error("could not locate the text of the value at line {line}, column {column}")]
    Layout {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

/// A parsed document and the handles found in it. `Debug` does not print the text.
pub struct Document {
    text: String,
    format: Format,
    sites: Vec<Site>,
    splices: Vec<Cut>,
    margins: Margins,
    /// The handles and the keys of the paths, each written once.
    names: String,
    paths: PathTable,
    /// Every node of `paths` as a [`KeyPath`], built the first time a site's path is asked for
    /// (a one-off resolve that fails nowhere never builds them).
    key_paths: OnceLock<Vec<KeyPath>>,
}

/// One range of the source text that render replaces with a quoted value, as a walker finds it
/// (the document keeps it as a [`Cut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Splice {
    /// Byte range replaced.
    span: Range<usize>,
    /// Byte range inside `span` written again before the value: what stood between a dropped
    /// lone `!` tag and the scalar (an anchor, say). Empty otherwise.
    lead: Range<usize>,
    /// Byte range inside `span` written again after the value: the comment of a YAML block
    /// scalar's header line (`|- # note`), which would otherwise be lost. Empty otherwise.
    keep: Range<usize>,
    /// The handle written there.
    handle: Name,
}

/// A [`Splice`] as the document keeps it: offsets in `u32`s, 20 bytes. Its `lead` and `keep`,
/// empty for nearly every splice, are kept apart ([`Margins`]) only when one is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    span: [u32; 2],
    handle: Name,
    /// Index of the splice's `lead` and `keep` in its [`Margins`]; [`Cut::NO_MARGINS`] when
    /// both are empty.
    margins: u32,
}

/// The `lead` and `keep` of the splices that have one, as `[lead.start, lead.end, keep.start,
/// keep.end]`.
type Margins = Vec<[u32; 4]>;

impl Cut {
    const NO_MARGINS: u32 = u32::MAX;

    /// `None` when an offset passes `u32` (not reached below [`MAX_TEXT`]).
    fn new(splice: &Splice, margins: &mut Margins) -> Option<Cut> {
        let index = if splice.lead.is_empty() && splice.keep.is_empty() {
            Cut::NO_MARGINS
        } else {
            let [lead_start, lead_end] = sites::narrow(&splice.lead)?;
            let [keep_start, keep_end] = sites::narrow(&splice.keep)?;
            let index = u32::try_from(margins.len())
                .ok()
                .filter(|&index| index != Cut::NO_MARGINS)?;
            margins.push([lead_start, lead_end, keep_start, keep_end]);
            index
        };
        Some(Cut {
            span: sites::narrow(&splice.span)?,
            handle: splice.handle,
            margins: index,
        })
    }

    fn span(&self) -> Range<usize> {
        self.span[0] as usize..self.span[1] as usize
    }

    /// The `lead` and `keep` ranges; both empty at the span's start when none was kept.
    fn margins(&self, margins: &[[u32; 4]]) -> (Range<usize>, Range<usize>) {
        match margins.get(self.margins as usize) {
            Some(&[lead_start, lead_end, keep_start, keep_end]) => (
                lead_start as usize..lead_end as usize,
                keep_start as usize..keep_end as usize,
            ),
            None => {
                let start = self.span[0] as usize;
                (start..start, start..start)
            }
        }
    }
}

/// What a format's walker produces.
#[derive(Debug, Default)]
struct Walk {
    sites: Vec<Site>,
    splices: Vec<Cut>,
    margins: Margins,
    names: String,
    paths: PathTable,
}

/// Refuses the characters that YAML 1.1 reads as line breaks and YAML 1.2 does not
/// ([`DocumentError::AmbiguousLineBreak`]) and a byte order mark after the start
/// ([`DocumentError::MisplacedByteOrderMark`]), naming the first one's line and column.
fn refuse_ambiguous_characters(text: &str) -> Result<(), DocumentError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(at) = body.find(['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}']) else {
        return Ok(());
    };
    let at = at + (text.len() - body.len());
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let (name, escape) = match text[at..].chars().next() {
        Some('\u{85}') => ("U+0085 (next line)", "N"),
        Some('\u{2028}') => ("U+2028 (line separator)", "L"),
        Some('\u{2029}') => ("U+2029 (paragraph separator)", "P"),
        _ => return Err(DocumentError::MisplacedByteOrderMark { line, column }),
    };
    Err(DocumentError::AmbiguousLineBreak {
        name,
        escape,
        line,
        column,
    })
}

/// Refuses a text of more than [`MAX_TEXT`] bytes.
fn check_size(len: usize) -> Result<(), DocumentError> {
    if len > MAX_TEXT {
        return Err(DocumentError::TooLarge { limit: MAX_TEXT });
    }
    Ok(())
}

impl Document {
    /// Parses `text` and finds every handle (a text of at most [`MAX_TEXT`] bytes).
    pub fn parse(text: String, format: Format) -> Result<Document, DocumentError> {
        check_size(text.len())?;
        let walk = match format {
            Format::Yaml => {
                refuse_ambiguous_characters(&text)?;
                yaml::walk(&text)?
            }
            Format::Json => json::walk(&text)?,
        };
        Ok(Document {
            text,
            format,
            sites: walk.sites,
            splices: walk.splices,
            margins: walk.margins,
            names: walk.names,
            paths: walk.paths,
            key_paths: OnceLock::new(),
        })
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The source text, without copying it.
    pub fn into_text(self) -> String {
        self.text
    }

    /// The document's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Every handle site, in document order (a YAML alias counts where the alias is written;
    /// values merged with `<<` count at the end of the mapping they are merged into).
    pub fn sites(&self) -> Sites<'_> {
        Sites {
            document: self,
            sites: self.sites.iter(),
        }
    }

    /// The distinct handles, in the order they are first seen.
    pub fn handles(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.sites()
            .map(|site| site.handle())
            .filter(|handle| seen.insert(*handle))
            .collect()
    }

    /// Every node of the path table as a [`KeyPath`], built once.
    fn key_paths(&self) -> &[KeyPath] {
        self.key_paths
            .get_or_init(|| self.paths.key_paths(&self.names))
    }

    /// The handle written at `splice`.
    fn splice_handle(&self, splice: &Cut) -> &str {
        splice.handle.get(&self.names)
    }

    /// The text with each site whose handle `lookup` resolves replaced by that value, quoted for
    /// the format (a double-quoted, fully escaped, single-line scalar: the value reads back as
    /// the same string under JSON, YAML 1.2 and YAML 1.1 readers). Sites `lookup` returns `None`
    /// for are left as written. With no site replaced the result equals the source byte for
    /// byte. Values are written literally: one that looks like `ENC[...]` is not resolved again.
    ///
    /// `lookup` is called once per distinct source location, in text order (a YAML alias shares
    /// its anchor's location).
    pub fn render<'a>(&self, mut lookup: impl FnMut(&str) -> Option<&'a str>) -> Zeroizing<String> {
        let values: Vec<Option<Quoted<'a>>> = self
            .splices
            .iter()
            .map(|splice| lookup(self.splice_handle(splice)).map(Quoted::new))
            .collect();
        self.splice(values)
    }

    /// Like [`Document::render`], with a value per use: `lookup` is called with the site that
    /// owns each distinct source location, the first in document order (a YAML alias shares
    /// its anchor's text, so it renders the value of the anchor's use).
    pub fn render_sites<'a>(
        &self,
        mut lookup: impl FnMut(&HandleSite<'_>) -> Option<&'a str>,
    ) -> Zeroizing<String> {
        let mut owners: Vec<Option<HandleSite<'_>>> = vec![None; self.splices.len()];
        for site in self.sites() {
            if let Some(owner) = owners.get_mut(site.site.splice as usize) {
                owner.get_or_insert(site);
            }
        }
        let values: Vec<Option<Quoted<'a>>> = owners
            .into_iter()
            .map(|owner| owner.as_ref().and_then(&mut lookup).map(Quoted::new))
            .collect();
        self.splice(values)
    }

    /// Like [`Document::render`], written to `out` as it is made instead of returned, so the
    /// output is never held whole. Values pass through one buffer of [`RENDER_CHUNK`] bytes (a
    /// value longer than that, through one of its own size), wiped when done; `out` gets the
    /// text in pieces of up to that size. On an error, `out` may hold part of the output.
    pub fn render_to<'a>(
        &self,
        mut lookup: impl FnMut(&str) -> Option<&'a str>,
        out: &mut impl io::Write,
    ) -> io::Result<()> {
        let mut chunk = Chunk {
            text: Zeroizing::new(String::with_capacity(RENDER_CHUNK)),
            out,
        };
        let mut copied = 0;
        for splice in &self.splices {
            let Some(value) = lookup(self.splice_handle(splice)) else {
                continue;
            };
            let (lead, keep) = splice.margins(&self.margins);
            chunk.push(&self.text[copied..splice.span().start])?;
            chunk.push(&self.text[lead])?;
            chunk.push_quoted(value)?;
            chunk.push(&self.text[keep])?;
            copied = splice.span().end;
        }
        chunk.push(&self.text[copied..])?;
        chunk.flush()
    }

    /// The text with `values[i]` (when `Some`) written at splice `i`.
    fn splice(&self, values: Vec<Option<Quoted<'_>>>) -> Zeroizing<String> {
        // Size the output exactly, so that no partial copy of a value is left behind in a
        // reallocated buffer.
        let mut len = self.text.len();
        for (splice, value) in self.splices.iter().zip(&values) {
            if let Some(value) = value {
                let (lead, keep) = splice.margins(&self.margins);
                len = len - splice.span().len() + lead.len() + value.len + keep.len();
            }
        }
        let mut out = String::with_capacity(len);
        let mut copied = 0;
        for (splice, value) in self.splices.iter().zip(values) {
            if let Some(value) = value {
                let (lead, keep) = splice.margins(&self.margins);
                out.push_str(&self.text[copied..splice.span().start]);
                out.push_str(&self.text[lead]);
                quote::push_quoted_sized(&mut out, value.value, value.len);
                out.push_str(&self.text[keep]);
                copied = splice.span().end;
            }
        }
        out.push_str(&self.text[copied..]);
        debug_assert_eq!(out.len(), len);
        Zeroizing::new(out)
    }
}

/// The size of the pieces [`Document::render_to`] writes.
pub const RENDER_CHUNK: usize = 64 * 1024;

/// The buffer of [`Document::render_to`]: filled up to its capacity, never past it (a buffer
/// that grew would leave a copy of what it held behind), and written out when full.
struct Chunk<'w, W: io::Write> {
    text: Zeroizing<String>,
    out: &'w mut W,
}

impl<W: io::Write> Chunk<'_, W> {
    /// Appends text of the document (no value: what does not fit is written as it is).
    fn push(&mut self, text: &str) -> io::Result<()> {
        if self.text.len() + text.len() > self.text.capacity() {
            self.flush()?;
            if text.len() > self.text.capacity() {
                return self.out.write_all(text.as_bytes());
            }
        }
        self.text.push_str(text);
        Ok(())
    }

    /// Appends `value`, quoted.
    fn push_quoted(&mut self, value: &str) -> io::Result<()> {
        let len = quote::quoted_len(value);
        if self.text.len() + len > self.text.capacity() {
            self.flush()?;
            if len > self.text.capacity() {
                let mut own = Zeroizing::new(String::with_capacity(len));
                quote::push_quoted_sized(&mut own, value, len);
                return self.out.write_all(own.as_bytes());
            }
        }
        quote::push_quoted_sized(&mut self.text, value, len);
        Ok(())
    }

    /// Writes out what the buffer holds; its bytes stay until overwritten or wiped on drop.
    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(self.text.as_bytes())?;
        self.text.clear();
        Ok(())
    }
}

/// A value to write and the length of its quoted form, measured once (it sizes the output and
/// tells whether the value needs any escape).
struct Quoted<'a> {
    value: &'a str,
    len: usize,
}

impl<'a> Quoted<'a> {
    fn new(value: &'a str) -> Quoted<'a> {
        Quoted {
            value,
            len: quote::quoted_len(value),
        }
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("format", &self.format)
            .field("len", &self.text.len())
            .field("sites", &self.sites())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
