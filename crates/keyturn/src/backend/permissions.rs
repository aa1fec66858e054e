//! The permission check on a backend executable, and the report of it for status output.
//!
//! Owns: looking a bare command name up on `PATH`, opening the executable, checking its mode,
//! owner and executability on the open descriptor, and telling compiled binaries from `#!`
//! scripts.
//!
//! Invariants:
//! - The executable is opened once (`O_PATH`, following symlinks like `stat`), and every check
//!   runs on that descriptor (`fstat`, and `access` through `/proc/self/fd/N`), so the checked
//!   inode is the one [`Checked`] hands to `spawn`. `O_PATH` needs no read permission, so an
//!   execute-only file (`0100`) passes like it does in the reference.
//! - The owner must be the current effective user or root, in every mode (the reference no
//!   longer checks the owner; its docs still require it).
//! - Every directory and symbolic link on the way to the executable passes
//!   [`trusted_path::check`] (owned by root or the user, not writable by others unless sticky),
//!   and the walk must end at the inode that was opened: no one else can swap the file, even a
//!   `#!` script that is started by its path.
//! - Error texts are those of the reference (`CheckRights`), errno texts in its lowercase form;
//!   the owner text is our own.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};
use nix::unistd::{AccessFlags, Gid, Group, Uid, User};

use super::PermissionCheck;
use crate::trusted_path::{self, UntrustedPath};

/// Why an executable may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// It could not be opened or found (the reference's failing `stat`).
    #[error("invalid executable '{path}': can't stat it: {reason}")]
    Stat {
        /// The path as checked.
        path: PathBuf,
        /// The errno text, lowercase.
        reason: String,
    },
    /// [`PermissionCheck::Strict`]: some group or other bit is set.
    #[error("invalid executable '{path}', 'group' or 'others' have rights on it")]
    GroupOrOthers {
        /// The path as checked.
        path: PathBuf,
    },
    /// [`PermissionCheck::AllowGroupExec`]: group write or some other bit is set.
    #[error(
        "invalid executable '{path}', 'others' have rights on it or 'group' has write permissions on it"
    )]
    OthersOrGroupWrite {
        /// The path as checked.
        path: PathBuf,
    },
    /// [`PermissionCheck::Builtin`]: group or others may write the file.
    #[error("invalid executable '{path}': group or others may write it")]
    Writable {
        /// The path as checked.
        path: PathBuf,
    },
    /// A directory or link on the way to the file can be changed by someone else.
    #[error("invalid executable '{path}': {problem}")]
    Path {
        /// The path as checked.
        path: PathBuf,
        /// Which directory or link, and what is wrong with it.
        problem: UntrustedPath,
    },
    /// The file belongs to neither the current user nor root.
    #[error(
        "invalid executable '{path}': it is owned by UID {owner}, but must be owned by the user running keyturn (UID {current}) or by root"
    )]
    Owner {
        /// The path as checked.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The effective UID of this process.
        current: u32,
    },
    /// `access(X_OK)` failed.
    #[error("invalid executable '{path}': can't access it: {reason}")]
    Access {
        /// The path as checked.
        path: PathBuf,
        /// The errno text, lowercase.
        reason: String,
    },
    /// A script's path named another file, or the file changed, right before it was started.
    #[error(
        "invalid executable '{path}': it was replaced or changed between the permission check and its start"
    )]
    Changed {
        /// The path as checked.
        path: PathBuf,
    },
}

/// The permission check and file details of an executable, for status output (the Agent's status keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutableReport {
    /// The executable as resolved (a bare name looked up on `PATH`).
    pub path: PathBuf,
    /// Outcome of the permission check.
    pub verdict: Verdict,
    /// File details, or `could not stat <path>: <errno text>`.
    pub details: Result<FileDetails, String>,
    /// For a `#!` script whose interpreter is missing or not executable, the same text as the
    /// run's error (see `interpreter_problem`).
    pub interpreter_problem: Option<String>,
}

