//! Which backend serves which handle: the settings' backend selection turned into the
//! [`BackendSpec`]s the resolver runs, and where the built-in `keyturn-backend` is found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyturn_protocol::PayloadVersion;

use crate::backend::{BackendSpec, PermissionCheck};
use crate::settings::{BackendSelection, BuiltinBackend, Settings};

/// Name of the built-in backend executable.
pub const BUILTIN_BACKEND_NAME: &str = "keyturn-backend";

/// Which backend specs serve which handles.
pub(super) enum Routing {
    None,
    Single(BackendSpec),
    Multi(BTreeMap<String, BackendSpec>),
}

impl Routing {
    /// The spec whose executable status output describes: the only one, or the first of the
    /// multi backends (they all run `keyturn-backend`).
    pub(super) fn first_spec(&self) -> Option<&BackendSpec> {
        match self {
            Routing::None => None,
            Routing::Single(spec) => Some(spec),
            Routing::Multi(specs) => specs.values().next(),
        }
    }
}

pub(super) fn routing(settings: &Settings, builtin: &Path) -> Routing {
    let builtin_spec = |b: &BuiltinBackend| {
        BackendSpec::new(builtin)
            .with_args(settings.arguments())
            .with_check(PermissionCheck::Builtin)
            .with_backend_type(Some(b.backend_type().to_owned()))
            .with_config(b.config().clone())
            .with_working_dir(settings.working_dir().map(Path::to_path_buf))
            // keyturn's own backend needs `type`, which only 1.1 carries.
            .with_protocol(PayloadVersion::V1_1)
    };
    match settings.backend() {
        None => Routing::None,
        Some(BackendSelection::Command { command, payload }) => Routing::Single(
            BackendSpec::new(command)
                .with_args(settings.arguments())
                .with_check(if settings.allow_group_exec() {
                    PermissionCheck::AllowGroupExec
                } else {
                    PermissionCheck::Strict
                })
                // The Agent sends `type` and `config` to the command whenever a type is set.
                .with_backend_type(payload.as_ref().map(|b| b.backend_type().to_owned()))
                .with_config(
                    payload
                        .as_ref()
                        .map(|b| b.config().clone())
                        .unwrap_or_default(),
                )
                .with_protocol(settings.protocol_version())
                .with_working_dir(settings.working_dir().map(Path::to_path_buf)),
        ),
        Some(BackendSelection::Type { backend }) => Routing::Single(builtin_spec(backend)),
        Some(BackendSelection::Multi { backends }) => Routing::Multi(
            backends
                .iter()
                .map(|(name, b)| (name.clone(), builtin_spec(b)))
                .collect(),
        ),
    }
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
