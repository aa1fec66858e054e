//! Starting processes: the only code in keyturn that does (`clippy.toml` bans `Command::new`
//! everywhere else). Backends start through [`start`]; the daemon's `on_change` commands, which
//! are the operator's own and get no permission check, through [`start_command`].
//!
//! Every backend starts in a process group of its own (`process_group(0)`, which keeps
//! `std::process::Command` on its posix_spawn fast path; no `pre_exec`), with stdin, stdout and
//! stderr piped. The [`GroupGuard`] returned with the child kills the whole group with `SIGKILL`
//! when it is dropped armed: on timeout, on an output over the cap, on an I/O error, and when
//! the caller drops the fetch future. A child we did not wait for is reaped by tokio's orphan
//! queue, so no zombie is left behind.
//!
//! # No descendant outlives its run
//!
//! A process group does not hold a descendant that calls `setsid` (or `setpgid`), so killing
//! the group is not enough. On its first start keyturn makes itself a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`): every orphan among its descendants is re-parented to keyturn
//! instead of init. Every backend is started with `KEYTURN_RUN` set to a mark of its own (`<keyturn PID>.<run number>`), which its descendants inherit. When a run's
//! [`GroupGuard`] is dropped, [`sweep`] kills every child of keyturn that carries the run's
//! mark and is not a process keyturn waits for, reaps every such child that has ended, and
//! repeats until the run's leader has exited and none is left: killing one re-parents its own
//! children to keyturn, so a whole tree goes, whatever its sessions and groups. Orphans without
//! the mark (services an `on_change` command starts, the descendants of `keyturn exec`'s
//! program, or a backend descendant that cleared its environment) are never killed, only
//! reaped once they end: by the daemon as soon as `SIGCHLD` says so ([`reap_ended_orphans`]),
//! and by the next sweep otherwise (an embedder without the daemon).
//!
//! The processes tokio waits for are recorded with their start time, not by PID alone: PIDs
//! are reused, and an orphan that drew the PID of a recorded process that tokio has since
//! reaped must still be reaped.
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
//!   owner. The interpreter opens the script by path only after its own start-up
//!   (milliseconds, not microseconds), so the path itself must be out of others' reach: the
//!   permission check refuses a script (like any backend) reached through a directory or link
//!   that anyone but root or the user can change ([`crate::trusted_path`]). What remains is a
//!   swap by root or the user themselves, who could edit the script anyway.
//! - [`PermissionCheck::Skip`](super::PermissionCheck::Skip) (callers that vouch for the
//!   executable) is started by path without any check.
//!
//! # The program of `keyturn exec`
//!
//! [`start_program`] starts the operator's program with exactly the environment it is given,
//! stdio inherited, in keyturn's own process group (so it keeps the terminal), with
//! `std::process` rather than tokio: keyturn reaps it itself ([`reap`]), because as PID 1 it
//! must also reap orphans, and a `waitpid` on a process tokio waits for would steal its exit
//! status. While orphan reaping is on ([`track_children`]), every process tokio waits for is
//! recorded under one mutex that is held across its spawn, so [`reap_orphan`] can never reap
//! one of them, even one that exits before `spawn` returns.

use std::collections::HashMap;
#[cfg(feature = "daemon")]
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
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

/// Kills a process group with `SIGKILL` when dropped, unless disarmed; then, armed or not,
/// kills and reaps every descendant of the run that left the group ([`sweep`]).
///
/// Only disarm after the group leader was reaped: until then its PID (the group ID) cannot be
/// reused, so the kill cannot reach an unrelated group.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: Option<Pid>,
    /// The run's leader (with its start time), whether or not the group is still to be killed.
    leader: Option<Leader>,
    /// The run's `KEYTURN_RUN` mark (backends only).
    mark: Option<String>,
}

/// A run's leader: its PID and start time ([`start_time`]), which tell it from a later process
/// that drew the same PID after tokio reaped it.
#[derive(Debug, Clone, Copy)]
struct Leader {
    pid: Pid,
    started: Option<u64>,
}

impl Leader {
    /// Whether its PID still names it (a zombie included).
    fn is_there(self) -> bool {
        self.started
            .is_none_or(|started| start_time(self.pid) == Some(started))
    }