/// Outcome of the permission check in an [`ExecutableReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The executable has the correct permissions.
    Ok,
    /// [`PermissionCheck::Skip`]: not checked.
    NotChecked,
    /// The check failed; the error's text is the status `executablePermissionsError`.
    Denied(PermissionError),
}

/// Mode and ownership of an executable, as the status output shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDetails {
    /// Octal of the full `st_mode`, e.g. `100700`.
    pub file_mode: String,
    /// Owner name, or `could not fetch name for UID <n>: <err>`.
    pub owner: String,
    /// Group name, or `could not fetch name for GID <n>: <err>`.
    pub group: String,
}

/// Checks `command` as a run would and describes the file, for status output.
pub fn executable_report(command: &Path, check: PermissionCheck) -> ExecutableReport {
    let path = match resolve_command(command) {
        Ok(path) => path,
        Err(reason) => {
            return ExecutableReport {
                path: command.to_owned(),
                verdict: match check {
                    PermissionCheck::Skip => Verdict::NotChecked,
                    _ => Verdict::Denied(PermissionError::Stat {
                        path: command.to_owned(),
                        reason: reason.clone(),
                    }),
                },
                details: Err(format!("could not stat {}: {reason}", command.display())),
                interpreter_problem: None,
            };
        }
    };
    let details = nix::sys::stat::stat(&path)
        .map(|stat| file_details(&stat))
        .map_err(|errno| format!("could not stat {}: {}", path.display(), errno_text(errno)));
    let verdict = match check {
        PermissionCheck::Skip => Verdict::NotChecked,
        _ => match Checked::open(&path, check) {
            Ok(_) => Verdict::Ok,
            Err(error) => Verdict::Denied(error),
        },
    };
    ExecutableReport {
        interpreter_problem: interpreter_problem(&path),
        path,
        verdict,
        details,
    }
}

/// When `path` is a `#!` script whose interpreter (the first word after `#!`) is missing or
/// not an executable file: `the interpreter '<path>' named on the first line (#!) of the script
/// is missing` (or `is not an executable file`). Reads at most the script's first 256 bytes;
/// `None` for anything else, a file it cannot read included.
pub(crate) fn interpreter_problem(path: &Path) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;

    let mut head = Vec::with_capacity(256);
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&byte| byte == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let interpreter = line.split_ascii_whitespace().next()?;
    let problem = match std::fs::metadata(interpreter) {
        Err(_) => "is missing",
        Ok(meta) if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 => {
            "is not an executable file"
        }
        Ok(_) => return None,
    };
    Some(format!(
        "the interpreter '{interpreter}' named on the first line (#!) of the script {problem}"
    ))
}

/// An executable that passed the check, held open so that the checked file is the one that runs.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The path that was opened (resolved, not canonicalized).
    pub(crate) path: PathBuf,
    /// `O_PATH` descriptor of the checked file; close-on-exec.
    pub(crate) file: File,
    /// What was checked, compared again before a script is started by path.
    pub(crate) identity: Identity,
    /// Whether the file starts with `#!`.
    pub(crate) is_script: bool,
}

/// The facts of a file that must not change between the check and the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
}

