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
//! Positions: saphyr counts characters, not bytes; [`CharIndex`] converts them with a cursor that
//! moves mostly forward, so the conversion is linear in the text. A handle's splice covers its
//! scalar token only: anchors and tags written before it stay (an alias keeps pointing at the
//! substituted value), except a lone `!` tag, which is dropped: PyYAML and ruamel read
//! `! "yes"` as a boolean. For a block scalar the splice runs from the `|`/`>` indicator to the
//! end of its content, and the comment on the header line is written back after the value.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::path::{KeyPath, Segment as PathSegment};
use super::quote::double_quoted_end;
use super::sites::{Collector, KeyText, Segment};
use super::{DocumentError, MAX_DEPTH, Splice, Walk};
use crate::handle::parse_handle;

/// Site copies (alias expansions and anchored collections' captures) allowed per document.
const COPY_LIMIT: usize = 250_000;

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

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

/// What is remembered of an anchored node, for its aliases (and of an inline merged mapping).
#[derive(Debug)]
enum Captured {
    Scalar {
        /// The value, when it counts as a string key.
        key: Option<Arc<str>>,
        /// The handle and its splice, when the value is a handle.
        site: Option<(Arc<str>, usize)>,
        /// The handle, when the value is a handle written inside a mapping key. Its text is
        /// never replaced (a key cannot hold a secret); an alias to it used as a value is
        /// replaced at the alias instead.
        key_handle: Option<Arc<str>>,
    },
    Collection {
        is_map: bool,
        /// A mapping with a non-string key (skipped wherever it is used).
        skipped: bool,
        /// Whether a handle value is written inside it within a mapping key: such a handle is
        /// never replaced, so no alias may copy it out as a value.
        key_handles: bool,
        /// A mapping's keys, merged ones included.
        keys: Vec<Arc<str>>,
        /// The handles below, with paths relative to the node.
        sites: Vec<Relative>,
    },
}

/// A handle below a captured node: its site's path, of which the first `skip` segments lead to
/// the node (shared, never copied: see `path.rs`).
#[derive(Debug)]
struct Relative {
    handle: Arc<str>,
    splice: usize,
    path: KeyPath,
    skip: usize,
}

/// What a node is to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Key,
    Value,
    /// The value of `<<`, or an element of a sequence that is.
    MergeSource,
    /// A sequence that is the value of `<<`.
    MergeList,
}

/// What the key of the current mapping entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    String(usize),
    Merge,
    NonString,
}

#[derive(Debug)]
enum Kind {
    Map {
        /// `None` while waiting for a key, then the key just read.
        key: Option<KeyKind>,
        keys_start: usize,
        skipped: bool,
        merges: Vec<Rc<Captured>>,
    },
    Seq {
        index: usize,
    },
}

/// An open collection.
#[derive(Debug)]
struct Frame {
    kind: Kind,
    role: Role,
    anchor: usize,
    sites_start: usize,
    path_len: usize,
    /// The walker's `key_handles` when the collection opened.
    key_handles_start: usize,
}

struct Walker<'t> {
    text: &'t str,
    chars: CharIndex<'t>,
    collector: Collector<'t>,
    frames: Vec<Frame>,
    anchors: HashMap<usize, Rc<Captured>>,
    /// Character index where the previous event ended.
    previous_end: usize,
    documents: usize,
    saw_root: bool,
    copies: usize,
    /// Open collections that are mapping keys (`? {...} : v`): while any is open, the walk is
    /// inside a key.
    open_keys: usize,
    /// Handle values seen inside keys (never replaced there).
    key_handles: usize,
}

