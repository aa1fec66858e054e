//! The harness of the fault, leak and abuse tests: a sandbox with the fault-injection backend
//! (`fault_backend.sh`, shared with the library's tests) and its state directory, a running
//! `keyturn serve` on a free loopback port, plain HTTP/1.1 requests, and what `/proc` says
//! about processes (peak memory, zombies, process groups).
//!
//! Nothing here sleeps to wait for something to happen: waits poll a condition with a generous
//! bound and fail with what they saw.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Sandbox;

/// The fault-injection backend (see the file for its modes).
pub(crate) const FAULT_BACKEND: &str = include_str!("../../../keyturn/tests/fault_backend.sh");

/// How long anything may take to happen before a test gives up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// A sandbox with `backend.sh` (the fault backend, mode 0700), its state directory `state/`
/// (with `store/`), an `out/` directory for destinations, and a free loopback port.
pub(crate) struct Setup {
    pub(crate) sandbox: Sandbox,
    pub(crate) port: u16,
}

impl Setup {
    /// Writes the backend and `keyturn.yaml`: the fault backend with `state/` as its argument, a
    /// 1 s deadline, the API on the free port, then `extra` (more settings, e.g. `templates:`).
    pub(crate) fn new(extra: &str) -> Setup {
        let sandbox = Sandbox::new();
        fs::create_dir_all(sandbox.path("state/store")).unwrap();
        fs::create_dir(sandbox.path("out")).unwrap();
        sandbox.script("backend.sh", FAULT_BACKEND, 0o700);
        let port = free_port();
        let setup = Setup { sandbox, port };
        setup.settings(extra);
        setup
    }

    /// Rewrites `keyturn.yaml` (see [`Setup::new`]).
    pub(crate) fn settings(&self, extra: &str) {
        self.sandbox.write(
            "keyturn.yaml",
            &format!(
                "secret_backend_command: {backend}\n\
                 secret_backend_arguments: [{state}]\n\
                 secret_backend_timeout: 1\n\
                 api:\n  listen: 127.0.0.1:{port}\n{extra}",
                backend = self.sandbox.path("backend.sh").display(),
                state = self.sandbox.path("state").display(),
                port = self.port,
            ),
        );
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.sandbox.path(name)
    }

    pub(crate) fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `store/<handle>` = `value` (and no error).
    pub(crate) fn set(&self, handle: &str, value: &str) -> &Setup {
        fs::write(self.path(&format!("state/store/{handle}")), value).unwrap();
        let _ = fs::remove_file(self.path(&format!("state/store/{handle}.error")));
        self
    }

    /// `store/<handle>.error` = `text`.
    pub(crate) fn fail(&self, handle: &str, text: &str) -> &Setup {
        fs::write(self.path(&format!("state/store/{handle}.error")), text).unwrap();
        self
    }

    /// What the backend's next runs do.
    pub(crate) fn mode(&self, mode: &str) {
        fs::write(self.path("state/mode"), mode).unwrap();
    }

    /// What the `echo-*` modes repeat.
    pub(crate) fn echo(&self, text: &str) {
        fs::write(self.path("state/echo"), text).unwrap();
    }

    /// The `(leaders, children)` the backend recorded since the last call, which forgets them.
    pub(crate) fn take_pids(&self) -> (Vec<i32>, Vec<i32>) {
        let path = self.path("state/pids");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        let (mut leaders, mut children) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let Some((kind, pid)) = line.split_once(' ') else {
                continue;
            };
            let pid: i32 = pid.trim().parse().unwrap();
            match kind {
                "leader" => leaders.push(pid),
                _ => children.push(pid),
            }
        }
        (leaders, children)
    }

    /// The API token (once the daemon created it).
    pub(crate) fn token(&self) -> String {
        self.read("auth_token").trim().to_owned()
    }

    /// Starts `keyturn serve --config keyturn.yaml` and waits until it answers `/healthz`.
    pub(crate) fn serve(&self, options: &ServeOptions) -> Serve {
        let mut serve = self.spawn(options);
        serve.wait_until_healthy();
        serve
    }

    /// Starts `keyturn serve` without waiting for it.
    pub(crate) fn spawn(&self, options: &ServeOptions) -> Serve {
        let log = self.path(options.log);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let keyturn = env!("CARGO_BIN_EXE_keyturn");
        let mut args = vec!["serve", "--config", "keyturn.yaml"];
        if options.json_logs {
            args.extend(["--log-format", "json"]);
        }
        let mut limits = Vec::new();
        // The soft limit only: a test may lift it again without privileges.
        if let Some(bytes) = options.max_file_size {
            limits.push(format!("--fsize={bytes}:unlimited"));
        }
        if let Some((soft, hard)) = options.open_files {
            limits.push(format!("--nofile={soft}:{hard}"));
        }
        let mut command = if limits.is_empty() {
            let mut command = Command::new(keyturn);
            command.args(&args);
            command
        } else {
            // prlimit sets the limits on itself, then execs keyturn: same PID.
            let mut command = Command::new("prlimit");
            command.args(&limits).arg(keyturn).args(&args);
            command
        };
        command
            .current_dir(self.path(""))
            .env_remove("KEYTURN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if !options.log_filter.is_empty() {
            command.env("KEYTURN_LOG", options.log_filter);
        }
        match &options.notify_socket {
            Some(socket) => command.env("NOTIFY_SOCKET", socket),
            None => command.env_remove("NOTIFY_SOCKET"),
        };
        let child = command.spawn().unwrap();
        Serve {
            pid: i32::try_from(child.id()).unwrap(),
            child,
            port: self.port,
            log,
        }
    }

    /// A request with the daemon's token.
    pub(crate) fn authed(&self, method: &str, path: &str) -> Request {
        Request::new(method, path).header("Authorization", &format!("Bearer {}", self.token()))
    }
}

