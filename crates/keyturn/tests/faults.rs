//! Fault injection through the library [`Resolver`]: a backend that hangs, leaves a grandchild
//! on its stdout, floods stdout or stderr, prints half an answer, fails after a valid answer,
//! dies by SIGKILL, answers some handles with errors, prints bytes that are not UTF-8, echoes a
//! value it returned earlier, or is swapped for a world-writable file, a symbolic link or
//! nothing between two refreshes.
//!
//! For every fault the tests assert that the failure names its cause, that the resolver keeps
//! every last-known-good value and reports the failure in its status, that the backend's whole
//! process group is gone (the leader reaped by keyturn, no live member left), and that the next
//! good refresh heals.
//!
//! The backend is `fault_backend.sh` (shared with the CLI's tests), driven by a private state
//! directory per test. Executables are all written once, before any test starts a process (a
//! file written while another thread spawns can leak its write descriptor into that child and
//! make `execve` fail with ETXTBSY); swaps only rename, link, chmod or delete.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use keyturn::backend::{FailureKind, RunRecord};
use keyturn::resolver::status::status_text;
use keyturn::resolver::{Observer, RefreshReport, ResolverOptions, Trigger};
use keyturn::settings::BackendSelection;
use keyturn::{Document, Format, Resolver, Settings};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

const BACKEND: &str = include_str!("fault_backend.sh");

/// How long a process may take to be reaped or killed.
const PATIENCE: Duration = Duration::from_secs(10);

/// The UID that owns the `foreign` fixture (nobody).
const FOREIGN_UID: u32 = 65534;

/// The directory of executables, written on first use: `backend` (shared, never swapped),
/// `swap/backend` (the one the swap test replaces), `swap/good` (a second good copy),
/// `swap/world-writable` (mode 0777) and, when running as root, `swap/foreign` (owned by
/// nobody).
fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<tempfile::TempDir> = OnceLock::new();
    FIXTURES
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("fault-fixtures")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::create_dir(dir.path().join("swap")).unwrap();
            for (name, mode) in [
                ("backend", 0o700),
                ("swap/backend", 0o700),
                ("swap/good", 0o700),
                ("swap/world-writable", 0o777),
                ("swap/foreign", 0o700),
            ] {
                let path = dir.path().join(name);
                fs::write(&path, BACKEND).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            let foreign = dir.path().join("swap/foreign");
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::chown(&foreign, Some(FOREIGN_UID), Some(FOREIGN_UID)).unwrap();
            } else {
                fs::remove_file(&foreign).unwrap();
            }
            dir
        })
        .path()
}

/// The private state directory of one fault backend (see `fault_backend.sh`).
struct State {
    dir: tempfile::TempDir,
}

impl State {
    fn new() -> State {
        let dir = tempfile::Builder::new()
            .prefix("fault-state")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        fs::create_dir(dir.path().join("store")).unwrap();
        State { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set(&self, handle: &str, value: &str) -> &State {
        fs::write(self.path(&format!("store/{handle}")), value).unwrap();
        let _ = fs::remove_file(self.path(&format!("store/{handle}.error")));
        self
    }

    fn fail(&self, handle: &str, error: &str) -> &State {
        fs::write(self.path(&format!("store/{handle}.error")), error).unwrap();
        self
    }

    fn mode(&self, mode: &str) {
        fs::write(self.path("mode"), mode).unwrap();
    }

    fn echo(&self, text: &str) {
        fs::write(self.path("echo"), text).unwrap();
    }

    /// Settings running `command` on this state, with a 1 s deadline.
    fn settings(&self, command: &Path) -> Settings {
        Settings::default()
            .with_backend(BackendSelection::command(command))
            .with_arguments([self.dir.path().display().to_string()])
            .with_timeout(Duration::from_secs(1))
    }

    /// The `(leaders, children)` recorded since the last call, which forgets them.
    fn take_pids(&self) -> (Vec<i32>, Vec<i32>) {
        let path = self.path("pids");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        let (mut leaders, mut children) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let (kind, pid) = line.split_once(' ').unwrap();
            let pid: i32 = pid.trim().parse().unwrap();
            match kind {
                "leader" => leaders.push(pid),
                _ => children.push(pid),
            }
        }
        (leaders, children)
    }
}

/// `(state, ppid, pgrp)` of a process from `/proc/PID/stat`, `None` when it is gone.
fn stat(pid: i32) -> Option<(char, i32, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Every live (not zombie) process in process group `pgid`.
fn live_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| matches!(stat(pid), Some((state, _, pgrp)) if pgrp == pgid && state != 'Z'))
        .collect()
}

