//! Fault injection through a running `keyturn serve`: every backend fault in turn against one
//! daemon, an audit file that cannot grow, and SIGKILL of the daemon while it renders.
//!
//! For each backend fault the daemon must answer the refresh with an error naming the cause,
//! stay up, keep the last-known-good values in the destination, show the failure in its status,
//! leave no backend process (group member or zombie) behind, and heal on the next good refresh.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::{PATIENCE, Serve, ServeOptions, Setup, wait_until};

const TEMPLATE: &str = "templates:\n  - {source: app.yaml, destination: out/app.yaml}\n";

/// The destination for values `a{n}` and `b{n}`.
fn rendered(n: usize) -> String {
    format!("db:\n  password: \"a{n}\"\nuser: \"b{n}\"\n")
}

/// A daemon over `app.yaml` whose destination holds generation 0.
fn started() -> (Setup, Serve) {
    let setup = Setup::new(TEMPLATE);
    setup
        .sandbox
        .write("app.yaml", "db:\n  password: ENC[a]\nuser: ENC[b]\n");
    // Swap targets are written before any process starts (see the library's tests/faults.rs).
    setup
        .sandbox
        .script("world-writable.sh", crate::daemon::FAULT_BACKEND, 0o777);
    setup.set("a", "a0").set("b", "b0");
    let serve = setup.serve(&ServeOptions {
        log_filter: "info,keyturn::backend::spawn=debug",
        ..ServeOptions::default()
    });
    assert_eq!(setup.read("out/app.yaml"), rendered(0));
    serve.assert_no_backend_survivors(&setup, "start-up");
    (setup, serve)
}

/// A fault: how to cause it and undo it, and what the refresh error must say.
struct Fault {
    what: &'static str,
    cause: fn(&Setup),
    undo: fn(&Setup),
    /// The failure kind of both handles.
    kind: &'static str,
    /// Fragments the error must contain.
    says: &'static [&'static str],
    /// Whether the backend runs at all (a refused executable does not).
    runs: bool,
}

fn mode(what: &'static str, kind: &'static str, says: &'static [&'static str]) -> Fault {
    let cause: fn(&Setup) = match what {
        "hang" => |s| s.mode("hang"),
        "grandchild" => |s| s.mode("grandchild"),
        "flood" => |s| s.mode("flood"),
        "partial" => |s| s.mode("partial"),
        "exit1" => |s| s.mode("exit1"),
        "sigkill" => |s| s.mode("sigkill"),
        "binary" => |s| s.mode("binary"),
        _ => unreachable!("{what}"),
    };
    Fault {
        what,
        cause,
        undo: |s| s.mode(""),
        kind,
        says,
        runs: true,
    }
}

fn park(setup: &Setup) {
    fs::rename(setup.path("backend.sh"), setup.path("parked.sh")).unwrap();
}

fn unpark(setup: &Setup) {
    let _ = fs::remove_file(setup.path("backend.sh"));
    fs::rename(setup.path("parked.sh"), setup.path("backend.sh")).unwrap();
}

fn faults() -> Vec<Fault> {
    vec![
        mode("hang", "backend_error", &["timed out after 1 seconds"]),
        mode(
            "grandchild",
            "backend_error",
            &["timed out after 1 seconds"],
        ),
        mode(
            "flood",
            "backend_error",
            &["command output was too long: exceeded 1048576 bytes"],
        ),
        mode(
            "partial",
            "invalid_response",
            &["returned invalid JSON: 'EOF while parsing a string at line 1 column 17'"],
        ),
        mode(
            "exit1",
            "backend_error",
            &["exit status 1", "; stderr: upstream refused the request"],
        ),
        mode("sigkill", "backend_error", &["killed by signal SIGKILL"]),
        mode(
            "binary",
            "invalid_response",
            &["returned invalid JSON: 'invalid unicode code point"],
        ),
        Fault {
            what: "made world-writable",
            cause: |s| {
                fs::set_permissions(s.path("backend.sh"), fs::Permissions::from_mode(0o777))
                    .unwrap();
            },
            undo: |s| {
                fs::set_permissions(s.path("backend.sh"), fs::Permissions::from_mode(0o700))
                    .unwrap();
            },
            kind: "backend_error",
            says: &["backend.sh', 'group' or 'others' have rights on it"],
            runs: false,
        },
        Fault {
            what: "replaced by a symbolic link to a world-writable file",
            cause: |s| {
                park(s);
                symlink(s.path("world-writable.sh"), s.path("backend.sh")).unwrap();
            },
            undo: unpark,
            kind: "backend_error",
            says: &["backend.sh', 'group' or 'others' have rights on it"],
            runs: false,
        },
        Fault {
            what: "deleted",
            cause: park,
            undo: unpark,
            kind: "backend_error",
            says: &["backend.sh': can't stat it: no such file or directory"],
            runs: false,
        },
    ]
}

