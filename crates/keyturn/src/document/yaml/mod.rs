//! YAML: finding handle sites in the event stream of `saphyr-parser`.
//!
//! The walk is one pass over the parser's events, with no tree built. It follows what the Datadog
//! Agent's walker sees after yaml v3 decoded the document into generic maps and slices:
//! - A scalar is a string value when it is untagged, tagged `!`, `!!str`, or with a custom
//!   (non-`tag:yaml.org,2002:`) tag; yaml v3 decodes all of these to strings. Other core tags
//!   (`!!int`, `!!binary`, ...) are not strings.
//! - A key is a string when it is quoted, a block scalar, tagged `!!str`, or a plain scalar that
//!   yaml v3 does not resolve to null, bool, int, float or timestamp; `yes`/`on` are strings, as
//!   in yaml v3. A mapping with any other key (including a collection key) is skipped with all
//!   its content: its sites are dropped when it closes. At the top level such a mapping is
//!   refused like a scalar (the Agent's walker accepts only string-keyed maps and slices).
//! - An alias counts as a copy of its anchor's node: each handle under it is a site at the alias'
//!   path, sharing the anchor's splice (so it is written once).
//! - A merge key `<<` (plain, or tagged `!!merge`) takes a mapping, an alias to one, or a
//!   sequence of those; merged handles are sites at the merging mapping's path, recorded when
//!   that mapping closes, with yaml v3's precedence (explicit keys first, then earlier sources).
//! - Only one document per stream; duplicate string keys are an error (both as in yaml v3).
//! - Keys never change (a key would carry a secret into paths, errors and reports). A handle
//!   written in a key (`&a ENC[x]: 1`, or inside a complex key) is never replaced there; an
//!   alias to it used as a value reads as that handle and is replaced at the alias itself
//!   (`v: *a` becomes `v: "..."`). An alias inside a key that reaches a replaced handle (`*p: 1`,
//!   `? <<: *base`) is refused, and so is a value alias that copies a collection holding a
//!   handle written inside a key (it could be replaced nowhere).
//!
//! Code map: this file runs the parser and turns its errors into [`DocumentError`]s;
//! `walker.rs` follows the events (roles, key paths, anchors, aliases, merges, skipped
//! mappings); `scalar.rs` holds yaml v3's rules for which scalars are strings; `locate.rs` finds
//! a handle's source text (byte positions, quoting, what is kept around it).

mod locate;
mod scalar;
mod walker;

use saphyr_parser::{Parser, ScanError};

use super::{DocumentError, Walk};
use walker::Walker;

/// Finds the handle sites of a YAML document.
pub(super) fn walk(text: &str) -> Result<Walk, DocumentError> {
    // Same positions as `text`, so the splices found apply to it (see `tabs.rs`).
    let text = &*super::tabs::readable(text);
    let mut walker = Walker::new(text);
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| syntax_error(&error))?;
        walker.event(event, span)?;
    }
    walker.finish()
}

/// A parser error without source text.
fn syntax_error(error: &ScanError) -> DocumentError {
    let info = error.info();
    // The only parser message that quotes the source is "unexpected character: `c'".
    let message = if info.starts_with("unexpected character") {
        "unexpected character".to_owned()
    } else {
        info.to_owned()
    };
    DocumentError::Syntax {
        format: "YAML",
        message,
        line: error.marker().line(),
        column: error.marker().col() + 1,
    }
}