/// Waits (bounded) until every backend run since the last check is fully gone: each leader
/// reaped by us (`kill(pid, 0)` fails with ESRCH, so it is not even a zombie), no live process
/// left in its group, and every process it left behind dead (a zombie only if its parent is
/// not us: orphans are reaped by init).
async fn assert_no_survivors(state: &State, what: &str) {
    let (leaders, children) = state.take_pids();
    assert!(!leaders.is_empty(), "{what}: the backend never ran");
    let me = std::process::id() as i32;
    let gone = || {
        leaders
            .iter()
            .all(|&pid| kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH))
            && leaders.iter().all(|&pgid| live_members(pgid).is_empty())
            && children.iter().all(|&pid| match stat(pid) {
                None => true,
                Some((state, ppid, _)) => state == 'Z' && ppid != me,
            })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !gone() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: backend processes survived: leaders {leaders:?} (groups: {:?}), children {children:?} (state, parent: {:?})",
            leaders.iter().map(|&l| live_members(l)).collect::<Vec<_>>(),
            children
                .iter()
                .map(|&pid| stat(pid).map(|(state, ppid, _)| (state, ppid)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn yaml(text: &str) -> Document {
    Document::parse(text.to_owned(), Format::Yaml).unwrap()
}

fn cached(resolver: &Resolver, handle: &str) -> Option<String> {
    resolver
        .cached(handle)
        .map(|secret| secret.expose().to_owned())
}

/// What one fault must produce.
struct Fault {
    /// The backend's mode.
    mode: &'static str,
    /// The kind every handle fails with.
    kind: FailureKind,
    /// What the message must say: the cause, in one or more fragments.
    cause: &'static [&'static str],
}

const DOCUMENT: &str = "db:\n  password: ENC[a]\nuser: ENC[b]\n";

/// The run records a resolver reported.
#[derive(Default)]
struct Runs(Mutex<Vec<RunRecord>>);

impl Observer for Runs {
    fn backend_run(&self, run: &RunRecord) {
        self.0.lock().unwrap().push(run.clone());
    }
}

impl Runs {
    /// How many runs ended with `exit`.
    fn ended(&self, exit: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|run| run.exit == exit)
            .count()
    }

    /// How many runs returned an unparsable output.
    fn unparsable(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|run| run.unparsable_output)
            .count()
    }
}

/// A resolver over `state` whose handles `a` and `b` resolved to `a0` and `b0`.
async fn primed(state: &State, command: &Path) -> Resolver {
    primed_observed(state, command, Arc::new(Runs::default())).await
}

/// [`primed`], reporting its runs to `runs`.
async fn primed_observed(state: &State, command: &Path, runs: Arc<Runs>) -> Resolver {
    state.set("a", "a0").set("b", "b0");
    state.mode("");
    let options = ResolverOptions::default().observer(runs);
    let resolver = Resolver::with_options(state.settings(command), options);
    let resolution = resolver.resolve(&yaml(DOCUMENT), "app.yaml", false).await;
    assert!(resolution.is_complete(), "{:?}", resolution.failures);
    assert_eq!(
        resolution.output.as_str(),
        "db:\n  password: \"a0\"\nuser: \"b0\"\n"
    );
    assert_no_survivors(state, "priming").await;
    resolver
}

