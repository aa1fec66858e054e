//! Integration tests of `keyturn::backend` with real processes: `/bin/sh` fixture scripts and a
//! copy of `/bin/echo`, in a private (0700) directory under cargo's target tmpdir.
//!
//! Every fixture that gets executed is written once, by [`fixtures`], before any test starts a
//! process: a file written while another thread spawns can leak its write descriptor into that
//! child and make `execve` fail with ETXTBSY. Files that are only checked, never run, are
//! written by the tests themselves.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use keyturn::DOCS_URL;
use keyturn::backend::{
    BackendSpec, ExecutableReport, FailureKind, FetchError, FetchOptions, Fetched, PermissionCheck,
    PermissionError, RunRecord, Verdict, executable_report, fetch, fetch_recorded,
};

const SECRET: &str = "hunter2-SECRET";

/// Executable fixtures: name, mode, body.
const SCRIPTS: &[(&str, u32, &str)] = &[
    // stdout $1, stderr $2, exit ${3:-0}.
    (
        "answer",
        0o700,
        "cat >/dev/null; printf '%s' \"$1\"; printf '%s' \"${2-}\" >&2; exit \"${3:-0}\"",
    ),
    // Same, then killed by SIGKILL.
    (
        "sigkill",
        0o700,
        "cat >/dev/null; printf '%s' \"$1\"; printf '%s' \"${2-}\" >&2; kill -9 $$",
    ),
    // Same, then hangs.
    (
        "slow",
        0o700,
        "cat >/dev/null; printf '%s' \"$1\"; printf '%s' \"${2-}\" >&2; sleep 30",
    ),
    // stdout $1, a pause, stdout $2, exit ${3:-0}: keyturn may read $1 alone first.
    (
        "two-part",
        0o700,
        "cat >/dev/null; printf '%s' \"$1\"; sleep 0.2; printf '%s' \"$2\"; exit \"${3:-0}\"",
    ),
    // Saves the payload to $1, answers $2.
    ("record", 0o700, "cat > \"$1\"; printf '%s' \"$2\""),
    // $1 bytes on stdout, $2 bytes on stderr.
    (
        "flood",
        0o700,
        "cat >/dev/null; head -c \"$1\" /dev/zero | tr '\\0' a; head -c \"$2\" /dev/zero | tr '\\0' b >&2",
    ),
    // Exits at once, leaving a grandchild on the pipes; pids in $1 and $2.
    (
        "grandchild",
        0o700,
        "echo $$ > \"$1\"; sleep 30 & echo $! > \"$2\"; exit 0",
    ),
    // Leaves a grandchild on the pipes that escaped the process group; its pid in $1.
    (
        "escape",
        0o700,
        "setsid sleep 30 & echo $! > \"$1\"; exit 0",
    ),
    // Blocks with a grandchild; pids in $1 and $2.
    (
        "hang",
        0o700,
        "echo $$ > \"$1\"; sleep 30 & echo $! > \"$2\"; wait",
    ),
    // Answers handle `h` with the directory of $0.
    (
        "dirname",
        0o700,
        "cat >/dev/null; printf '{\"h\":{\"value\":\"%s\"}}' \"$(dirname \"$0\")\"",
    ),
    // Spec §13 item 39, adapted: requires payload version 1.1, answers the first handle.
    ("version11", 0o700, VERSION_SCRIPT),
    // The same, insisting on 1.0 like old Datadog helper scripts.
    ("version10", 0o700, VERSION_SCRIPT),
    // Saves the payload to $1 and answers $2 handles `handle-NNNNN` with `vN`.
    (
        "many",
        0o700,
        "cat > \"$1\"; i=0; printf '{'; while [ $i -lt \"$2\" ]; do [ $i -gt 0 ] && printf ','; \
         printf '\"handle-%05d\":{\"value\":\"v%d\"}' $i $i; i=$((i+1)); done; printf '}'",
    ),
    // Group may execute: for PermissionCheck::AllowGroupExec.
    (
        "group-exec",
        0o750,
        "cat >/dev/null; printf '{\"h\":{\"value\":\"v\"}}'",
    ),
];

const VERSION_SCRIPT: &str = "IFS= read -r line || true
case \"$line\" in
  *'\"version\":\"VERSION\"'*) ;;
  *) echo 'invalid version, expected VERSION' >&2; exit 1 ;;
