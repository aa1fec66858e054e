//! Contract tests of the `keyturn-backend` binary: a JSON request on stdin, a JSON answer on
//! stdout, the exit status, and nothing secret on stderr.
//!
//! Every test runs the built binary (`CARGO_BIN_EXE_keyturn-backend`) through [`Backend`], with
//! fixtures in a [`Fixture`] temp dir. Tests against real stores (OpenBao, moto) live in the
//! `cli/` modules and start their servers themselves.

// A test: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// Tests may spawn the binary under test and the fixture servers; the ban on `Command::new`
// protects the library's single spawner, not test harnesses.
#![allow(clippy::disallowed_methods)]

#[path = "cli/aws.rs"]
mod aws;
#[path = "cli/azure.rs"]
mod azure;
#[path = "cli/end_to_end.rs"]
mod end_to_end;
#[path = "cli/fake.rs"]
mod fake;
#[path = "cli/gcp.rs"]
mod gcp;
#[path = "cli/harness.rs"]
mod harness;
#[path = "cli/k8s.rs"]
mod k8s;
#[path = "cli/leaks.rs"]
mod leaks;
#[path = "cli/servers.rs"]
mod servers;
#[path = "cli/vault.rs"]
mod vault;

use harness::{Expect, Fixture, backend, backend_args, backend_env, check, request};
use serde_json::json;

#[test]
fn version_and_help() {
    let run = backend_args(&["--version"], b"");
    assert!(run.status.success());
    assert_eq!(
        run.stdout.trim(),
        format!("keyturn-backend {}", env!("CARGO_PKG_VERSION"))
    );
    let run = backend_args(&["--help"], b"");
    assert!(run.status.success());
    assert!(run.stdout.contains("hashicorp.vault"), "{}", run.stdout);
    let run = backend_args(&["--bogus"], b"");
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stdout.is_empty());
}

