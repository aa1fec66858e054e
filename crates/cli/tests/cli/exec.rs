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
pub(crate) fn read(sandbox: &Sandbox, name: &str) -> String {
    fs::read_to_string(sandbox.path(name)).unwrap_or_default()
}

/// Waits (bounded) until `condition` holds.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
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

/// Runs `keyturn exec --config keyturn.yaml -- COMMAND`, then the same with `--allow-partial`.
fn strict_then_partial(sandbox: &Sandbox, command: &[&str], env: &[(&str, &str)]) -> [Output; 2] {
    [&[][..], &["--allow-partial"]].map(|partial| {
        let mut args = vec!["--config", "keyturn.yaml"];
        args.extend_from_slice(partial);
        args.push("--");
        args.extend_from_slice(command);
        exec(sandbox, &args, env)
    })
}

/// A sandbox whose settings render `app.yaml` (with `source` as its text) to `app.out.yaml`.
fn template_sandbox(source: &str) -> Sandbox {
    let sandbox = exec_sandbox(
        &[("good", "fine")],
        "templates:\n  - {source: app.yaml, destination: app.out.yaml}\n",
    );
    sandbox.write("app.yaml", source);
    sandbox
}

#[test]
fn unresolved_handles_stop_the_start_unless_allow_partial() {
    let sandbox = exec_sandbox(&[("good", "fine")], "");
    let script = "printf '%s\\n' \"$GOOD\" \"$BAD\" > out";
    let env = [("GOOD", "ENC[good]"), ("BAD", "ENC[missing]")];
    let [strict, partial] = strict_then_partial(&sandbox, &["sh", "-c", script], &env);
    expect_code(&strict, 1);
    let text = stderr(&strict);
    assert!(
        text.contains("environment variable BAD: handle 'missing' (missing)"),
        "{text}"
    );
    assert!(!text.contains("fine"), "{text}");
    expect_code(&partial, 0);
    assert!(stderr(&partial).contains("environment variable BAD"));
    // Only the second run started the program.
    assert_eq!(read(&sandbox, "out"), "fine\nENC[missing]\n");
}

#[test]
fn a_template_that_cannot_be_written_stops_the_start_unless_allow_partial() {
    let sandbox = template_sandbox("password: ENC[absent]\n");
    let script = "echo ran >> ran";
    let [strict, partial] =
        strict_then_partial(&sandbox, &["sh", "-c", script], &[("GOOD", "ENC[good]")]);
    expect_code(&strict, 1);
    let text = stderr(&strict);
    assert!(
        text.contains("app.out.yaml was not written: unresolved handles 'absent'"),
        "{text}"
    );
    expect_code(&partial, 0);
    // Only the second run started the program.
    assert_eq!(read(&sandbox, "ran"), "ran\n");
}

#[test]
fn an_unresolved_environment_writes_no_template() {
    let sandbox = template_sandbox("password: ENC[good]\n");
    let output = exec(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "true"],
        &[("BAD", "ENC[absent]")],
    );
    expect_code(&output, 1);
    assert!(
        !sandbox.path("app.out.yaml").exists(),
        "a template was written"
    );
}

