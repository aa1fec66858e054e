//! Handles that could not be resolved, and their grouping by cause: a failure of a whole
//! backend run, or one error text for many handles, is reported once with every handle and
//! key path it affects.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::backend::FailureKind;
use crate::document::KeyPath;
use crate::printable::Printable;

/// A handle that could not be resolved. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Failure {
    /// The handle.
    pub handle: String,
    /// Why, as a kind.
    pub kind: FailureKind,
    /// Why, in words (the backend's error text for `error`).
    pub message: String,
    /// Key paths where the handle is used (in the resolved document, or in every origin for a
    /// refresh).
    pub paths: Vec<KeyPath>,
}

/// How many paths [`Failure::paths_text`] lists before it counts the rest.
pub const LISTED_PATHS: usize = 10;

/// How many handles one line of grouped failures lists before it counts the rest.
pub const LISTED_HANDLES: usize = 100;

impl Failure {
    /// The paths joined with `, ` (each with its segments joined by `/`, made printable) for
    /// messages: at most [`LISTED_PATHS`], then `and N more`, so a message stays proportional
    /// to the input however many times a handle is used (a use through an alias repeats its
    /// whole path).
    pub fn paths_text(&self) -> String {
        let mut text = self
            .paths
            .iter()
            .take(LISTED_PATHS)
            .map(|path| crate::printable::printable(&path.join("/")))
            .collect::<Vec<_>>()
            .join(", ");
        if self.paths.len() > LISTED_PATHS {
            text.push_str(&format!(" and {} more", self.paths.len() - LISTED_PATHS));
        }
        text
    }
}

/// Failures with one cause. A failure of a whole backend run (the permission check, the exit
/// status, the timeout, the output cap) gives every handle of the run the same message, and a
/// backend that refuses every handle for one reason (a rejected token) gives each the same
/// error text: either way the failures form one group naming every handle it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup<'a> {
    /// Why, as a kind.
    pub kind: FailureKind,
    /// Why, in words: the message, or for several handles that the backend refused with one
    /// text, that text.
    pub message: Cow<'a, str>,
    /// The failures of this cause, in the order given.
    pub failures: Vec<&'a Failure>,
}

/// Groups `failures` by cause (kind and message, or the backend's error text for refused
/// handles), in order of first appearance.
pub fn group_failures(failures: &[Failure]) -> Vec<FailureGroup<'_>> {
    let mut groups: Vec<FailureGroup<'_>> = Vec::new();
    let mut index: HashMap<(FailureKind, &str), usize> = HashMap::new();
    for failure in failures {
        let key = (failure.kind, backend_error_text(failure));
        match index.get(&key).and_then(|&at| groups.get_mut(at)) {
            Some(group) => group.failures.push(failure),
            None => {
                index.insert(key, groups.len());
                groups.push(FailureGroup {
                    kind: failure.kind,
                    message: Cow::Borrowed(&failure.message),
                    failures: vec![failure],
                });
            }
        }
    }
    for group in &mut groups {
        if let [first, _, ..] = group.failures.as_slice() {
            let text = backend_error_text(first);
            if text.len() < first.message.len() {
                group.message = Cow::Owned(format!(
                    "an error occurred while resolving each of them: {text}"
                ));
            }
        }
    }
    groups
}

/// The backend's own text of a per-handle error (`an error occurred while resolving '<h>':
/// <text>`), or the whole message.
fn backend_error_text(failure: &Failure) -> &str {
    failure
        .message
        .strip_prefix("an error occurred while resolving '")
        .and_then(|rest| rest.strip_prefix(failure.handle.as_str()))
        .and_then(|rest| rest.strip_prefix("': "))
        .filter(|_| failure.kind == FailureKind::Error)
        .unwrap_or(&failure.message)
}

impl fmt::Display for FailureGroup<'_> {
    /// One handle: `'db' (missing) at db/password: <message>`. Several: `<message> (kind);
    /// affects 2 handles: 'a' at x/y; 'b' at z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |failure: &Failure| {
            if failure.paths.is_empty() {
                String::new()
            } else {
                format!(" at {}", failure.paths_text())
            }
        };
        match self.failures.as_slice() {
            [one] => write!(
                f,
                "'{}' ({}){}: {}",
                Printable(&one.handle),
                self.kind.as_str(),
                at(one),
                self.message
            ),
            many => {
                // Listed one by one (never joined into one string), at most LISTED_HANDLES of
                // them: the line stays proportional to the input however many handles fail.
                write!(
                    f,
                    "{} ({}); affects {} handles: ",
                    self.message,
                    self.kind.as_str(),
                    many.len()
                )?;
                for (index, failure) in many.iter().take(LISTED_HANDLES).enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "'{}'{}", Printable(&failure.handle), at(failure))?;
                }
                if many.len() > LISTED_HANDLES {
                    write!(f, "; and {} more", many.len() - LISTED_HANDLES)?;
                }
                Ok(())
            }
        }
    }
}