    /// Whether it was reaped (its PID is free, or names a later process).
    fn reaped(self) -> bool {
        state(self.pid).is_none() || !self.is_there()
    }

    /// Whether it has ended (a zombie, or reaped).
    fn ended(self) -> bool {
        !is_running(self.pid) || !self.is_there()
    }
}

/// The environment variable that marks a run's processes (see the module doc).
pub(crate) const RUN_MARK: &str = "KEYTURN_RUN";

/// How long [`sweep`] keeps killing and reaping a run's descendants before leaving the rest
/// to later sweeps. Killed processes normally end within milliseconds.
const SWEEP_PATIENCE: Duration = Duration::from_secs(2);

/// Starts `program` with `args`, `argv[0]` = `arg0`, in a new process group, in `working_dir`
/// when given.
pub(crate) fn start(
    program: Program<'_>,
    arg0: &Path,
    args: &[String],
    working_dir: Option<&Path>,
) -> Result<Started, StartError> {
    let path = match program {
        Program::Checked(checked) if !checked.is_script => checked.descriptor_path(),
        Program::Checked(checked) => checked.path.clone(),
        Program::Unchecked(path) => path.to_owned(),
    };
    // A relative program path means the same file whatever directory the child starts in.
    let path = match working_dir {
        Some(_) if path.is_relative() && path.components().count() > 1 => {
            std::path::absolute(&path).map_err(StartError::Io)?
        }
        _ => path,
    };
    // The one sanctioned process start in keyturn; see the module doc for why it is safe.
    #[allow(clippy::disallowed_methods)]
    let mut command = tokio::process::Command::new(&path);
    let mark = next_mark();
    command
        .arg0(arg0)
        .args(args)
        .env(RUN_MARK, &mark)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = working_dir {
        command.current_dir(dir);
    }
    if let Program::Checked(
        checked @ Checked {
            is_script: true, ..
        },
    ) = program
    {
        checked.recheck_path().map_err(StartError::Changed)?;
    }
    let child = spawn_tracked(&mut command).map_err(StartError::Io)?;
    // `program` (and so the checked descriptor) is borrowed until here: it outlives the spawn.
    Ok(Started::guarded(child, Some(mark)))
}

#[cfg(feature = "daemon")]
/// Starts an operator's own command (a template's `on_change`): no permission check and no
/// protocol, but the same care as a backend: a process group of its own (killed through the
/// returned guard), stdin closed, stdout and stderr piped for the caller to drain.
pub(crate) fn start_command(argv: &[String]) -> io::Result<Started> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    // The second sanctioned process start in keyturn: a command the operator configured.
    #[allow(clippy::disallowed_methods)]
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // No mark: an operator's command may start a service meant to outlive it.
    Ok(Started::guarded(spawn_tracked(&mut command)?, None))
}

#[cfg(feature = "daemon")]
/// Starts the program of `keyturn exec`: `argv[0]` looked up on the `PATH` of `env` when it
/// has no slash, with exactly `env` as its environment, stdio inherited, in keyturn's process
/// group. Returns its PID; the caller reaps it with [`reap`].
pub(crate) fn start_program(argv: &[OsString], env: &[(OsString, OsString)]) -> io::Result<Pid> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    // The third sanctioned process start in keyturn: the program the operator asked to run.
    // std, not tokio: keyturn reaps it itself (see the module doc).
    #[allow(clippy::disallowed_methods)]
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)));
    // Recorded like tokio's children, so a sweep never reaps it before `reap` does.
    let mut tracked = tokio_children();
    let child = command.spawn()?;
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("process ID out of range"))?;
    if let Some(set) = tracked.as_mut() {
        record(set, pid);
    }
    Ok(Pid::from_raw(pid))
}

#[cfg(feature = "daemon")]
/// How a process reaped by [`reap`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

#[cfg(feature = "daemon")]
/// Reaps `pid` (a child started by [`start_program`]) if it has ended, without blocking.
pub(crate) fn reap(pid: Pid) -> io::Result<Option<Exit>> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(Exit::Code(code))),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(Some(Exit::Signal(signal as i32))),
            Ok(_) => return Ok(None),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Processes tokio waits for, while orphan reaping is on (`None`: off): each PID with the
