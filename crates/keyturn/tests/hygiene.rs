//! `hygiene::harden` in a process of its own (it changes process-wide state: the dumpable flag
//! and, where allowed, locks all memory): the process ends up non-dumpable, and the memory lock
//! is either in effect or reported as a warning (and as `Degraded`, which the daemon turns
//! into its `keyturn_memory_lock_failed` metric), never a failure.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use keyturn::hygiene::{MemoryLock, harden};

#[test]
fn harden_makes_the_process_non_dumpable_and_locks_or_reports() {
    let hardening = harden(true);

    assert!(hardening.non_dumpable, "{:?}", hardening.warnings);
    assert_eq!(nix::sys::prctl::get_dumpable(), Ok(false));
    let locked_kib = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap();
    match hardening.memory {
        MemoryLock::Locked => {
            assert!(hardening.warnings.is_empty(), "{:?}", hardening.warnings);
            assert!(locked_kib > 0, "VmLck is 0 after mlockall");
        }
        MemoryLock::Degraded => {
            assert_eq!(hardening.warnings.len(), 1, "{:?}", hardening.warnings);
            assert!(
                hardening.warnings[0].contains("memory is not locked"),
                "{:?}",
                hardening.warnings
            );
        }
        other => panic!("the lock was requested: {other:?}"),
    }

    // Asked again without the lock: nothing to report.
    let again = harden(false);
    assert_eq!(again.memory, MemoryLock::NotRequested);
    assert!(again.warnings.is_empty());
}
