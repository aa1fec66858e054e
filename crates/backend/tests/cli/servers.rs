//! Real stores for the tests: an OpenBao dev server and a moto server, started on free
//! 127.0.0.1 ports, polled until ready, killed when their guard drops.
//!
//! The binaries come from `KEYTURN_TEST_BAO` / `KEYTURN_TEST_MOTO_SERVER`, else from `PATH`
//! (`.ci/install-test-deps.sh` installs both into `.ci/venv/bin`). A missing binary fails the
//! test: these tests are the only proof the Vault and AWS backends work.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long a server may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running server, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// `http(s)://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Scratch space of the server (its HOME, TLS files, audit log).
    pub(crate) dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a test dependency: `$env_var`, else `name` on `PATH`, else the test fails.
pub(crate) fn binary(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: set {env_var} or put it on PATH \
                 (run .ci/install-test-deps.sh and add .ci/venv/bin to PATH)"
            )
        })
}

/// A port on 127.0.0.1 that was free a moment ago, whose successor is free too (OpenBao's
/// cluster listener takes port + 1).
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Starts a server with `start(port, dir)` and polls `ready(url)` until it answers; retries
/// on another port when the server exits early (its port was taken in between).
fn launch(
    scheme: &str,
    start: impl Fn(u16, &Path) -> Command,
    ready: impl Fn(&str) -> bool,
) -> Server {
    for _attempt in 0..3 {
        let dir = tempfile::tempdir().expect("server dir");
        let port = free_port_pair();
        let mut command = start(port, dir.path());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("HOME", dir.path());
        let child = command.spawn().expect("spawn test server");
        let mut server = Server {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        while started.elapsed() < READY_WITHIN {
            if matches!(server.child.try_wait(), Ok(Some(_))) {
                break;
            }
            if ready(&server.url) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if started.elapsed() >= READY_WITHIN {
            panic!(
                "test server at {} not ready within {READY_WITHIN:?}",
                server.url
            );
        }
    }
    panic!("test server exited at start three times");
}

/// The root token of the dev servers.
pub(crate) const BAO_ROOT: &str = "root-token-for-tests";

/// An OpenBao dev server (`secret/` is KV v2), plain HTTP or with `-dev-tls`, with a file
/// audit device writing `audit.log` in its [`Server::dir`] (OpenBao enables audit devices only
/// from configuration).
pub(crate) fn openbao(tls: bool) -> Server {
    let bao = binary("KEYTURN_TEST_BAO", "bao");
    launch(
        if tls { "https" } else { "http" },
        |port, dir| {
            let config = dir.join("audit.hcl");
            let audit = dir.join("audit.log");
            std::fs::write(
                &config,
                format!(
                    "audit \"file\" \"log\" {{\n  options {{\n    file_path = {audit:?}\n  }}\n}}\n"
                ),
            )
            .expect("write bao config");
            let mut command = Command::new(&bao);
            command.args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={BAO_ROOT}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-config={}", config.display()),
            ]);
            if tls {
                command
                    .arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", dir.display()));
            }
            command
        },
        |url| {
            let agent = insecure_agent();
            agent
                .get(format!("{url}/v1/sys/health"))
                .call()
                .is_ok_and(|response| response.status() == 200)
        },
    )
}

/// A moto server that checks SigV4 signatures after the first `free_actions` requests, or never
/// when `None`.
pub(crate) fn moto(free_actions: Option<usize>) -> Server {
    let moto = binary("KEYTURN_TEST_MOTO_SERVER", "moto_server");
    launch(
        "http",
        |port, _| {
            let mut command = Command::new(&moto);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            match free_actions {
                Some(count) => command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string()),
                None => command.env_remove("INITIAL_NO_AUTH_ACTION_COUNT"),
            };
            command
        },
        // The dashboard does not count as an action.
        |url| {
            insecure_agent()
                .get(format!("{url}/moto-api/"))
                .call()
                .is_ok()
        },
    )
}

/// An agent that accepts the dev server's self-signed certificate and any status.
pub(crate) fn insecure_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .new_agent()
}

/// A Vault API call with the root token; returns the JSON answer (or `null`) and fails the test
/// on an error status.
pub(crate) fn vault(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    vault_at(&server.url, method, path, body)
}

/// [`vault`] for the server at `address`.
pub(crate) fn vault_at(address: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let agent = insecure_agent();
    let url = format!("{address}/v1/{path}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("X-Vault-Token", BAO_ROOT).call(),
        (_, body) => agent
            .post(&url)
            .header("X-Vault-Token", BAO_ROOT)
            .header("Content-Type", "application/json")
            .send(body.unwrap_or(Value::Null).to_string()),
    };
    let mut response = response.unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert!(status < 300, "{method} {path}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