/// process's start time (`None` if it could not be read).
///
/// The start time tells a recorded process from a later one with its PID. A record outlives
/// its process until [`forget_reaped`] runs, and PIDs are reused (after 32,768 processes on a
/// default system): by PID alone, an orphan that drew a recorded PID would pass for tokio's
/// child and stay a zombie for good.
static TOKIO_CHILDREN: Mutex<Option<Tracked>> = Mutex::new(None);

type Tracked = HashMap<i32, Option<u64>>;

fn tokio_children() -> MutexGuard<'static, Option<Tracked>> {
    TOKIO_CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Turns on the record of processes tokio waits for, so that [`reap_orphan`] can tell orphans
/// (re-parented to keyturn as PID 1) from them. Call before any backend starts.
pub(crate) fn track_children() {
    tokio_children().get_or_insert_with(HashMap::new);
}

/// Spawns `command` (reaped by tokio), recording its PID while orphan reaping is on. The lock
/// is held across the spawn: [`reap_orphan`] waits for the record. The first spawn makes keyturn
/// a child subreaper and turns the record on.
fn spawn_tracked(command: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    become_subreaper();
    let mut tracked = tokio_children();
    let child = command.spawn()?;
    if let (Some(set), Some(pid)) = (tracked.as_mut(), child.id())
        && let Ok(pid) = i32::try_from(pid)
    {
        record(set, pid);
    }
    Ok(child)
}

/// Records `pid`, a child just started (not reaped: its waiter has not run yet, and
/// [`reap_orphan`] waits for the lock the caller holds), with its start time.
fn record(set: &mut Tracked, pid: i32) {
    set.insert(pid, start_time(Pid::from_raw(pid)));
}

/// Whether `pid` is the very process recorded under its PID (not a later one that drew it).
fn is_tracked(set: &Tracked, pid: Pid) -> bool {
    match set.get(&pid.as_raw()) {
        None => false,
        Some(None) => true,
        Some(Some(started)) => start_time(pid) == Some(*started),
    }
}

/// Reaps `pid`, a child of keyturn that is neither tokio's nor the caller's own program, if it
/// has ended. Returns whether it was reaped.
pub(crate) fn reap_orphan(pid: Pid) -> bool {
    let tracked = tokio_children();
    if tracked.as_ref().is_some_and(|set| is_tracked(set, pid)) {
        return false;
    }
    matches!(
        waitpid(pid, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

#[cfg(feature = "daemon")]
/// Reaps every child of keyturn that has ended and that neither tokio nor `keyturn exec`
/// waits for: the orphans re-parented to keyturn as a child subreaper.
pub(crate) fn reap_ended_orphans() {
    for pid in untracked_children() {
        if reap_orphan(pid) {
            tracing::debug!(%pid, "reaped an orphan");
        }
    }
    forget_reaped();
}

/// Forgets the recorded processes that no longer exist (tokio reaped them), so the record
/// stays as small as the number of backends and hooks alive at once.
pub(crate) fn forget_reaped() {
    if let Some(set) = tokio_children().as_mut() {
        // A zombie still exists (and keeps its start time); a process that no longer reads
        // with the recorded start time was reaped, even if its PID names another one now.
        set.retain(|&pid, started| match started {
            Some(started) => start_time(Pid::from_raw(pid)) == Some(*started),
            None => {
                nix::sys::signal::kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH)
            }
        });
    }
}

impl Started {
    /// A child started as the leader of its own process group, with the guard over that group.
    fn guarded(child: tokio::process::Child, mark: Option<String>) -> Started {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        // Not reaped yet: its waiter runs only once `child` is awaited or dropped.
        let leader = pgid.map(|pid| Leader {
            pid,
            started: start_time(pid),
        });
        Started {
            child,
            group: GroupGuard { pgid, leader, mark },
        }
    }
}

/// A fresh `KEYTURN_RUN` mark.
fn next_mark() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(feature = "daemon")]
/// Whether keyturn became a child subreaper: orphans of any descendant, `keyturn exec`'s
/// program's included, are then re-parented to keyturn, which must reap them.
pub(crate) fn is_subreaper() -> bool {
    nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

/// Makes keyturn a child subreaper (once) and turns on the record of processes it waits for.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        track_children();
        if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(%error, "cannot become a child subreaper: a backend's descendants that leave its process group may outlive it");
        }
    });
}

