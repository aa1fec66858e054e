//! [`Secret`]: a resolved value that never prints itself and is wiped from memory when dropped.
//!
//! Every value that came from a backend lives in a `Secret` from the moment it is parsed until
//! it is written into an output document. `Debug` prints `Secret(<redacted>)`, and there is no
//! `Display`, so a stray `{}` does not compile; the only way to read the value is
//! [`Secret::expose`], which keeps every use greppable.
//!
//! Clones share one buffer (a reference count, no copy of the value), which is zeroized when the
//! last clone is dropped: the cache, a resolve's values and a change notification hold the same
//! memory instead of one copy each.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

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
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret::from(Zeroizing::new(value.into()))
    }

    /// The value itself. Callers must not log, format into errors, or persist it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<String>> for Secret {
    fn from(value: Zeroizing<String>) -> Secret {
        Secret(Arc::new(value))
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
}