// One daemon lives through every fault in turn.
#[test]
fn the_daemon_survives_every_backend_fault_and_heals() {
    let (setup, mut serve) = started();
    let idle_peak = serve.peak_rss_kib();
    for (i, fault) in faults().iter().enumerate() {
        let what = fault.what;
        let n = 2 * i + 1;
        (fault.cause)(&setup);
        setup.set("a", &format!("a{n}")).set("b", &format!("b{n}"));
        let started = Instant::now();
        let answer = setup
            .authed("POST", "/secret/refresh")
            .json()
            .expect(setup.port, 500);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            started.elapsed()
        );
        let body = answer.json();
        let error = body["error"].as_str().unwrap();
        for says in fault.says {
            assert!(
                error.contains(says),
                "{what}: the error does not name the cause '{says}': {error}"
            );
        }
        let failures = body["report"]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 2, "{what}: {body}");
        assert!(failures.iter().all(|f| f["kind"] == fault.kind), "{body}");
        serve.assert_up();
        assert_eq!(
            setup.read("out/app.yaml"),
            rendered(n - 1),
            "{what}: last-known-good values lost"
        );
        let status = setup
            .authed("GET", "/secrets")
            .json()
            .expect(setup.port, 200);
        let status = status.json();
        let unresolved = status["unresolvedSecrets"].as_array().unwrap();
        assert_eq!(unresolved.len(), 2, "{what}: {status}");
        for line in unresolved {
            let line = line.as_str().unwrap();
            assert!(
                fault.says.iter().all(|says| line.contains(says)),
                "{what}: {line}"
            );
        }
        assert_eq!(status["templates"][0]["state"], "written", "{what}");
        if fault.runs {
            serve.assert_no_backend_survivors(&setup, what);
        } else {
            assert!(
                setup.take_pids().0.is_empty(),
                "{what}: the refused executable ran"
            );
        }
        if what == "flood" {
            // The cap stopped the flood (asserted above); the daemon never held it.
            let peak = serve.peak_rss_kib();
            assert!(
                peak < 64 * 1024,
                "peak RSS {peak} KiB after a 100 MB flood (idle peak {idle_peak} KiB)"
            );
            println!("flood: peak RSS {peak} KiB (idle peak {idle_peak} KiB)");
        }

        // Heal: the store moved on meanwhile.
        (fault.undo)(&setup);
        setup
            .set("a", &format!("a{}", n + 1))
            .set("b", &format!("b{}", n + 1));
        let answer = setup
            .authed("POST", "/secret/refresh")
            .expect(setup.port, 200);
        assert!(
            answer.body.contains("Number of secrets reloaded: 2"),
            "{what}: {}",
            answer.body
        );
        assert_eq!(setup.read("out/app.yaml"), rendered(n + 1), "{what}");
        let status = setup
            .authed("GET", "/secrets")
            .json()
            .expect(setup.port, 200);
        assert!(
            status.json().get("unresolvedSecrets").is_none(),
            "{what}: {}",
            status.body
        );
        serve.assert_no_backend_survivors(&setup, what);
    }
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
}

// Per-handle errors: the other handle is applied and the destination rewritten with it, the
// failed one keeps its last-known-good value.
#[test]
fn per_handle_errors_keep_the_failed_handles_last_value() {
    let (setup, mut serve) = started();
    setup.set("a", "a1").fail("b", "permission denied on b");
    let answer = setup
        .authed("POST", "/secret/refresh")
        .json()
        .expect(setup.port, 500);
    assert_eq!(
        answer.json()["error"],
        "'b' (error) at user: an error occurred while resolving 'b': permission denied on b"
    );
    assert_eq!(
        setup.read("out/app.yaml"),
        "db:\n  password: \"a1\"\nuser: \"b0\"\n"
    );
    let status = setup.authed("GET", "/secrets").expect(setup.port, 200);
    assert!(
        status.body.contains(
            "'b' (error) at user: an error occurred while resolving 'b': permission denied on b"
        ),
        "{}",
        status.body
    );
    serve.assert_up();
    setup.set("b", "b1");
    setup
        .authed("POST", "/secret/refresh")
        .expect(setup.port, 200);
    assert_eq!(setup.read("out/app.yaml"), rendered(1));
    serve.assert_no_backend_survivors(&setup, "per-handle errors");
}

