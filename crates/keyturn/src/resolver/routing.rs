//! Which backend serves which handle: `multi_secret_backends` handles grouped by the backend
//! their prefix names, and where the built-in `keyturn-backend` is found. The specs themselves
//! are made from the settings ([`Settings::routing`](crate::settings::Settings)).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::Lookup;
use crate::backend::{BackendSpec, FailureKind};
use crate::printable::Printable;

/// Name of the built-in backend executable.
pub const BUILTIN_BACKEND_NAME: &str = "keyturn-backend";

/// One run of a multi backend: its name, its spec, and the handles it serves as
/// `(handle, key sent to the backend)`, in the order asked.
pub(super) struct MultiRun {
    pub(super) name: String,
    pub(super) spec: Arc<BackendSpec>,
    pub(super) members: Vec<(Arc<str>, Arc<str>)>,
}

/// `handles` grouped by the backend their prefix names (`ENC[name;key]`, the name
/// case-insensitive), one run per backend; and the failure of every handle whose prefix names
/// no backend, or that has none.
pub(super) fn group_by_backend(
    backends: &BTreeMap<String, Arc<BackendSpec>>,
    handles: &[Arc<str>],
) -> (Vec<MultiRun>, HashMap<Arc<str>, Lookup>) {
    let mut runs: BTreeMap<&str, MultiRun> = BTreeMap::new();
    let mut failures = HashMap::new();
    for handle in handles {
        let Some((name, key)) = handle.split_once(';') else {
            let message = format!("handle \"{}\": unknown backend", Printable(handle));
            failures.insert(
                Arc::clone(handle),
                Err((FailureKind::BackendError, message)),
            );
            continue;
        };
        match backends.get_key_value(name.to_lowercase().as_str()) {
            Some((name, spec)) => runs
                .entry(name.as_str())
                .or_insert_with(|| MultiRun {
                    name: name.clone(),
                    spec: Arc::clone(spec),
                    members: Vec::new(),
                })
                .members
                .push((Arc::clone(handle), Arc::from(key))),
            None => {
                let message = format!(
                    "handle \"{}\": unknown backend \"{}\"",
                    Printable(handle),
                    Printable(name)
                );
                failures.insert(
                    Arc::clone(handle),
                    Err((FailureKind::BackendError, message)),
                );
            }
        }
    }
    (runs.into_values().collect(), failures)
}

/// Finds `keyturn-backend`: `$KEYTURN_BUILTIN_BACKEND`, then beside the running executable, then
/// the bare name (looked up on `PATH` when run).
pub fn locate_builtin_backend() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYTURN_BUILTIN_BACKEND").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let sibling = dir.join(BUILTIN_BACKEND_NAME);
        if sibling.is_file() {
            return sibling;
        }
        // Test and bench executables live one level down, in `deps/`.
        if let Some(parent) = dir.parent() {
            let sibling = parent.join(BUILTIN_BACKEND_NAME);
            if dir.ends_with("deps") && sibling.is_file() {
                return sibling;
            }
        }
    }
    PathBuf::from(BUILTIN_BACKEND_NAME)
}
