//! `keyturn serve`, `keyturn status` and `keyturn refresh` end to end: a real daemon on a free
//! loopback port with a store-backed fixture backend.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Sandbox;

/// Answers each requested handle from `store/<handle>`; handles without a file are left out.
/// The store-backed fixture backend of the library's tests: `store/<handle>` holds a value.
const STORE_BACKEND: &str = include_str!("../../../keyturn/tests/fixtures/store-backend.sh");

/// How long the daemon may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `keyturn serve`, killed if the test fails before stopping it.
pub(crate) struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    pub(crate) fn start(sandbox: &Sandbox, port: u16) -> Daemon {
        let log = fs::File::create(sandbox.path("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keyturn"))
            .args(["serve", "--config", "keyturn.yaml"])
            .current_dir(sandbox.path(""))
            .env_remove("KEYTURN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, port };
        daemon.wait_until_healthy(sandbox);
        daemon
    }

    /// Polls `/healthz` until it answers 200 (bounded; fails early if the daemon exits).
    fn wait_until_healthy(&mut self, sandbox: &Sandbox) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}:\n{}", sandbox.read("serve.log"));
            }
            if matches!(http(self.port, "GET", "/healthz", None), Some((200, _))) {
                return;
            }
            assert!(Instant::now() < deadline, "serve never became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns the exit code (bounded wait).
    pub(crate) fn terminate(mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`: status and body, or `None` when the daemon
/// cannot be reached.
fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn store(&self, handle: &str, value: &str) {
        self.write(&format!("store/{handle}"), value);
    }
}

#[test]
fn serve_resolves_refreshes_and_stops_on_sigterm() {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("store")).unwrap();
    fs::create_dir(sandbox.path("out")).unwrap();
    sandbox.script("backend.sh", STORE_BACKEND, 0o700);
    sandbox.store("db", "hunter2");
    sandbox.store("api", "key-one");
    sandbox.write(
        "app.yaml",
        "# app\ndb:\n  password: ENC[db]\napi_key: ENC[api]\n",
    );
    sandbox.write("broken.yaml", "x: ENC[missing]\n");
    let port = free_port();
    sandbox.write(
        "keyturn.yaml",
        &format!(
            "secret_backend_command: {backend}\n\
             api:\n  listen: 127.0.0.1:{port}\n\
             templates:\n\
             \x20 - source: app.yaml\n\
             \x20   destination: out/app.yaml\n\
             \x20   mode: 0640\n\
             \x20   on_change: [/bin/sh, -c, 'echo changed >> {hooks}']\n\
             \x20 - {{source: broken.yaml, destination: out/broken.yaml}}\n",
            backend = sandbox.path("backend.sh").display(),
            hooks = sandbox.path("hooks.log").display(),
        ),
    );
    let daemon = Daemon::start(&sandbox, port);

    // Start-up: the complete template is written with its mode and its hook ran; the one with
    // an unresolved handle is not written.
    let app = sandbox.path("out/app.yaml");
    assert_eq!(
        sandbox.read("out/app.yaml"),
        "# app\ndb:\n  password: \"hunter2\"\napi_key: \"key-one\"\n"
    );
    assert_eq!(
        fs::metadata(&app).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(sandbox.read("hooks.log"), "changed\n");
    assert!(!sandbox.path("out/broken.yaml").exists());

    let status = sandbox.keyturn(&["status", "--config", "keyturn.yaml"]);
    status.expect_code(0);
    let text = status.stdout();
    assert!(text.contains("out/app.yaml: written"), "{text}");
    assert!(
        text.contains("out/broken.yaml: not written, unresolved handles: 'missing'"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));

    // Authentication.
    let token = sandbox.read("auth_token").trim().to_owned();
    assert_eq!(token.len(), 64);
    for bad in [None, Some("wrong"), Some(&token[..63])] {
        let (code, body) = http(port, "GET", "/secrets", bad).unwrap();
        assert_eq!(code, 401, "{bad:?}");
        assert!(body.contains("\"error\""), "{body}");
    }

    // Rotate one secret, refresh it through the API.
    sandbox.store("db", "hunter3");
    let (code, body) = http(port, "POST", "/secret/refresh?handle=db", Some(&token)).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "=== Secret stats ===\nNumber of secrets reloaded: 1\nSecrets handle reloaded:\n\n- 'db':\n\tused in '{}' configuration in entry 'db/password'\n",
            sandbox.path("app.yaml").display()
        )
    );
    assert!(
        sandbox
            .read("out/app.yaml")
            .contains("password: \"hunter3\"")
    );
    assert_eq!(
        fs::metadata(&app).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(sandbox.read("hooks.log"), "changed\nchanged\n");
    let audit = sandbox.read("secret-audit-file.json");
    // The start-up resolution, then this refresh.
    assert_eq!(audit.lines().count(), 2, "{audit}");
    let startup: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(startup["trigger"], "startup");
    let record: serde_json::Value = serde_json::from_str(audit.lines().nth(1).unwrap()).unwrap();
    assert_eq!(record["data"], serde_json::json!([{"handle": "db"}]));
    assert_eq!(record["trigger"], "api");

    // Rotate another, refresh everything through the CLI: the report is printed, and the
    // still-missing handle makes it exit 1 with the error on stderr.
    sandbox.store("api", "key-two");
    let refresh = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml"]);
    refresh.expect_code(1);
    assert!(
        refresh.stdout().contains("- 'api':"),
        "{}",
        refresh.stdout()
    );
    assert!(
        refresh
            .stderr()
            .starts_with("keyturn: refresh failed: 'missing' (missing) at x: "),
        "{}",
        refresh.stderr()
    );
    assert!(
        sandbox
            .read("out/app.yaml")
            .contains("api_key: \"key-two\"")
    );
    assert_eq!(sandbox.read("hooks.log"), "changed\nchanged\nchanged\n");
    let audit = sandbox.read("secret-audit-file.json");
    assert_eq!(audit.lines().count(), 3, "{audit}");
    let record: serde_json::Value = serde_json::from_str(audit.lines().nth(2).unwrap()).unwrap();
    assert_eq!(
        record["data"],
        serde_json::json!([{"handle": "api"}, {"handle": "db"}])
    );
    assert_eq!(record["trigger"], "cli");
    assert_eq!(
        record["failed"],
        serde_json::json!([{"handle": "missing", "reason": "missing"}])
    );
    for value in ["hunter2", "hunter3", "key-one", "key-two"] {
        assert!(
            !audit.contains(value),
            "the audit file shows a secret:\n{audit}"
        );
    }

    // Only one handle, nothing changed: success, no rewrite, no hook.
    let refresh = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml", "--handle", "api"]);
    refresh.expect_code(0);
    assert_eq!(
        refresh.stdout(),
        "=== Secret stats ===\nNumber of secrets reloaded: 0\nSecrets handle reloaded:\n\n"
    );
    assert_eq!(sandbox.read("hooks.log"), "changed\nchanged\nchanged\n");

    // A handle no template uses: bad input, nothing runs.
    let unknown = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml", "--handle", "nope"]);
    unknown.expect_code(2);
    assert_eq!(unknown.stdout(), "");
    assert_eq!(
        unknown.stderr(),
        "keyturn: unknown handle: 'nope' (no template uses it)\n"
    );
    let (code, body) = http(port, "GET", "/secret/refresh?handle=nope", Some(&token)).unwrap();
    assert_eq!(code, 404, "{body}");

    assert_eq!(daemon.terminate(), Some(0));
    let log = sandbox.read("serve.log");
    // The failed refresh is one warning; logs to a file carry no colour codes.
    assert_eq!(
        log.matches("WARN error with refreshing secrets").count(),
        1,
        "{log}"
    );
    assert!(!log.contains('\x1b'), "{log}");
    for value in ["hunter2", "hunter3", "key-one", "key-two", token.as_str()] {
        assert!(!log.contains(value), "the log shows a secret:\n{log}");
    }
    let unreachable = sandbox.keyturn(&["status", "--config", "keyturn.yaml"]);
    unreachable.expect_code(3);
    assert!(
        unreachable.stderr().contains("cannot reach keyturn serve"),
        "{}",
        unreachable.stderr()
    );
}

#[test]
fn clients_fail_clearly_without_a_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "keyturn.yaml",
        &format!("api:\n  listen: 127.0.0.1:{}\n", free_port()),
    );
    // No token file yet: the daemon never ran.
    let status = sandbox.keyturn(&["status", "--config", "keyturn.yaml"]);
    status.expect_code(3);
    assert!(
        status.stderr().contains("cannot read API token file"),
        "{}",
        status.stderr()
    );
    // The hint comes before the cause, and the cause is said once.
    assert!(
        status.stderr().starts_with(
            "keyturn: cannot authenticate to keyturn serve (is `keyturn serve --config \
             keyturn.yaml` running?): "
        ),
        "{}",
        status.stderr()
    );
    assert_eq!(
        status.stderr().matches("No such file or directory").count(),
        1,
        "{}",
        status.stderr()
    );

    sandbox.write("auth_token", "abc\n");
    let refresh = sandbox.keyturn(&["refresh", "--config", "keyturn.yaml", "--handle", "x"]);
    refresh.expect_code(3);
    assert!(
        refresh
            .stderr()
            .contains("cannot reach keyturn serve at 127.0.0.1:"),
        "{}",
        refresh.stderr()
    );
    assert_eq!(
        refresh.stderr().matches("Connection refused").count(),
        1,
        "{}",
        refresh.stderr()
    );

    sandbox.write("keyturn.yaml", "api:\n  listen: 0.0.0.0:1\n");
    let invalid = sandbox.keyturn(&["serve", "--config", "keyturn.yaml"]);
    invalid.expect_code(2);
    assert!(
        invalid.stderr().contains("invalid setting 'api.listen'"),
        "{}",
        invalid.stderr()
    );
}

/// Regression (issue 9, item 9): a token file pre-created for others to read was accepted.
/// `keyturn serve` now refuses to start (exit 3), naming the file and what is wrong.
#[test]
fn serve_refuses_a_token_file_others_can_read() {
    let sandbox = Sandbox::new();
    let token = sandbox.write("auth_token", "known-to-others\n");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    sandbox.write(
        "keyturn.yaml",
        &format!("api:\n  listen: 127.0.0.1:{}\n", free_port()),
    );
    let run = sandbox.keyturn(&["serve", "--config", "keyturn.yaml"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains(&format!(
            "API token file {}: is accessible to group or others (mode 0644); chmod 600 it",
            token.display()
        )),
        "{}",
        run.stderr()
    );
}
