//! Starting a backend process: the only code in keyturn that does (`clippy.toml` bans
//! `Command::new` everywhere else).
//!
//! Every backend starts in a process group of its own (`process_group(0)`, which keeps
//! `std::process::Command` on its posix_spawn fast path; no `pre_exec`), with stdin, stdout and
//! stderr piped. The [`GroupGuard`] returned with the child kills the whole group with `SIGKILL`
//! when it is dropped armed: on timeout, on an output over the cap, on an I/O error, and when
//! the caller drops the fetch future. A child we did not wait for is reaped by tokio's orphan
//! queue, so no zombie is left behind.
//!
//! # Running the file that was checked
//!
//! The permission check opens the executable once and checks the open descriptor
//! ([`Checked`]). What runs depends on the file's first two bytes:
//!
//! - **Compiled binaries** are started as `/proc/self/fd/N`, the checked descriptor itself.
//!   The kernel resolves that path to the checked inode before close-on-exec closes `N`, so
//!   there is no window at all: replacing or editing the path after the check changes nothing.
//!   `argv[0]` is the configured command.
//! - **`#!` scripts** cannot run that way without breaking compatibility: the kernel would hand
//!   the interpreter `/proc/self/fd/N` as the script path, the interpreter opens it after `N`
//!   was closed, and `$0` would no longer be the real path (Datadog backends use
//!   `dirname "$0"`). Scripts are therefore started by their resolved path, right after
//!   re-checking that the path still names the checked `(dev, inode)` with the checked mode and
//!   owner. The window left is narrow but not zero: from that `stat` to the kernel's open in
//!   `execve` (microseconds), and from then to the interpreter opening the script by path (the
//!   interpreter's start-up). Exploiting it needs write access to a directory on the path,
//!   which the permission check does not cover in the reference either.
//! - [`PermissionCheck::Skip`](super::PermissionCheck::Skip) (keyturn's own backend) is started
//!   by path without any check.

use std::io;
use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::permissions::{Checked, PermissionError};

/// What to start.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Program<'a> {
    /// A checked executable.
    Checked(&'a Checked),
    /// An executable exempt from the check, by path.
    Unchecked(&'a Path),
}

/// A started backend and the guard over its process group.
#[derive(Debug)]
pub(crate) struct Started {
    /// The child, with stdin, stdout and stderr piped.
    pub(crate) child: tokio::process::Child,
    /// Kills the group when dropped armed.
    pub(crate) group: GroupGuard,
}

/// Why a backend could not be started.
#[derive(Debug)]
pub(crate) enum StartError {
    /// A script's path no longer names the checked file.
    Changed(PermissionError),
    /// The spawn itself failed.
    Io(io::Error),
}

/// Kills a process group with `SIGKILL` when dropped, unless disarmed.
///
/// Only disarm after the group leader was reaped: until then its PID (the group ID) cannot be
/// reused, so the kill cannot reach an unrelated group.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: Option<Pid>,
}

/// Starts `program` with `args`, `argv[0]` = `arg0`, in a new process group.
pub(crate) fn start(
    program: Program<'_>,
    arg0: &Path,
    args: &[String],
) -> Result<Started, StartError> {
    let path = match program {
        Program::Checked(checked) if !checked.is_script => checked.descriptor_path(),
        Program::Checked(checked) => checked.path.clone(),
        Program::Unchecked(path) => path.to_owned(),
    };
    // The one sanctioned process start in keyturn; see the module doc for why it is safe.
    #[allow(clippy::disallowed_methods)]
    let mut command = tokio::process::Command::new(&path);
    command
        .arg0(arg0)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Program::Checked(
        checked @ Checked {
            is_script: true, ..
        },
    ) = program
    {
        checked.recheck_path().map_err(StartError::Changed)?;
    }
    let child = command.spawn().map_err(StartError::Io)?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    // `program` (and so the checked descriptor) is borrowed until here: it outlives the spawn.
    Ok(Started {
        child,
        group: GroupGuard { pgid },
    })
}

impl GroupGuard {
    /// Kills the group now (once).
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (nothing left in the group) is the only expected failure.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Leaves the group alone from now on.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