/// The store moves to `a{n}`/`b{n}`; a refresh under the current fault must fail every handle
/// with `fault`'s kind and cause and keep `a{n-1}`/`b{n-1}`.
async fn check_failed_refresh(resolver: &Resolver, state: &State, n: usize, fault: &Fault) {
    let what = fault.mode;
    state.set("a", &format!("a{n}")).set("b", &format!("b{n}"));
    let started = tokio::time::Instant::now();
    let report = resolver.refresh(Trigger::Api).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: the refresh took {:?}",
        started.elapsed()
    );
    assert_eq!(report.candidates, 2, "{what}");
    assert!(report.changed.is_empty(), "{what}: {report:?}");
    assert_eq!(report.failures.len(), 2, "{what}: {report:?}");
    for failure in &report.failures {
        assert_eq!(failure.kind, fault.kind, "{what}: {failure:?}");
        for cause in fault.cause {
            assert!(
                failure.message.contains(cause),
                "{what}: the error does not name the cause '{cause}': {}",
                failure.message
            );
        }
    }
    assert_eq!(
        cached(resolver, "a").as_deref(),
        Some(&*format!("a{}", n - 1))
    );
    assert_eq!(
        cached(resolver, "b").as_deref(),
        Some(&*format!("b{}", n - 1))
    );
    let listed: Vec<String> = resolver.failures().into_iter().map(|f| f.handle).collect();
    assert_eq!(listed, ["a", "b"], "{what}");
    let status = status_text(resolver);
    assert!(
        status.contains("Secrets not resolved:") && fault.cause.iter().all(|c| status.contains(c)),
        "{what}: the status does not show the failure:\n{status}"
    );
    assert_no_survivors(state, what).await;
}

/// A good refresh after a fault applies `a{n}`/`b{n}` and clears the failures.
async fn check_healed(resolver: &Resolver, state: &State, n: usize, what: &str) {
    state.mode("");
    let report = resolver.refresh(Trigger::Api).await;
    assert!(report.is_success(), "{what}: did not heal: {report:?}");
    assert_eq!(changed(&report), ["a", "b"], "{what}");
    assert_eq!(cached(resolver, "a").as_deref(), Some(&*format!("a{n}")));
    assert_eq!(cached(resolver, "b").as_deref(), Some(&*format!("b{n}")));
    assert!(resolver.failures().is_empty(), "{what}");
    assert!(!status_text(resolver).contains("Secrets not resolved:"));
    let resolution = resolver.resolve(&yaml(DOCUMENT), "app.yaml", false).await;
    assert_eq!(
        resolution.output.as_str(),
        format!("db:\n  password: \"a{n}\"\nuser: \"b{n}\"\n")
    );
    assert_no_survivors(state, what).await;
}

fn changed(report: &RefreshReport) -> Vec<&str> {
    report.changed.iter().map(|c| c.handle.as_str()).collect()
}

// One resolver lives through every process fault in turn, healing after each.
#[tokio::test]
async fn every_process_fault_fails_cleanly_keeps_last_good_values_and_heals() {
    use FailureKind::{BackendError, InvalidResponse};
    let command = fixtures().join("backend");
    let faults = [
        Fault {
            mode: "hang",
            kind: BackendError,
            cause: &["timed out after 1 seconds"],
        },
        Fault {
            mode: "grandchild",
            kind: BackendError,
            cause: &["timed out after 1 seconds"],
        },
        // The cap (secret_backend_output_max_size, 1 MiB by default) is what stops the flood.
        Fault {
            mode: "flood",
            kind: BackendError,
            cause: &["command output was too long: exceeded 1048576 bytes"],
        },
        Fault {
            mode: "stderr-flood",
            kind: BackendError,
            cause: &["command output was too long: exceeded 1048576 bytes"],
        },
        Fault {
            mode: "partial",
            kind: InvalidResponse,
            cause: &["returned invalid JSON: 'EOF while parsing a string at line 1 column 17'"],
        },
        Fault {
            mode: "exit1",
            kind: BackendError,
            cause: &["exit status 1", "; stderr: upstream refused the request"],
        },
        Fault {
            mode: "sigkill",
            kind: BackendError,
            cause: &["killed by signal SIGKILL"],
        },
        Fault {
            mode: "binary",
            kind: InvalidResponse,
            cause: &["returned invalid JSON: 'invalid unicode code point at line 1 column"],
        },
        Fault {
            mode: "binary-stderr",
            kind: BackendError,
            cause: &["exit status 1", "; stderr: broken \u{FFFD}\u{FFFD} bytes"],
        },
    ];
    let state = State::new();
    let runs = Arc::new(Runs::default());
    let resolver = primed_observed(&state, &command, runs.clone()).await;
    for (i, fault) in faults.iter().enumerate() {
        let n = 2 * i + 1;
        state.mode(fault.mode);
        check_failed_refresh(&resolver, &state, n, fault).await;
        // The store moves on while the backend is broken; healing fetches the new values.
        state
            .set("a", &format!("a{}", n + 1))
            .set("b", &format!("b{}", n + 1));
        check_healed(&resolver, &state, n + 1, fault.mode).await;
    }
    assert_eq!(runs.ended("timeout"), 2);
    assert_eq!(runs.ended("error"), 2, "the two floods");
    assert_eq!(runs.ended("signal"), 1);
    assert_eq!(runs.ended("1"), 2);
    assert_eq!(runs.unparsable(), 2);
}

