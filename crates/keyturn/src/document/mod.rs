//! Configuration documents (YAML or JSON), the handles in them, and format-preserving
//! substitution.
//!
//! [`Document::parse`] finds every string value written `ENC[...]` and records where it is
//! (its key path and its byte span in the source). [`Document::render`] splices resolved values
//! into the original text at those spans, each emitted as a correctly quoted scalar, so that
//! everything else (comments, order, spacing, other values) stays byte for byte.
//!
//! STUB: the real implementation is being written; this placeholder only fixes the interface.

use std::path::Path;

use zeroize::Zeroizing;

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One place in a document where a handle is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleSite {
    /// The handle (text between `ENC[` and `]`).
    pub handle: String,
    /// Key path from the root: map keys as written, sequence indexes in decimal.
    pub path: Vec<String>,
    span: std::ops::Range<usize>,
}

/// Why a document could not be read. Never quotes the document's text.
#[derive(Debug, thiserror::Error)]
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
}

/// A parsed document and the handles found in it.
#[derive(Debug)]
pub struct Document {
    text: String,
    format: Format,
    sites: Vec<HandleSite>,
}

impl Document {
    /// Parses `text` and finds every handle.
    pub fn parse(text: String, format: Format) -> Result<Document, DocumentError> {
        Ok(Document {
            text,
            format,
            sites: Vec::new(),
        })
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The document's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Every handle site, in document order.
    pub fn sites(&self) -> &[HandleSite] {
        &self.sites
    }

    /// The text with each site whose handle `lookup` resolves replaced by that value, quoted for
    /// the format. Sites `lookup` returns `None` for are left as written. With no site replaced
    /// the result equals the source byte for byte.
    pub fn render<'a>(&self, mut lookup: impl FnMut(&str) -> Option<&'a str>) -> Zeroizing<String> {
        for site in &self.sites {
            let _ = (lookup(&site.handle), &site.span);
        }
        Zeroizing::new(self.text.clone())
    }
}