impl Checked {
    /// Opens `path` (already resolved) and checks it on the open descriptor.
    pub(crate) fn open(path: &Path, check: PermissionCheck) -> Result<Checked, PermissionError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .map_err(|error| PermissionError::Stat {
                path: path.to_owned(),
                reason: io_text(&error),
            })?;
        let stat = nix::sys::stat::fstat(&file).map_err(|errno| PermissionError::Stat {
            path: path.to_owned(),
            reason: errno_text(errno),
        })?;
        check_mode_and_owner(path, &stat, check, nix::unistd::geteuid().as_raw())?;
        let walked = trusted_path::check(path).map_err(|problem| PermissionError::Path {
            path: path.to_owned(),
            problem,
        })?;
        if (walked.metadata.dev(), walked.metadata.ino()) != (stat.st_dev, stat.st_ino) {
            return Err(PermissionError::Changed {
                path: path.to_owned(),
            });
        }
        let fd_path = descriptor_path(&file);
        nix::unistd::access(&fd_path, AccessFlags::X_OK).map_err(|errno| {
            PermissionError::Access {
                path: path.to_owned(),
                reason: errno_text(errno),
            }
        })?;
        let is_script = is_regular(&stat) && starts_with_shebang(&fd_path);
        Ok(Checked {
            path: path.to_owned(),
            file,
            identity: Identity::of(&stat),
            is_script,
        })
    }

    /// `/proc/self/fd/N` of the open descriptor: the checked inode, whatever the path names now.
    pub(crate) fn descriptor_path(&self) -> PathBuf {
        descriptor_path(&self.file)
    }

    /// Fails unless `self.path` still names the checked file with the checked mode and owner.
    pub(crate) fn recheck_path(&self) -> Result<(), PermissionError> {
        match nix::sys::stat::stat(&self.path) {
            Ok(stat) if Identity::of(&stat) == self.identity => Ok(()),
            _ => Err(PermissionError::Changed {
                path: self.path.clone(),
            }),
        }
    }
}

impl Identity {
    fn of(stat: &FileStat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: stat.st_mode,
            uid: stat.st_uid,
        }
    }
}

/// Resolves a bare command name on `PATH` like Go's `exec.LookPath`; a path containing `/` is
/// returned as is. Relative `PATH` entries are skipped. The error is an errno-style text.
pub(crate) fn resolve_command(command: &Path) -> Result<PathBuf, String> {
    if command.as_os_str().is_empty() {
        return Err("no such file or directory (empty command)".to_owned());
    }
    if command.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Ok(command.to_owned());
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable_candidate(candidate))
        .ok_or_else(|| "no such file or directory (not found in PATH)".to_owned())
}

/// The reference's mode rule, plus our owner rule. Pure, so the matrix is tested without files.
pub(crate) fn check_mode_and_owner(
    path: &Path,
    stat: &FileStat,
    check: PermissionCheck,
    current_uid: u32,
) -> Result<(), PermissionError> {
    let mode = stat.st_mode;
    match check {
        PermissionCheck::Strict if mode & 0o077 != 0 => {
            return Err(PermissionError::GroupOrOthers {
                path: path.to_owned(),
            });
        }
        PermissionCheck::AllowGroupExec if mode & 0o027 != 0 => {
            return Err(PermissionError::OthersOrGroupWrite {
                path: path.to_owned(),
            });
        }
        PermissionCheck::Builtin if mode & 0o022 != 0 => {
            return Err(PermissionError::Writable {
                path: path.to_owned(),
            });
        }
        _ => {}
    }
    if !trusted_path::is_trusted_owner(stat.st_uid, current_uid) {
        return Err(PermissionError::Owner {
            path: path.to_owned(),
            owner: stat.st_uid,
            current: current_uid,
        });
    }
    Ok(())
}

/// The lowercase errno text Go prints (`no such file or directory`).
pub(crate) fn errno_text(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => desc.to_owned(),
    }
}

/// [`errno_text`] of an I/O error, or its own text when it carries no errno.
pub(crate) fn io_text(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => errno_text(Errno::from_raw(code)),
        None => error.to_string(),
    }
}

fn file_details(stat: &FileStat) -> FileDetails {
    let owner = match User::from_uid(Uid::from_raw(stat.st_uid)) {
        Ok(Some(user)) => user.name,
        Ok(None) => format!(
            "could not fetch name for UID {0}: user: unknown userid {0}",
            stat.st_uid
        ),
        Err(errno) => format!(
            "could not fetch name for UID {}: {}",
            stat.st_uid,
            errno_text(errno)
        ),
    };
    let group = match Group::from_gid(Gid::from_raw(stat.st_gid)) {
        Ok(Some(group)) => group.name,
        Ok(None) => format!(
            "could not fetch name for GID {0}: group: unknown groupid {0}",
            stat.st_gid
        ),
        Err(errno) => format!(
            "could not fetch name for GID {}: {}",
            stat.st_gid,
            errno_text(errno)
        ),
    };
    FileDetails {
        file_mode: format!("{:o}", stat.st_mode),
        owner,
        group,
    }
}