// Issue 9.11: descendants that leave the run's process group (`setsid`, a double fork) die with
// the run, whether it succeeds or times out.
#[tokio::test]
async fn descendants_that_leave_the_group_die_with_the_run() {
    let state = State::new();
    let resolver = primed(&state, &fixtures().join("backend")).await;
    state.mode("escape");
    let report = resolver.refresh(Trigger::Api).await;
    assert!(report.is_success(), "{report:?}");
    assert_no_survivors(&state, "escape").await;
    state.mode("escape-hang");
    let report = resolver.refresh(Trigger::Api).await;
    assert_eq!(report.failures.len(), 2, "{report:?}");
    assert_no_survivors(&state, "escape-hang").await;
}

// Swapping the executable between two runs: the check runs before every run, on the file the
// path names at that moment.
#[tokio::test]
async fn a_swapped_or_deleted_executable_is_refused_until_restored() {
    use FailureKind::BackendError;
    let swap = fixtures().join("swap");
    let command = swap.join("backend");
    let parked = swap.join("parked");
    let path = command.display().to_string();
    let state = State::new();
    let resolver = primed(&state, &command).await;
    // (what, how to break it, what the error must say); each is undone by `restore` below.
    type Break = fn(&Path, &Path);
    let mut cases: Vec<(&str, Break, String)> = vec![
        (
            "made world-writable",
            |command, _| {
                fs::set_permissions(command, fs::Permissions::from_mode(0o777)).unwrap();
            },
            format!("invalid executable '{path}', 'group' or 'others' have rights on it"),
        ),
        (
            "replaced by a world-writable file",
            |command, swap| fs::hard_link(swap.join("world-writable"), command).unwrap(),
            format!("invalid executable '{path}', 'group' or 'others' have rights on it"),
        ),
        (
            "replaced by a symbolic link to a world-writable file",
            |command, swap| symlink(swap.join("world-writable"), command).unwrap(),
            format!("invalid executable '{path}', 'group' or 'others' have rights on it"),
        ),
        (
            "replaced by a dangling symbolic link",
            |command, swap| symlink(swap.join("nothing-here"), command).unwrap(),
            format!("invalid executable '{path}': can't stat it: no such file or directory"),
        ),
        (
            "deleted",
            |_, _| {},
            format!("invalid executable '{path}': can't stat it: no such file or directory"),
        ),
    ];
    if swap.join("foreign").exists() {
        cases.push((
            "replaced by a symbolic link to another user's file",
            |command, swap| symlink(swap.join("foreign"), command).unwrap(),
            format!(
                "invalid executable '{path}': it is owned by UID {FOREIGN_UID}, but must be owned by the user running keyturn (UID 0) or by root"
            ),
        ));
    }
    for (i, (what, break_it, message)) in cases.into_iter().enumerate() {
        let n = 2 * i + 1;
        if what != "made world-writable" {
            fs::rename(&command, &parked).unwrap();
        }
        break_it(&command, &swap);
        state.set("a", &format!("a{n}")).set("b", &format!("b{n}"));
        let report = resolver.refresh(Trigger::Api).await;
        assert_eq!(report.failures.len(), 2, "{what}: {report:?}");
        for failure in &report.failures {
            assert_eq!(failure.kind, BackendError, "{what}");
            assert_eq!(failure.message, message, "{what}");
        }
        assert!(
            state.take_pids().0.is_empty(),
            "{what}: the refused executable ran"
        );
        assert_eq!(
            cached(&resolver, "a").as_deref(),
            Some(&*format!("a{}", n - 1))
        );
        assert!(status_text(&resolver).contains(&message), "{what}");
        // Restore, then heal.
        if what == "made world-writable" {
            fs::set_permissions(&command, fs::Permissions::from_mode(0o700)).unwrap();
        } else {
            let _ = fs::remove_file(&command);
            fs::rename(&parked, &command).unwrap();
        }
        state
            .set("a", &format!("a{}", n + 1))
            .set("b", &format!("b{}", n + 1));
        check_healed(&resolver, &state, n + 1, what).await;
    }
    // A symbolic link to a file that passes the check is followed, like the Agent's `stat`.
    fs::rename(&command, &parked).unwrap();
    symlink(swap.join("good"), &command).unwrap();
    state.set("a", "a-linked").set("b", "b-linked");
    let report = resolver.refresh(Trigger::Api).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(cached(&resolver, "a").as_deref(), Some("a-linked"));
    fs::remove_file(&command).unwrap();
    fs::rename(&parked, &command).unwrap();
}