/// Kills every descendant of the run marked `mark` that left its process group, and reaps every
/// orphan that has ended, until the run's `leader` has exited and no marked process is left
/// among keyturn's children, or [`SWEEP_PATIENCE`] has passed.
fn sweep(mark: &str, leader: Option<Leader>) {
    let needle = format!("{RUN_MARK}={mark}\0");
    let started = Instant::now();
    let mut rounds = 0u32;
    forget_reaped();
    loop {
        let leader_ended = leader.is_none_or(Leader::ended);
        let mut left = false;
        for pid in untracked_children() {
            if reap_orphan(pid) {
                tracing::debug!(mark, %pid, "sweep reaped");
                continue;
            }
            match environment(pid) {
                Some(environ) if contains(&environ, needle.as_bytes()) => {
                    // ESRCH: it ended since it was listed; the next round reaps it.
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    left = true;
                }
                // Marked by another run (or by none): only reaped, once it has ended.
                Some(environ) if !environ.is_empty() => left |= is_zombie(pid),
                // An environment that reads empty, or cannot be read, belongs to a process whose
                // memory is already gone or going: it is exiting (killed with the group, say)
                // and becomes a zombie any moment now. Wait for it and reap it, or it would
                // stay a zombie until the next run's sweep. (A live process whose environment
                // keyturn may not read keeps the sweep going until its patience runs out.)
                _ => left |= state(pid).is_some(),
            }
        }
        if (leader_ended && !left) || started.elapsed() > SWEEP_PATIENCE {
            tracing::debug!(
                mark,
                rounds,
                leader_ended,
                left,
                elapsed_ms = started.elapsed().as_millis(),
                "sweep done"
            );
            return;
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// keyturn's children that it does not wait for itself (tokio's, `keyturn exec`'s program).
fn untracked_children() -> Vec<Pid> {
    let tracked = tokio_children().clone().unwrap_or_default();
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return children;
    };
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok())
                .map(Pid::from_raw)
                .filter(|&pid| !is_tracked(&tracked, pid)),
        );
    }
    children
}

/// `pid`'s environment block (`NAME=value` entries, each ending in NUL); empty once the
/// process has released its memory on the way out, `None` once it is reaped.
fn environment(pid: Pid) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// Whether an environment block holds `entry` (`NAME=value` and its NUL).
fn contains(environ: &[u8], entry: &[u8]) -> bool {
    environ.windows(entry.len()).any(|window| window == entry)
}

/// The fields of `/proc/PID/stat` after the command name, from the state on (`None` once the
/// process is reaped).
fn stat_fields(pid: Pid) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    Some(stat.rsplit_once(')')?.1.to_owned())
}

/// The state letter of `/proc/PID/stat` (`None` once the process is reaped).
fn state(pid: Pid) -> Option<char> {
    stat_fields(pid)?.trim_start().chars().next()
}

/// When `pid` started, in clock ticks after boot (field 22 of `/proc/PID/stat`; `None` once
/// it is reaped). With the PID, it names one process for good.
fn start_time(pid: Pid) -> Option<u64> {
    // Fields 3 (state) to 22 (starttime): the 20th after the command name.
    stat_fields(pid)?.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: Pid) -> bool {
    state(pid) == Some('Z')
}

fn is_running(pid: Pid) -> bool {
    !matches!(state(pid), None | Some('Z' | 'X'))
}

impl GroupGuard {
    /// Kills the group now (once).
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (nothing left in the group) is the only expected failure.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Leaves the group alone from now on (the sweep of descendants that left it still runs).
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        let Some(mark) = self.mark.take() else {
            return;
        };
        let leader = self.leader;
        // The common case, a leader reaped and nothing left behind, costs one look.
        if leader.is_none_or(Leader::reaped) && untracked_children().is_empty() {
            tracing::debug!(mark, "no sweep needed");
            return;
        }
        // Off the async workers when there is a runtime: killed processes take a moment to end.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || sweep(&mark, leader))),
            Err(_) => sweep(&mark, leader),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;
    use crate::backend::PermissionCheck;

