//! `file.text`, `k8s.file`, `docker.secrets`: a directory of files, one secret per file; a handle
//! is a file name in the directory.
//!
//! Config: `secrets_path` (the directory; required, except for `docker.secrets` where it defaults
//! to `/run/secrets`), `max_file_read_size` (bytes per file, default 10 MiB).
//!
//! Handles mean what they mean to Datadog's connector: a path relative to the directory
//! (`db_password`, `sub/key`), or an absolute path that lies inside it
//! (`/run/secrets/db_password`). `..` is resolved lexically first and may not climb above the
//! directory; empty names and NUL bytes are refused. A path that leaves the directory is refused
//! with the connector's words, `path outside allowed directory`.
//!
//! Values: every type returns the file's bytes as they are, trailing newline included, as the
//! connector does (the Agent's `secret_backend_remove_trailing_line_break` strips it).
//!
//! Invariant: no file outside the directory is ever read. The directory and each candidate are
//! canonicalized (all symlinks resolved) and the candidate must lie strictly inside the
//! directory; the canonical path is what is opened. This keeps the Kubernetes layout working
//! (`name -> ..data/name`, `..data -> ..2024_01_01_00_00_00.1`, all inside the mount) and refuses
//! a symlink that leaves it. When Kubernetes swaps `..data` between resolving and opening, the
//! old target vanishes: a not-found on open is retried with a fresh resolution.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::backends::Outcome;
use crate::backends::file::{self, ReadError};
use crate::settings::{Settings, SettingsError};

/// Where Docker (Swarm and Compose) mounts secrets on Linux.
const DOCKER_SECRETS_PATH: &str = "/run/secrets";

/// How many times a read is retried when its file vanished after being resolved.
const SWAP_RETRIES: usize = 3;

/// Which backend type this is; they differ only in the default directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `file.text`: a directory of files.
    Text,
    /// `k8s.file`: a mounted Kubernetes secret volume.
    Kubernetes,
    /// `docker.secrets`: Docker secrets, `/run/secrets` by default.
    Docker,
}

/// A failure of the whole directory, reported for every handle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirError {
    /// The configuration is unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The directory cannot be used.
    #[error("secrets_path {path}: {reason}")]
    Directory { path: PathBuf, reason: String },
}

/// Why one handle was not resolved.
#[derive(Debug, thiserror::Error)]
enum HandleError {
    #[error("invalid secret name {0:?}: {1}")]
    BadName(String, &'static str),
    #[error("secret {name:?} not found in {dir}")]
    NotFound { name: String, dir: PathBuf },
    #[error("secret {name:?} refused: path outside allowed directory {dir}")]
    Outside { name: String, dir: PathBuf },
    #[error("secret {name:?} in {dir} is not a regular file")]
    NotAFile { name: String, dir: PathBuf },
    #[error("secret {name:?} in {dir}: the file is empty")]
    Empty { name: String, dir: PathBuf },
    #[error("secret {name:?}: {cause}")]
    Read { name: String, cause: ReadError },
    #[error("secret {name:?} in {dir}: {cause}")]
    Io {
        name: String,
        dir: PathBuf,
        cause: io::Error,
    },
}

/// Resolves `handles` as files of the configured directory.
pub(crate) fn resolve(
    kind: Kind,
    settings: &Settings<'_>,
    handles: &[&str],
) -> Result<Vec<Outcome>, DirError> {
    let configured = match (kind, settings.string("secrets_path")?) {
        (_, Some(path)) => path,
        (Kind::Docker, None) => DOCKER_SECRETS_PATH,
        (Kind::Text | Kind::Kubernetes, None) => settings.required_string(
            "secrets_path",
            " (the directory holding one file per secret)",
        )?,
    };
    let limit = file::max_file_read_size(settings)?;
    let dir = canonical_dir(Path::new(configured))?;
    Ok(handles
        .iter()
        .map(|handle| {
            let text = read_secret(&dir, handle, limit).map_err(|error| error.to_string())?;
            if text.is_empty() {
                return Err(HandleError::Empty {
                    name: (*handle).to_owned(),
                    dir: dir.clone(),
                }
                .to_string());
            }
            Ok(text)
        })
        .collect())
}

fn canonical_dir(configured: &Path) -> Result<PathBuf, DirError> {
    let error = |reason: String| DirError::Directory {
        path: configured.to_owned(),
        reason,
    };
    let dir = configured.canonicalize().map_err(|source| {
        error(match source.kind() {
            io::ErrorKind::NotFound => "no such directory".to_owned(),
            _ => source.to_string(),
        })
    })?;
    if !dir.is_dir() {
        return Err(error("not a directory".to_owned()));
    }
    Ok(dir)
}

/// Reads the file `name` of `dir` (canonical), following the module's path rules.
fn read_secret(
    dir: &Path,
    name: &str,
    limit: u64,
) -> Result<zeroize::Zeroizing<String>, HandleError> {
    let candidate = candidate_path(dir, name)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let resolved = resolve_inside(dir, &candidate, name)?;
        match file::read_text(&resolved, limit) {
            Err(ReadError::NotFound { .. }) if attempts < SWAP_RETRIES => continue,
            Err(ReadError::NotFound { .. }) => {
                return Err(HandleError::NotFound {
                    name: name.to_owned(),
                    dir: dir.to_owned(),
                });
            }
            Err(source) => {
                return Err(HandleError::Read {
                    name: name.to_owned(),
                    cause: source,
                });
            }
            Ok(text) => return Ok(text),
        }
    }
}