#[test]
fn unreadable_input_exits_1_without_quoting_it() {
    for input in [
        &b""[..],
        b"{\"version\":\"1.1\",\"secrets\":[\"a\"]",
        b"hunter2",
        br#"{"version":"1.1","secrets":"hunter2"}"#,
    ] {
        let run = backend(input);
        assert_eq!(
            run.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr.starts_with("keyturn-backend: the request"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
}

#[test]
fn whole_request_problems_are_per_handle_errors() {
    let fixture = Fixture::new();
    let missing = fixture.path("missing.json");
    // Opening a FIFO would block until the caller's timeout.
    let fifo = fixture.path("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    for (backend_type, config, expected) in [
        ("nope", json!({}), "unknown backend type \"nope\""),
        ("file.json", json!({}), "config key `file_path` is required"),
        (
            "file.json",
            json!({"file_path": 7}),
            "config key `file_path` must be a string",
        ),
        (
            "file.json",
            json!({"file_path": missing}),
            "missing.json: no such file",
        ),
        (
            "file.text",
            json!({}),
            "config key `secrets_path` is required",
        ),
        (
            "k8s.file",
            json!({"secrets_path": missing}),
            "no such directory",
        ),
    ] {
        check(
            request(backend_type, &config, &["a", "b"]),
            &[
                ("a", Expect::Error(expected)),
                ("b", Expect::Error(expected)),
            ],
        );
    }
    let run = backend(br#"{"version":"1.1","secrets":["a"]}"#);
    assert!(run.status.success());
    assert!(
        run.error("a").contains("names no backend `type`"),
        "{}",
        run.stdout
    );
}

// Issue 9.14: the largest timeout a request can carry, and an argument that is not UTF-8, are
// handled, not panics (exit 101).
#[test]
fn the_largest_timeout_and_a_non_utf8_argument_do_not_panic() {
    let fixture = Fixture::new();
    let file = fixture.write("s.json", r#"{"a":"x"}"#);
    let input = json!({"version": "1.1", "secrets": ["a"],
        "secret_backend_timeout": u64::MAX, "type": "file.json",
        "config": {"file_path": file}});
    check(input.to_string().into_bytes(), &[("a", Expect::Value("x"))]);

    use std::os::unix::ffi::OsStrExt;
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_keyturn-backend"))
        .arg(std::ffi::OsStr::from_bytes(b"--type=\xff"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run keyturn-backend");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("not valid UTF-8"));
}

#[test]
fn payload_versions_1_0_and_1_1() {
    let fixture = Fixture::new();
    let file = fixture.write("s.json", r#"{"a":"x"}"#);
    for version in ["1.0", "1.1"] {
        let input = json!({"version": version, "secrets": ["a"], "type": "file.json",
                           "config": {"file_path": file}});
        check(input.to_string().into_bytes(), &[("a", Expect::Value("x"))]);
    }
    let input = json!({"version": "2.0", "secrets": ["a"], "type": "file.json",
                       "config": {"file_path": file}});
    check(
        input.to_string().into_bytes(),
        &[("a", Expect::Error("unsupported payload version \"2.0\""))],
    );
}

#[test]
fn file_json() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "secrets.json",
        r#"{"db_pass":"s3cr3t","port":5432,"ratio":0.10,"on":true,"nested":{"k":"v"},"nil":null,"empty":""}"#,
    );
    check(
        request(
            "file.json",
            &json!({"file_path": file}),
            &[
                "db_pass", "port", "ratio", "on", "nested", "nil", "absent", "empty",
            ],
        ),
        &[
            ("db_pass", Expect::Value("s3cr3t")),
            ("port", Expect::Value("5432")),
            ("ratio", Expect::Value("0.10")),
            ("on", Expect::Value("true")),
            ("nested", Expect::Value(r#"{"k":"v"}"#)),
            ("nil", Expect::Error("key \"nil\" in ")),
            ("absent", Expect::Error("key \"absent\" not found in ")),
            ("empty", Expect::Value("")),
        ],
    );
}

#[test]
fn file_json_bad_files_fail_every_handle_without_quoting_them() {
    let fixture = Fixture::new();
    for (content, expected) in [
        (r#"{"a": "hunter2""#, "invalid JSON at line 1"),
        (r#"["hunter2"]"#, "the top level must be an object"),
    ] {
        let file = fixture.write("bad.json", content);
        let run = check(
            request("file.json", &json!({"file_path": file}), &["a"]),
            &[("a", Expect::Error(expected))],
        );
        assert!(!run.stdout.contains("hunter2"));
    }
}

#[test]
fn file_yaml() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "secrets.yaml",
        "db_pass: s3cr3t\npin: 0123\nflag: yes\nquoted: \"a: b\"\nnil: ~\nlist: [1, 2]\n",
    );
    check(
        request(
            "file.yaml",
            &json!({"file_path": file}),
            &["db_pass", "pin", "flag", "quoted", "nil", "list", "absent"],
        ),
        &[
            ("db_pass", Expect::Value("s3cr3t")),
            ("pin", Expect::Value("0123")),
            ("flag", Expect::Value("yes")),
            ("quoted", Expect::Value("a: b")),
            ("nil", Expect::Error("is null")),
            ("list", Expect::Error("is a sequence")),
            ("absent", Expect::Error("not found")),
        ],
    );
}

#[test]
fn file_size_cap() {
    let fixture = Fixture::new();
    let file = fixture.write("big.json", &format!(r#"{{"a":"{}"}}"#, "x".repeat(100)));
    check(
        request(
            "file.json",
            &json!({"file_path": file, "max_file_read_size": 50}),
            &["a"],
        ),
        &[(
            "a",
            Expect::Error("larger than max_file_read_size (50 bytes)"),
        )],
    );
    check(
        request(
            "file.json",
            &json!({"file_path": file, "max_file_read_size": 200}),
            &["a"],
        ),
        &[("a", Expect::Value(&"x".repeat(100)))],
    );
    let dir = fixture.dir("texts");
    fixture.write("texts/big", &"y".repeat(100));
    check(
        request(
            "file.text",
            &json!({"secrets_path": dir, "max_file_read_size": 99}),
            &["big"],
        ),
        &[(
            "big",
            Expect::Error("larger than max_file_read_size (99 bytes)"),
        )],
    );
}

/// The handle table of the README's `file.text` section, read from the README itself: every
/// row is run against the layout the README describes, for each of the three types.
#[test]
fn dir_handles_as_the_readme_says() {
    let readme = include_str!("../README.md");
    let start = readme.find("<!-- dir-handles -->").expect("table start");
    let end = readme.find("<!-- /dir-handles -->").expect("table end");
    let fixture = Fixture::new();
    fixture.dir("run");
    let dir = fixture.dir("run/secrets");
    fixture.write("run/secrets/db_password", "pw\n");
    fixture.dir("run/secrets/sub");
    fixture.write("run/secrets/sub/key", "k");
    fixture.write("run/secrets/empty", "");
    fixture.symlink("db_password", "run/secrets/alias");
    fixture.symlink("../outside", "run/secrets/escape");
    fixture.write("run/outside", "do-not-read");
    let root = fixture.path("run");
    let mut rows = Vec::new();
    for line in readme[start..end].lines().skip(3) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, handle, result, _] = cells[..] else {
            panic!("not a table row: {line}")
        };
        let handle = handle.trim_matches('`').replace("/run", &root);
        let expect = match result.strip_prefix("error: ") {
            Some(error) => ExpectOwned::Error(error.to_owned()),
            None => ExpectOwned::Value(
                serde_json::from_str(result.trim_matches('`')).expect("a JSON string"),
            ),
        };
        rows.push((handle, expect));
    }
    assert_eq!(rows.len(), 16);
    for kind in ["file.text", "k8s.file", "docker.secrets"] {
        let handles: Vec<&str> = rows.iter().map(|(handle, _)| handle.as_str()).collect();
        let expected: Vec<(&str, Expect<'_>)> = rows
            .iter()
            .map(|(handle, expect)| (handle.as_str(), expect.borrow()))
            .collect();
        let run = check(
            request(kind, &json!({"secrets_path": dir}), &handles),
            &expected,
        );
        assert!(!run.stdout.contains("do-not-read"), "{kind}");
    }
}

/// An owned [`Expect`], for rows read from the README.
enum ExpectOwned {
    Value(String),
    Error(String),
}

impl ExpectOwned {
    fn borrow(&self) -> Expect<'_> {
        match self {
            ExpectOwned::Value(value) => Expect::Value(value),
            ExpectOwned::Error(error) => Expect::Error(error),
        }
    }
}

#[test]
fn dir_names_refused_before_touching_the_disk() {
    let fixture = Fixture::new();
    let dir = fixture.dir("secrets");
    check(
        request("file.text", &json!({"secrets_path": dir}), &["", "a\u{0}b"]),
        &[
            ("", Expect::Error("empty")),
            ("a\u{0}b", Expect::Error("NUL")),
        ],
    );
}

#[test]
fn k8s_file_follows_the_data_symlink_layout_and_its_swap() {
    let fixture = Fixture::new();
    let mount = fixture.dir("mount");
    fixture.dir("mount/..2024_01_01_00_00_00.1");
    fixture.write("mount/..2024_01_01_00_00_00.1/password", "  old-value\n");
    fixture.symlink("..2024_01_01_00_00_00.1", "mount/..data");
    fixture.symlink("..data/password", "mount/password");
    let config = json!({"secrets_path": mount});
    check(
        request("k8s.file", &config, &["password"]),
        &[("password", Expect::Value("  old-value\n"))],
    );
    // Kubernetes' atomic update: write a new timestamped dir, swap `..data` by rename.
    fixture.dir("mount/..2024_01_02_00_00_00.2");
    fixture.write("mount/..2024_01_02_00_00_00.2/password", "new-value\n");
    fixture.symlink("..2024_01_02_00_00_00.2", "mount/..data_tmp");
    fixture.rename("mount/..data_tmp", "mount/..data");
    fixture.remove_dir("mount/..2024_01_01_00_00_00.1");
    check(
        request("k8s.file", &config, &["password"]),
        &[("password", Expect::Value("new-value\n"))],
    );
}

#[test]
fn docker_secrets_keeps_the_bytes_and_defaults_its_directory() {
    let fixture = Fixture::new();
    let dir = fixture.dir("run-secrets");
    fixture.write("run-secrets/api_key", "key-123\n");
    check(
        request(
            "docker.secrets",
            &json!({"secrets_path": dir}),
            &["api_key"],
        ),
        &[("api_key", Expect::Value("key-123\n"))],
    );
    // Without `secrets_path`, /run/secrets is used; on a test machine it usually does not exist,
    // and either way the error or value names that directory's handle.
    let run = backend(&request("docker.secrets", &json!({}), &["api_key"]));
    assert!(run.status.success());
    let entry = &run.response()["api_key"];
    assert!(
        entry["value"].is_string()
            || entry["error"]
                .as_str()
                .is_some_and(|e| e.contains("/run/secrets")),
        "{}",
        run.stdout
    );
}

#[test]
fn duplicate_handles_answer_once() {
    let fixture = Fixture::new();
    let file = fixture.write("s.json", r#"{"a":"x"}"#);
    let run = backend(&request(
        "file.json",
        &json!({"file_path": file}),
        &["a", "a"],
    ));
    assert_eq!(run.response().len(), 1);
}

#[test]
fn agent_command_mode_takes_the_backend_from_arguments() {
    let fixture = Fixture::new();
    let secrets = fixture.write("s.json", r#"{"api_key":"k-1"}"#);
    let config_file = fixture.write("backend.json", &json!({"file_path": secrets}).to_string());
    // What the Agent sends to a secret_backend_command: handles only.
    let payload = br#"{"version":"1.1","secrets":["api_key"],"secret_backend_timeout":30}"#;
    let inline = json!({"file_path": secrets}).to_string();
    for args in [
        vec!["--type", "file.json", "--config-file", config_file.as_str()],
        vec!["--type=file.json", "--config", inline.as_str()],
    ] {
        let run = backend_env(&args, payload, &[]);
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(run.response()["api_key"]["value"], "k-1", "{args:?}");
    }
    // A payload naming its own backend wins over the arguments.
    let own = request("file.json", &json!({"file_path": secrets}), &["api_key"]);
    let run = backend_env(&["--type", "aws.ssm"], &own, &[]);
    assert_eq!(run.response()["api_key"]["value"], "k-1");
    // A type it does not know is bad usage, refused before anything runs.
    let run = backend_env(&["--type", "nope"], &own, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr
            .contains("--type: unknown backend type \"nope\"; the known types are: file.json"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // A broken config file fails every handle without quoting it.
    let broken = fixture.write("broken.json", r#"{"vault_token": "hunter2""#);
    let run = backend_env(
        &["--type", "hashicorp.vault", "--config-file", &broken],
        payload,
        &[],
    );
    assert!(run.status.success());
    assert!(
        run.error("api_key").contains("invalid JSON at line 1"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("hunter2"));
    let run = backend_env(&["--config", "{}"], payload, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("need --type"), "{}", run.stderr);
}
