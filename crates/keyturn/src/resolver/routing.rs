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
    let builtin_spec = |b: &BuiltinBackend| BackendSpec {
        command: builtin.to_path_buf(),
        args: settings.arguments.clone(),
        check: PermissionCheck::Builtin,
        backend_type: Some(b.backend_type.clone()),
        config: (!b.config.is_empty()).then(|| b.config.clone()),
        working_dir: settings.working_dir.clone(),
        // keyturn's own backend needs `type`, which only 1.1 carries.
        protocol: PayloadVersion::V1_1,
    };
    match &settings.backend {
        None => Routing::None,
        Some(BackendSelection::Command { command, payload }) => Routing::Single(BackendSpec {
            command: command.clone(),
            args: settings.arguments.clone(),
            check: if settings.allow_group_exec {
                PermissionCheck::AllowGroupExec
            } else {
                PermissionCheck::Strict
            },
            // The Agent sends `type` and `config` to the command whenever a type is set.
            backend_type: payload.as_ref().map(|b| b.backend_type.clone()),
            config: payload
                .as_ref()
                .filter(|b| !b.config.is_empty())
                .map(|b| b.config.clone()),
            protocol: settings.protocol_version,
            working_dir: settings.working_dir.clone(),
        }),
        Some(BackendSelection::Type(b)) => Routing::Single(builtin_spec(b)),
        Some(BackendSelection::Multi(backends)) => Routing::Multi(
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
