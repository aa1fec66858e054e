//! Key paths, handle sites and splices, shared by the YAML and JSON walkers.
//!
//! A walker enters a [`Segment`] for every value it descends into and leaves it afterwards; the
//! [`Collector`] turns the current segments into a path of its [`PathTable`] only when a handle
//! is found, so the cost of a path is paid per handle, not per value, and the nodes it builds
//! are shared by every later site below the same values (see `path.rs`). Keys of the open
//! mappings live in one vector (each mapping owns the tail it pushed), which also serves the
//! duplicate-key check. Sites, splices, the name buffer and the path table are what the
//! document keeps, packed (see `mod.rs`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::path::{Name, PathId, PathTable};
use super::{Cut, DocumentError, MAX_DEPTH, Margins, Site, Splice, Walk};

/// A mapping key: borrowed from the text (or decoded), or shared with an anchor (a YAML alias
/// used as a key), so that an alias never copies its anchor's text.
#[derive(Debug, Clone)]
pub(super) enum KeyText<'t> {
    Text(Cow<'t, str>),
    Shared(Arc<str>),
}

impl KeyText<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            KeyText::Text(text) => text,
            KeyText::Shared(text) => text,
        }
    }
}

impl PartialEq for KeyText<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for KeyText<'_> {}

impl PartialOrd for KeyText<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyText<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// One step of a key path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Segment {
    /// A mapping key: index into the collector's keys.
    Key(usize),
    /// A sequence index.
    Index(usize),
    /// A step that adds nothing to the path (a YAML merge key, or a value under a non-string
    /// key, whose sites are dropped anyway).
    Hidden,
}

/// Sites and splices found so far, and the path to the value being walked.
#[derive(Debug)]
pub(super) struct Collector<'t> {
    sites: Vec<Site>,
    splices: Vec<Cut>,
    margins: Margins,
    path: Vec<Segment>,
    /// `built[i]` is the key path of `path[..=i]`, for the prefix built so far.
    built: Vec<PathId>,
    keys: Vec<KeyText<'t>>,
    /// Handles and the keys of paths, each written once.
    names: String,
    paths: PathTable,
    /// The name of each key shared with an anchor, by the address of its text (the `Arc` is
    /// held, so the address is not reused): an anchor used as a key in many places is copied
    /// into `names` once, not once per place.
    shared: HashMap<usize, (Arc<str>, Name)>,
    format: &'static str,
}