    /// Executables are all written before any test spawns (a write descriptor leaked into a
    /// concurrent spawn makes `execve` fail with ETXTBSY). Each test owns one subdirectory.
    fn fixture(test: &str, name: &str) -> PathBuf {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let write = |path: PathBuf, body: &[u8]| {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, body).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
            };
            let echo = std::fs::read("/bin/echo").unwrap();
            let script = |word: &str| format!("#!/bin/sh\necho {word} \"$0\"\n").into_bytes();
            write(dir.path().join("binary/target"), &echo);
            write(dir.path().join("binary/other"), &script("swapped"));
            write(dir.path().join("script/target"), &script("original"));
            write(dir.path().join("script/other"), &script("swapped"));
            write(dir.path().join("mode/target"), &script("original"));
            write(dir.path().join("plain/target"), &script("original"));
            dir
        });
        dir.path().join(test).join(name)
    }

    async fn stdout_of(started: Result<Started, StartError>) -> String {
        // Keep the guard: dropping it would kill the group before the output is read.
        let Started {
            mut child,
            mut group,
        } = started.unwrap();
        drop(child.stdin.take());
        let output = child.wait_with_output().await.unwrap();
        group.disarm();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[tokio::test]
    async fn a_binary_replaced_after_the_check_still_runs_the_checked_file() {
        let target = fixture("binary", "target");
        let checked = Checked::open(&target, PermissionCheck::Strict).unwrap();
        assert!(!checked.is_script);
        std::fs::rename(fixture("binary", "other"), &target).unwrap();
        let started = start(
            Program::Checked(&checked),
            &target,
            &["checked".to_owned()],
            None,
        );
        assert_eq!(stdout_of(started).await, "checked\n");
    }

    #[tokio::test]
    async fn a_script_replaced_after_the_check_is_refused() {
        let target = fixture("script", "target");
        let checked = Checked::open(&target, PermissionCheck::Strict).unwrap();
        assert!(checked.is_script);
        std::fs::rename(fixture("script", "other"), &target).unwrap();
        let error = start(Program::Checked(&checked), &target, &[], None).unwrap_err();
        assert!(
            matches!(error, StartError::Changed(PermissionError::Changed { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_script_whose_mode_changed_after_the_check_is_refused() {
        let target = fixture("mode", "target");
        let checked = Checked::open(&target, PermissionCheck::Strict).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = start(Program::Checked(&checked), &target, &[], None).unwrap_err();
        assert!(matches!(error, StartError::Changed(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_unchanged_script_runs_with_its_real_path() {
        let target = fixture("plain", "target");
        let checked = Checked::open(&target, PermissionCheck::Strict).unwrap();
        let started = start(Program::Checked(&checked), &target, &[], None);
        assert_eq!(
            stdout_of(started).await,
            format!("original {}\n", target.display())
        );
    }

    // A record names one process, not a PID: a later process that drew the PID of a recorded
    // (and since reaped) one is not taken for it, so sweeps reap it once it ends.
    #[test]
    fn a_record_names_the_process_not_its_pid() {
        #[allow(clippy::disallowed_methods)]
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let started = start_time(pid).unwrap();
        let mut set = Tracked::new();
        set.insert(pid.as_raw(), Some(started));
        assert!(is_tracked(&set, pid));
        // What a reaped process's record looks like once its PID names another process.
        set.insert(pid.as_raw(), Some(started.wrapping_add(1)));
        assert!(!is_tracked(&set, pid));
        set.insert(pid.as_raw(), None);
        assert!(
            is_tracked(&set, pid),
            "an unknown start time keeps the PID's protection"
        );
        let leader = Leader {
            pid,
            started: Some(started),
        };
        assert!(!leader.ended() && !leader.reaped());
        let stranger = Leader {
            pid,
            started: Some(started.wrapping_add(1)),
        };
        assert!(stranger.ended() && stranger.reaped());
        child.kill().unwrap();
        // A sweep of another test may reap it first.
        let _ = child.wait();
    }
}
