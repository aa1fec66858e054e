//! [`Secret`]: a resolved value that never prints itself and is wiped from memory when dropped.
//!
//! Every value that came from a backend lives in a `Secret` from the moment it is parsed until
//! it is written into an output document. `Debug` prints `Secret(<redacted>)`, and there is no
//! `Display`, so a stray `{}` does not compile; the only way to read the value is
//! [`Secret::expose`], which keeps every use greppable.
//!
//! Clones share one buffer (a reference count, no copy of the value), which is zeroized when the
//! last clone is dropped: the cache, a resolve's values and a change notification hold the same
//! memory instead of one copy each. The values of one backend answer stay in the answer as it
//! was read, each `Secret` a range of it (values that held escapes are decoded into one buffer
//! of their own): no copy and no allocation per value, and the whole answer is wiped when its
//! last value goes. The resolver's cache keeps each value in a buffer of its own
//! ([`Secret::compact`]), so a value kept for long does not keep its whole answer alive; a
//! program that keeps values from [`crate::backend::fetch`] may do the same.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

/// A secret value. Compares by value, redacts in `Debug`, zeroizes when its last clone is
/// dropped.
///
/// It has no `Display`: formatting one with `{}` is a compile error.
///
/// ```compile_fail,E0277
/// let secret = keyturn::Secret::new("hunter2");
/// println!("{secret}");
/// ```
///
/// Read the value where it is used, and only there:
///
/// ```
/// let secret = keyturn::Secret::new("hunter2");
/// assert_eq!(secret.expose(), "hunter2");
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// ```
#[derive(Clone, Default)]
pub struct Secret {
    /// The buffer the value is in, shared with its clones and with the other values of the same
    /// answer; wiped when the last of them is dropped.
    buffer: Arc<Buffer>,
    /// Where the value is in `buffer` (on `char` boundaries).
    range: Range<usize>,
}

/// Text that holds values, wiped when dropped: its bytes, and for text handed in by a caller its
/// spare capacity too (it may hold what a caller truncated away). A backend's captured answer
/// keeps its spare capacity unwiped: nothing was ever written there, and touching it would
/// cost memory.
#[derive(Default)]
pub(crate) struct Buffer {
    text: String,
    wipe_spare: bool,
}

impl Buffer {
    /// A buffer of text from a caller: wiped whole, spare capacity included.
    pub(crate) fn new(text: String) -> Buffer {
        Buffer {
            text,
            wipe_spare: true,
        }
    }

    /// A backend's captured answer, whose spare capacity was never written.
    pub(crate) fn captured(text: String) -> Buffer {
        Buffer {
            text,
            wipe_spare: false,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        if self.wipe_spare {
            bytes.zeroize();
        } else {
            bytes.as_mut_slice().zeroize();
        }
    }
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret::whole(Buffer::new(value.into()))
    }

    /// The whole of `buffer`.
    fn whole(buffer: Buffer) -> Secret {
        let range = 0..buffer.text.len();
        Secret {
            buffer: Arc::new(buffer),
            range,
        }
    }

    /// The value at `range` of `buffer`, sharing it; `None` when `range` is not a slice of it.
    pub(crate) fn shared(buffer: &Arc<Buffer>, range: Range<usize>) -> Option<Secret> {
        buffer.text.get(range.clone())?;
        Some(Secret {
            buffer: Arc::clone(buffer),
            range,
        })
    }

    /// The value itself. Callers must not log, format into errors, or persist it.
    pub fn expose(&self) -> &str {
        // Constructors only take ranges on `char` boundaries of the buffer.
        self.buffer.text.get(self.range.clone()).unwrap_or_default()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The same value in a buffer that holds nothing else: itself when it already is, else a
    /// copy (which shares nothing with the buffer it came from). For values kept long, so that
    /// one of them does not keep every other value of its answer in memory.
    pub fn compact(self) -> Secret {
        if self.range.start == 0 && self.range.end == self.buffer.text.len() {
            self
        } else {
            Secret::new(self.expose())
        }
    }
}

impl PartialEq for Secret {
    /// Compares the values, wherever they are held.
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl From<Zeroizing<String>> for Secret {
    fn from(mut value: Zeroizing<String>) -> Secret {
        // Moved, not copied: what is left behind is an empty string.
        Secret::whole(Buffer::new(std::mem::take(&mut *value)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(<redacted>))");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn values_sharing_a_buffer_read_compare_and_compact_apart() {
        let buffer = Arc::new(Buffer::captured("onetwo\u{e9}".to_owned()));
        let one = Secret::shared(&buffer, 0..3).unwrap();
        let two = Secret::shared(&buffer, 3..8).unwrap();
        assert!(
            Secret::shared(&buffer, 3..7).is_none(),
            "not a char boundary"
        );
        assert!(Secret::shared(&buffer, 0..9).is_none(), "past the end");
        assert_eq!((one.expose(), two.expose()), ("one", "two\u{e9}"));
        assert_eq!((one.len(), two.len()), (3, 5));
        assert_eq!(one, Secret::new("one"));
        assert_ne!(one, two);
        assert_eq!(format!("{two:?}"), "Secret(<redacted>)");
        assert_eq!(Arc::strong_count(&buffer), 3);
        let compact = one.compact();
        assert_eq!(compact.expose(), "one");
        assert_eq!(Arc::strong_count(&buffer), 2, "the copy shares nothing");
        let whole = Secret::new("whole");
        let kept = Arc::as_ptr(&whole.buffer);
        assert_eq!(
            Arc::as_ptr(&whole.compact().buffer),
            kept,
            "no copy when alone"
        );
        assert!(Secret::default().is_empty());
    }
}