impl<'t> Collector<'t> {
    /// An empty collector; `format` names the syntax in errors (`YAML`, `JSON`).
    pub(super) fn new(format: &'static str) -> Collector<'t> {
        Collector {
            sites: Vec::new(),
            splices: Vec::new(),
            margins: Vec::new(),
            path: Vec::new(),
            built: Vec::new(),
            keys: Vec::new(),
            names: String::new(),
            paths: PathTable::default(),
            shared: HashMap::new(),
            format,
        }
    }

    /// Records a key of the innermost open mapping; returns its index for [`Segment::Key`].
    pub(super) fn push_key(&mut self, key: KeyText<'t>) -> usize {
        self.keys.push(key);
        self.keys.len() - 1
    }

    /// How many keys are recorded: a mapping remembers this when it opens.
    pub(super) fn keys_len(&self) -> usize {
        self.keys.len()
    }

    /// Sorts the keys a mapping pushed since `start` and fails if one appears twice; read them
    /// with [`Collector::keys_from`].
    pub(super) fn sort_keys(&mut self, start: usize) -> Result<(), DocumentError> {
        let keys = self.keys.get_mut(start..).unwrap_or_default();
        keys.sort_unstable();
        if let Some(duplicate) = keys.windows(2).find_map(|pair| match pair {
            [first, second] if first == second => Some(first.as_str().to_owned()),
            _ => None,
        }) {
            let mut path = self.path();
            path.push(duplicate);
            return Err(DocumentError::DuplicateKey {
                format: self.format,
                path: path.join("/"),
            });
        }
        Ok(())
    }

    /// The keys recorded since `start` (sorted, after [`Collector::sort_keys`]).
    pub(super) fn keys_from(&self, start: usize) -> &[KeyText<'t>] {
        self.keys.get(start..).unwrap_or_default()
    }

    /// Forgets the keys a closing mapping pushed since `start`.
    pub(super) fn truncate_keys(&mut self, start: usize) {
        self.keys.truncate(start);
    }

    /// Descends into a value.
    pub(super) fn enter(&mut self, segment: Segment) {
        self.path.push(segment);
    }

    /// Comes back from a value.
    pub(super) fn leave(&mut self) {
        self.path.pop();
        self.built.truncate(self.path.len());
    }

    /// The path to the current value, as strings (for errors).
    pub(super) fn path(&mut self) -> Vec<String> {
        match self.key_path() {
            Ok(path) => self.paths.strings(path, &self.names),
            Err(_) => Vec::new(),
        }
    }

    /// The first step of `path` after `skip` steps, when it is a key.
    pub(super) fn key_after(&self, path: PathId, skip: usize) -> Option<&str> {
        match self.paths.steps(path, skip, &self.names).first() {
            Some(super::path::Step::Key(key)) => Some(key),
            _ => None,
        }
    }

    /// The path to the current value, building the nodes not built yet.
    #[expect(
        clippy::indexing_slicing,
        reason = "`built` is shorter than `path` inside the loop, and a `Segment::Key` on the \
                  path indexes a key of a mapping still open: keys are only truncated when \
                  their mapping closes, after its segments have left the path"
    )]
    pub(super) fn key_path(&mut self) -> Result<PathId, DocumentError> {
        while self.built.len() < self.path.len() {
            let parent = self.built.last().copied().unwrap_or(PathId::ROOT);
            let node = match self.path[self.built.len()] {
                Segment::Key(index) => {
                    let key = match &self.keys[index] {
                        KeyText::Text(text) => Name::push(&mut self.names, text),
                        KeyText::Shared(text) => {
                            let at = Arc::as_ptr(text).cast::<u8>().addr();
                            match self.shared.get(&at) {
                                Some((_, name)) => Some(*name),
                                None => {
                                    let name = Name::push(&mut self.names, text);
                                    if let Some(name) = name {
                                        self.shared.insert(at, (Arc::clone(text), name));
                                    }
                                    name
                                }
                            }
                        }
                    };
                    key.and_then(|key| self.paths.key(parent, key))
                }
                Segment::Index(index) => self.paths.index(parent, index),
                Segment::Hidden => Some(parent),
            };
            self.built.push(node.ok_or(DocumentError::TooLarge {
                limit: super::MAX_TEXT,
            })?);
        }
        Ok(self.built.last().copied().unwrap_or(PathId::ROOT))
    }

    /// The length of [`Collector::path`], without building it.
    pub(super) fn path_len(&self) -> usize {
        self.path
            .iter()
            .filter(|segment| !matches!(segment, Segment::Hidden))
            .count()
    }

    /// Writes a handle to the name buffer, once per handle written in the text (copies of its
    /// site share it).
    pub(super) fn name(&mut self, handle: &str) -> Result<Name, DocumentError> {
        Name::push(&mut self.names, handle).ok_or(too_large())
    }

    /// Records the source text of a handle; returns its index for [`Collector::add_site`].
    pub(super) fn add_splice(&mut self, splice: Splice) -> Result<usize, DocumentError> {
        let cut = Cut::new(&splice, &mut self.margins).ok_or(too_large())?;
        self.splices.push(cut);
        Ok(self.splices.len() - 1)
    }

    /// Records a site at the current path.
    pub(super) fn add_site(&mut self, handle: Name, splice: usize) -> Result<(), DocumentError> {
        let path = self.key_path()?;
        self.push_site(handle, path, splice)
    }

    fn push_site(
        &mut self,
        handle: Name,
        path: PathId,
        splice: usize,
    ) -> Result<(), DocumentError> {
        let splice = u32::try_from(splice).map_err(|_| too_large())?;
        self.sites.push(Site {
            handle,
            path,
            splice,
        });
        Ok(())
    }

    /// Records a copy of a site (through an alias or merge): at the current path, followed by
    /// `inner`'s segments after its first `skip`. Fails when the path would nest deeper than
    /// [`MAX_DEPTH`] levels.
    pub(super) fn add_copy(
        &mut self,
        handle: Name,
        splice: usize,
        inner: PathId,
        skip: usize,
    ) -> Result<(), DocumentError> {
        let outer = self.key_path()?;
        if self.paths.len(outer) + self.paths.len(inner).saturating_sub(skip) > MAX_DEPTH {
            return Err(DocumentError::TooDeep {
                format: self.format,
                limit: MAX_DEPTH,
            });
        }
        let path = self.paths.graft(outer, inner, skip).ok_or(too_large())?;
        self.push_site(handle, path, splice)
    }

    /// The sites recorded so far.
    pub(super) fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// How many sites are recorded: a value remembers this when it opens.
    pub(super) fn sites_len(&self) -> usize {
        self.sites.len()
    }

    /// Drops the sites recorded since `start` (a skipped mapping, a merged mapping).
    pub(super) fn truncate_sites(&mut self, start: usize) {
        self.sites.truncate(start);
    }

    /// The sites and the splices they use, in text order; a splice no site uses is dropped.
    /// Checks what render relies on: splices in order, apart, on `char` boundaries of `text`.
    /// Works in place: the lists are trimmed to their final size, not copied.
    pub(super) fn finish(self, text: &str) -> Result<Walk, DocumentError> {
        let mut used = vec![false; self.splices.len()];
        for site in &self.sites {
            match used.get_mut(site.splice as usize) {
                Some(used) => *used = true,
                None => return Err(DocumentError::Layout { line: 1, column: 1 }),
            }
        }
        // Each splice's index once the unused ones are gone.
        let mut next = 0u32;
        let renumbered: Vec<u32> = used
            .iter()
            .map(|&used| {
                let at = next;
                next += u32::from(used);
                at
            })
            .collect();
        let mut splices = self.splices;
        let mut keep = used.into_iter();
        splices.retain(|_| keep.next().unwrap_or(false));
        splices.shrink_to_fit();
        let mut previous_end = 0;
        for splice in &splices {
            let span = splice.span();
            let (lead, keep) = splice.margins(&self.margins);
            let in_order = previous_end <= span.start;
            let inside = span.start < span.end
                && lead.start >= span.start
                && lead.start <= lead.end
                && lead.end <= keep.start
                && keep.start <= keep.end
                && keep.end <= span.end
                && [
                    span.start, span.end, lead.start, lead.end, keep.start, keep.end,
                ]
                .into_iter()
                .all(|at| text.is_char_boundary(at));
            if !in_order || !inside {
                let (line, column) = line_column(text, span.start);
                return Err(DocumentError::Layout { line, column });
            }
            previous_end = span.end;
        }
        let mut sites = self.sites;
        sites.shrink_to_fit();
        for site in &mut sites {
            // Every site's splice was found in `used` above.
            site.splice = renumbered
                .get(site.splice as usize)
                .copied()
                .unwrap_or_default();
        }
        let mut names = self.names;
        names.shrink_to_fit();
        let mut paths = self.paths;
        paths.shrink_to_fit();
        let mut margins = self.margins;
        margins.shrink_to_fit();
        Ok(Walk {
            sites,
            splices,
            margins,
            names,
            paths,
        })
    }
}

/// The error of a document whose sites do not fit the `u32` offsets of its buffers (not
/// reached below [`super::MAX_TEXT`] bytes of text, which `Document::parse` checks first).
fn too_large() -> DocumentError {
    DocumentError::TooLarge {
        limit: super::MAX_TEXT,
    }
}

/// A byte range in `u32`s.
pub(super) fn narrow(range: &Range<usize>) -> Option<[u32; 2]> {
    Some([
        u32::try_from(range.start).ok()?,
        u32::try_from(range.end).ok()?,
    ])
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
pub(super) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.bytes().filter(|&byte| byte == b'\n').count() + 1;
    let last_line = before.rsplit_once('\n').map_or(before, |(_, last)| last);
    (line, last_line.chars().count() + 1)
}