impl<'t> Walker<'t> {
    fn new(text: &'t str) -> Walker<'t> {
        Walker {
            text,
            chars: CharIndex::new(text),
            collector: Collector::new("YAML"),
            frames: Vec::new(),
            anchors: HashMap::new(),
            previous_end: 0,
            documents: 0,
            saw_root: false,
            copies: 0,
            open_keys: 0,
            key_handles: 0,
        }
    }

    fn finish(self) -> Result<Walk, DocumentError> {
        if !self.saw_root {
            return Err(DocumentError::NotACollection);
        }
        self.collector.finish(self.text)
    }

    fn event(&mut self, event: Event<'t>, span: Span) -> Result<(), DocumentError> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(DocumentError::MultipleDocuments {
                        line: span.start.line(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.scalar(value, style, anchor, tag.as_deref(), span)?;
            }
            Event::Alias(anchor) => self.alias(anchor, span)?,
            Event::MappingStart(anchor, _) => self.open(true, anchor)?,
            Event::SequenceStart(anchor, _) => self.open(false, anchor)?,
            Event::MappingEnd | Event::SequenceEnd => self.close()?,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        self.previous_end = span.end.index();
        Ok(())
    }

    /// The role of the node that starts now, from its parent's state.
    fn role(&self) -> Role {
        match self.frames.last() {
            None => Role::Root,
            Some(Frame {
                kind: Kind::Map { key, .. },
                ..
            }) => match key {
                None => Role::Key,
                Some(KeyKind::Merge) => Role::MergeSource,
                Some(_) => Role::Value,
            },
            Some(Frame {
                kind: Kind::Seq { .. },
                role,
                ..
            }) => {
                if *role == Role::MergeList {
                    Role::MergeSource
                } else {
                    Role::Value
                }
            }
        }
    }

    /// The path segment of a value that starts now.
    fn segment(&self) -> Segment {
        match self.frames.last() {
            Some(Frame {
                kind:
                    Kind::Map {
                        key: Some(KeyKind::String(index)),
                        ..
                    },
                ..
            }) => Segment::Key(*index),
            Some(Frame {
                kind: Kind::Seq { index },
                role,
                ..
            }) if *role != Role::MergeList => Segment::Index(*index),
            _ => Segment::Hidden,
        }
    }

    /// Records that the current child of the innermost frame is complete.
    fn child_done(&mut self) {
        match self.frames.last_mut() {
            Some(Frame {
                kind: Kind::Map { key, .. },
                ..
            }) => *key = None,
            Some(Frame {
                kind: Kind::Seq { index },
                ..
            }) => *index += 1,
            None => {}
        }
    }

    /// Records the key just read in the innermost mapping.
    fn key_done(&mut self, kind: KeyKind) {
        if let Some(Frame {
            kind: Kind::Map { key, skipped, .. },
            ..
        }) = self.frames.last_mut()
        {
            *key = Some(kind);
            if kind == KeyKind::NonString {
                *skipped = true;
            }
        }
    }

    fn scalar(
        &mut self,
        value: Cow<'t, str>,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        span: Span,
    ) -> Result<(), DocumentError> {
        match self.role() {
            Role::Root => Err(DocumentError::NotACollection),
            Role::Key => {
                let class = classify_key(&value, style, tag);
                if anchor > 0 {
                    // The key's text is never replaced; an alias to it used as a value is.
                    let key = (class == KeyClass::String).then(|| Arc::from(value.as_ref()));
                    let key_handle = value_is_string(tag)
                        .then(|| parse_handle(&value))
                        .flatten()
                        .map(Arc::from);
                    self.capture_scalar(anchor, key, None, key_handle);
                }
                let kind = match class {
                    KeyClass::String => {
                        KeyKind::String(self.collector.push_key(KeyText::Text(value)))
                    }
                    KeyClass::Merge => KeyKind::Merge,
                    KeyClass::NonString => KeyKind::NonString,
                };
                self.key_done(kind);
                Ok(())
            }
            Role::MergeSource | Role::MergeList => Err(self.invalid_merge()),
            Role::Value => {
                let mut site = None;
                let mut key_handle = None;
                let handle = value_is_string(tag).then(|| parse_handle(&value)).flatten();
                if let Some(handle) = handle
                    && self.open_keys > 0
                {
                    // Inside a key: never replaced (see `Captured::Scalar::key_handle`).
                    self.key_handles += 1;
                    key_handle = Some(Arc::from(handle));
                } else if let Some(handle) = handle {
                    let handle: Arc<str> = Arc::from(handle);
                    let properties = match tag {
                        Some(tag) if tag_is(tag, "!") => Properties::NonSpecificTag,
                        Some(_) => Properties::Some,
                        None if anchor > 0 => Properties::Some,
                        None => Properties::None,
                    };
                    let splice = self.locate(&handle, style, properties, span)?;
                    let segment = self.segment();
                    self.collector.enter(segment);
                    self.collector.add_site(Arc::clone(&handle), splice);
                    self.collector.leave();
                    site = Some((handle, splice));
                }
                if anchor > 0 {
                    let key = match classify_key(&value, style, tag) {
                        KeyClass::String => Some(Arc::from(value.as_ref())),
                        KeyClass::Merge | KeyClass::NonString => None,
                    };
                    self.capture_scalar(anchor, key, site, key_handle);
                }
                self.child_done();
                Ok(())
            }
        }
    }

    fn capture_scalar(
        &mut self,
        anchor: usize,
        key: Option<Arc<str>>,
        site: Option<(Arc<str>, usize)>,
        key_handle: Option<Arc<str>>,
    ) {
        self.anchors.insert(
            anchor,
            Rc::new(Captured::Scalar {
                key,
                site,
                key_handle,
            }),
        );
    }

    fn alias(&mut self, anchor: usize, span: Span) -> Result<(), DocumentError> {
        // An alias to an unknown or still open node adds nothing (the parser rejects unknown
        // anchors; yaml v3 rejects a node containing an alias to itself).
        let captured = self.anchors.get(&anchor).cloned();
        let role = self.role();
        if let Some(captured) = captured.as_deref() {
            self.check_alias(captured, role)?;
        }
        if self.open_keys > 0
            && matches!(role, Role::Value | Role::MergeSource)
            && captured.as_deref().is_some_and(|captured| {
                matches!(
                    captured,
                    Captured::Scalar {
                        key_handle: Some(_),
                        ..
                    } | Captured::Collection {
                        key_handles: true,
                        ..
                    }
                )
            })
        {
            // Inside a key: a copy of a handle written in a key stays unreplaced, like it.
            self.key_handles += 1;
        }
        match role {
            Role::Root => Err(DocumentError::NotACollection),
            Role::Key => {
                let kind = match captured.as_deref() {
                    Some(Captured::Scalar { key: Some(key), .. }) => {
                        KeyKind::String(self.collector.push_key(KeyText::Shared(Arc::clone(key))))
                    }
                    _ => KeyKind::NonString,
                };
                self.key_done(kind);
                Ok(())
            }
            Role::MergeSource | Role::MergeList => match captured {
                Some(captured)
                    if matches!(*captured, Captured::Collection { is_map: true, .. }) =>
                {
                    self.merge(captured);
                    self.child_done();
                    Ok(())
                }
                _ => Err(self.invalid_merge()),
            },
            Role::Value => {
                let segment = self.segment();
                self.collector.enter(segment);
                match captured.as_deref() {
                    Some(Captured::Scalar {
                        site: Some((handle, splice)),
                        ..
                    }) => self.collector.add_site(Arc::clone(handle), *splice),
                    Some(Captured::Scalar {
                        key_handle: Some(handle),
                        ..
                    }) if self.open_keys == 0 => {
                        let splice = self.locate_alias(handle, span)?;
                        self.collector.add_site(Arc::clone(handle), splice);
                    }
                    Some(Captured::Collection {
                        skipped: false,
                        sites,
                        ..
                    }) => {
                        self.add_copies(sites.iter())?;
                    }
                    _ => {}
                }
                self.collector.leave();
                self.child_done();
                Ok(())
            }
        }
    }

    /// Refuses an alias that would put a secret in a mapping key (an alias inside a key to a
    /// node holding a handle that is replaced: the key would change), and an alias used as a
    /// value that copies a collection holding a handle written inside a key (never replaced).
    fn check_alias(&mut self, captured: &Captured, role: Role) -> Result<(), DocumentError> {
        let (replaced, from_key) = match captured {
            Captured::Scalar { site, .. } => (site.is_some(), false),
            Captured::Collection {
                sites, key_handles, ..
            } => (!sites.is_empty(), *key_handles),
        };
        let in_key = self.open_keys > 0 || role == Role::Key;
        if !(in_key && replaced || !in_key && from_key) {
            return Ok(());
        }
        let segment = match role {
            Role::Value => self.segment(),
            _ => Segment::Hidden,
        };
        self.collector.enter(segment);
        let mut path = self.collector.path();
        self.collector.leave();
        // Inside a complex key: the path of the mapping the key belongs to.
        if let Some(key) = self.frames.iter().find(|frame| frame.role == Role::Key) {
            path.truncate(key.path_len);
        }
        let path = path.join("/");
        Err(if in_key {
            DocumentError::HandleInKey { path }
        } else {
            DocumentError::HandleFromKey { path }
        })
    }

    fn open(&mut self, is_map: bool, anchor: usize) -> Result<(), DocumentError> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(DocumentError::TooDeep {
                format: "YAML",
                limit: MAX_DEPTH,
            });
        }
        let role = match self.role() {
            Role::Root => {
                self.saw_root = true;
                Role::Root
            }
            Role::Key => {
                self.key_done(KeyKind::NonString);
                // The key's content is walked for its anchors only.
                self.collector.enter(Segment::Hidden);
                self.open_keys += 1;
                Role::Key
            }
            Role::Value => {
                let segment = self.segment();
                self.collector.enter(segment);
                Role::Value
            }
            Role::MergeSource | Role::MergeList => {
                let direct = matches!(
                    self.frames.last(),
                    Some(Frame {
                        kind: Kind::Map { .. },
                        ..
                    })
                );
                self.collector.enter(Segment::Hidden);
                match (is_map, direct) {
                    (true, _) => Role::MergeSource,
                    (false, true) => Role::MergeList,
                    (false, false) => return Err(self.invalid_merge()),
                }
            }
        };
        let kind = if is_map {
            Kind::Map {
                key: None,
                keys_start: self.collector.keys_len(),
                skipped: false,
                merges: Vec::new(),
            }
        } else {
            Kind::Seq { index: 0 }
        };
        self.frames.push(Frame {
            kind,
            role,
            anchor,
            sites_start: self.collector.sites_len(),
            path_len: self.collector.path_len(),
            key_handles_start: self.key_handles,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), DocumentError> {
        let Some(mut frame) = self.frames.pop() else {
            return Ok(());
        };
        let map = match &mut frame.kind {
            Kind::Map {
                keys_start,
                skipped,
                merges,
                ..
            } => Some((*keys_start, *skipped, std::mem::take(merges))),
            Kind::Seq { .. } => None,
        };
        let captured = match map {
            Some((keys_start, skipped, merges)) => {
                self.close_map(&frame, keys_start, skipped, merges)?
            }
            None if frame.anchor > 0 => {
                Some(self.capture_collection(&frame, false, false, Vec::new())?)
            }
            None => None,
        };
        if frame.role == Role::MergeSource {
            self.collector.truncate_sites(frame.sites_start);
        }
        if let Some(captured) = captured {
            let captured = Rc::new(captured);
            if frame.anchor > 0 {
                self.anchors.insert(frame.anchor, Rc::clone(&captured));
            }
            if frame.role == Role::MergeSource {
                self.merge(captured);
            }
        }
        if frame.role == Role::Key {
            self.open_keys -= 1;
        }
        if frame.role != Role::Root {
            self.collector.leave();
        }
        if frame.role != Role::Key {
            self.child_done();
        }
        Ok(())
    }

    /// Closes a mapping: duplicate keys, merges, skipping; returns its capture when it has an
    /// anchor or is merged somewhere.
    fn close_map(
        &mut self,
        frame: &Frame,
        keys_start: usize,
        mut skipped: bool,
        merges: Vec<Rc<Captured>>,
    ) -> Result<Option<Captured>, DocumentError> {
        let mut keys = Vec::new();
        let wanted = frame.anchor > 0 || frame.role == Role::MergeSource;
        if !skipped {
            let explicit = self.collector.sorted_keys(keys_start)?;
            let mut merged: HashSet<Arc<str>> = HashSet::new();
            let mut merged_sites = Vec::new();
            for source in &merges {
                let Captured::Collection {
                    skipped: source_skipped,
                    keys: source_keys,
                    sites,
                    ..
                } = &**source
                else {
                    continue;
                };
                if *source_skipped {
                    skipped = true;
                    break;
                }
                for site in sites {
                    let segments = site.path.segments();
                    let Some(PathSegment::Key(first)) = segments.get(site.skip) else {
                        continue;
                    };
                    let overridden = explicit
                        .binary_search_by(|key| key.as_str().cmp(first))
                        .is_ok()
                        || merged.contains(first);
                    if !overridden {
                        merged_sites.push(site);
                    }
                }
                merged.extend(source_keys.iter().cloned());
            }
            if wanted && !skipped {
                keys = explicit.iter().map(|key| Arc::from(key.as_str())).collect();
                self.count_copies(merged.len())?;
                keys.extend(merged);
            }
            if !skipped {
                self.add_copies(merged_sites.into_iter())?;
            }
        }
        self.collector.truncate_keys(keys_start);
        if skipped {
            // yaml v3 decodes such a mapping to an interface-keyed map, which the Agent's walker
            // skips, and refuses at the top level.
            if frame.role == Role::Root {
                return Err(DocumentError::NotACollection);
            }
            self.collector.truncate_sites(frame.sites_start);
            self.key_handles = frame.key_handles_start;
        }
        if !wanted {
            return Ok(None);
        }
        self.capture_collection(frame, true, skipped, keys)
            .map(Some)
    }

    /// What aliases to a closing collection see: the sites recorded inside it, relative to it.
    fn capture_collection(
        &mut self,
        frame: &Frame,
        is_map: bool,
        skipped: bool,
        keys: Vec<Arc<str>>,
    ) -> Result<Captured, DocumentError> {
        let inside = self
            .collector
            .sites()
            .get(frame.sites_start..)
            .unwrap_or_default();
        let count = inside.len();
        let sites = inside
            .iter()
            .map(|site| Relative {
                handle: Arc::clone(&site.handle),
                splice: site.splice,
                path: site.path.clone(),
                skip: frame.path_len,
            })
            .collect();
        self.count_copies(count)?;
        Ok(Captured::Collection {
            is_map,
            skipped,
            key_handles: self.key_handles > frame.key_handles_start,
            keys,
            sites,
        })
    }

    /// Records copies of captured sites at the current path (through an alias or a merge).
    fn add_copies<'c>(
        &mut self,
        sites: impl ExactSizeIterator<Item = &'c Relative>,
    ) -> Result<(), DocumentError> {
        self.count_copies(sites.len())?;
        for site in sites {
            self.collector.add_copy(
                Arc::clone(&site.handle),
                site.splice,
                &site.path,
                site.skip,
            )?;
        }
        Ok(())
    }