esac
h=${line#*\\\"secrets\\\":[\\\"}; h=${h%%\\\"*}
printf '{\"%s\":{\"value\":\"arg_password\"}}' \"$h\"";

/// The directory of executable fixtures, written on first use.
fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<tempfile::TempDir> = OnceLock::new();
    FIXTURES
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("backend-fixtures")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            set_mode(dir.path(), 0o700);
            for (name, mode, body) in SCRIPTS {
                let body = match *name {
                    "version11" => body.replace("VERSION", "1.1"),
                    "version10" => body.replace("VERSION", "1.0"),
                    _ => (*body).to_owned(),
                };
                write_file(
                    &dir.path().join(name),
                    &format!("#!/bin/sh\n{body}\n"),
                    *mode,
                );
            }
            write_file(&dir.path().join("garbage"), "neither ELF nor #!\n", 0o700);
            // The same answering script as the built-in backend is installed (0755), as a
            // file others may write, and both again under a directory anyone may write (with
            // and without the sticky bit).
            let answer = format!("#!/bin/sh\n{}\n", SCRIPTS[0].2);
            write_file(&dir.path().join("builtin-ok"), &answer, 0o755);
            write_file(&dir.path().join("builtin-writable"), &answer, 0o757);
            for (sub, mode) in [("open", 0o777), ("sticky", 0o1777)] {
                let sub = dir.path().join(sub);
                std::fs::create_dir(&sub).unwrap();
                write_file(&sub.join("answer"), &answer, 0o700);
                write_file(&sub.join("builtin"), &answer, 0o755);
                set_mode(&sub, mode);
            }
            std::fs::copy("/bin/echo", dir.path().join("echo-copy")).unwrap();
            set_mode(&dir.path().join("echo-copy"), 0o700);
            dir
        })
        .path()
}

fn write_file(path: &Path, body: &str, mode: u32) {
    std::fs::write(path, body).unwrap();
    set_mode(path, mode);
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn spec(name: &str, args: &[&str]) -> BackendSpec {
    BackendSpec::new(fixtures().join(name)).with_args(args.iter().copied())
}

fn options() -> FetchOptions {
    FetchOptions::new(Duration::from_secs(20), 1024 * 1024)
}

fn handles(list: &[&str]) -> Vec<String> {
    list.iter().map(|handle| (*handle).to_owned()).collect()
}

/// One fetch of `requested`.
async fn run(
    spec: &BackendSpec,
    options: &FetchOptions,
    requested: &[&str],
) -> Result<Fetched, FetchError> {
    fetch(spec, options, &handles(requested)).await
}

/// The outcome of one resolved handle, as [`outcomes`] lists it.
fn resolved(handle: &str, value: &str) -> Vec<(String, Result<String, FailureKind>)> {
    vec![(handle.to_owned(), Ok(value.to_owned()))]
}

/// Handle -> value or failure kind, for compact expectations.
fn outcomes(fetched: &Fetched) -> Vec<(String, Result<String, FailureKind>)> {
    fetched
        .iter()
        .map(|(handle, result)| {
            (
                handle.clone(),
                result
                    .as_ref()
                    .map(|secret| secret.expose().to_owned())
                    .map_err(|error| error.kind),
            )
        })
        .collect()
}

fn cmd(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    set_mode(dir.path(), 0o700);
    dir
}

/// Waits (bounded) until `what` holds; the processes under test decide when, not a sleep.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `None` when the process is gone (reaped), else its state letter (`Z` for a zombie).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn dead(pid: i32) -> bool {
    matches!(process_state(pid), None | Some('Z'))
}

// §2.2, §13 items 52-53: the exact payload, distinct handles in order, stdin then EOF.
#[tokio::test]
async fn payload_is_exact() {
    let dir = private_dir();
    let saved = dir.path().join("payload");
    let saved_arg = saved.to_str().unwrap();
    let mut config = serde_json::Map::new();
    config.insert("foo".into(), "bar".into());
    config.insert("nested".into(), serde_json::json!({"a": [1, 2]}));
    // Backend type, config, timeout in seconds, handles, and the exact payload.
    type Case<'a> = (
        Option<&'a str>,
        Option<serde_json::Map<String, serde_json::Value>>,
        u64,
        Vec<&'a str>,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            None,
            None,
            30,
            vec!["db_user", "db_pass", "db_user"],
            r#"{"version":"1.1","secrets":["db_user","db_pass"],"secret_backend_timeout":30}"#,
        ),
        (
            Some("aws.secrets"),
            Some(config),
            60,
            vec!["a"],
            r#"{"version":"1.1","secrets":["a"],"secret_backend_timeout":60,"type":"aws.secrets","config":{"foo":"bar","nested":{"a":[1,2]}}}"#,
        ),
        (
            None,
            Some(serde_json::Map::new()),
            5,
            vec![],
            r#"{"version":"1.1","secrets":[],"secret_backend_timeout":5}"#,
        ),
    ];
    for (backend_type, config, timeout, requested, expected) in cases {
        let spec = spec("record", &[saved_arg, "{}"])
            .with_backend_type(backend_type.map(str::to_owned))
            .with_config(config.unwrap_or_default());
        let options = options().with_timeout(Duration::from_secs(timeout));
        let fetched = fetch(&spec, &options, &handles(&requested)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&saved).unwrap(), expected);
        assert_eq!(
            fetched.len(),
            requested.iter().collect::<BTreeSet<_>>().len()
        );
    }
}

