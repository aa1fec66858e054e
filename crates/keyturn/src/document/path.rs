//! Key paths that share their memory.
//!
//! A [`KeyPath`] is a persistent list: a path is its parent plus one segment, so the sites below
//! one mapping share that mapping's path, and key text is stored once however many paths pass
//! through the key. A site copied through a YAML alias or merge is a *graft*: the alias' path,
//! then the site's path inside the anchor with the anchor's own prefix skipped. A copy therefore
//! costs one small node whatever the length of its keys, which keeps the memory of a document's
//! sites (and of the resolver's record of where each handle is used) proportional to the input.
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
    pub fn root() -> KeyPath {
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
}