    fn count_copies(&mut self, count: usize) -> Result<(), DocumentError> {
        self.copies = self.copies.saturating_add(count);
        if self.copies > COPY_LIMIT {
            return Err(DocumentError::ExcessiveAliasing { limit: COPY_LIMIT });
        }
        Ok(())
    }

    /// Adds a merge source to the mapping whose `<<` is being read (the innermost frame, or the
    /// one below when the innermost is the sequence of sources).
    fn merge(&mut self, source: Rc<Captured>) {
        let list = matches!(self.frames.last(), Some(frame) if frame.role == Role::MergeList);
        let depth = self.frames.len() - usize::from(list);
        if let Some(Frame {
            kind: Kind::Map { merges, .. },
            ..
        }) = depth
            .checked_sub(1)
            .and_then(|index| self.frames.get_mut(index))
        {
            merges.push(source);
        }
    }

    fn invalid_merge(&mut self) -> DocumentError {
        let path_len = self
            .frames
            .iter()
            .rev()
            .find(|frame| matches!(frame.kind, Kind::Map { .. }))
            .map_or(0, |frame| frame.path_len);
        let mut path = self.collector.path();
        path.truncate(path_len);
        DocumentError::InvalidMerge {
            path: path.join("/"),
        }
    }

    /// Records a splice at an alias (`*name`) to a handle whose own text is not replaced (one
    /// written inside a mapping key): the alias itself is replaced by the value.
    fn locate_alias(&mut self, handle: &Arc<str>, span: Span) -> Result<usize, DocumentError> {
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
        Ok(self.collector.add_splice(Splice {
            span: start..end,
            lead: start..start,
            keep: start..start,
            handle: Arc::clone(handle),
        }))
    }