// §2.3, §13 items 42, 47-51: per-handle classification through a real run, and its run record.
#[tokio::test]
async fn per_handle_outcomes() {
    use FailureKind::{Empty, Error, Missing};
    type Expected = Vec<(&'static str, Result<&'static str, FailureKind>)>;
    let cases: Vec<(&str, Vec<&str>, bool, Expected)> = vec![
        (
            r#"{"sec1":{"value":"arg_password"}}"#,
            vec!["sec1"],
            false,
            vec![("sec1", Ok("arg_password"))],
        ),
        (
            "{}",
            vec!["handle1", "handle2"],
            false,
            vec![("handle1", Err(Missing)), ("handle2", Err(Missing))],
        ),
        (
            r#"{"handle1":{"value":null,"error":"some error"}}"#,
            vec!["handle1"],
            false,
            vec![("handle1", Err(Error))],
        ),
        (
            r#"{"handle1":{"value":"v","error":"some error"}}"#,
            vec!["handle1"],
            false,
            vec![("handle1", Err(Error))],
        ),
        (
            r#"{"handle1":{"value":null}}"#,
            vec!["handle1"],
            false,
            vec![("handle1", Err(Empty))],
        ),
        (
            r#"{"handle1":{"value":""}}"#,
            vec!["handle1"],
            false,
            vec![("handle1", Err(Empty))],
        ),
        (
            r#"{"handle1":{"value":"a"},"handle2":{"value":"b"},"handle3":{"value":"c"}}"#,
            vec!["handle1", "handle2"],
            false,
            vec![("handle1", Ok("a")), ("handle2", Ok("b"))],
        ),
        (
            r#"{"h":{"value":"some data\r\n"}}"#,
            vec!["h"],
            true,
            vec![("h", Ok("some data"))],
        ),
        (
            r#"{"h":{"value":"some data\r\n"}}"#,
            vec!["h"],
            false,
            vec![("h", Ok("some data\r\n"))],
        ),
        (
            r#"{"h":{"value":"\n\n"}}"#,
            vec!["h"],
            true,
            vec![("h", Err(Empty))],
        ),
    ];
    for (output, requested, strip, expected) in cases {
        let options = options().with_remove_trailing_line_break(strip);
        let (record, fetched) =
            fetch_recorded(&spec("answer", &[output]), &options, &handles(&requested)).await;
        let fetched = fetched.unwrap_or_else(|error| panic!("{output}: {error}"));
        let expected: Vec<(String, Result<String, FailureKind>)> = expected
            .into_iter()
            .map(|(h, r)| (h.to_owned(), r.map(str::to_owned)))
            .collect();
        assert_eq!(outcomes(&fetched), expected, "{output}");
        for kind in [Missing, Error, Empty] {
            let count = fetched
                .iter()
                .filter(|(_, r)| r.as_ref().is_err_and(|e| e.kind == kind))
                .count();
            assert_eq!(failures(&record, kind), count, "{output} {kind:?}");
        }
        assert_eq!(record.exit, "0");
        assert!(!record.unparsable_output);
    }
    // Item 48: the exact error text; item 49: an empty result counts as `empty`.
    let fetched = fetch(
        &spec(
            "answer",
            &[r#"{"handle1":{"value":null,"error":"some error"}}"#],
        ),
        &options(),
        &handles(&["handle1"]),
    )
    .await
    .unwrap();
    assert_eq!(
        fetched[0].1.as_ref().unwrap_err().message,
        "an error occurred while resolving 'handle1': some error"
    );
    for output in [
        r#"{"handle1":{"value":null}}"#,
        r#"{"handle1":{"value":""}}"#,
    ] {
        let (record, fetched) = fetch_recorded(
            &spec("answer", &[output]),
            &options(),
            &handles(&["handle1"]),
        )
        .await;
        fetched.unwrap();
        assert_eq!(
            record.handle_failures,
            vec![(FailureKind::Empty, 1)],
            "{output}"
        );
    }
}

/// How many handles of `kind` a run's record counts.
fn failures(record: &RunRecord, kind: FailureKind) -> usize {
    record
        .handle_failures
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, count)| count)
        .sum()
}

/// One whole-run failure case: backend, args, options, handles, and what must come out.
struct Failing {
    name: &'static str,
    args: Vec<String>,
    options: FetchOptions,
    check: PermissionCheck,
    kind: FailureKind,
    message: String,
    exit: &'static str,
}

fn failing(
    name: &'static str,
    args: &[&str],
    kind: FailureKind,
    message: String,
    exit: &'static str,
) -> Failing {
    Failing {
        name,
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        options: options(),
        check: PermissionCheck::Strict,
        kind,
        message,
        exit,
    }
}

async fn check_failing(case: Failing) {
    let spec = spec(case.name, &[])
        .with_args(case.args)
        .with_check(case.check);
    let requested = handles(&["h1", "h2"]);
    let (record, result) = fetch_recorded(&spec, &case.options, &requested).await;
    let error = result.expect_err(&case.message);
    assert_eq!(error.kind, case.kind);
    assert_eq!(error.message, case.message);
    assert_eq!(record.exit, case.exit, "{}: exit label", case.message);
    assert_eq!(record.handle_failures, vec![(case.kind, 2)]);
    assert_eq!(
        record.unparsable_output,
        case.kind == FailureKind::InvalidResponse
    );
}