/// The path a handle names, before symlinks are resolved: relative names are joined to `dir`,
/// and `.` and `..` are resolved lexically (as Go's `filepath.Clean` does for the connector). A
/// relative name whose `..` climbs above `dir` is refused here, before touching the disk.
fn candidate_path(dir: &Path, name: &str) -> Result<PathBuf, HandleError> {
    let bad = |reason| Err(HandleError::BadName(name.to_owned(), reason));
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    let path = Path::new(name);
    let (mut clean, floor) = if path.is_absolute() {
        (PathBuf::from("/"), 1)
    } else {
        (dir.to_owned(), dir.components().count())
    };
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if clean.components().count() <= floor {
                    return Err(HandleError::Outside {
                        name: name.to_owned(),
                        dir: dir.to_owned(),
                    });
                }
                clean.pop();
            }
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(clean)
}

/// Resolves every symlink of `candidate` and checks the result lies strictly inside `dir` and
/// is a regular file.
fn resolve_inside(dir: &Path, candidate: &Path, name: &str) -> Result<PathBuf, HandleError> {
    let resolved = candidate
        .canonicalize()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => HandleError::NotFound {
                name: name.to_owned(),
                dir: dir.to_owned(),
            },
            _ => HandleError::Io {
                name: name.to_owned(),
                dir: dir.to_owned(),
                cause: source,
            },
        })?;
    if !resolved.starts_with(dir) || resolved == dir {
        return Err(HandleError::Outside {
            name: name.to_owned(),
            dir: dir.to_owned(),
        });
    }
    // A FIFO or device would block or stream forever; only regular files are read.
    if !resolved.is_file() {
        return Err(HandleError::NotAFile {
            name: name.to_owned(),
            dir: dir.to_owned(),
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_resolved_lexically_before_touching_the_disk() {
        let dir = Path::new("/secrets");
        for (name, expected) in [
            ("", Err("empty")),
            ("a\0b", Err("contains a NUL byte")),
            ("..", Err("outside")),
            ("../etc/passwd", Err("outside")),
            ("sub/../../etc/passwd", Err("outside")),
            ("/secrets/../etc/passwd", Ok("/etc/passwd")),
            (".", Ok("/secrets")),
            ("db_password", Ok("/secrets/db_password")),
            ("sub/key", Ok("/secrets/sub/key")),
            ("sub/../key", Ok("/secrets/key")),
            ("./sub//key", Ok("/secrets/sub/key")),
            ("..data", Ok("/secrets/..data")),
            ("a..b", Ok("/secrets/a..b")),
            ("/secrets/db_password", Ok("/secrets/db_password")),
        ] {
            match (candidate_path(dir, name), expected) {
                (Err(HandleError::BadName(_, reason)), Err(expected)) => {
                    assert_eq!(reason, expected, "{name:?}")
                }
                (Err(HandleError::Outside { .. }), Err("outside")) => {}
                (Ok(path), Ok(expected)) => assert_eq!(path, Path::new(expected), "{name:?}"),
                (other, _) => panic!("{name:?}: {other:?}"),
            }
        }
    }
}
