//! The event walker: follows saphyr-parser's events through mappings, sequences, anchors, aliases
//! and merge keys, and records each handle value's site (its key path) with the shared
//! collector. Which scalars count as strings is asked of `scalar.rs`; where a handle's text lies
//! is asked of `locate.rs`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use saphyr_parser::{Event, ScalarStyle, Span, Tag};

use super::locate::{Locator, Properties};
use super::scalar::{KeyClass, classify_key, tag_is, value_is_string};
use crate::document::path::{Name, PathId};
use crate::document::sites::{Collector, KeyText, Segment};
use crate::document::{DocumentError, MAX_DEPTH, Walk};
use crate::handle::parse_handle;

/// Site copies (alias expansions and anchored collections' captures) allowed per document.
const COPY_LIMIT: usize = 250_000;

/// What is remembered of an anchored node, for its aliases (and of an inline merged mapping).
#[derive(Debug)]
enum Captured {
    Scalar {
        /// The value, when it counts as a string key.
        key: Option<Arc<str>>,
        /// The handle and its splice, when the value is a handle.
        site: Option<(Name, usize)>,
        /// The handle, when the value is a handle written inside a mapping key. Its text is
        /// never replaced (a key cannot hold a secret); an alias to it used as a value is
        /// replaced at the alias instead.
        key_handle: Option<Name>,
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
    handle: Name,
    splice: usize,
    path: PathId,
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

pub(super) struct Walker<'t> {
    text: &'t str,
    locator: Locator<'t>,
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
    pub(super) fn new(text: &'t str) -> Walker<'t> {
        Walker {
            text,
            locator: Locator::new(text),
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

    pub(super) fn finish(self) -> Result<Walk, DocumentError> {
        if !self.saw_root {
            return Err(DocumentError::NotACollection);
        }
        self.collector.finish(self.text)
    }

    pub(super) fn event(&mut self, event: Event<'t>, span: Span) -> Result<(), DocumentError> {
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
                    let key_handle =
                        match value_is_string(tag).then(|| parse_handle(&value)).flatten() {
                            Some(handle) => Some(self.collector.name(handle)?),
                            None => None,
                        };
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
                    key_handle = Some(self.collector.name(handle)?);
                } else if let Some(handle) = handle {
                    let handle = self.collector.name(handle)?;
                    let properties = match tag {
                        Some(tag) if tag_is(tag, "!") => Properties::NonSpecificTag,
                        Some(_) => Properties::Some,
                        None if anchor > 0 => Properties::Some,
                        None => Properties::None,
                    };
                    let splice =
                        self.locator
                            .scalar(handle, style, properties, span, self.previous_end)?;
                    let splice = self.collector.add_splice(splice)?;
                    let segment = self.segment();
                    self.collector.enter(segment);
                    let added = self.collector.add_site(handle, splice);
                    self.collector.leave();
                    added?;
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
        site: Option<(Name, usize)>,
        key_handle: Option<Name>,
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
                let added = match captured.as_deref() {
                    Some(Captured::Scalar {
                        site: Some((handle, splice)),
                        ..
                    }) => self.collector.add_site(*handle, *splice),
                    Some(Captured::Scalar {
                        key_handle: Some(handle),
                        ..
                    }) if self.open_keys == 0 => {
                        let splice = self.locator.alias(*handle, span)?;
                        let splice = self.collector.add_splice(splice)?;
                        self.collector.add_site(*handle, splice)
                    }
                    Some(Captured::Collection {
                        skipped: false,
                        sites,
                        ..
                    }) => self.add_copies(sites.iter()),
                    _ => Ok(()),
                };
                self.collector.leave();
                added?;
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
            self.collector.sort_keys(keys_start)?;
            let explicit = self.collector.keys_from(keys_start);
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
                    let Some(first) = self.collector.key_after(site.path, site.skip) else {
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
                handle: site.handle,
                splice: site.splice as usize,
                path: site.path,
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
            self.collector
                .add_copy(site.handle, site.splice, site.path, site.skip)?;
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
}
