//! The test harness: run the binary under test, build requests, check answers, lay out fixtures.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use serde_json::{Map, Value, json};
use tempfile::TempDir;

/// What one run of the binary produced.
pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The answer as a JSON object; panics (fails the test) when stdout is not one.
    pub(crate) fn response(&self) -> Map<String, Value> {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!("stdout is not a JSON object ({error}): {}", self.stdout)
        })
    }

    /// The `error` of `handle`, or `""`.
    pub(crate) fn error(&self, handle: &str) -> String {
        self.response()
            .get(handle)
            .and_then(|entry| entry["error"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// Runs the binary with `args`, `stdin` as its input and the given extra environment.
pub(crate) fn backend_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyturn-backend"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The test servers are on 127.0.0.1: a developer's proxy must not intercept them.
    for proxy in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "https_proxy",
        "http_proxy",
    ] {
        command.env_remove(proxy);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn keyturn-backend");
    let mut input = child.stdin.take().expect("stdin");
    // A process that exits without reading (`--version`) closes the pipe: ignore EPIPE.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("wait for keyturn-backend");
    Run {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs the binary with `args` and `stdin`.
pub(crate) fn backend_args(args: &[&str], stdin: &[u8]) -> Run {
    backend_env(args, stdin, &[])
}

/// Runs the binary on a request.
pub(crate) fn backend(stdin: &[u8]) -> Run {
    backend_args(&[], stdin)
}

/// A version 1.1 request for `handles` with a backend type and config, as the Agent sends it.
pub(crate) fn request(backend_type: &str, config: &Value, handles: &[&str]) -> Vec<u8> {
    json!({
        "version": "1.1",
        "secrets": handles,
        "secret_backend_timeout": 30,
        "type": backend_type,
        "config": config,
    })
    .to_string()
    .into_bytes()
}

/// What a handle should resolve to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// Exactly this value, no error.
    Value(&'a str),
    /// No value, an error containing this text.
    Error(&'a str),
}

/// Runs the binary on `input` and checks the exit status, that the answer holds exactly the
/// expected handles, and each handle's value or error.
pub(crate) fn check(input: Vec<u8>, expected: &[(&str, Expect<'_>)]) -> Run {
    check_env(input, &[], expected)
}

/// [`check`] with extra environment variables.
pub(crate) fn check_env(
    input: Vec<u8>,
    env: &[(&str, &str)],
    expected: &[(&str, Expect<'_>)],
) -> Run {
    let run = backend_env(&[], &input, env);
    assert!(
        run.status.success(),
        "exit {:?}, stderr: {}",
        run.status,
        run.stderr
    );
    assert!(run.stderr.is_empty(), "stderr: {}", run.stderr);
    let response = run.response();
    let mut handles: Vec<&str> = response.keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = expected.iter().map(|(handle, _)| *handle).collect();
    handles.sort_unstable();
    wanted.sort_unstable();
    wanted.dedup();
    assert_eq!(handles, wanted, "answered handles");
    for (handle, expect) in expected {
        let entry = &response[*handle];
        match expect {
            Expect::Value(value) => {
                assert_eq!(entry["value"].as_str(), Some(*value), "{handle}: {entry}");
                assert!(entry["error"].is_null(), "{handle}: {entry}");
            }
            Expect::Error(text) => {
                assert!(
                    entry.get("value").is_none_or(Value::is_null),
                    "{handle}: {entry}"
                );
                let error = entry["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains(text),
                    "{handle}: expected error containing {text:?}, got {entry}"
                );
            }
        }
    }
    run
}

/// A temp dir to lay out secret files in.
pub(crate) struct Fixture {
    dir: TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The absolute path of `relative`, as a string for JSON configs.
    pub(crate) fn path(&self, relative: &str) -> String {
        self.full(relative).display().to_string()
    }

    /// Writes a file and returns its path.
    pub(crate) fn write(&self, relative: &str, content: &str) -> String {
        std::fs::write(self.full(relative), content).expect("write fixture");
        self.path(relative)
    }

    /// Creates a directory and returns its path.
    pub(crate) fn dir(&self, relative: &str) -> String {
        std::fs::create_dir_all(self.full(relative)).expect("create fixture dir");
        self.path(relative)
    }

    /// Creates the symlink `link` pointing at `target` (relative to the link's directory).
    pub(crate) fn symlink(&self, target: &str, link: &str) {
        std::os::unix::fs::symlink(target, self.full(link)).expect("symlink");
    }

    pub(crate) fn rename(&self, from: &str, to: &str) {
        std::fs::rename(self.full(from), self.full(to)).expect("rename");
    }

    pub(crate) fn remove_dir(&self, relative: &str) {
        std::fs::remove_dir_all(self.full(relative)).expect("remove dir");
    }

    fn full(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }
}