    /// Finds the source text of a handle scalar and records its splice. A lone `!` tag is
    /// dropped with the value's text (anything else written before the scalar stays).
    fn locate(
        &mut self,
        handle: &Arc<str>,
        style: ScalarStyle,
        properties: Properties,
        span: Span,
    ) -> Result<usize, DocumentError> {
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
            skip_to_content(bytes, self.chars.byte(self.previous_end))
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
        Ok(self.collector.add_splice(Splice {
            span: span_start..end,
            lead,
            keep,
            handle: Arc::clone(handle),
        }))
    }
}

/// How a scalar key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    String,
    Merge,
    NonString,
}

/// How yaml v3 sees a scalar key.
fn classify_key(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> KeyClass {
    match tag {
        Some(tag) if tag_is(tag, "tag:yaml.org,2002:str") => KeyClass::String,
        Some(tag) if tag_is(tag, "tag:yaml.org,2002:merge") => KeyClass::Merge,
        // yaml v3 resolves a plain scalar tagged `!` like an untagged one.
        Some(tag) if !tag_is(tag, "!") => KeyClass::NonString,
        _ if style != ScalarStyle::Plain => KeyClass::String,
        _ if value == "<<" => KeyClass::Merge,
        _ if plain_is_non_string(value) => KeyClass::NonString,
        _ => KeyClass::String,
    }
}

/// Whether yaml v3 decodes a scalar with this tag to a string (given it looks like a handle).
fn value_is_string(tag: Option<&Tag>) -> bool {
    match tag {
        None => true,
        Some(tag) => {
            tag_is(tag, "!")
                || tag_is(tag, "tag:yaml.org,2002:str")
                || !(tag.handle.starts_with(CORE_TAG_PREFIX)
                    || (tag.handle.is_empty() && tag.suffix.starts_with(CORE_TAG_PREFIX)))
        }
    }
}

/// Whether `tag` (as saphyr splits it into handle and suffix) is `name`.
fn tag_is(tag: &Tag, name: &str) -> bool {
    name.len() == tag.handle.len() + tag.suffix.len()
        && name.starts_with(tag.handle.as_str())
        && name.ends_with(tag.suffix.as_str())
}

/// Whether yaml v3 resolves this plain scalar to null, bool, float, int or timestamp.
fn plain_is_non_string(value: &str) -> bool {
    match value {
        "" | "~" | "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False"
        | "FALSE" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" | ".nan" | ".NaN" | ".NAN" => return true,
        _ => {}
    }
    let starts_numeric = value
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.'));
    if !starts_numeric {
        return false;
    }
    looks_like_timestamp(value) || looks_like_number(&value.replace('_', ""))
}

/// `[-+]?` then an integer in Go's base-0 syntax (`0x`, `0o`, `0b`, leading-zero octal,
/// decimal) or a float matching yaml v3's `yamlStyleFloat`.
fn looks_like_number(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let radix_digits = |prefixes: [&str; 2], is_digit: fn(&u8) -> bool| {
        prefixes.iter().any(|prefix| {
            unsigned
                .strip_prefix(prefix)
                .is_some_and(|digits| !digits.is_empty() && digits.as_bytes().iter().all(is_digit))
        })
    };
    if radix_digits(["0x", "0X"], u8::is_ascii_hexdigit)
        || radix_digits(["0o", "0O"], |byte| matches!(byte, b'0'..=b'7'))
        || radix_digits(["0b", "0B"], |byte| matches!(byte, b'0' | b'1'))
    {
        return true;
    }
    // yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ (decimal and
    // leading-zero integers match it too).
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent
        .is_none_or(|exponent| digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)));
    mantissa_ok && exponent_ok
}