/// How to run `keyturn serve`.
pub(crate) struct ServeOptions {
    /// `KEYTURN_LOG` (empty: unset).
    pub(crate) log_filter: &'static str,
    /// `--log-format json`.
    pub(crate) json_logs: bool,
    /// Run under `prlimit --fsize=N:unlimited`: no file the daemon writes may grow past N
    /// bytes (soft limit).
    pub(crate) max_file_size: Option<u64>,
    /// Run under `prlimit --nofile=SOFT:HARD`: the descriptor limits.
    pub(crate) open_files: Option<(u64, u64)>,
    /// `NOTIFY_SOCKET`: where the daemon sends its systemd notifications.
    pub(crate) notify_socket: Option<PathBuf>,
    /// The sandbox file stderr is appended to.
    pub(crate) log: &'static str,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            log_filter: "",
            json_logs: false,
            max_file_size: None,
            open_files: None,
            notify_socket: None,
            log: "serve.log",
        }
    }
}

/// A running `keyturn serve`, killed if the test ends without stopping it.
pub(crate) struct Serve {
    child: Child,
    pub(crate) pid: i32,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Serve {
    /// Polls `/healthz` until it answers 200 (bounded; fails early if the daemon exits).
    pub(crate) fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "serve exited with {status}:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Request::new("GET", "/healthz")
                .send(self.port)
                .is_some_and(|answer| answer.status == 200)
            {
                return;
            }
            assert!(Instant::now() < deadline, "serve never became healthy");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the daemon still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `/healthz` answers 200 and the process runs.
    #[track_caller]
    pub(crate) fn assert_up(&mut self) {
        assert!(self.is_running(), "serve died:\n{}", self.log_text());
        let answer = Request::new("GET", "/healthz").send(self.port);
        assert_eq!(answer.map(|a| a.status), Some(200), "{}", self.log_text());
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident memory (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits (bounded) until every backend run the setup recorded is fully gone: each leader
    /// reaped by the daemon (`kill(pid, 0)` fails with ESRCH, so not even a zombie), no live
    /// process left in its group, every process it left behind dead (a zombie only when its
    /// parent is not the daemon: orphans are init's to reap), and no zombie child of the
    /// daemon at all.
    #[track_caller]
    pub(crate) fn assert_no_backend_survivors(&self, setup: &Setup, what: &str) {
        let (leaders, children) = setup.take_pids();
        assert!(!leaders.is_empty(), "{what}: the backend never ran");
        let daemon = self.pid;
        let gone = || {
            leaders.iter().all(|&pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH)
            }) && leaders.iter().all(|&pgid| live_members(pgid).is_empty())
                && children.iter().all(|&pid| match stat(pid) {
                    None => true,
                    Some(stat) => stat.state == 'Z' && stat.ppid != daemon,
                })
                && zombie_children(daemon).is_empty()
        };
        let deadline = Instant::now() + PATIENCE;
        while !gone() {
            assert!(
                Instant::now() < deadline,
                "{what}: processes survived: leaders {leaders:?} (live in their groups: {:?}), \
                 children {children:?}, zombies of the daemon {:?}\n{}",
                leaders.iter().map(|&l| live_members(l)).collect::<Vec<_>>(),
                zombie_children(daemon),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` and waits (bounded) for the exit: its code, `None` if killed by a signal.
    pub(crate) fn stop(mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "serve did not stop on {signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request, sent on a connection of its own (`Connection: close`).
#[derive(Clone)]
pub(crate) struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the daemon answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The header block, as received.
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Request {
    pub(crate) fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn json(self) -> Request {
        self.header("Accept", "application/json")
    }

    pub(crate) fn body(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }

    /// The request's bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.path
        )
        .into_bytes();
        for (name, value) in &self.headers {
            bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
        {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Sends the request and reads the whole answer; `None` when the daemon cannot be reached
    /// or closed the connection without an answer.
    pub(crate) fn send(&self, port: u16) -> Option<Answer> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        // The daemon may answer (413, 431) and close before reading everything: still read.
        let _ = stream.write_all(&self.to_bytes());
        read_answer(&mut stream)
    }

    /// Sends the request and expects an answer.
    #[track_caller]
    pub(crate) fn expect(&self, port: u16, status: u16) -> Answer {
        let answer = self
            .send(port)
            .unwrap_or_else(|| panic!("{} {}: no answer", self.method, self.path));
        assert_eq!(
            answer.status, status,
            "{} {}: {}",
            self.method, self.path, answer.body
        );
        answer
    }
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Reads one answer to its end (the connection is closed after it).
pub(crate) fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut bytes = Vec::new();
    if stream.read_to_end(&mut bytes).is_err() && bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some(Answer {
        status,
        head: head.to_owned(),
        body,
    })
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process as `/proc/PID/stat` describes it.
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
}

/// `None` when the process is gone.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    Some(Stat {
        state: fields.next()?.chars().next()?,
        ppid: fields.next()?.parse().ok()?,
        pgrp: fields.next()?.parse().ok()?,
    })
}

fn processes() -> Vec<(i32, Stat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Every live (not zombie) process of process group `pgid`.
pub(crate) fn live_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, stat)| stat.pgrp == pgid && stat.state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Every zombie whose parent is `parent`.
pub(crate) fn zombie_children(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, stat)| stat.ppid == parent && stat.state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Polls `condition` (bounded) until it holds.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