// While a backend is stuck (held at a gate), the daemon still answers.
#[test]
fn a_stuck_backend_does_not_block_the_api() {
    let (setup, mut serve) = started();
    fs::write(setup.path("state/gate"), "").unwrap();
    setup.mode("gate");
    setup.set("a", "a1").set("b", "b1");
    let refresh = setup.authed("POST", "/secret/refresh");
    let port = setup.port;
    let pending = std::thread::spawn(move || refresh.send(port));
    wait_until("the backend runs", || {
        setup.read("state/pids").contains("leader")
    });
    serve.assert_up();
    let status = setup.authed("GET", "/secrets").expect(setup.port, 200);
    assert!(status.body.contains("'a':"), "{}", status.body);
    setup.authed("GET", "/metrics").expect(setup.port, 200);
    assert!(!pending.is_finished(), "the gate is still closed");
    fs::remove_file(setup.path("state/gate")).unwrap();
    let answer = pending.join().unwrap().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(setup.read("out/app.yaml"), rendered(1));
    serve.assert_no_backend_survivors(&setup, "gate");
}

/// Pads `path` with lines of `x` up to exactly `size` bytes (its first line stays a record).
fn pad_to(path: &Path, size: u64) {
    let mut bytes = fs::read(path).unwrap();
    let missing = usize::try_from(size).unwrap() - bytes.len();
    assert!(missing >= 2, "{missing}");
    bytes.extend(std::iter::repeat_n(b'x', missing - 1));
    bytes.push(b'\n');
    fs::write(path, bytes).unwrap();
}

// The audit directory "full": the daemon runs under a file-size limit (RLIMIT_FSIZE via
// `prlimit --fsize`; as root a read-only directory would not stop the write), and the audit
// file is padded to just under, then exactly at, the limit. The refresh still applies its
// values and reports the audit error; no record is ever half written; lifting the limit heals.
#[test]
fn an_audit_file_that_cannot_grow_fails_whole_records_only() {
    super::require_prlimit();
    const LIMIT: u64 = 64 * 1024;
    let setup = Setup::new(TEMPLATE);
    setup
        .sandbox
        .write("app.yaml", "db:\n  password: ENC[a]\nuser: ENC[b]\n");
    setup.set("a", "a0").set("b", "b0");
    let mut serve = setup.serve(&ServeOptions {
        max_file_size: Some(LIMIT),
        ..ServeOptions::default()
    });
    let audit = setup.path("secret-audit-file.json");
    // The start-up record, then one of a refresh, written by the daemon itself.
    setup.set("a", "a1").set("b", "b1");
    setup
        .authed("POST", "/secret/refresh")
        .expect(setup.port, 200);
    assert_eq!(setup.read("secret-audit-file.json").lines().count(), 2);

    // Just under the limit: the single write is cut short, and truncated back.
    // Exactly at the limit: the write fails with EFBIG (and SIGXFSZ, which must not kill).
    for (n, (size, says)) in [
        (LIMIT - 10, "could not write a whole record to audit file"),
        (LIMIT, "File too large"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = n + 2;
        pad_to(&audit, size);
        let before = fs::read(&audit).unwrap();
        setup.set("a", &format!("a{n}")).set("b", &format!("b{n}"));
        let answer = setup
            .authed("POST", "/secret/refresh")
            .json()
            .expect(setup.port, 500);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.starts_with("could not write the audit file: ") && error.contains(says),
            "{error}"
        );
        serve.assert_up();
        assert_eq!(
            setup.read("out/app.yaml"),
            rendered(n),
            "values not applied"
        );
        assert!(
            fs::read(&audit).unwrap() == before,
            "a record was half written"
        );
        assert!(serve.log_text().contains(says), "{}", serve.log_text());
    }

    // Lift the limit: the next refresh appends one whole record.
    let lifted = Command::new("prlimit")
        .args(["--pid", &serve.pid.to_string(), "--fsize=unlimited"])
        .status()
        .unwrap();
    assert!(lifted.success());
    let before = fs::read(&audit).unwrap();
    setup.set("a", "a9").set("b", "b9");
    setup
        .authed("POST", "/secret/refresh")
        .expect(setup.port, 200);
    let after = fs::read(&audit).unwrap();
    assert_eq!(&after[..before.len()], before.as_slice());
    let added = std::str::from_utf8(&after[before.len()..]).unwrap();
    assert_eq!(added.matches('\n').count(), 1, "{added}");
    let record: serde_json::Value = serde_json::from_str(added).unwrap();
    assert_eq!(
        record["data"],
        serde_json::json!([{"handle": "a"}, {"handle": "b"}])
    );
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
}

