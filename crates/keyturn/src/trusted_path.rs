//! Whether anyone but root and the current user can change what a path names: the check, after
//! sshd's `StrictModes`, that keeps a backend executable, the built-in backend and the daemon's
//! run directory from being swapped through the directories and links that lead to them.
//!
//! [`check`] walks the path from `/` one component at a time with `lstat`, following symbolic
//! links itself, and refuses:
//! - a directory or symbolic link owned by anyone but root or the effective user;
//! - a directory that its group or others may write, unless it is sticky: then others may add
//!   entries but not rename or remove an entry they do not own, so the entry below it counts,
//!   and that entry must itself be owned by root or the user (every directory and link is
//!   checked for that; the last entry is the caller's to check, see [`Walked`]).
//!
//! [`check_private_file`] and [`check_private_dir`] add the rules for what keyturn keeps for
//! itself (the daemon's run directory, API token and audit file): owned by root or the user,
//! a file accessible to no one else, a directory no one else may write.
//!
//! Invariants:
//! - Work is bounded: at most [`MAX_LINKS`] symbolic links are followed, each read once.
//! - A relative path is walked from the working directory's real path, from `/` too.
//! - Errors name the offending directory or link and what is wrong with it, never file content.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links a walk follows before giving up (Linux's own limit).
pub const MAX_LINKS: usize = 40;

/// What a path named when it was walked: the last entry, never a symbolic link.
#[derive(Debug)]
pub struct Walked {
    /// The path with every link resolved.
    pub path: PathBuf,
    /// `lstat` of the last entry. Its owner and mode are the caller's to check: the rules for
    /// an executable, a token file or a directory differ.
    pub metadata: Metadata,
}

/// Why a path cannot be trusted. Names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UntrustedPath {
    /// A directory or link on the way belongs to another user.
    #[error(
        "{what} '{}' is owned by UID {owner}, not by root or the user running keyturn (UID {current})",
        path.display()
    )]
    Owner {
        /// `directory` or `symbolic link`.
        what: &'static str,
        /// The entry.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective UID of this process.
        current: u32,
    },
    /// A directory on the way that others may write, without the sticky bit.
    #[error("directory '{}' is writable by {who} (mode {mode:04o}) and not sticky", path.display())]
    Writable {
        /// The directory.
        path: PathBuf,
        /// `its group`, `others` or `its group and others`.
        who: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// More than [`MAX_LINKS`] symbolic links.
    #[error("too many levels of symbolic links under '{}'", path.display())]
    Loop {
        /// The last link followed.
        path: PathBuf,
    },
    /// An entry could not be inspected (or is not a directory where one is needed).
    #[error("cannot inspect '{}': {reason}", path.display())]
    Io {
        /// The entry.
        path: PathBuf,
        /// The error, in words.
        reason: String,
    },
}

/// A file or directory of keyturn's own that someone else could read, write or swap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {}: {problem}", path.display())]
pub struct NotPrivate {
    /// What it is to keyturn: `API token file`, `audit file`, `run directory`.
    pub what: &'static str,
    /// The path as configured.
    pub path: PathBuf,
    /// What is wrong, naming the entry at fault when it is a directory or link on the way.
    pub problem: String,
}

/// Checks the file at `path` that keyturn keeps for itself (`what` names it in errors): every
/// directory and link on the way passes [`check`], and the file is a regular file owned by
/// root or the effective user with no permission for group or others. `Ok(None)` when there is
/// nothing at `path`.
pub fn check_private_file(what: &'static str, path: &Path) -> Result<Option<Walked>, NotPrivate> {
    let not_private = |problem: String| NotPrivate {
        what,
        path: path.to_owned(),
        problem,
    };
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(not_private(error.to_string())),
        Ok(_) => {}
    }
    let current = nix::unistd::geteuid().as_raw();
    let walked = check_as(path, current).map_err(|e| not_private(e.to_string()))?;
    match private_file_problem(&walked.metadata, current) {
        Some(problem) => Err(not_private(problem)),
        None => Ok(Some(walked)),
    }
}

