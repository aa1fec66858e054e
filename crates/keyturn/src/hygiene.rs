//! Process hygiene: what a keyturn process does at start so that the secrets it holds in memory
//! do not leave it through the operating system. Start reading at [`harden`].
//!
//! - **Not dumpable** (`prctl(PR_SET_DUMPABLE, 0)`, always): no core file is written when the
//!   process crashes, and other processes of the same user cannot `ptrace` it or read its
//!   `/proc/<pid>/mem`.
//! - **Memory locked** (`mlockall(MCL_CURRENT | MCL_FUTURE)`, with `secret_memory_lock: true`):
//!   no page of the process is written to swap. Locking is attempted only when it cannot make a
//!   later allocation fail: with `MCL_FUTURE`, every page the process maps afterwards counts
//!   against `RLIMIT_MEMLOCK`, and once the process grows past a finite limit `mmap` and `brk`
//!   fail, which aborts a Rust program. So the soft limit is first raised to the hard limit, and
//!   memory is locked only when the limit is then unlimited or the process has
//!   `CAP_IPC_LOCK` (which ignores the limit).
//!
//! Invariant: hardening never fails the process. Whatever does not take effect becomes a warning
//! for the caller to log, and a memory lock that was asked for but is not in effect sets the
//! `keyturn_memory_lock_failed` gauge to 1.

use nix::errno::Errno;
use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// What [`harden`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// The process is no longer dumpable.
    pub non_dumpable: bool,
    /// The state of the memory lock.
    pub memory: MemoryLock,
    /// What did not take effect, and why: one line each, for the caller to log as warnings.
    pub warnings: Vec<String>,
}

/// The state of the memory lock after [`harden`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryLock {
    /// Not asked for (`secret_memory_lock: false`).
    NotRequested,
    /// All current and future pages are locked.
    Locked,
    /// Asked for but not in effect; a warning says why.
    Degraded,
}

/// Makes the process non-dumpable and, when `lock_memory` is set (the `secret_memory_lock`
/// setting), locks its memory. Call it once at start, before any secret is read. Never fails:
/// see [`Hardening::warnings`], and [`Hardening::memory`] for the daemon's
/// `keyturn_memory_lock_failed`.
pub fn harden(lock_memory: bool) -> Hardening {
    let mut warnings = Vec::new();
    let non_dumpable = match set_non_dumpable() {
        Ok(()) => true,
        Err(errno) => {
            warnings.push(format!(
                "could not mark the process non-dumpable, a core dump may contain secrets: \
                 {errno}"
            ));
            false
        }
    };
    let memory = if lock_memory {
        let limit = raise_memlock_limit();
        let privileged = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|status| has_capability(&status, CAP_IPC_LOCK));
        match lock_all(limit, privileged, || {
            mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        }) {
            Ok(()) => MemoryLock::Locked,
            Err(warning) => {
                warnings.push(warning);
                MemoryLock::Degraded
            }
        }
    } else {
        MemoryLock::NotRequested
    };
    Hardening {
        non_dumpable,
        memory,
        warnings,
    }
}

/// Bit of `CAP_IPC_LOCK` in the capability sets of `/proc/<pid>/status`.
const CAP_IPC_LOCK: u32 = 14;

#[cfg(target_os = "linux")]
fn set_non_dumpable() -> Result<(), Errno> {
    nix::sys::prctl::set_dumpable(false)
}

#[cfg(not(target_os = "linux"))]
fn set_non_dumpable() -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard one; returns the soft limit in effect, `None`
/// when it is unlimited (or cannot be read: then locking is attempted and its error reported).
fn raise_memlock_limit() -> Option<u64> {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return None;
    };
    let soft = if soft != hard && setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    (soft != RLIM_INFINITY).then_some(soft)
}

/// Locks memory with `lock` when that is safe (see the module doc); else, or when `lock` fails,
/// the warning to give.
fn lock_all(
    limit: Option<u64>,
    privileged: bool,
    lock: impl FnOnce() -> Result<(), Errno>,
) -> Result<(), String> {
    const NOT_LOCKED: &str = "secret_memory_lock: memory is not locked, secrets may be written \
                              to swap";
    if let (Some(limit), false) = (limit, privileged) {
        return Err(format!(
            "{NOT_LOCKED}: RLIMIT_MEMLOCK is {limit} bytes, and locking all memory would make \
             allocations fail once the process grows past it; raise the limit to unlimited \
             (systemd: LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK"
        ));
    }
    lock().map_err(|errno| format!("{NOT_LOCKED}: mlockall failed: {errno}"))
}

/// Whether the effective capability set in `status` (the text of `/proc/<pid>/status`) holds
/// capability number `bit`.
fn has_capability(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_lock(
        limit: Option<u64>,
        privileged: bool,
        syscall: Result<(), Errno>,
        expected: Result<(), &str>,
    ) {
        let mut called = false;
        let outcome = lock_all(limit, privileged, || {
            called = true;
            syscall
        });
        match (outcome, expected) {
            (Ok(()), Ok(())) => {}
            (Err(warning), Err(part)) => assert!(warning.contains(part), "{warning}"),
            (outcome, expected) => panic!("{outcome:?}, expected {expected:?}"),
        }
        // The syscall runs exactly when it cannot make a later allocation fail.
        assert_eq!(called, limit.is_none() || privileged);
    }

    #[test]
    fn locks_only_when_the_limit_cannot_be_hit() {
        check_lock(None, false, Ok(()), Ok(()));
        check_lock(Some(8 << 20), true, Ok(()), Ok(()));
        check_lock(
            Some(8 << 20),
            false,
            Ok(()),
            Err("RLIMIT_MEMLOCK is 8388608 bytes"),
        );
        check_lock(Some(0), false, Ok(()), Err("LimitMEMLOCK=infinity"));
    }

    #[test]
    fn a_failing_mlockall_degrades_with_a_warning() {
        check_lock(
            None,
            false,
            Err(Errno::ENOMEM),
            Err("mlockall failed: ENOMEM"),
        );
        check_lock(
            Some(1),
            true,
            Err(Errno::EPERM),
            Err("mlockall failed: EPERM"),
        );
        check_lock(
            None,
            true,
            Err(Errno::EAGAIN),
            Err("secrets may be written to swap"),
        );
    }

    #[test]
    fn reads_the_effective_capability_set() {
        let status = |capeff: &str| {
            format!("Name:\tkeyturn\nCapInh:\t0000000000004000\nCapEff:\t{capeff}\n")
        };
        assert!(has_capability(&status("000001ffffffffff"), CAP_IPC_LOCK));
        assert!(has_capability(&status("0000000000004000"), CAP_IPC_LOCK));
        assert!(!has_capability(&status("0000000000000000"), CAP_IPC_LOCK));
        assert!(!has_capability(&status("0000000000003fff"), CAP_IPC_LOCK));
        assert!(!has_capability(&status("not hex"), CAP_IPC_LOCK));
        assert!(!has_capability("Name:\tkeyturn\n", CAP_IPC_LOCK));
    }
}
