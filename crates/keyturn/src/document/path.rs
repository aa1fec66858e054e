//! Key paths that share their memory.
//!
//! A [`KeyPath`] is a persistent list: a path is its parent plus one segment, so the sites below
//! one mapping share that mapping's path, and key text is stored once however many paths pass
//! through the key. A site copied through a YAML alias or merge is a *graft*: the alias' path,
//! then the site's path inside the anchor with the anchor's own prefix skipped. A copy therefore
//! costs one small node whatever the length of its keys, which keeps the memory of a document's
//! sites (and of the resolver's record of where each handle is used) proportional to the input.
//!
//! A document keeps its paths in a [`PathTable`] (the same shape, nodes in one list, keys in
//! the document's name buffer) and builds [`KeyPath`]s from it when they are asked for.
//!
//! Paths are at most [`super::MAX_DEPTH`] segments long (the walkers refuse longer ones, aliases
//! included), so materialising one is cheap and never recursion-deep.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One step of a key path: a mapping key as written, or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Segment {
    /// A mapping key.
    Key(Arc<str>),
    /// A sequence index.
    Index(usize),
}

impl Segment {
    /// Whether the segment reads as `text` (an index in decimal).
    pub fn is(&self, text: &str) -> bool {
        match self {
            Segment::Key(key) => **key == *text,
            Segment::Index(index) => index.to_string() == text,
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Key(key) => f.write_str(key),
            Segment::Index(index) => write!(f, "{index}"),
        }
    }
}

/// A key path from the root of a document: map keys as written, sequence indexes in decimal.
/// Cloning shares it. Compares, hashes and serializes as its list of segments.
#[derive(Clone, Default)]
pub struct KeyPath(Option<Arc<Node>>);

struct Node {
    len: usize,
    link: Link,
}

enum Link {
    /// The parent's segments, then one more.
    Child { parent: KeyPath, segment: Segment },
    /// `outer`'s segments, then `inner`'s after its first `skip`.
    Graft {
        outer: KeyPath,
        inner: KeyPath,
        skip: usize,
    },
}

impl KeyPath {
    /// The empty path (the root).
    pub const fn root() -> KeyPath {
        KeyPath(None)
    }

    /// How many segments the path has.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |node| node.len)
    }

    /// Whether this is the root.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// This path plus `segment`.
    pub fn child(&self, segment: Segment) -> KeyPath {
        KeyPath(Some(Arc::new(Node {
            len: self.len() + 1,
            link: Link::Child {
                parent: self.clone(),
                segment,
            },
        })))
    }

    /// This path followed by `inner`'s segments after its first `skip` (a site below an anchor,
    /// seen through an alias). Costs one node.
    pub fn graft(&self, inner: &KeyPath, skip: usize) -> KeyPath {
        let extra = inner.len().saturating_sub(skip);
        if extra == 0 {
            return self.clone();
        }
        if self.is_empty() && skip == 0 {
            return inner.clone();
        }
        KeyPath(Some(Arc::new(Node {
            len: self.len() + extra,
            link: Link::Graft {
                outer: self.clone(),
                inner: inner.clone(),
                skip,
            },
        })))
    }

    /// The segments, from the root.
    pub fn segments(&self) -> Vec<&Segment> {
        let mut out = Vec::with_capacity(self.len());
        self.push_segments(0, &mut out);
        out
    }

    /// Appends the segments after the first `skip` to `out`. Recursion only through grafts,
    /// each of which adds at least one segment, so at most `len` levels deep.
    fn push_segments<'a>(&'a self, skip: usize, out: &mut Vec<&'a Segment>) {
        // Walk up the chain of children to the first graft (or the root).
        let mut tail = Vec::new();
        let mut at = self;
        let mut remaining = self.len();
        while let Some(node) = &at.0 {
            if remaining <= skip {
                break;
            }
            match &node.link {
                Link::Child { parent, segment } => {
                    tail.push(segment);
                    remaining -= 1;
                    at = parent;
                }
                Link::Graft {
                    outer,
                    inner,
                    skip: inner_skip,
                } => {
                    // `outer`, then `inner` after `inner_skip`; this path's `skip` first
                    // consumes `outer`'s segments.
                    let outer_len = outer.len();
                    if skip < outer_len {
                        outer.push_segments(skip, out);
                        inner.push_segments(*inner_skip, out);
                    } else {
                        inner.push_segments(inner_skip + (skip - outer_len), out);
                    }
                    break;
                }
            }
        }
        out.extend(tail.into_iter().rev());
    }

    /// The segments as strings, from the root.
    pub fn to_strings(&self) -> Vec<String> {
        self.segments()
            .into_iter()
            .map(|segment| segment.to_string())
            .collect()
    }

    /// The segments joined with `separator`.
    pub fn join(&self, separator: &str) -> String {
        let mut out = String::new();
        for (index, segment) in self.segments().into_iter().enumerate() {
            if index > 0 {
                out.push_str(separator);
            }
            match segment {
                Segment::Key(key) => out.push_str(key),
                Segment::Index(index) => out.push_str(&index.to_string()),
            }
        }
        out
    }

    /// The last segment.
    pub fn last(&self) -> Option<&Segment> {
        self.segments().pop()
    }
}