/// What keeps a file (`metadata` of the file itself, from `lstat` or `fstat`) from being
/// private to `current`: not a regular file, another owner than root or `current`, or any
/// permission for group or others. `None` when it is private.
pub fn private_file_problem(metadata: &Metadata, current: u32) -> Option<String> {
    let mode = metadata.mode() & 0o7777;
    if !metadata.is_file() {
        Some("is not a regular file".to_owned())
    } else if !is_trusted_owner(metadata.uid(), current) {
        Some(owner_problem(metadata.uid(), current))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "is accessible to group or others (mode {mode:04o}); chmod 600 it"
        ))
    } else {
        None
    }
}

/// Checks the directory at `path` that keyturn keeps its own files in (`what` names it in
/// errors): every directory and link on the way passes [`check`], and it is a directory owned
/// by root or the effective user that group and others may not write, sticky or not (others
/// could create the names keyturn is about to use).
pub fn check_private_dir(what: &'static str, path: &Path) -> Result<(), NotPrivate> {
    let not_private = |problem: String| NotPrivate {
        what,
        path: path.to_owned(),
        problem,
    };
    let current = nix::unistd::geteuid().as_raw();
    let walked = check_as(path, current).map_err(|e| not_private(e.to_string()))?;
    let metadata = &walked.metadata;
    let mode = metadata.mode() & 0o7777;
    if !metadata.is_dir() {
        Err(not_private("is not a directory".to_owned()))
    } else if !is_trusted_owner(metadata.uid(), current) {
        Err(not_private(owner_problem(metadata.uid(), current)))
    } else if mode & 0o022 != 0 {
        Err(not_private(format!(
            "is writable by group or others (mode {mode:04o}); chmod 700 it"
        )))
    } else {
        Ok(())
    }
}

fn owner_problem(owner: u32, current: u32) -> String {
    format!("is owned by UID {owner}, not by root or the user running keyturn (UID {current})")
}

/// Walks `path` (see the module documentation) as the effective user.
pub fn check(path: &Path) -> Result<Walked, UntrustedPath> {
    check_as(path, nix::unistd::geteuid().as_raw())
}

/// [`check`] for the user `current`.
pub fn check_as(path: &Path, current: u32) -> Result<Walked, UntrustedPath> {
    let io = |path: &Path, error: io::Error| UntrustedPath::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let start = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|error| io(Path::new("."), error))?
            .join(path)
    };
    let mut resolved = PathBuf::from("/");
    check_directory(
        &resolved,
        &lstat(&resolved).map_err(|e| io(&resolved, e))?,
        current,
    )?;
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &start);
    let mut last: Option<Metadata> = None;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            // `resolved` holds no link, so its parent is its parent on disk.
            resolved.pop();
            last = None;
            continue;
        }
        let candidate = resolved.join(&name);
        let metadata = lstat(&candidate).map_err(|e| io(&candidate, e))?;
        if metadata.file_type().is_symlink() {
            check_owner("symbolic link", &candidate, &metadata, current)?;
            links += 1;
            if links > MAX_LINKS {
                return Err(UntrustedPath::Loop { path: candidate });
            }
            let target = fs::read_link(&candidate).map_err(|e| io(&candidate, e))?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            last = None;
            continue;
        }
        if !pending.is_empty() {
            check_directory(&candidate, &metadata, current)?;
        }
        resolved = candidate;
        last = Some(metadata);
    }
    let metadata = match last {
        Some(metadata) => metadata,
        None => lstat(&resolved).map_err(|e| io(&resolved, e))?,
    };
    Ok(Walked {
        path: resolved,
        metadata,
    })
}

/// Whether `uid` is root or `current`.
pub fn is_trusted_owner(uid: u32, current: u32) -> bool {
    uid == 0 || uid == current
}