fn descriptor_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn is_regular(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// Reads the first two bytes of the checked inode through its descriptor path. A file we may
/// not read cannot be a script its interpreter could read either: it counts as a binary.
fn starts_with_shebang(fd_path: &Path) -> bool {
    let Ok(file) = File::open(fd_path) else {
        return false;
    };
    let mut magic = [0u8; 2];
    file.take(2).read_exact(&mut magic).is_ok() && &magic == b"#!"
}

/// Go's `findExecutable`: exists, is not a directory, has some execute bit.
fn is_executable_candidate(path: &Path) -> bool {
    nix::sys::stat::stat(path).is_ok_and(|stat| {
        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR
            && stat.st_mode & 0o111 != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_with(mode: u32, uid: u32) -> FileStat {
        // `FileStat` is a plain C struct with private padding: start from a real one.
        let mut stat = nix::sys::stat::stat("/").unwrap();
        stat.st_mode = libc::S_IFREG | mode;
        stat.st_uid = uid;
        stat
    }

    #[test]
    fn mode_and_owner_matrix() {
        use PermissionCheck::{AllowGroupExec, Strict};
        let check = |check, mode, uid, current, expect_ok: bool| {
            let result =
                check_mode_and_owner(Path::new("/x"), &stat_with(mode, uid), check, current);
            assert_eq!(
                result.is_ok(),
                expect_ok,
                "{check:?} {mode:o} uid {uid}: {result:?}"
            );
        };
        // The Datadog Agent's permission matrix (the exec bit is `access`'s business, tested on
        // real files).
        for (mode, ok) in [
            (0o700, true),
            (0o100, true),
            (0o600, true),
            (0o710, false),
            (0o701, false),
        ] {
            check(Strict, mode, 1000, 1000, ok);
        }
        for (mode, ok) in [
            (0o700, true),
            (0o750, true),
            (0o770, false),
            (0o701, false),
            (0o702, false),
        ] {
            check(AllowGroupExec, mode, 1000, 1000, ok);
        }
        // The built-in backend: installed like any program, but no one else may write it.
        for (mode, ok) in [
            (0o755, true),
            (0o700, true),
            (0o555, true),
            (0o775, false),
            (0o757, false),
            (0o722, false),
        ] {
            check(PermissionCheck::Builtin, mode, 0, 1000, ok);
        }
        check(PermissionCheck::Builtin, 0o755, 1001, 1000, false);
        // Owner: current user or root, in every mode.
        check(Strict, 0o700, 0, 1000, true);
        check(Strict, 0o700, 1001, 1000, false);
        check(AllowGroupExec, 0o750, 1001, 1000, false);
        check(Strict, 0o700, 1001, 0, false);
    }

    #[test]
    fn error_texts() {
        let path = PathBuf::from("/opt/bin/backend");
        let cases = [
            (
                PermissionError::Stat {
                    path: path.clone(),
                    reason: errno_text(Errno::ENOENT),
                },
                "invalid executable '/opt/bin/backend': can't stat it: no such file or directory",
            ),
            (
                PermissionError::GroupOrOthers { path: path.clone() },
                "invalid executable '/opt/bin/backend', 'group' or 'others' have rights on it",
            ),
            (
                PermissionError::OthersOrGroupWrite { path: path.clone() },
                "invalid executable '/opt/bin/backend', 'others' have rights on it or 'group' has write permissions on it",
            ),
            (
                PermissionError::Access {
                    path: path.clone(),
                    reason: errno_text(Errno::EACCES),
                },
                "invalid executable '/opt/bin/backend': can't access it: permission denied",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn bare_names_resolve_on_path() {
        assert_eq!(
            resolve_command(Path::new("sh"))
                .unwrap()
                .file_name()
                .unwrap(),
            "sh"
        );
        assert_eq!(resolve_command(Path::new("./x")).unwrap(), Path::new("./x"));
        assert!(resolve_command(Path::new("surely-not-a-command-here")).is_err());
    }
}