#[test]
fn a_settings_error_is_said_once() {
    let sandbox = Sandbox::new();
    sandbox.write("keyturn.yaml", "templates: 1\n");
    let output = exec(&sandbox, &["--config", "keyturn.yaml", "--", "true"], &[]);
    expect_code(&output, 2);
    let text = stderr(&output);
    assert_eq!(
        text.matches("expected a list of templates").count(),
        1,
        "{text}"
    );
    let output = exec(&sandbox, &["--config", "absent.yaml", "--", "true"], &[]);
    expect_code(&output, 2);
    let text = stderr(&output);
    assert_eq!(text.matches("No such file").count(), 1, "{text}");
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

/// A running `keyturn exec` whose stderr goes to `exec.log`, killed if the test fails first.
pub(crate) struct Running {
    child: Option<Child>,
    pid: Pid,
}

impl Running {
    pub(crate) fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Running {
        let log = fs::File::create(sandbox.path("exec.log")).unwrap();
        let child = command(sandbox, args, env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = pid_of(&child);
        Running {
            child: Some(child),
            pid,
        }
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid, signal).unwrap();
    }

    /// Sends `signal` and returns keyturn's exit code (bounded wait).
    pub(crate) fn stop(mut self, signal: Signal) -> Option<i32> {
        self.signal(signal);
        let output = finish(self.child.take().unwrap());
        output.status.code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sandbox whose secret `secret` is `one`, with the API on a free port, `exec_section` under
/// `exec:`, and a template `app.yaml` (`password: ENC[secret]`) rendered to `out/app.yaml`.
fn refresh_sandbox(exec_section: &str) -> Sandbox {
    let sandbox = exec_sandbox(
        &[("secret", "one")],
        &format!(
            "api:\n  listen: 127.0.0.1:{}\ntemplates:\n  - {{source: app.yaml, destination: out/app.yaml}}\nexec:\n{exec_section}",
            free_port()
        ),
    );
    fs::create_dir(sandbox.path("out")).unwrap();
    sandbox.write("app.yaml", "password: ENC[secret]\n");
    sandbox
}

/// The child of the refresh tests: logs `start $SECRET` once its traps are set, `TERM` (and
/// exits 0) on SIGTERM, `USR1 $SECRET <destination>` on SIGUSR1, `USR2` on SIGUSR2 (and keeps
/// running).
const REFRESH_CHILD: &str = "#!/bin/sh\n\
    trap 'echo TERM >> log; exit 0' TERM\n\
    trap 'echo \"USR1 $SECRET $(cat out/app.yaml)\" >> log' USR1\n\
    trap 'echo USR2 >> log' USR2\n\
    echo \"start $SECRET\" >> log\n\
    while :; do sleep 1 & wait $!; done\n";

/// Changes the secret to `two` and asks the running `keyturn exec` for a refresh.
fn change_and_refresh(sandbox: &Sandbox) {
    sandbox.write("store/secret", "two");
    let run = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml"]);
    run.expect_code(0);
    assert!(run.stdout().contains("'secret'"), "{}", run.stdout());
}

fn run_refresh_child(sandbox: &Sandbox) -> Running {
    sandbox.script("child.sh", REFRESH_CHILD, 0o700);
    let running = Running::start(
        sandbox,
        &["--config", "keyturn.yaml", "--", "./child.sh"],
        &[("SECRET", "ENC[secret]")],
    );
    wait_until("the first start", || read(sandbox, "log") == "start one\n");
    running
}

#[test]
fn a_changed_value_restarts_the_program_with_the_stop_signal() {
    let sandbox = refresh_sandbox("  stop_timeout: 60\n");
    let running = run_refresh_child(&sandbox);
    assert_eq!(read(&sandbox, "out/app.yaml"), "password: \"one\"\n");
    change_and_refresh(&sandbox);
    wait_until("the restart", || {
        read(&sandbox, "log") == "start one\nTERM\nstart two\n"
    });
    assert_eq!(read(&sandbox, "out/app.yaml"), "password: \"two\"\n");
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
    assert_eq!(read(&sandbox, "log"), "start one\nTERM\nstart two\nTERM\n");
}

#[test]
fn a_program_that_ignores_the_stop_signal_is_killed_after_the_timeout() {
    // SIGUSR2 only makes the child log a line: it is killed after the 1 s stop timeout.
    let sandbox = refresh_sandbox("  stop_signal: USR2\n  stop_timeout: 1\n");
    let running = run_refresh_child(&sandbox);
    change_and_refresh(&sandbox);
    wait_until("the restart", || {
        read(&sandbox, "log") == "start one\nUSR2\nstart two\n"
    });
    let log = read(&sandbox, "exec.log");
    assert!(
        log.contains("did not stop within 1s: sending SIGKILL"),
        "{log}"
    );
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
}

#[test]
fn signal_mode_sends_the_reload_signal_after_the_files_are_rendered() {
    let sandbox = refresh_sandbox("  on_change: signal\n  reload_signal: SIGUSR1\n");
    let running = run_refresh_child(&sandbox);
    change_and_refresh(&sandbox);
    // The environment keeps the old value; the file already has the new one.
    wait_until("the reload signal", || {
        read(&sandbox, "log") == "start one\nUSR1 one password: \"two\"\n"
    });
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
    assert_eq!(
        read(&sandbox, "log"),
        "start one\nUSR1 one password: \"two\"\nTERM\n"
    );
}

#[test]
fn never_mode_only_renders_the_files() {
    let sandbox = refresh_sandbox("  on_change: never\n");
    let running = run_refresh_child(&sandbox);
    change_and_refresh(&sandbox);
    assert_eq!(read(&sandbox, "out/app.yaml"), "password: \"two\"\n");
    // keyturn acts on a completed refresh before it forwards a later signal: once SIGUSR2 got
    // through, a restart or a reload signal would already be in the log.
    running.signal(Signal::SIGUSR2);
    wait_until("SIGUSR2", || read(&sandbox, "log").contains("USR2"));
    assert_eq!(read(&sandbox, "log"), "start one\nUSR2\n");
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
}

#[test]
fn a_restart_that_cannot_start_is_retried() {
    let sandbox = refresh_sandbox("");
    let running = run_refresh_child(&sandbox);
    let child = sandbox.path("child.sh");
    let mode = |mode| {
        fs::set_permissions(&child, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    mode(0o600);
    change_and_refresh(&sandbox);
    wait_until("a failed start", || {
        read(&sandbox, "exec.log").contains("cannot start './child.sh'")
    });
    assert_eq!(read(&sandbox, "log"), "start one\nTERM\n");
    mode(0o700);
    wait_until("the retried start", || {
        read(&sandbox, "log") == "start one\nTERM\nstart two\n"
    });
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
}

#[test]
fn restart_on_exit_on_failure_and_always() {
    let sandbox = exec_sandbox(&[], "exec:\n  restart_on_exit: on-failure\n");
    sandbox.script(
        "child.sh",
        "#!/bin/sh\nif [ -e ran ]; then echo second >> log; exit 0; fi\n: > ran\necho first >> log\nexit 3\n",
        0o700,
    );
    let output = exec(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "./child.sh"],
        &[],
    );
    expect_code(&output, 0);
    assert_eq!(read(&sandbox, "log"), "first\nsecond\n");
    assert!(
        stderr(&output).contains("exited with status 3; starting it again"),
        "{}",
        stderr(&output)
    );

    // `always` restarts after a success too; a forwarded SIGTERM ends it.
    let sandbox = exec_sandbox(&[], "exec:\n  restart_on_exit: always\n");
    sandbox.script(
        "child.sh",
        "#!/bin/sh\necho run >> log\n[ $(wc -l < log) -lt 3 ] && exit 0\ntrap 'exit 5' TERM\n: > ready\nwhile :; do sleep 1 & wait $!; done\n",
        0o700,
    );
    let running = Running::start(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "./child.sh"],
        &[],
    );
    wait_until("the third run", || sandbox.path("ready").exists());
    assert_eq!(read(&sandbox, "log"), "run\nrun\nrun\n");
    assert_eq!(running.stop(Signal::SIGTERM), Some(5));
}

/// `keyturn exec ARGS` as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`),
/// or `None` (with a message) where the machine refuses namespaces.
fn exec_as_init(sandbox: &Sandbox, args: &[&str]) -> Option<Output> {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        println!("skipped: this machine refuses a new PID namespace ({probe:?})");
        return None;
    }
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_keyturn"))
        .arg("exec")
        .args(args)
        .current_dir(sandbox.path(""))
        .env_remove("KEYTURN_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Some(output)
}

/// A program that leaves three orphans, which exit soon, and waits (bounded) until each is
/// gone from /proc, which only a reap does: a zombie stays listed.
const ORPHANS: &str = "for i in 1 2 3; do sh -c 'sleep 0.2 & echo $! >> orphans'; done\n\
    [ $(wc -l < orphans) -eq 3 ] || exit 2\n\
    for o in $(cat orphans); do\n\
      n=0\n\
      while [ -e /proc/$o ]; do\n\
        n=$((n+1))\n\
        if [ $n -gt 3000 ]; then echo \"orphan $o never reaped: $(cat /proc/$o/stat)\" >&2; exit 1; fi\n\
        sleep 0.01\n\
      done\n\
    done\n";

#[test]
fn as_pid_1_orphaned_zombies_are_reaped() {
    let sandbox = Sandbox::new();
    let Some(output) = exec_as_init(&sandbox, &["--", "sh", "-c", ORPHANS]) else {
        return;
    };
    expect_code(&output, 0);
}

#[test]
fn as_a_child_subreaper_orphaned_zombies_are_reaped() {
    // After its first backend run keyturn is a child subreaper: the orphans come to it.
    let sandbox = exec_sandbox(&[("secret", "one")], "");
    let output = exec(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "sh", "-c", ORPHANS],
        &[("SECRET", "ENC[secret]")],
    );
    expect_code(&output, 0);
}

#[test]
fn as_pid_1_sigterm_kills_the_program_after_the_stop_timeout() {
    let sandbox = Sandbox::new();
    sandbox.write("keyturn.yaml", "exec:\n  stop_timeout: 1\n");
    // The program ignores SIGTERM, then sends one to keyturn (PID 1 in its namespace).
    let script = "trap '' TERM\nkill -TERM 1\nwhile :; do sleep 1; done\n";
    let Some(output) = exec_as_init(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "sh", "-c", script],
    ) else {
        return;
    };
    expect_code(&output, 128 + 9);
}

#[test]
fn periodic_refresh_without_the_api_restarts_the_program() {
    let sandbox = exec_sandbox(
        &[("secret", "one")],
        "secret_refresh_interval: 1\nsecret_refresh_scatter: false\n",
    );
    sandbox.script("child.sh", REFRESH_CHILD, 0o700);
    let running = Running::start(
        &sandbox,
        &["--config", "keyturn.yaml", "--", "./child.sh"],
        &[("SECRET", "ENC[secret]")],
    );
    wait_until("the first start", || read(&sandbox, "log") == "start one\n");
    sandbox.write("store/secret", "two");
    // The next refresh of the timer (every second) sees the new value.
    wait_until("the restart", || {
        read(&sandbox, "log") == "start one\nTERM\nstart two\n"
    });
    assert_eq!(running.stop(Signal::SIGTERM), Some(0));
}