/// Pushes the components of `path` onto `pending` so that the first is popped first; `/` and
/// `.` are left out (the caller restarts from `/` for an absolute path).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn lstat(path: &Path) -> io::Result<Metadata> {
    fs::symlink_metadata(path)
}

fn check_owner(
    what: &'static str,
    path: &Path,
    metadata: &Metadata,
    current: u32,
) -> Result<(), UntrustedPath> {
    if is_trusted_owner(metadata.uid(), current) {
        return Ok(());
    }
    Err(UntrustedPath::Owner {
        what,
        path: path.to_owned(),
        owner: metadata.uid(),
        current,
    })
}

fn check_directory(path: &Path, metadata: &Metadata, current: u32) -> Result<(), UntrustedPath> {
    if !metadata.is_dir() {
        return Err(UntrustedPath::Io {
            path: path.to_owned(),
            reason: "not a directory".to_owned(),
        });
    }
    check_owner("directory", path, metadata, current)?;
    let mode = metadata.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        _ if mode & 0o1000 != 0 => return Ok(()),
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    Err(UntrustedPath::Writable {
        path: path.to_owned(),
        who,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private directory to build paths in (its ancestors, like `/tmp`, must pass).
    fn private() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn private_paths_pass_and_resolve_links() {
        let (_dir, root) = private();
        mkdir(&root.join("bin"), 0o755);
        fs::write(root.join("bin/backend"), "").unwrap();
        symlink("bin", root.join("link")).unwrap();
        symlink(root.join("link/backend"), root.join("abs")).unwrap();
        for path in [
            "bin/backend",
            "link/backend",
            "abs",
            "bin/../link/./backend",
        ] {
            let walked = check(&root.join(path)).unwrap();
            assert_eq!(walked.path, root.join("bin/backend"), "{path}");
            assert!(walked.metadata.is_file());
        }
        assert_eq!(check(&root).unwrap().path, root);
        assert_eq!(check(Path::new("/")).unwrap().path, Path::new("/"));
    }

    /// Regression (issue 9, item 5): a backend reached through a directory others can write
    /// was run, and its path swapped during the interpreter's start-up.
    #[test]
    fn a_directory_others_may_write_is_refused_unless_sticky() {
        let (_dir, root) = private();
        for (name, mode, who) in [
            ("open", 0o777, Some("its group and others")),
            ("others", 0o703, Some("others")),
            ("group", 0o730, Some("its group")),
            ("sticky", 0o1777, None),
            ("closed", 0o755, None),
        ] {
            let dir = root.join(name);
            mkdir(&dir, mode);
            fs::write(dir.join("backend"), "").unwrap();
            let result = check(&dir.join("backend")).map(|walked| walked.path);
            match who {
                None => assert_eq!(result, Ok(dir.join("backend")), "{name}"),
                Some(who) => assert_eq!(
                    result.unwrap_err().to_string(),
                    format!(
                        "directory '{}' is writable by {who} (mode {mode:04o}) and not sticky",
                        dir.display()
                    )
                ),
            }
        }
        // Through a link: the directory the link leads through counts.
        symlink(root.join("open"), root.join("to-open")).unwrap();
        assert!(matches!(
            check(&root.join("to-open/backend")),
            Err(UntrustedPath::Writable { path, .. }) if path == root.join("open")
        ));
    }

    #[test]
    fn entries_of_another_user_are_refused() {
        let (_dir, root) = private();
        mkdir(&root.join("d"), 0o755);
        fs::write(root.join("d/backend"), "").unwrap();
        symlink(root.join("d/backend"), root.join("link")).unwrap();
        let mine = nix::unistd::geteuid().as_raw();
        if mine != 0 {
            // As seen by another user, the directories made by us are foreign.
            let other = mine + 4242;
            let error = check_as(&root.join("link"), other).unwrap_err();
            assert!(
                matches!(&error, UntrustedPath::Owner { what: "directory", owner, current, .. } if *owner == mine && *current == other),
                "{error}"
            );
            return;
        }
        // Root can hand entries to someone else: a link and a directory of another user.
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &root.join("link"),
            Some(nix::unistd::Uid::from_raw(4242)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        assert_eq!(
            check(&root.join("link")).unwrap_err().to_string(),
            format!(
                "symbolic link '{}' is owned by UID 4242, not by root or the user running keyturn (UID 0)",
                root.join("link").display()
            )
        );
        nix::unistd::chown(
            &root.join("d"),
            Some(nix::unistd::Uid::from_raw(4242)),
            None,
        )
        .unwrap();
        assert!(matches!(
            check(&root.join("d/backend")),
            Err(UntrustedPath::Owner {
                what: "directory",
                owner: 4242,
                ..
            })
        ));
    }

    #[test]
    fn private_files_and_directories() {
        let (_dir, root) = private();
        let file = root.join("token");
        assert!(matches!(check_private_file("token file", &file), Ok(None)));
        fs::write(&file, "t").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o604, false),
            (0o610, false),
        ] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            let result = check_private_file("token file", &file).map(|w| w.map(|w| w.path));
            match ok {
                true => assert_eq!(result, Ok(Some(file.clone())), "{mode:o}"),
                false => assert_eq!(
                    result.unwrap_err().to_string(),
                    format!(
                        "token file {}: is accessible to group or others (mode {mode:04o}); chmod 600 it",
                        file.display()
                    )
                ),
            }
        }
        assert_eq!(
            check_private_file("token file", &root).unwrap_err().problem,
            "is not a regular file"
        );
        let run = root.join("run");
        for (mode, ok) in [
            (0o700, true),
            (0o755, true),
            (0o775, false),
            (0o1777, false),
            (0o757, false),
        ] {
            if !run.exists() {
                fs::create_dir(&run).unwrap();
            }
            fs::set_permissions(&run, fs::Permissions::from_mode(mode)).unwrap();
            let result = check_private_dir("run directory", &run);
            match ok {
                true => assert_eq!(result, Ok(()), "{mode:o}"),
                false => assert_eq!(
                    result.unwrap_err().to_string(),
                    format!(
                        "run directory {}: is writable by group or others (mode {mode:04o}); chmod 700 it",
                        run.display()
                    )
                ),
            }
        }
        // A file in a directory others may write: the directory is named.
        fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(run.join("audit"), "").unwrap();
        fs::set_permissions(run.join("audit"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            check_private_file("audit file", &run.join("audit"))
                .unwrap_err()
                .problem,
            format!(
                "directory '{}' is writable by its group and others (mode 0777) and not sticky",
                run.display()
            )
        );
        if nix::unistd::geteuid().is_root() {
            fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(
                &run.join("audit"),
                Some(nix::unistd::Uid::from_raw(4242)),
                None,
            )
            .unwrap();
            assert_eq!(
                check_private_file("audit file", &run.join("audit"))
                    .unwrap_err()
                    .problem,
                "is owned by UID 4242, not by root or the user running keyturn (UID 0)"
            );
            nix::unistd::chown(&run, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            assert_eq!(
                check_private_dir("run directory", &run)
                    .unwrap_err()
                    .problem,
                "is owned by UID 4242, not by root or the user running keyturn (UID 0)"
            );
        }
    }

    #[test]
    fn link_loops_and_missing_entries_are_errors() {
        let (_dir, root) = private();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        assert!(matches!(
            check(&root.join("a")),
            Err(UntrustedPath::Loop { .. })
        ));
        assert!(matches!(
            check(&root.join("missing/x")),
            Err(UntrustedPath::Io { path, .. }) if path == root.join("missing")
        ));
        fs::write(root.join("file"), "").unwrap();
        assert!(matches!(
            check(&root.join("file/x")),
            Err(UntrustedPath::Io { reason, .. }) if reason == "not a directory"
        ));
    }
}
