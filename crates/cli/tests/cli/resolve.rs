//! `keyturn resolve` and `keyturn check`: the CLI contract.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Sandbox, repo_root, table_backend};

const DOC: &str = "# app config\nservice: billing\ndb:\n  password: ENC[db_pass]   # from the backend\n  port: 5432\nflag: yes\n";

fn settings(sandbox: &Sandbox) -> String {
    format!(
        "secret_backend_command: {}\n",
        sandbox.path("backend.sh").display()
    )
}

#[test]
fn resolves_to_stdout_keeping_everything_else() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[("db_pass", "hunter2")]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write("app.yaml", DOC);
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout(),
        "# app config\nservice: billing\ndb:\n  password: \"hunter2\"   # from the backend\n  port: 5432\nflag: yes\n"
    );
    assert_eq!(run.stderr(), "");
}

#[test]
fn settings_come_from_the_file_itself_without_config() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[("db_pass", "hunter2")]);
    sandbox.write(
        "datadog.yaml",
        &format!("{}api_key: ENC[db_pass]\n", settings(&sandbox)),
    );
    let run = sandbox.keyturn(&["resolve", "datadog.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout().ends_with("api_key: \"hunter2\"\n"),
        "{}",
        run.stdout()
    );
}

#[test]
fn json_documents() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[("a", "x\\\"y")]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write("app.json", "{\n  \"a\": \"ENC[a]\",\n  \"n\": 1\n}\n");
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.json"]);
    run.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(value, serde_json::json!({"a": "x\"y", "n": 1}));
}

#[test]
fn output_file_is_written_atomically_with_mode_0600() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[("db_pass", "hunter2")]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write("app.yaml", DOC);
    let run = sandbox.keyturn(&[
        "resolve",
        "--config",
        "keyturn.yaml",
        "--output",
        "out.yaml",
        "app.yaml",
    ]);
    run.expect_code(0);
    assert_eq!(run.stdout(), "");
    let out = sandbox.path("out.yaml");
    assert!(
        fs::read_to_string(&out)
            .unwrap()
            .contains("password: \"hunter2\"")
    );
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn unresolved_handles_exit_1_with_nothing_written() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[("good", "fine"), ("bad", "!no such secret")]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write(
        "app.yaml",
        "a: ENC[good]\nlist:\n  - ENC[bad]\nnested:\n  x: ENC[gone]\n",
    );
    let run = sandbox.keyturn(&[
        "resolve",
        "--config",
        "keyturn.yaml",
        "--output",
        "out.yaml",
        "app.yaml",
    ]);
    run.expect_code(1);
    assert_eq!(run.stdout(), "");
    assert!(!sandbox.path("out.yaml").exists());
    let stderr = run.stderr();
    assert!(
        stderr.contains(
            "'bad' (error) at list/0: an error occurred while resolving 'bad': no such secret"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("'gone' (missing) at nested/x"), "{stderr}");
    assert!(
        !stderr.contains("fine"),
        "a resolved value leaked into stderr: {stderr}"
    );

    let run = sandbox.keyturn(&[
        "resolve",
        "--config",
        "keyturn.yaml",
        "--allow-partial",
        "app.yaml",
    ]);
    run.expect_code(1);
    assert_eq!(
        run.stdout(),
        "a: \"fine\"\nlist:\n  - ENC[bad]\nnested:\n  x: ENC[gone]\n"
    );
}