/// Where the kill lands in one crash iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Right after the process started, or the refresh was sent.
    AtOnce,
    /// Once a temporary file is seen next to the destination.
    TempCreated,
    /// Once the temporary file has the full size (it is being synced or renamed).
    TempFull,
    /// Once the destination was replaced (the directory may not be synced yet).
    Replaced,
}

const POINTS: [Point; 4] = [
    Point::AtOnce,
    Point::TempCreated,
    Point::TempFull,
    Point::Replaced,
];

/// The generation a destination holds, checking that it is complete; `None` when absent.
fn generation_of(setup: &Setup, pad: usize) -> (Option<String>, Option<String>) {
    let big = fs::read(setup.path("out/big.json")).ok().map(|bytes| {
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("out/big.json is not complete ({} bytes): {e}", bytes.len())
        });
        assert_eq!(value["pad"].as_str().map(str::len), Some(pad));
        assert_eq!(value["a"], value["b"], "a torn generation");
        value["a"].as_str().unwrap().to_owned()
    });
    let small = fs::read_to_string(setup.path("out/small.yaml"))
        .ok()
        .map(|text| {
            let value = text
                .strip_prefix("key: \"")
                .and_then(|rest| rest.strip_suffix("\"\n"))
                .unwrap_or_else(|| panic!("out/small.yaml is not complete: {text:?}"));
            value.to_owned()
        });
    (big, small)
}