impl PartialEq for KeyPath {
    fn eq(&self, other: &KeyPath) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.len() == other.len() && self.segments() == other.segments(),
        }
    }
}

impl Eq for KeyPath {}

impl Hash for KeyPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.segments().hash(state);
    }
}

impl fmt::Debug for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.segments().into_iter().map(|s| s.to_string()))
            .finish()
    }
}

impl serde::Serialize for KeyPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.segments().into_iter().map(|s| s.to_string()))
    }
}

impl<S: AsRef<str>> FromIterator<S> for KeyPath {
    /// A path of keys (every segment a key, even one that looks like a number).
    fn from_iter<I: IntoIterator<Item = S>>(segments: I) -> KeyPath {
        segments.into_iter().fold(KeyPath::root(), |path, segment| {
            path.child(Segment::Key(Arc::from(segment.as_ref())))
        })
    }
}

/// A string of a document's name buffer (handles and keys, one buffer per document): a byte
/// range, in `u32`s (a document's buffers are at most [`super::MAX_TEXT`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Name {
    start: u32,
    len: u32,
}

impl Name {
    /// Appends `text` to `names` and names it; `None` when the buffer would pass `u32` offsets.
    pub(super) fn push(names: &mut String, text: &str) -> Option<Name> {
        let start = u32::try_from(names.len()).ok()?;
        let len = u32::try_from(text.len()).ok()?;
        start.checked_add(len)?;
        names.push_str(text);
        Some(Name { start, len })
    }