// Issue 9.12: handles and key paths from a document are printed with control characters
// escaped: they can neither forge a line nor colour the terminal.
#[test]
fn handles_and_key_paths_are_printed_escaped() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write(
        "app.yaml",
        "\"k\\ney\\e[7m\": \"ENC[x\\e[31m\\nkeyturn: forged\\u202e]\"\n",
    );
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(
        stderr
            .contains("'x\\u{1b}[31m\\nkeyturn: forged\\u{202e}' (missing) at k\\ney\\u{1b}[7m: "),
        "{stderr}"
    );
    assert!(!stderr.contains(['\x1b', '\u{202e}']), "{stderr:?}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("keyturn: forged"))
    );

    sandbox.write("dup.yaml", "\"a\\nb\": 1\n\"a\\nb\": 2\n");
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "dup.yaml"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("duplicate key at 'a\\nb'"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_failed_backend_run_is_reported_once_with_every_handle_it_affects() {
    let sandbox = Sandbox::new();
    sandbox.script(
        "backend.sh",
        "#!/bin/sh\ncat >/dev/null\necho oops >&2\nexit 3\n",
        0o700,
    );
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write("app.yaml", "a: ENC[x]\nb:\n  c: ENC[y]\n  d: ENC[x]\n");
    let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert_eq!(stderr.matches("exit status 3").count(), 1, "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        2,
        "one line for the cause, one summary: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!(
            "keyturn: app.yaml: error while running '{}': exit status 3",
            sandbox.path("backend.sh").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(" (backend_error); affects 2 handles: 'x' at a, b/d; 'y' at b/c\n"),
        "{stderr}"
    );
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    sandbox.write("broken.yaml", "a: [1, 2\n");
    sandbox.write("scalar.yaml", "just a string\n");
    sandbox.write("bad-settings.yaml", "secret_backend_timeout: -5\n");
    sandbox.write("app.yaml", "a: ENC[x]\n");
    let cases: &[(&[&str], &str)] = &[
        (
            &["resolve", "--config", "keyturn.yaml", "missing.yaml"],
            "cannot read missing.yaml",
        ),
        (
            &["resolve", "--config", "keyturn.yaml", "broken.yaml"],
            "broken.yaml: could not parse YAML",
        ),
        (
            &["resolve", "--config", "keyturn.yaml", "scalar.yaml"],
            "given data is not of expected type map not slice",
        ),
        (
            &["resolve", "--config", "bad-settings.yaml", "app.yaml"],
            "invalid setting 'secret_backend_timeout': must not be negative",
        ),
        (
            &["resolve", "--config", "nope.yaml", "app.yaml"],
            "cannot read settings file nope.yaml",
        ),
        (&["resolve", "app.yaml"], "no secret backend is configured"),
        (&["resolve"], "FILE"),
        (&["resolve", "--format", "toml", "app.yaml"], "toml"),
    ];
    for (args, expected) in cases {
        let run = sandbox.keyturn(args);
        run.expect_code(2);
        assert!(
            run.stderr().contains(expected),
            "{args:?}: {}",
            run.stderr()
        );
        assert_eq!(run.stdout(), "");
    }
}

#[test]
fn version_and_help() {
    let sandbox = Sandbox::new();
    let run = sandbox.keyturn(&["--version"]);
    run.expect_code(0);
    // The package version, then the git revision when built from a checkout.
    let version = format!("keyturn {}", env!("CARGO_PKG_VERSION"));
    let stdout = run.stdout();
    assert!(stdout.starts_with(&version), "{stdout}");
    let rest = stdout[version.len()..].trim_end();
    assert!(
        rest.is_empty()
            || rest
                .strip_prefix(" (")
                .and_then(|r| r.strip_suffix(')'))
                .is_some_and(|hash| hash.len() == 12
                    && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "{stdout}"
    );
    for command in ["resolve", "check"] {
        let run = sandbox.keyturn(&[command, "--help"]);
        run.expect_code(0);
        assert!(run.stdout().contains("Usage: keyturn"), "{}", run.stdout());
    }
}

#[test]
fn check_reports_and_exits_by_verdict() {
    let sandbox = Sandbox::new();
    let backend = table_backend(&sandbox, &[]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(0);
    let stdout = run.stdout();
    assert!(
        stdout.contains(&format!("Executable path: {}", backend.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("Executable permissions: OK, the executable has the correct permissions"),
        "{stdout}"
    );
    assert!(stdout.contains("File mode: 100700"), "{stdout}");

    fs::set_permissions(&backend, fs::Permissions::from_mode(0o755)).unwrap();
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(2);
    let stdout = run.stdout();
    assert!(
        stdout.contains("error: the executable does not have the correct permissions"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "invalid executable '{}', 'group' or 'others' have rights on it",
            backend.display()
        )),
        "{stdout}"
    );
}

// Issue 9.14: a full stdout (`/dev/full`) is an operational failure (exit 3), not a panic (101).
#[test]
fn check_with_a_full_stdout_exits_3() {
    let sandbox = Sandbox::new();
    table_backend(&sandbox, &[]);
    sandbox.write("keyturn.yaml", &settings(&sandbox));
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    #[allow(clippy::disallowed_methods)]
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .args(["check", "--config", "keyturn.yaml"])
        .current_dir(sandbox.path("."))
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("cannot write to stdout"),
        "{run:?}"
    );
}

/// Regression (issue 9, items 5 and 10): a backend reached through a directory anyone may
/// write passed `keyturn check`, and keyturn's own backend was not checked at all.
#[test]
fn check_reports_a_backend_path_others_can_change() {
    let sandbox = Sandbox::new();
    let open = fs::canonicalize(sandbox.path("")).unwrap().join("open");
    fs::create_dir(&open).unwrap();
    let backend = sandbox.script("open/backend", "#!/bin/sh\n", 0o700);
    let builtin = sandbox.script("open/keyturn-backend", "#!/bin/sh\n", 0o755);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let problem = format!(
        "directory '{}' is writable by its group and others (mode 0777) and not sticky",
        open.display()
    );

    sandbox.write(
        "keyturn.yaml",
        &format!("secret_backend_command: {}\n", backend.display()),
    );
    let run = sandbox.keyturn(&["check", "--config", "keyturn.yaml"]);
    run.expect_code(2);
    assert!(
        run.stdout().contains(&format!(
            "Permissions error: invalid executable '{}': {problem}",
            backend.display()
        )),
        "{}",
        run.stdout()
    );

    sandbox.write("builtin.yaml", "secret_backend_type: file.json\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .args(["check", "--config", "builtin.yaml"])
        .current_dir(sandbox.path(""))
        .env("KEYTURN_BUILTIN_BACKEND", &builtin)
        .output()
        .unwrap();
    let run = crate::Run(output);
    run.expect_code(2);
    let stdout = run.stdout();
    assert!(
        stdout.contains(&format!("Using embedded executable: {}", builtin.display()))
            && stdout.contains(
                "Executable permissions: error: the executable does not have the correct permissions"
            )
            && stdout.contains(&format!(
                "Permissions error: invalid executable '{}': {problem}",
                builtin.display()
            )),
        "{stdout}"
    );
}

#[test]
fn bundled_example_resolves_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let examples = repo_root().join("examples");
    let settings = examples.join("keyturn.yaml");
    let app = examples.join("app.yaml");
    for (cwd, settings, app) in [
        (
            repo_root(),
            Path::new("examples/keyturn.yaml"),
            Path::new("examples/app.yaml"),
        ),
        (
            examples.as_path(),
            Path::new("keyturn.yaml"),
            Path::new("app.yaml"),
        ),
        (elsewhere.path(), settings.as_path(), app.as_path()),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyturn"))
            .arg("resolve")
            .arg("--config")
            .arg(settings)
            .arg(app)
            .current_dir(cwd)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "from {}: stderr: {}",
            cwd.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!stdout.contains(": ENC["), "{stdout}");
        assert!(
            stdout.contains("password: \"s3cr3t: with a colon # and a hash\""),
            "{stdout}"
        );
        assert!(
            stdout.contains("# resolved from the backend"),
            "comments are kept: {stdout}"
        );
        assert!(
            stdout.contains("enabled: yes"),
            "other values keep their spelling: {stdout}"
        );
    }
}

#[test]
fn relative_paths_are_taken_from_the_settings_file_directory() {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("conf")).unwrap();
    // The backend answers with the directory it runs in.
    sandbox.script(
        "conf/backend.sh",
        "#!/bin/sh\ncat >/dev/null\nprintf '{\"cwd\":{\"value\":\"%s\"}}' \"$(pwd)\"\n",
        0o700,
    );
    sandbox.write(
        "conf/keyturn.yaml",
        "secret_backend_command: ./backend.sh\n",
    );
    sandbox.write("app.yaml", "dir: ENC[cwd]\n");
    let run = sandbox.keyturn(&["resolve", "--config", "conf/keyturn.yaml", "app.yaml"]);
    run.expect_code(0);
    let conf = fs::canonicalize(sandbox.path("conf")).unwrap();
    assert_eq!(run.stdout(), format!("dir: \"{}\"\n", conf.display()));

    // Without --config the document is the settings file: its directory is the base.
    sandbox.write(
        "conf/datadog.yaml",
        "secret_backend_command: ./backend.sh\ndir: ENC[cwd]\n",
    );
    let run = sandbox.keyturn(&["resolve", "conf/datadog.yaml"]);
    run.expect_code(0);
    assert!(
        run.stdout()
            .ends_with(&format!("dir: \"{}\"\n", conf.display())),
        "{}",
        run.stdout()
    );
}

#[test]
fn settings_errors_exit_2_before_anything_runs_and_say_their_cause_once() {
    let sandbox = Sandbox::new();
    sandbox.write("app.yaml", "a: ENC[x]\n");
    sandbox.write("typo.yaml", "secret_backend_type: file.jsn\n");
    let run = sandbox.keyturn(&["resolve", "--config", "typo.yaml", "app.yaml"]);
    run.expect_code(2);
    assert_eq!(
        run.stderr(),
        "keyturn: typo.yaml: invalid setting 'secret_backend_type': unknown backend type \
         \"file.jsn\"; the known types are: file.json, file.yaml, file.text, k8s.file, \
         docker.secrets, hashicorp.vault, aws.secrets, aws.ssm, k8s.secrets, gcp.secretmanager, \
         azure.keyvault\n"
    );
    for args in [
        &["resolve", "--config", "missing.yaml", "app.yaml"][..],
        &["check", "--config", "missing.yaml"],
        &["serve", "--config", "missing.yaml"],
        &["status", "--config", "missing.yaml"],
        &["refresh", "--config", "missing.yaml"],
        &["exec", "--config", "missing.yaml", "--", "true"],
    ] {
        let run = sandbox.keyturn(args);
        run.expect_code(2);
        assert_eq!(
            run.stderr(),
            "keyturn: cannot read settings file missing.yaml: No such file or directory (os error 2)\n",
            "{args:?}"
        );
    }
}

#[test]
fn no_value_reaches_stderr_on_any_failure_path() {
    const MARK: &str = "ZQXJ-marker-value-QJXZ";
    let sandbox = Sandbox::new();
    sandbox.write("app.yaml", "a: ENC[a]\nb: ENC[b]\n");
    // Each backend returns the marker for `a` and then fails in its own way.
    let answer = format!("{{\"a\":{{\"value\":\"{MARK}\"}},\"b\":{{\"error\":\"boom\"}}}}");
    let backends = [
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{answer}'\necho 'leaking {MARK} to stderr' >&2\nexit 1\n"
        ),
        format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{answer}'\necho 'debug: {MARK}' >&2\n"),
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '{{\"a\":{{\"value\":\"{MARK}\"}}, oops'\necho '{MARK}' >&2\n"
        ),
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '{{\"a\":{{\"value\":\"{MARK}\"}}}}'\nkill -9 $$\n"
        ),
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '{{\"a\":{{\"value\":\"{MARK}{MARK}{MARK}\"}}}}'\n"
        ),
    ];
    for (i, body) in backends.iter().enumerate() {
        sandbox.script("backend.sh", body, 0o700);
        let config = if i == 4 {
            format!("{}secret_backend_output_max_size: 20\n", settings(&sandbox))
        } else {
            settings(&sandbox)
        };
        sandbox.write("keyturn.yaml", &config);
        let run = sandbox.keyturn(&["resolve", "--config", "keyturn.yaml", "app.yaml"]);
        run.expect_code(1);
        assert!(
            !run.stderr().contains(MARK),
            "backend {i} leaked: {}",
            run.stderr()
        );
        assert!(
            !run.stdout().contains(MARK),
            "backend {i} leaked to stdout: {}",
            run.stdout()
        );
        let traced = sandbox.keyturn_with_log(
            &["resolve", "--config", "keyturn.yaml", "app.yaml"],
            "trace",
        );
        assert!(
            !traced.stderr().contains(MARK),
            "backend {i} leaked at trace level: {}",
            traced.stderr()
        );
    }
}
