//! `keyturn exec` end to end: the built binary runs small `/bin/sh` children that record their
//! environment and the signals they get into files of the sandbox, with a store-backed
//! fixture backend.

use std::fs;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Sandbox;

/// The store-backed fixture backend of the library's tests: `store/<handle>` holds a value.
const STORE_BACKEND: &str = include_str!("../../../keyturn/tests/fixtures/store-backend.sh");

/// How long anything may take to happen.
const PATIENCE: Duration = Duration::from_secs(60);

/// A sandbox with the store backend and `keyturn.yaml` pointing at it, plus `extra` settings.
pub(crate) fn exec_sandbox(store: &[(&str, &str)], extra: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    let backend = sandbox.script("store-backend.sh", STORE_BACKEND, 0o700);
    fs::create_dir(sandbox.path("store")).unwrap();
    for (handle, value) in store {
        sandbox.write(&format!("store/{handle}"), value);
    }
    sandbox.write(
        "keyturn.yaml",
        &format!("secret_backend_command: {}\n{extra}", backend.display()),
    );
    sandbox
}

/// `keyturn exec ARGS` in the sandbox with `env` added to the environment; waits for it.
pub(crate) fn exec(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(sandbox, args, env).output().unwrap()
}

fn command(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyturn"));
    command
        .arg("exec")
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("KEYTURN_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// Reads a file of the sandbox, empty when absent.
fn read(sandbox: &Sandbox, name: &str) -> String {
    fs::read_to_string(sandbox.path(name)).unwrap_or_default()
}

/// Waits (bounded) until `condition` holds.
#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for `child` to exit and returns its output.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyturn exec did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

#[test]
fn handles_in_the_environment_and_env_files_are_resolved_in_one_batch() {
    let sandbox = exec_sandbox(&[("a", "alpha"), ("b", "beta"), ("c", "gamma")], "");
    sandbox.write("one.env", "B=ENC[b]\nA=plain-from-one\nONE=1\n");
    sandbox.write("two.env", "export A='ENC[c]'\n");
    let output = exec(
        &sandbox,
        &[
            "--config",
            "keyturn.yaml",
            "--env-file",
            "one.env",
            "--env-file",
            "two.env",
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$A\" \"$B\" \"$ONE\" \"$PLAIN\" \"$EMBEDDED\" > out",
        ],
        &[
            ("A", "ENC[a]"),
            ("PLAIN", "as-is"),
            ("EMBEDDED", "x-ENC[a]"),
        ],
    );
    expect_code(&output, 0);
    // The later file wins over the earlier one and over keyturn's own environment.
    assert_eq!(read(&sandbox, "out"), "gamma\nbeta\n1\nas-is\nx-ENC[a]\n");
    // One backend run for every handle of the environment (`a` is no longer used).
    let calls = read(&sandbox, "calls");
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(calls.contains("\"secrets\":[\"c\",\"b\"]"), "{calls}");
}

#[test]
fn unresolved_handles_stop_the_start_unless_allow_partial() {
    let sandbox = exec_sandbox(&[("good", "fine")], "");
    let script = "printf '%s\\n' \"$GOOD\" \"$BAD\" > out";
    let env = [("GOOD", "ENC[good]"), ("BAD", "ENC[missing]")];
    let args = ["--config", "keyturn.yaml", "--", "sh", "-c", script];
    let output = exec(&sandbox, &args, &env);
    expect_code(&output, 1);
    let text = stderr(&output);
    assert!(
        text.contains("environment variable BAD: handle 'missing' (missing)"),
        "{text}"
    );
    assert!(!text.contains("fine"), "{text}");
    assert!(!sandbox.path("out").exists(), "the program ran");

    let partial = [
        "--config",
        "keyturn.yaml",
        "--allow-partial",
        "--",
        "sh",
        "-c",
        script,
    ];
    let output = exec(&sandbox, &partial, &env);
    expect_code(&output, 0);
    assert!(stderr(&output).contains("environment variable BAD"));
    assert_eq!(read(&sandbox, "out"), "fine\nENC[missing]\n");
}

#[test]
fn handles_without_a_backend_are_bad_input() {
    let sandbox = Sandbox::new();
    let output = exec(&sandbox, &["--", "true"], &[("KEY", "ENC[k]")]);
    expect_code(&output, 2);
    assert!(
        stderr(&output).contains("secret handles (KEY)"),
        "{}",
        stderr(&output)
    );
    // Without handles no backend is needed.
    let output = exec(&sandbox, &["--", "sh", "-c", "exit 0"], &[]);
    expect_code(&output, 0);
}

#[test]
fn exit_status_is_the_programs_and_128_plus_n_for_a_signal() {
    let sandbox = Sandbox::new();
    expect_code(&exec(&sandbox, &["--", "sh", "-c", "exit 7"], &[]), 7);
    expect_code(
        &exec(&sandbox, &["--", "sh", "-c", "kill -USR1 $$"], &[]),
        128 + 10,
    );
    expect_code(
        &exec(&sandbox, &["--", "sh", "-c", "kill -KILL $$"], &[]),
        128 + 9,
    );
    let missing = exec(&sandbox, &["--", "/nonexistent/program"], &[]);
    expect_code(&missing, 127);
    assert!(
        stderr(&missing).contains("cannot start '/nonexistent/program'"),
        "{}",
        stderr(&missing)
    );
    sandbox.script("not-executable", "#!/bin/sh\n", 0o600);
    expect_code(&exec(&sandbox, &["--", "./not-executable"], &[]), 126);
}

/// A child that records every forwarded signal it traps in `signals`, says `ready`, and exits
/// 0 on SIGTERM.
const TRAPPING_CHILD: &str = "for s in INT HUP QUIT USR1 USR2 WINCH; do trap \"echo $s >> signals\" $s; done\n\
    trap 'echo TERM >> signals; exit 0' TERM\n\
    : > ready\n\
    while :; do sleep 1 & wait $!; done\n";

#[test]
fn every_forwarded_signal_reaches_the_program() {
    let sandbox = Sandbox::new();
    let child = command(&sandbox, &["--", "sh", "-c", TRAPPING_CHILD], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(pid_of(&child));
    wait_until("the child to be ready", || sandbox.path("ready").exists());
    let mut expected = String::new();
    // TERM last: the child exits on it. INT and QUIT ask keyturn to stop, but it waits for the
    // program, which traps them.
    for signal in [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
    ] {
        kill(pid_of(&child), signal).unwrap();
        expected.push_str(&signal.as_str()[3..]);
        expected.push('\n');
        wait_until(signal.as_str(), || read(&sandbox, "signals") == expected);
    }
    let output = finish(child);
    // Reaped: its PID may be reused, never kill it now.
    std::mem::forget(guard);
    expect_code(&output, 0);
}

/// Kills a process with SIGKILL when a test fails before it ended.
pub(crate) struct KillOnDrop(pub(crate) Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
    }
}