    /// The text in `names`, the buffer it was pushed to (empty if it is not there: not reached).
    pub(super) fn get(self, names: &str) -> &str {
        let start = self.start as usize;
        names
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

/// A key path in a document's [`PathTable`]: the index of its last node (the root has none:
/// `u32::MAX`, which no node gets). Four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PathId(u32);

impl PathId {
    /// The empty path.
    pub(super) const ROOT: PathId = PathId(u32::MAX);

    /// Its index in the table's list of nodes; `None` for the root.
    pub(super) fn index(self) -> Option<usize> {
        (self != PathId::ROOT).then_some(self.0 as usize)
    }
}

/// A step of a path in a [`PathTable`], borrowed from its name buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The key paths of one document, without an allocation per path: nodes in one list, keys as
/// [`Name`]s of the document's name buffer. The same persistent shape as [`KeyPath`] (a child
/// is its parent plus one step; a graft is a path followed by another's tail), so a copy through
/// an alias costs one node. Nodes only refer to earlier ones, which lets
/// [`PathTable::key_paths`] build every [`KeyPath`] in one pass, sharing as the table does.
#[derive(Debug, Default)]
pub(super) struct PathTable {
    nodes: Vec<PathNode>,
}

#[derive(Debug, Clone, Copy)]
struct PathNode {
    /// How many steps the path has.
    len: u32,
    link: PathLink,
}

#[derive(Debug, Clone, Copy)]
enum PathLink {
    Key {
        parent: PathId,
        key: Name,
    },
    Index {
        parent: PathId,
        index: u32,
    },
    /// `outer`'s steps, then `inner`'s after its first `skip`.
    Graft {
        outer: PathId,
        inner: PathId,
        skip: u32,
    },
}

impl PathTable {
    /// How many steps `path` has.
    pub(super) fn len(&self, path: PathId) -> usize {
        self.node(path).map_or(0, |node| node.len as usize)
    }

    fn node(&self, path: PathId) -> Option<&PathNode> {
        self.nodes.get(path.index()?)
    }

    /// `parent` plus a key; `None` when the table is full (more than `u32` nodes).
    pub(super) fn key(&mut self, parent: PathId, key: Name) -> Option<PathId> {
        self.push(parent, PathLink::Key { parent, key })
    }

    /// `parent` plus a sequence index.
    pub(super) fn index(&mut self, parent: PathId, index: usize) -> Option<PathId> {
        let index = u32::try_from(index).ok()?;
        self.push(parent, PathLink::Index { parent, index })
    }

    fn push(&mut self, parent: PathId, link: PathLink) -> Option<PathId> {
        let len = u32::try_from(self.len(parent) + 1).ok()?;
        self.push_node(PathNode { len, link })
    }

    fn push_node(&mut self, node: PathNode) -> Option<PathId> {
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&id| id != PathId::ROOT.0)?;
        self.nodes.push(node);
        Some(PathId(id))
    }

    /// `outer` followed by `inner`'s steps after its first `skip` (a site below an anchor, seen
    /// through an alias). Costs at most one node.
    pub(super) fn graft(&mut self, outer: PathId, inner: PathId, skip: usize) -> Option<PathId> {
        let extra = self.len(inner).saturating_sub(skip);
        if extra == 0 {
            return Some(outer);
        }
        if outer == PathId::ROOT && skip == 0 {
            return Some(inner);
        }
        let len = u32::try_from(self.len(outer) + extra).ok()?;
        let skip = u32::try_from(skip).ok()?;
        self.push_node(PathNode {
            len,
            link: PathLink::Graft { outer, inner, skip },
        })
    }

    /// The steps of `path` after its first `skip`, from the root; keys read from `names`.
    pub(super) fn steps<'a>(&self, path: PathId, skip: usize, names: &'a str) -> Vec<Step<'a>> {
        let mut out = Vec::with_capacity(self.len(path).saturating_sub(skip));
        self.push_steps(path, skip, names, &mut out);
        out
    }

    /// Appends the steps of `path` after its first `skip` to `out`. Recursion only through
    /// grafts, each of which adds at least one step, so at most `len` levels deep.
    fn push_steps<'a>(&self, path: PathId, skip: usize, names: &'a str, out: &mut Vec<Step<'a>>) {
        let start = out.len();
        let mut at = path;
        let mut remaining = self.len(path);
        while let Some(node) = self.node(at) {
            if remaining <= skip {
                break;
            }
            match node.link {
                PathLink::Key { parent, key } => {
                    out.push(Step::Key(key.get(names)));
                    remaining -= 1;
                    at = parent;
                }
                PathLink::Index { parent, index } => {
                    out.push(Step::Index(index as usize));
                    remaining -= 1;
                    at = parent;
                }
                PathLink::Graft {
                    outer,
                    inner,
                    skip: inner_skip,
                } => {
                    // The steps so far were pushed last-first; the graft's go before them.
                    let tail: Vec<Step<'a>> = out.drain(start..).collect();
                    let outer_len = self.len(outer);
                    let inner_skip = inner_skip as usize;
                    if skip < outer_len {
                        self.push_steps(outer, skip, names, out);
                        self.push_steps(inner, inner_skip, names, out);
                    } else {
                        self.push_steps(inner, inner_skip + (skip - outer_len), names, out);
                    }
                    out.extend(tail.into_iter().rev());
                    return;
                }
            }
        }
        out.get_mut(start..).unwrap_or_default().reverse();
    }

    /// The steps of `path` as strings (for errors).
    pub(super) fn strings(&self, path: PathId, names: &str) -> Vec<String> {
        self.steps(path, 0, names)
            .into_iter()
            .map(|step| match step {
                Step::Key(key) => key.to_owned(),
                Step::Index(index) => index.to_string(),
            })
            .collect()
    }

    /// Every node as a [`KeyPath`], in order: `key_paths[i]` is node `i`'s path. Built in one
    /// pass (a node only refers to earlier ones), each key copied once, prefixes shared.
    pub(super) fn key_paths(&self, names: &str) -> Vec<KeyPath> {
        let mut built: Vec<KeyPath> = Vec::with_capacity(self.nodes.len());
        let get = |built: &[KeyPath], id: PathId| -> KeyPath {
            id.index()
                .and_then(|index| built.get(index))
                .cloned()
                .unwrap_or_default()
        };
        for node in &self.nodes {
            let path = match node.link {
                PathLink::Key { parent, key } => {
                    get(&built, parent).child(Segment::Key(Arc::from(key.get(names))))
                }
                PathLink::Index { parent, index } => {
                    get(&built, parent).child(Segment::Index(index as usize))
                }
                PathLink::Graft { outer, inner, skip } => {
                    get(&built, outer).graft(&get(&built, inner), skip as usize)
                }
            };
            built.push(path);
        }
        built
    }

    /// Drops spare capacity.
    pub(super) fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Segment {
        Segment::Key(Arc::from(text))
    }

    #[test]
    fn grafts_read_as_the_joined_segments() {
        let anchor = KeyPath::root().child(key("base"));
        let inside = anchor.child(key("db")).child(Segment::Index(2));
        let alias = KeyPath::root().child(key("list")).child(Segment::Index(0));
        let copy = alias.graft(&inside, 1);
        assert_eq!(copy.join("/"), "list/0/db/2");
        assert_eq!(copy.len(), 4);
        // A copy of a copy: skips reach through both grafts.
        let again = KeyPath::root().child(key("x")).graft(&copy, 2);
        assert_eq!(again.join("/"), "x/db/2");
        let deeper = again.child(key("y"));
        assert_eq!(deeper.join("/"), "x/db/2/y");
        assert_eq!(KeyPath::root().graft(&deeper, 2).join("/"), "2/y");
        assert_eq!(KeyPath::root().graft(&deeper, 3).join("/"), "y");
        assert_eq!(alias.graft(&inside, 3), alias);
        assert_ne!(
            copy,
            ["list", "0", "db", "2"].iter().collect::<KeyPath>(),
            "keys and indexes with the same text differ"
        );
        assert!(Segment::Index(10).is("10") && !Segment::Index(10).is("010"));
    }

    #[test]
    fn a_table_reads_like_the_key_paths_it_builds() {
        let mut names = String::new();
        let mut table = PathTable::default();
        let mut name = |text: &str| Name::push(&mut names, text).unwrap();
        let (base, db, list, x, y) = (name("base"), name("db"), name("list"), name("x"), name("y"));
        // The same shapes as `grafts_read_as_the_joined_segments`.
        let anchor = table.key(PathId::ROOT, base).unwrap();
        let inside = table.key(anchor, db).unwrap();
        let inside = table.index(inside, 2).unwrap();
        let alias = table.key(PathId::ROOT, list).unwrap();
        let alias = table.index(alias, 0).unwrap();
        let copy = table.graft(alias, inside, 1).unwrap();
        let outer = table.key(PathId::ROOT, x).unwrap();
        let again = table.graft(outer, copy, 2).unwrap();
        let deeper = table.key(again, y).unwrap();
        let from_root = table.graft(PathId::ROOT, deeper, 2).unwrap();
        assert_eq!(
            table.graft(alias, inside, 3),
            Some(alias),
            "nothing left to graft"
        );
        let built = table.key_paths(&names);
        let read = |id: PathId| built[id.index().unwrap()].join("/");
        for (id, expected) in [
            (copy, "list/0/db/2"),
            (again, "x/db/2"),
            (deeper, "x/db/2/y"),
            (from_root, "2/y"),
        ] {
            assert_eq!(read(id), expected);
            assert_eq!(table.strings(id, &names).join("/"), expected);
            assert_eq!(table.len(id), expected.split('/').count());
        }
        assert_eq!(table.steps(deeper, 3, &names), [Step::Key("y")]);
        assert_eq!(
            table.steps(copy, 2, &names),
            [Step::Key("db"), Step::Index(2)]
        );
        assert!(table.steps(PathId::ROOT, 0, &names).is_empty());
    }
}