/// Approximately yaml v3's timestamp formats: `YYYY-M-D`, optionally followed by `T`, `t` or a
/// space and a time.
fn looks_like_timestamp(value: &str) -> bool {
    let mut parts = value.splitn(3, '-');
    let (Some(year), Some(month), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = |text: &str, max_len: usize| {
        !text.is_empty() && text.len() <= max_len && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    if year.len() != 4 || !number(year, 4) || !number(month, 2) || !(1..=2).contains(&day_len) {
        return false;
    }
    let time = &rest[day_len..];
    time.is_empty()
        || (time.starts_with(['T', 't', ' '])
            && time[1..]
                .bytes()
                .next()
                .is_some_and(|byte| byte.is_ascii_digit())
            && time.contains(':'))
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
enum Properties {
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

#[cfg(test)]
mod tests {
    use super::{looks_like_timestamp, plain_is_non_string};

    #[test]
    fn plain_key_resolution_follows_yaml_v3() {
        for non_string in [
            "",
            "~",
            "null",
            "NULL",
            "true",
            "False",
            "123",
            "-1",
            "+1",
            "0755",
            "08",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "1.5",
            ".5",
            "1e3",
            "1.e3",
            "-.inf",
            ".NaN",
            "2001-12-14",
            "2001-12-14T21:59:43.10-05:00",
            "2001-12-14 21:59:43.10",
        ] {
            assert!(
                plain_is_non_string(non_string),
                "{non_string:?} is not a string"
            );
        }
        for string in [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "a",
            "1a",
            "1.2.3",
            "0x",
            "0xG",
            "-",
            ".",
            "1e",
            "+",
            "<<",
            "e3",
            "2001-12",
            "v1.0",
            "12:30",
            "2001-12-14x",
        ] {
            assert!(!plain_is_non_string(string), "{string:?} is a string");
        }
        assert!(!looks_like_timestamp("201-12-14"));
    }
}