// §2.3-§2.6, §13 items 40, 43-46: whole-run failures, their texts and exit labels.
#[tokio::test]
async fn whole_run_failures() {
    use FailureKind::{BackendError, InvalidResponse};
    let valid = r#"{"h1":{"value":"v"},"h2":{"value":"v"}}"#;
    let other = |name: &str, reason: &str| {
        format!(
            "error while running '{}': {reason}. See docs for FAQ and troubleshooting methods: {DOCS_URL}",
            cmd(name)
        )
    };
    let small = options().with_output_max_size(20);
    let cases = vec![
        failing(
            "answer",
            &[valid, "", "1"],
            BackendError,
            other("answer", "exit status 1"),
            "1",
        ),
        failing(
            "answer",
            &[valid, "", "3"],
            BackendError,
            other("answer", "exit status 3"),
            "3",
        ),
        failing(
            "sigkill",
            &[valid],
            BackendError,
            other("sigkill", "killed by signal SIGKILL"),
            "signal",
        ),
        failing(
            "answer",
            &["{"],
            InvalidResponse,
            format!(
                "'{}' returned invalid JSON: 'EOF while parsing an object at line 1 column 1'. See docs for expected format: {DOCS_URL}",
                cmd("answer")
            ),
            "0",
        ),
        failing(
            "answer",
            &[r#"{"h1":{"value":"v"}} x"#],
            InvalidResponse,
            format!(
                "'{}' returned invalid JSON: 'trailing characters at line 1 column 22'. See docs for expected format: {DOCS_URL}",
                cmd("answer")
            ),
            "0",
        ),
        Failing {
            options: small.clone(),
            ..failing(
                "flood",
                &["50", "0"],
                BackendError,
                other("flood", "command output was too long: exceeded 20 bytes"),
                "error",
            )
        },
        Failing {
            options: small.clone(),
            ..failing(
                "flood",
                &["0", "21"],
                BackendError,
                other("flood", "command output was too long: exceeded 20 bytes")
                    + "; stderr not shown: stdout was not read to its end",
                "error",
            )
        },
        failing(
            "does-not-exist",
            &[],
            BackendError,
            format!(
                "invalid executable '{}': can't stat it: no such file or directory",
                cmd("does-not-exist")
            ),
            "error",
        ),
        failing(
            "group-exec",
            &[],
            BackendError,
            format!(
                "invalid executable '{}', 'group' or 'others' have rights on it",
                cmd("group-exec")
            ),
            "error",
        ),
        failing(
            "garbage",
            &[],
            BackendError,
            other("garbage", "exec format error"),
            "error",
        ),
        Failing {
            options: options().with_timeout(Duration::from_millis(300)),
            ..failing(
                "slow",
                &["{"],
                BackendError,
                format!(
                    "'{}' timed out after 1 seconds. You can increase secret_backend_timeout in your settings. Docs: {DOCS_URL}",
                    cmd("slow")
                ),
                "timeout",
            )
        },
    ];
    for case in cases {
        check_failing(case).await;
    }
    // No command configured (item 40).
    let empty = BackendSpec::new(PathBuf::new());
    let error = run(&empty, &options(), &["h"]).await.unwrap_err();
    assert_eq!(
        error.message,
        "invalid executable '': can't stat it: no such file or directory (empty command)"
    );
    // A directory passes the mode checks but cannot be executed.
    let dir = private_dir();
    let spec = BackendSpec::new(dir.path());
    let error = run(&spec, &options(), &["h"]).await.unwrap_err();
    assert_eq!(
        error.message,
        format!(
            "permission denied executing secret command '{}'",
            dir.path().display()
        )
    );
}

// stdout is classified as soon as it holds a whole answer, while the backend is still running:
// whatever it writes afterwards, and its exit status, still decide. The pause makes the early
// classification likely; the outcome is the same either way.
#[tokio::test]
async fn what_follows_an_early_whole_answer_still_counts() {
    let whole = r#"{"h":{"value":"v"}}"#;
    let first = run(&spec("two-part", &[whole, "\n"]), &options(), &["h"])
        .await
        .unwrap();
    assert_eq!(outcomes(&first), resolved("h", "v"));
    let split = run(
        &spec("two-part", &[r#"{"h":{"value":"v"}"#, "}"]),
        &options(),
        &["h"],
    )
    .await
    .unwrap();
    assert_eq!(outcomes(&split), resolved("h", "v"));
    for (rest, exit, kind, reason) in [
        (
            r#" {"h":{"value":"w"}}"#,
            "0",
            FailureKind::InvalidResponse,
            "trailing characters at line 1 column 21",
        ),
        ("", "1", FailureKind::BackendError, "exit status 1"),
    ] {
        let error = run(&spec("two-part", &[whole, rest, exit]), &options(), &["h"])
            .await
            .unwrap_err();
        assert_eq!(error.kind, kind, "{error}");
        assert!(error.message.contains(reason), "{error}");
    }
}

// §2.6: exactly at the cap is fine, on each stream independently.
#[tokio::test]
async fn output_cap_is_inclusive() {
    let json = r#"{"h":{"value":"v"}}"#;
    let at_limit = options().with_output_max_size(json.len());
    let stderr_at_limit = "e".repeat(json.len());
    let fetched = run(
        &spec("answer", &[json, &stderr_at_limit]),
        &at_limit,
        &["h"],
    )
    .await
    .unwrap();
    assert_eq!(outcomes(&fetched), resolved("h", "v"));
    // A flood far over the cap fails fast instead of reading it all.
    let started = tokio::time::Instant::now();
    let error = fetch(
        &spec("flood", &["100000000", "0"]),
        &options().with_output_max_size(4096),
        &handles(&["h"]),
    )
    .await
    .unwrap_err();
    assert!(error.message.contains("exceeded 4096 bytes"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // stderr well past its first allocation but under the cap: read whole, its tail shown.
    let error = run(&spec("flood", &["0", "300000"]), &options(), &["h"])
        .await
        .unwrap_err();
    assert_eq!(error.kind, FailureKind::InvalidResponse, "{error}");
    let tail = error.message.split("; stderr: ").nth(1).expect("a tail");
    assert_eq!(tail, "b".repeat(1024));
}

// Item 39 adapted; the stderr tail and the payload-version hint.
#[tokio::test]
async fn helper_contract_and_version_hint() {
    let fetched = run(&spec("version11", &[]), &options(), &["sec1"])
        .await
        .unwrap();
    assert_eq!(outcomes(&fetched), resolved("sec1", "arg_password"));
    let error = run(&spec("version10", &[]), &options(), &["sec1"])
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        format!(
            "error while running '{}': exit status 1. See docs for FAQ and troubleshooting methods: {DOCS_URL} \
             (keyturn sent payload version 1.1 and the backend seems to expect 1.0: set \
             secret_backend_protocol_version: \"1.0\" in your settings to send exactly \
             {{\"version\":\"1.0\",\"secrets\":[...]}}); stderr: invalid version, expected 1.0",
            cmd("version10")
        )
    );
    // With the setting the hint names, the same program answers.
    let old = spec("version10", &[]).with_protocol(keyturn_protocol::PayloadVersion::V1_0);
    let fetched = run(&old, &options(), &["sec1"]).await.unwrap();
    assert_eq!(outcomes(&fetched), resolved("sec1", "arg_password"));
    // A 1.1 program sent 1.0 fails without the hint (it would be wrong).
    let new = spec("version11", &[]).with_protocol(keyturn_protocol::PayloadVersion::V1_0);
    let error = run(&new, &options(), &["sec1"]).await.unwrap_err();
    assert!(
        !error.message.contains("secret_backend_protocol_version"),
        "{error}"
    );
}

// §2.5, item 41, 91: the deadline holds with a grandchild on the pipes, and the group dies.
#[tokio::test]
async fn timeout_kills_the_group_and_returns_in_time() {
    let dir = private_dir();
    let (child_file, grandchild_file) = (dir.path().join("child"), dir.path().join("grandchild"));
    let options = options().with_timeout(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let error = fetch(
        &spec(
            "grandchild",
            &[
                child_file.to_str().unwrap(),
                grandchild_file.to_str().unwrap(),
            ],
        ),
        &options,
        &handles(&["h"]),
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        error.message.contains("timed out after 1 seconds"),
        "{error}"
    );
    let child = read_pid(&child_file).unwrap();
    let grandchild = read_pid(&grandchild_file).unwrap();
    wait_until("grandchild killed", || dead(grandchild)).await;
    wait_until("child reaped", || process_state(child).is_none()).await;
}

// A grandchild that left the process group cannot be killed, but cannot hold the fetch either.
#[tokio::test]
async fn reading_is_bounded_by_the_deadline() {
    let dir = private_dir();
    let escaped_file = dir.path().join("escaped");
    let options = options().with_timeout(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let error = run(
        &spec("escape", &[escaped_file.to_str().unwrap()]),
        &options,
        &["h"],
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.message.contains("timed out"), "{error}");
    if let Some(pid) = read_pid(&escaped_file) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

// Dropping the fetch future (the caller gave up) kills the group and reaps the child.
#[tokio::test]
async fn dropped_future_kills_the_group() {
    let dir = private_dir();
    let (child_file, grandchild_file) = (dir.path().join("child"), dir.path().join("grandchild"));
    let hang = spec(
        "hang",
        &[
            child_file.to_str().unwrap(),
            grandchild_file.to_str().unwrap(),
        ],
    );
    let task = tokio::spawn(async move {
        let _ = run(&hang, &options(), &["h"]).await;
    });
    wait_until("backend started", || {
        read_pid(&child_file).is_some() && read_pid(&grandchild_file).is_some()
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // Item 90: a fetch cancelled before it is first polled never starts the command.
    let never = dir.path().join("never");
    let record = spec("record", &[never.to_str().unwrap(), "{}"]);
    drop(run(&record, &options(), &["h"]));
    let child = read_pid(&child_file).unwrap();
    let grandchild = read_pid(&grandchild_file).unwrap();
    wait_until("grandchild killed", || dead(grandchild)).await;
    wait_until("child reaped", || process_state(child).is_none()).await;
    assert!(!never.exists());
}

// More than a pipe buffer of payload, and an answer of 10,000 handles.
#[tokio::test]
async fn ten_thousand_handles() {
    let dir = private_dir();
    let saved = dir.path().join("payload");
    let requested: Vec<String> = (0..10_000).map(|i| format!("handle-{i:05}")).collect();
    let fetched = fetch(
        &spec("many", &[saved.to_str().unwrap(), "10000"]),
        &options(),
        &requested,
    )
    .await
    .unwrap();
    let payload = std::fs::read(&saved).unwrap();
    assert!(payload.len() > 128 * 1024, "{}", payload.len());
    let request = keyturn_protocol::Request::from_json(&payload).unwrap();
    assert_eq!(request.secrets, requested);
    assert_eq!(fetched.len(), 10_000);
    for (i, (handle, result)) in fetched.iter().enumerate() {
        assert_eq!(handle, &requested[i]);
        assert_eq!(result.as_ref().unwrap().expose(), format!("v{i}"));
    }
}

// A compiled binary runs from its checked descriptor; scripts keep their real `$0`.
#[tokio::test]
async fn binaries_and_scripts_run() {
    let json = r#"{"h":{"value":"from-echo"}}"#;
    let fetched = run(&spec("echo-copy", &["-n", json]), &options(), &["h"])
        .await
        .unwrap();
    assert_eq!(outcomes(&fetched), resolved("h", "from-echo"));
    let fetched = run(&spec("dirname", &[]), &options(), &["h"])
        .await
        .unwrap();
    assert_eq!(
        outcomes(&fetched),
        [("h".to_owned(), Ok(fixtures().display().to_string()))]
    );
    // AllowGroupExec accepts 0750.
    let spec = spec("group-exec", &[]).with_check(PermissionCheck::AllowGroupExec);
    let fetched = run(&spec, &options(), &["h"]).await.unwrap();
    assert_eq!(outcomes(&fetched), resolved("h", "v"));
}

// §2.1: a bare name is looked up on PATH and checked there; Skip runs it unchecked.
#[tokio::test]
async fn bare_names_and_skip() {
    let strict = BackendSpec::new("sh");
    let error = run(&strict, &options(), &["h"]).await.unwrap_err();
    assert!(
        error.message.starts_with("invalid executable '/")
            && error.message.contains("/sh', 'group' or 'others'"),
        "{error}"
    );
    let skip = BackendSpec::new("sh")
        .with_args([
            "-c",
            r#"cat >/dev/null; printf '{"h":{"value":"builtin"}}'"#,
        ])
        .with_check(PermissionCheck::Skip);
    let fetched = run(&skip, &options(), &["h"]).await.unwrap();
    assert_eq!(outcomes(&fetched), resolved("h", "builtin"));
}

/// Regression (issue 9, item 5): a backend reached through a directory others could write was
/// run, and a `#!` script there could be swapped during its interpreter's start-up. It is now
/// refused, by a run and by the report `keyturn check` prints, for scripts and the built-in
/// backend alike; in a sticky directory the entry's owner counts, so it runs.
#[tokio::test]
async fn backends_on_paths_others_can_change_are_refused() {
    let answer = r#"{"h":{"value":"v"}}"#;
    let fixtures = std::fs::canonicalize(fixtures()).unwrap();
    for (name, check) in [
        ("answer", PermissionCheck::Strict),
        ("builtin", PermissionCheck::Builtin),
    ] {
        let open = spec(&format!("open/{name}"), &[answer]).with_check(check);
        let expected = format!(
            "invalid executable '{}': directory '{}' is writable by its group and others (mode 0777) and not sticky",
            open.command().display(),
            fixtures.join("open").display()
        );
        let error = run(&open, &options(), &["h"]).await.unwrap_err();
        assert!(error.message.starts_with(&expected), "{error}");
        assert_eq!(
            verdict(&executable_report(open.command(), check)),
            Err(expected)
        );

        let sticky = spec(&format!("sticky/{name}"), &[answer]).with_check(check);
        let fetched = run(&sticky, &options(), &["h"]).await.unwrap();
        assert_eq!(outcomes(&fetched), resolved("h", "v"), "{name}");
    }
}

/// Regression (issue 9, item 10): keyturn's own backend ran without any check, even a file
/// others could write. Installed like any program (0755, root's or the user's) it runs; a
/// file others may write, or another user's, is refused.
#[tokio::test]
async fn the_builtin_backend_is_checked_too() {
    let answer = r#"{"h":{"value":"v"}}"#;
    let installed = spec("builtin-ok", &[answer]).with_check(PermissionCheck::Builtin);
    let fetched = run(&installed, &options(), &["h"]).await.unwrap();
    assert_eq!(outcomes(&fetched), resolved("h", "v"));

    let writable = spec("builtin-writable", &[answer]).with_check(PermissionCheck::Builtin);
    let error = run(&writable, &options(), &["h"]).await.unwrap_err();
    let expected = format!(
        "invalid executable '{}': group or others may write it",
        writable.command().display()
    );
    assert!(error.message.starts_with(&expected), "{error}");

    if nix::unistd::geteuid().is_root() {
        let dir = private_dir();
        let foreign = dir.path().join("keyturn-backend");
        write_file(&foreign, "#!/bin/sh\n", 0o755);
        nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        assert_eq!(
            executable_report(&foreign, PermissionCheck::Builtin).verdict,
            Verdict::Denied(PermissionError::Owner {
                path: foreign.clone(),
                owner: 4242,
                current: 0
            })
        );
    }
}

fn verdict(report: &ExecutableReport) -> Result<(), String> {
    match &report.verdict {
        Verdict::Ok | Verdict::NotChecked => Ok(()),
        Verdict::Denied(error) => Err(error.to_string()),
        other => Err(format!("an unknown verdict: {other:?}")),
    }
}

// §3.1, §13 items 55-58: the permission matrix, owner, symlinks, and the status details.
#[test]
fn permission_matrix_and_report() {
    use PermissionCheck::{AllowGroupExec, Strict};
    let dir = private_dir();
    let matrix = [
        (Strict, 0o700, true),
        (Strict, 0o100, true),
        (Strict, 0o600, false),
        (Strict, 0o710, false),
        (Strict, 0o701, false),
        (AllowGroupExec, 0o700, true),
        (AllowGroupExec, 0o750, true),
        (AllowGroupExec, 0o770, false),
        (AllowGroupExec, 0o701, false),
        (AllowGroupExec, 0o702, false),
    ];
    for (check, mode, ok) in matrix {
        let path = dir.path().join(format!("m{mode:o}"));
        write_file(&path, "#!/bin/sh\n", mode);
        let report = executable_report(&path, check);
        assert_eq!(
            verdict(&report).is_ok(),
            ok,
            "{check:?} {mode:o}: {report:?}"
        );
        assert_eq!(
            report.details.as_ref().unwrap().file_mode,
            format!("100{mode:o}")
        );
    }
    let path = |name: &str| dir.path().join(name);
    let text = |name: &str, check| verdict(&executable_report(&path(name), check)).unwrap_err();
    assert_eq!(
        text("m600", Strict),
        format!(
            "invalid executable '{}': can't access it: permission denied",
            path("m600").display()
        )
    );
    assert_eq!(
        text("m770", AllowGroupExec),
        format!(
            "invalid executable '{}', 'others' have rights on it or 'group' has write permissions on it",
            path("m770").display()
        )
    );
    for check in [Strict, AllowGroupExec] {
        let report = executable_report(&path("missing"), check);
        assert_eq!(
            verdict(&report).unwrap_err(),
            format!(
                "invalid executable '{}': can't stat it: no such file or directory",
                path("missing").display()
            )
        );
        assert_eq!(
            report.details.unwrap_err(),
            format!(
                "could not stat {}: no such file or directory",
                path("missing").display()
            )
        );
    }
    // The target's mode is checked through a symlink, and the error names the link.
    symlink(path("m700"), path("good-link")).unwrap();
    symlink(path("m701"), path("bad-link")).unwrap();
    symlink(path("missing"), path("dangling")).unwrap();
    assert_eq!(
        verdict(&executable_report(&path("good-link"), Strict)),
        Ok(())
    );
    assert_eq!(
        text("bad-link", Strict),
        format!(
            "invalid executable '{}', 'group' or 'others' have rights on it",
            path("bad-link").display()
        )
    );
    assert!(text("dangling", Strict).contains("can't stat it: no such file or directory"));
    // Details of a 0700 file of ours (item 58).
    let details = executable_report(&path("m700"), Strict).details.unwrap();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap();
    let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            details.file_mode.as_str(),
            details.owner.as_str(),
            details.group.as_str()
        ),
        ("100700", user.name.as_str(), group.name.as_str())
    );
    assert_eq!(
        executable_report(&path("m777-absent"), PermissionCheck::Skip).verdict,
        Verdict::NotChecked
    );
    // Owner: only root can hand a file to someone else.
    if nix::unistd::geteuid().is_root() {
        let foreign = path("foreign");
        write_file(&foreign, "#!/bin/sh\n", 0o700);
        nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        let report = executable_report(&foreign, Strict);
        assert_eq!(
            report.verdict,
            Verdict::Denied(PermissionError::Owner {
                path: foreign.clone(),
                owner: 4242,
                current: 0
            })
        );
        assert!(report.details.unwrap().owner.contains("4242"));
    }
}

/// A `MakeWriter` collecting everything logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// §13 item 89 and the scrubbing promise: no value reaches an error text, a Debug print or a
// log line on any path; handles and stderr never reach a log line.
#[tokio::test]
async fn no_value_leaks() {
    // A callsite caches its interest when it is first hit, and that may be on another test's
    // thread, where no subscriber is installed. While a single dispatcher is registered,
    // tracing asks only the hitting thread's default (none there: "never", for good); with two,
    // it asks every registered one. So an inert second dispatcher, alive for the whole test,
    // makes every thread count ours. (Recomputing interest after installing ours cannot cover
    // a callsite first hit later on another thread: that once left this test with no log.)
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // And recompute what was cached before ours existed.
    tracing::callsite::rebuild_interest_cache();

    let value = |v: &str| format!(r#"{{"handle-name":{{"value":"{v}"}}}}"#);
    let plain = value(SECRET);
    let escaped = value(&format!(r#"x\"{SECRET}\"y"#));
    let echo = format!("STDERR-MARKER I got {SECRET}\n");
    // How a backend that logs its own JSON answer prints the value `x"<secret>"y`.
    let echo_escaped = format!("STDERR-MARKER I answered x\\\"{SECRET}\\\"y\n");
    let straddling = format!(
        "{}{SECRET}{} STDERR-MARKER",
        "A".repeat(5000),
        "B".repeat(1000)
    );
    let truncated = format!(r#"{{"handle-name":{{"value":"{SECRET}"#);
    let invalid_shape = format!(r#"{{"handle-name":"{SECRET}"}}"#);
    let trailing = format!("{plain} {SECRET}");
    let per_handle = format!(
        r#"{{"handle-name":{{"error":"no luck, other was {SECRET}"}},"other":{{"value":"{SECRET}"}}}}"#
    );
    // Issue 9.4c: a repeated handle's first value, echoed.
    let repeated =
        format!(r#"{{"handle-name":{{"value":"{SECRET}"}},"handle-name":{{"value":"other"}}}}"#);
    // Issue 9.4b: the value `ä<secret>&` as Python's and Go's JSON encoders print it.
    let html = value(&format!("ä<{SECRET}>&"));
    let echo_python = format!("STDERR-MARKER answered \\u00e4<{SECRET}>&\n");
    let echo_go = format!("STDERR-MARKER answered ä\\u003c{SECRET}\\u003e\\u0026\n");
    let tiny = options().with_output_max_size(30);
    let quick = options().with_timeout(Duration::from_millis(500));
    // Backend, its args, options, and whether the error carries a stderr tail (not when stdout
    // was not read to its end or is not a valid answer: unread, half-read or unparsed values
    // cannot be scrubbed).
    let cases: Vec<(&str, Vec<&str>, FetchOptions, bool)> = vec![
        ("answer", vec![&plain, &echo, "1"], options(), true),
        (
            "answer",
            vec![&escaped, &echo_escaped, "1"],
            options(),
            true,
        ),
        ("answer", vec![&plain, &straddling, "1"], options(), true),
        ("sigkill", vec![&plain, &echo], options(), true),
        ("answer", vec![&truncated, &echo], options(), false),
        ("answer", vec![&invalid_shape, &echo], options(), false),
        ("answer", vec![&trailing, &echo], options(), false),
        ("answer", vec![&per_handle, &echo], options(), true),
        ("answer", vec![&repeated, &echo, "1"], options(), true),
        ("answer", vec![&html, &echo_python, "1"], options(), true),
        ("answer", vec![&html, &echo_go, "1"], options(), true),
        ("answer", vec![&plain, &echo, "0"], tiny, false),
        ("slow", vec![&truncated, &echo], quick.clone(), false),
        ("slow", vec!["", "STDERR-MARKER waiting"], quick, false),
        ("answer", vec![&plain, &echo], options(), true),
    ];
    let mut texts = Vec::new();
    for (name, args, options, has_tail) in cases {
        let result: Result<Fetched, FetchError> =
            fetch(&spec(name, &args), &options, &handles(&["handle-name"])).await;
        texts.push(format!("{result:?}"));
        match result {
            Ok(fetched) => texts.extend(
                fetched
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().err())
                    .map(|e| e.message.clone()),
            ),
            Err(error) => {
                assert_eq!(error.message.contains("STDERR-MARKER"), has_tail, "{error}");
                texts.push(error.to_string());
            }
        }
    }
    for text in &texts {
        assert!(
            !text.contains("hunter2") && !text.contains("SECRET"),
            "{text}"
        );
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("secret backend run"), "{logs}");
    for forbidden in [
        "hunter2",
        "SECRET",
        "handle-name",
        "STDERR-MARKER",
        "no luck",
    ] {
        assert!(!logs.contains(forbidden), "{forbidden} in logs: {logs}");
    }
    // The per-handle error text keeps the backend's words but not the value.
    assert!(
        texts.iter().any(|t| t
            == "an error occurred while resolving 'handle-name': no luck, other was <redacted>"),
        "{texts:#?}"
    );
}

/// A `#!` script whose interpreter does not exist (the Agent docs' `#!/usr/bin/python` on a
/// machine without it) or is not executable: the error names the interpreter and its path,
/// not a bare "no such file or directory" for a script that exists.
#[tokio::test]
async fn a_missing_interpreter_is_named() {
    let dir = private_dir();
    let not_executable = dir.path().join("not-executable");
    write_file(&not_executable, "", 0o600);
    let not_executable = not_executable.display().to_string();
    for (interpreter, problem) in [
        ("/nonexistent/python", "is missing"),
        (not_executable.as_str(), "is not an executable file"),
    ] {
        let script = dir.path().join("script");
        let _ = std::fs::remove_file(&script);
        write_file(&script, &format!("#!{interpreter} -u\nprint('x')\n"), 0o700);
        let spec = BackendSpec::new(script.clone());
        let error = run(&spec, &options(), &["h"]).await.unwrap_err();
        assert!(
            error.message.contains(&format!(
                "the interpreter '{interpreter}' named on the first line (#!) of the script {problem}"
            )),
            "{error}"
        );
    }
}
