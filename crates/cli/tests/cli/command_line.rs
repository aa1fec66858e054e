//! The command line shared by every command: logging flags, `KEYTURN_CONFIG`, `resolve -`,
//! shell completions and manual pages.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{Run, Sandbox, table_backend};

/// Settings that resolve through the table backend and carry one settings warning (a backend
/// type next to a command is ignored, with a warning).
fn settings_with_warning(sandbox: &Sandbox) {
    table_backend(sandbox, &[("db_pass", "hunter2")]);
    sandbox.write(
        "keyturn.yaml",
        &format!(
            "secret_backend_command: {}\nsecret_backend_type: file.yaml\n",
            sandbox.path("backend.sh").display()
        ),
    );
    sandbox.write("app.yaml", "password: ENC[db_pass]\n");
}

const WARNING: &str = "secret_backend_type";

#[test]
fn log_level_verbose_quiet_and_format_apply_to_every_command() {
    let sandbox = Sandbox::new();
    settings_with_warning(&sandbox);
    let resolve = ["resolve", "--config", "keyturn.yaml", "app.yaml"];
    // (extra arguments, whether the warning is logged, whether it is JSON)
    let cases: &[(&[&str], bool, bool)] = &[
        (&[], true, false),
        (&["-q"], false, false),
        (&["--log-level", "error"], false, false),
        (&["--log-level", "off", "-v"], false, false),
        (&["--log-level", "error", "-v"], true, false),
        (&["--log-format", "json"], true, true),
    ];
    for (extra, logged, json) in cases {
        // Global flags go before or after the command.
        for before in [true, false] {
            let args: Vec<&str> = if before {
                extra.iter().chain(&resolve).copied().collect()
            } else {
                resolve.iter().chain(*extra).copied().collect()
            };
            let run = sandbox.keyturn(&args);
            run.expect_code(0);
            assert_eq!(run.stdout(), "password: \"hunter2\"\n", "{args:?}");
            let stderr = run.stderr();
            assert_eq!(stderr.contains(WARNING), *logged, "{args:?}: {stderr}");
            if *logged {
                assert_eq!(
                    stderr.trim_start().starts_with('{'),
                    *json,
                    "{args:?}: {stderr}"
                );
            }
        }
    }
    // A flag given on the command line wins over KEYTURN_LOG.
    let run = sandbox.keyturn_with_log(
        &["-q", "resolve", "--config", "keyturn.yaml", "app.yaml"],
        "trace",
    );
    run.expect_code(0);
    assert!(!run.stderr().contains(WARNING), "{}", run.stderr());
    // -v and -q contradict each other.
    sandbox.keyturn(&["-v", "-q", "check"]).expect_code(2);
    sandbox
        .keyturn(&["--log-level", "loud", "check"])
        .expect_code(2);
}

#[test]
fn keyturn_config_names_the_settings_file() {
    let sandbox = Sandbox::new();
    settings_with_warning(&sandbox);
    let run = keyturn_env(
        &sandbox,
        &["resolve", "app.yaml"],
        &[("KEYTURN_CONFIG", "keyturn.yaml")],
    );
    run.expect_code(0);
    assert_eq!(run.stdout(), "password: \"hunter2\"\n");
    // --config wins over the variable.
    let run = keyturn_env(
        &sandbox,
        &["resolve", "--config", "missing.yaml", "app.yaml"],
        &[("KEYTURN_CONFIG", "keyturn.yaml")],
    );
    run.expect_code(2);
    assert!(run.stderr().contains("missing.yaml"), "{}", run.stderr());
    // Commands with a default settings path take it from the variable too.
    let run = keyturn_env(
        &sandbox,
        &["check"],
        &[("KEYTURN_CONFIG", "elsewhere.yaml")],
    );
    run.expect_code(2);
    assert!(run.stderr().contains("elsewhere.yaml"), "{}", run.stderr());
}

#[test]
fn resolve_dash_reads_the_document_from_stdin() {
    let sandbox = Sandbox::new();
    settings_with_warning(&sandbox);
    let args = [
        "resolve",
        "--config",
        "keyturn.yaml",
        "--format",
        "yaml",
        "-",
    ];
    let run = keyturn_stdin(&sandbox, &args, "# kept\npassword: ENC[db_pass]\n");
    run.expect_code(0);
    assert_eq!(run.stdout(), "# kept\npassword: \"hunter2\"\n");

    let args = [
        "resolve",
        "--config",
        "keyturn.yaml",
        "--format",
        "json",
        "-",
    ];
    let run = keyturn_stdin(&sandbox, &args, "{\"password\": \"ENC[db_pass]\"}");
    run.expect_code(0);
    assert_eq!(run.stdout(), "{\"password\": \"hunter2\"}");

    // Without --format there is no extension to go by: refused before reading anything.
    let args = ["resolve", "--config", "keyturn.yaml", "-"];
    let run = keyturn_stdin(&sandbox, &args, "password: ENC[db_pass]\n");
    run.expect_code(2);
    assert!(run.stderr().contains("--format"), "{}", run.stderr());
    assert_eq!(run.stdout(), "");

    // Errors name stdin.
    let args = [
        "resolve",
        "--config",
        "keyturn.yaml",
        "--format",
        "yaml",
        "-",
    ];
    let run = keyturn_stdin(&sandbox, &args, "a: [1, 2\n");
    run.expect_code(2);
    assert!(run.stderr().contains("<stdin>"), "{}", run.stderr());
}

#[test]
fn completions_are_generated_for_every_shell() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        let run = sandbox.keyturn(&["completions", shell]);
        run.expect_code(0);
        let script = run.stdout();
        // fish spells long options without their dashes.
        for word in ["keyturn", "resolve", "serve", "log-level", "config"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    sandbox.keyturn(&["completions", "tcsh"]).expect_code(2);
}

#[test]
fn man_pages_are_written_for_keyturn_and_each_command() {
    let sandbox = Sandbox::new();
    sandbox.keyturn(&["man", "pages"]).expect_code(0);
    for (page, words) in [
        ("keyturn.1", &["keyturn", "resolve", "--log-level"][..]),
        ("keyturn-resolve.1", &["--format", "--config"][..]),
        ("keyturn-check.1", &["--config"][..]),
        ("keyturn-serve.1", &["--config"][..]),
    ] {
        let text = std::fs::read_to_string(sandbox.path("pages").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        for word in words {
            assert!(
                text.contains(&word.replace('-', "\\-")),
                "{page}: no {word}"
            );
        }
    }
}

fn keyturn_env(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyturn"));
    command
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("KEYTURN_LOG")
        .env_remove("KEYTURN_CONFIG")
        .envs(env.iter().copied());
    Run(command.output().unwrap())
}

fn keyturn_stdin(sandbox: &Sandbox, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("KEYTURN_LOG")
        .env_remove("KEYTURN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The refused case exits without reading: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    Run(child.wait_with_output().unwrap())
}