/// Temporary files left in `out/`.
fn temp_files(setup: &Setup) -> Vec<String> {
    fs::read_dir(setup.path("out"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

/// Watches `out/` until `point` is reached or `done` says the work finished (the kill then
/// lands after it), and returns whether the point was seen.
fn reach(
    setup: &Setup,
    point: Point,
    full_size: u64,
    old_inode: Option<u64>,
    done: impl Fn() -> bool,
) -> bool {
    let deadline = Instant::now() + PATIENCE;
    let mut last_check = Instant::now();
    loop {
        let seen = match point {
            Point::AtOnce => true,
            Point::TempCreated => temp_files(setup)
                .iter()
                .any(|name| name.starts_with(".big.json.")),
            Point::TempFull => temp_files(setup).iter().any(|name| {
                name.starts_with(".big.json.")
                    && fs::metadata(setup.path(&format!("out/{name}")))
                        .is_ok_and(|meta| meta.len() >= full_size)
            }),
            Point::Replaced => {
                fs::metadata(setup.path("out/big.json"))
                    .ok()
                    .map(|meta| meta.ino())
                    != old_inode
            }
        };
        if seen {
            return true;
        }
        if last_check.elapsed() >= Duration::from_millis(10) {
            if done() {
                return false;
            }
            last_check = Instant::now();
        }
        assert!(Instant::now() < deadline, "{point:?} never came");
        std::thread::yield_now();
    }
}

// SIGKILL of `keyturn serve` at various points of rendering a large template (8 MiB), at
// start-up and during a refresh: each destination is always absent, the old generation, or
// the new one complete. A restarted daemon writes the latest generation and removes the
// temporary files the killed ones left behind.
#[test]
fn sigkill_while_rendering_never_leaves_a_truncated_destination() {
    const PAD: usize = 8 << 20;
    let setup = Setup::new(
        "templates:\n\
         \x20 - {source: big.json, destination: out/big.json}\n\
         \x20 - {source: small.yaml, destination: out/small.yaml}\n",
    );
    setup.sandbox.write(
        "big.json",
        &format!(
            "{{\"pad\": \"{}\", \"a\": \"ENC[a]\", \"b\": \"ENC[b]\"}}\n",
            "p".repeat(PAD)
        ),
    );
    setup.sandbox.write("small.yaml", "key: ENC[a]\n");
    let mut on_disk: (Option<String>, Option<String>) = (None, None);
    let mut landed = Vec::new();
    // Every point in both phases, twice.
    let plan = (0..16).map(|i| (POINTS[(i / 2) % POINTS.len()], i % 2 == 0));
    for (i, (point, at_startup)) in plan.enumerate() {
        let point = &point;
        let generation = format!("gen-{i}");
        let full_size = (PAD + 2 * generation.len() + 30) as u64;
        let old_inode = fs::metadata(setup.path("out/big.json"))
            .ok()
            .map(|m| m.ino());
        setup.set("a", &generation).set("b", &generation);
        let serve = if at_startup {
            let mut serve = setup.spawn(&ServeOptions::default());
            // Rendering is done once the second template holds the new generation (the API
            // only answers after start-up rendering, so asking it would block the watch).
            let expected = format!("key: \"{generation}\"\n");
            let seen = reach(&setup, *point, full_size, old_inode, || {
                setup.read("out/small.yaml") == expected
            });
            landed.push((i, *point, "start-up", seen));
            assert!(serve.is_running() || !seen);
            serve
        } else {
            // Start on the previous generation, then change it and refresh.
            let previous = format!("gen-{}-before", i);
            setup.set("a", &previous).set("b", &previous);
            let serve = setup.serve(&ServeOptions::default());
            on_disk = generation_of(&setup, PAD);
            assert_eq!(on_disk.0.as_deref(), Some(previous.as_str()));
            let old_inode = fs::metadata(setup.path("out/big.json"))
                .ok()
                .map(|m| m.ino());
            setup.set("a", &generation).set("b", &generation);
            let refresh = setup.authed("POST", "/secret/refresh");
            let port = setup.port;
            let pending = std::thread::spawn(move || refresh.send(port));
            let seen = reach(&setup, *point, full_size, old_inode, || {
                pending.is_finished()
            });
            landed.push((i, *point, "refresh", seen));
            serve
        };
        assert_eq!(serve.stop(Signal::SIGKILL), None, "killed by a signal");
        let now = generation_of(&setup, PAD);
        for (file, (before, after)) in [
            ("big.json", (&on_disk.0, &now.0)),
            ("small.yaml", (&on_disk.1, &now.1)),
        ] {
            assert!(
                after == before || after.as_deref() == Some(generation.as_str()),
                "{file} after a kill at {point:?}: {after:?}, expected {before:?} or {generation}"
            );
        }
        on_disk = now;
    }
    println!(
        "kill points (iteration, point, phase, point reached before the work ended): {landed:?}"
    );

    // A clean start writes the latest generation and clears the leftovers.
    setup.set("a", "final").set("b", "final");
    let serve = setup.serve(&ServeOptions::default());
    assert_eq!(
        generation_of(&setup, PAD),
        (Some("final".to_owned()), Some("final".to_owned()))
    );
    assert_eq!(
        temp_files(&setup),
        Vec::<String>::new(),
        "stale temporary files"
    );
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
}

// A service that an `on_change` command leaves running (no run mark: never killed) is
// re-parented to the daemon, a child subreaper, and reaped as soon as it ends, with no backend
// run (whose sweep used to be the only reaper) after it.
#[test]
fn an_orphan_left_by_a_hook_is_reaped_when_it_ends() {
    let setup = Setup::new("");
    let pid_file = setup.path("orphan.pid");
    setup.settings(&format!(
        "templates:\n  - source: app.yaml\n    destination: out/app.yaml\n    \
         on_change: [/bin/sh, -c, 'sleep 1 & echo $! > {}']\n",
        pid_file.display()
    ));
    setup.sandbox.write("app.yaml", "a: ENC[a]\n");
    setup.set("a", "a0");
    let serve = setup.serve(&ServeOptions::default());
    setup.set("a", "a1");
    setup
        .authed("POST", "/secret/refresh")
        .expect(setup.port, 200);
    wait_until("the hook's service", || {
        setup.read("orphan.pid").trim().parse::<i32>().is_ok()
    });
    let orphan: i32 = setup.read("orphan.pid").trim().parse().unwrap();
    // Running, its hook gone: the daemon's child now.
    wait_until("the re-parenting", || {
        crate::daemon::stat(orphan).is_none_or(|stat| stat.ppid == serve.pid)
    });
    // Ended (after a second): reaped, not left a zombie of the daemon.
    let deadline = Instant::now() + PATIENCE;
    while crate::daemon::stat(orphan).is_some() {
        assert!(
            Instant::now() < deadline,
            "the hook's service stayed: {:?}\n{}",
            crate::daemon::stat(orphan).map(|stat| stat.state),
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(serve.stop(Signal::SIGTERM), Some(0));
}