// Some handles answered with errors: the others refresh, the failed ones keep their values.
#[tokio::test]
async fn per_handle_errors_fail_only_those_handles() {
    let state = State::new();
    let resolver = primed(&state, &fixtures().join("backend")).await;
    state.set("a", "a1").fail("b", "permission denied on b");
    let report = resolver.refresh(Trigger::Api).await;
    assert_eq!(changed(&report), ["a"]);
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(report.failures[0].handle, "b");
    assert_eq!(report.failures[0].kind, FailureKind::Error);
    assert_eq!(
        report.failures[0].message,
        "an error occurred while resolving 'b': permission denied on b"
    );
    assert_eq!(cached(&resolver, "a").as_deref(), Some("a1"));
    assert_eq!(cached(&resolver, "b").as_deref(), Some("b0"));
    let resolution = resolver.resolve(&yaml(DOCUMENT), "app.yaml", false).await;
    assert_eq!(
        resolution.output.as_str(),
        "db:\n  password: \"a1\"\nuser: \"b0\"\n"
    );
    assert!(status_text(&resolver).contains("permission denied on b"));
    assert_no_survivors(&state, "per-handle errors").await;
    state.set("a", "a2").set("b", "b2");
    check_healed(&resolver, &state, 2, "per-handle errors").await;
}

// A backend that repeats, on stderr or in an error text, values keyturn already holds: they
// must not reach the failure message (nor, through it, the status), whichever handles the run
// was for.
#[tokio::test]
async fn a_known_value_echoed_by_a_failing_backend_is_scrubbed() {
    let state = State::new();
    let secret = "QZXJ-echoed-JXZQ";
    let other = "QZXJ-other-JXZQ";
    state.set("a", secret).set("b", other);
    state.mode("");
    let resolver = Resolver::new(state.settings(&fixtures().join("backend")));
    let resolution = resolver.resolve(&yaml(DOCUMENT), "app.yaml", false).await;
    assert!(resolution.is_complete());
    state.echo(&format!("{secret} {other}"));
    for (mode, only, expected) in [
        (
            "echo-stderr",
            false,
            "; stderr: lookup failed; the previous value was <redacted> <redacted>",
        ),
        (
            "echo-error",
            false,
            "an error occurred while resolving 'a': rotation of <redacted> <redacted> failed",
        ),
        (
            "echo-stderr",
            true,
            "; stderr: lookup failed; the previous value was <redacted> <redacted>",
        ),
        (
            "echo-error",
            true,
            "an error occurred while resolving 'a': rotation of <redacted> <redacted> failed",
        ),
    ] {
        state.mode(mode);
        let report = if only {
            // A run for `a` alone still scrubs `b`'s value.
            resolver
                .refresh_handles(&["a".to_owned()], Trigger::Api)
                .await
        } else {
            (*resolver.refresh(Trigger::Api).await).clone()
        };
        assert_eq!(
            report.failures.len(),
            if only { 1 } else { 2 },
            "{mode}: {report:?}"
        );
        for failure in &report.failures {
            assert!(
                !failure.message.contains(secret) && !failure.message.contains("QZXJ"),
                "{mode}: a known value leaked: {}",
                failure.message
            );
        }
        assert!(
            report.failures[0].message.ends_with(expected),
            "{mode}: {}",
            report.failures[0].message
        );
        assert!(!status_text(&resolver).contains("QZXJ"), "{mode}");
        assert_eq!(cached(&resolver, "b").as_deref(), Some(other));
        assert_eq!(cached(&resolver, "a").as_deref(), Some(secret));
    }
    assert_no_survivors(&state, "echo").await;
}
