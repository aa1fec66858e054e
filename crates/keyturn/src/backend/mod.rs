//! Running secret backends. This module is the only code in keyturn that starts a process
//! (backends, and through `start_command` the daemon's `on_change` commands).
//!
//! Start reading at [`fetch()`]: one run of a backend for a batch of handles, following the
//! Datadog Agent's secrets protocol and hardened beyond it.
//!
//! Submodules, in the order a run uses them:
//! - `permissions`: `PATH` lookup, the permission check on an open descriptor, and
//!   [`executable_report`] for status output.
//! - `spawn`: the one place that starts a process (own process group, a guard that kills it);
//!   its doc explains how the checked file is the file that runs.
//! - `fetch`: payload, deadline, concurrent stdin/stdout/stderr with output caps, exit status,
//!   error texts, the run record.
//! - `response`: pure functions over the answer: decoding, per-handle classification, the
//!   values to scrub from the backend's other texts.
//!
//! Scrubbing values, escaped or not, out of backend text (error texts, stderr tail) is
//! `keyturn_protocol::scrub`, shared with `keyturn-backend`.
//!
//! Invariants:
//! - The permission check runs before every run (unless [`PermissionCheck::Skip`]), on the
//!   executable and on every directory and link of its path ([`crate::trusted_path`]).
//! - A run never outlives its deadline, and never leaves its process group running when it
//!   ends early or its future is dropped.
//! - No value reaches a log line, an error text or a `Debug` print; backend stderr only reaches
//!   error texts as a scrubbed tail of at most 1 KiB, and is never logged.

mod fetch;
mod permissions;
mod response;
pub(crate) mod spawn;

#[cfg(feature = "daemon")]
pub(crate) use spawn::start_command;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyturn_protocol::PayloadVersion;

pub(crate) use fetch::Ran;
pub use permissions::{ExecutableReport, FileDetails, PermissionError, Verdict, executable_report};

use crate::secret::Secret;

/// Why a handle failed to resolve (also the label values of the daemon's
/// `keyturn_handle_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The backend's answer did not name the handle.
    Missing,
    /// The backend named the handle with an empty value.
    Empty,
    /// The backend reported an error for the handle.
    Error,
    /// The backend's output was not a valid response.
    InvalidResponse,
    /// The backend could not be run, timed out, or exited unsuccessfully.
    BackendError,
}

impl FailureKind {
    /// The stable lowercase name used in labels, reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Missing => "missing",
            FailureKind::Empty => "empty",
            FailureKind::Error => "error",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::BackendError => "backend_error",
        }
    }
}

impl serde::Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How the executable's permissions are checked before each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionCheck {
    /// No group or other permission bits (`mode & 0o077 == 0`).
    Strict,
    /// Group may read and execute; no group write, no other bits (`mode & 0o027 == 0`).
    AllowGroupExec,
    /// keyturn's own `keyturn-backend`, installed like any program: no group or other write
    /// (`mode & 0o022 == 0`, so root's `0755` passes).
    Builtin,
    /// Nothing is checked: for callers that vouch for the executable themselves (tests,
    /// embedders). keyturn itself never uses it.
    Skip,
}

/// One backend: what to run and what to tell it. `Debug` shows the config's keys, not its
/// values (they may be credentials).
///
/// Built with [`BackendSpec::new`] (the strict permission check, no arguments, no payload
/// `type` or `config`, payload version 1.1, keyturn's working directory) and the `with_*`
/// setters.
#[derive(Clone)]
#[non_exhaustive]
pub struct BackendSpec {
    command: PathBuf,
    args: Vec<String>,
    check: PermissionCheck,
    backend_type: Option<String>,
    /// `None` rather than an empty map.
    config: Option<serde_json::Map<String, serde_json::Value>>,
    working_dir: Option<PathBuf>,
    protocol: PayloadVersion,
}

impl BackendSpec {
    /// Runs `command` (a bare name is looked up on `PATH`) with the strict permission check.
    pub fn new(command: impl Into<PathBuf>) -> BackendSpec {
        BackendSpec {
            command: command.into(),
            args: Vec::new(),
            check: PermissionCheck::Strict,
            backend_type: None,
            config: None,
            working_dir: None,
            protocol: PayloadVersion::V1_1,
        }
    }

    /// This spec with these arguments after the executable.
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> BackendSpec {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// This spec with another permission check before every run.
    pub fn with_check(mut self, check: PermissionCheck) -> BackendSpec {
        self.check = check;
        self
    }

    /// This spec sending this payload `type` (a built-in backend type), or none.
    pub fn with_backend_type(mut self, backend_type: Option<String>) -> BackendSpec {
        self.backend_type = backend_type;
        self
    }

    /// This spec sending this payload `config` (none when it is empty).
    pub fn with_config(
        mut self,
        config: serde_json::Map<String, serde_json::Value>,
    ) -> BackendSpec {
        self.config = (!config.is_empty()).then_some(config);
        self
    }

    /// This spec running the backend in `dir` (keyturn's own working directory when `None`).
    pub fn with_working_dir(mut self, dir: Option<PathBuf>) -> BackendSpec {
        self.working_dir = dir;
        self
    }

    /// This spec with another payload version; with `1.0` only `version` and `secrets` are
    /// sent.
    pub fn with_protocol(mut self, protocol: PayloadVersion) -> BackendSpec {
        self.protocol = protocol;
        self
    }

    /// The executable as configured (a bare name is looked up on `PATH`).
    pub fn command(&self) -> &Path {
        &self.command
    }

    /// Arguments after the executable.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Permission check applied before every run.
    pub fn check(&self) -> PermissionCheck {
        self.check
    }

    /// Payload `type`, when a built-in backend type is selected.
    pub fn backend_type(&self) -> Option<&str> {
        self.backend_type.as_deref()
    }

    /// Payload `config`, sent when there is one (never empty).
    pub fn config(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.config.as_ref()
    }

    /// The directory the backend runs in; keyturn's own when `None`.
    pub fn working_dir(&self) -> Option<&Path> {
        self.working_dir.as_deref()
    }

    /// Payload version.
    pub fn protocol(&self) -> PayloadVersion {
        self.protocol
    }
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSpec")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("check", &self.check)
            .field("backend_type", &self.backend_type)
            .field(
                "config",
                &self.config.as_ref().map(keyturn_protocol::RedactedConfig),
            )
            .field("working_dir", &self.working_dir)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// Limits and options of every fetch. Built with [`FetchOptions::new`], which keeps the
/// deadline within [`MAX_DURATION`](crate::settings::MAX_DURATION).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Deadline of one run; also sent as `secret_backend_timeout`.
    timeout: Duration,
    /// Cap on each of stdout and stderr, in bytes.
    output_max_size: usize,
    /// Strip all trailing `\r` and `\n` from values.
    remove_trailing_line_break: bool,
}

impl FetchOptions {
    /// A deadline for each run (at most [`MAX_DURATION`](crate::settings::MAX_DURATION); a
    /// longer one is shortened to it) and a cap on each of stdout and stderr, in bytes. Values
    /// are kept as the backend gave them (see
    /// [`with_remove_trailing_line_break`](FetchOptions::with_remove_trailing_line_break)).
    pub fn new(timeout: Duration, output_max_size: usize) -> FetchOptions {
        FetchOptions {
            timeout: timeout.min(crate::settings::MAX_DURATION),
            output_max_size,
            remove_trailing_line_break: false,
        }
    }

    /// These options with another deadline (shortened to at most
    /// [`MAX_DURATION`](crate::settings::MAX_DURATION)).
    pub fn with_timeout(self, timeout: Duration) -> FetchOptions {
        FetchOptions::new(timeout, self.output_max_size)
            .with_remove_trailing_line_break(self.remove_trailing_line_break)
    }

    /// These options with another output cap.
    pub fn with_output_max_size(mut self, output_max_size: usize) -> FetchOptions {
        self.output_max_size = output_max_size;
        self
    }

    /// These options, stripping (or not) every trailing `\r` and `\n` from values.
    pub fn with_remove_trailing_line_break(mut self, remove: bool) -> FetchOptions {
        self.remove_trailing_line_break = remove;
        self
    }

    /// Deadline of one run; also sent as `secret_backend_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Cap on each of stdout and stderr, in bytes.
    pub fn output_max_size(&self) -> usize {
        self.output_max_size
    }

    /// Whether trailing `\r` and `\n` are stripped from values.
    pub fn remove_trailing_line_break(&self) -> bool {
        self.remove_trailing_line_break
    }
}

/// Why one handle failed while the batch itself succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandleError {
    /// Failure kind.
    pub kind: FailureKind,
    /// Human-readable message (the Agent's wording); never contains a value.
    pub message: String,
}

/// Why a whole batch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct FetchError {
    /// `InvalidResponse` or `BackendError`.
    pub kind: FailureKind,
    /// Human-readable message; never contains a value.
    pub message: String,
}

/// The result of one backend run: per requested handle, in request order, each with the
/// handle as the caller named it.
pub type Fetched<S = String> = Vec<(S, Result<Secret, HandleError>)>;

/// What one backend run did, for the caller to record (the daemon's metrics): how it ended,
/// how long it took and how many handles failed, never a handle or a value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunRecord {
    /// `0`, the exit code, `signal`, `timeout`, or `error` (it could not run).
    pub exit: String,
    /// From the start of the permission check to the run's end.
    pub elapsed: Duration,
    /// The run succeeded but its output was not a valid answer.
    pub unparsable_output: bool,
    /// How many handles failed, by kind: a run that failed as a whole counts every handle it
    /// was asked for under its kind.
    pub handle_failures: Vec<(FailureKind, usize)>,
}

/// Runs `spec` once for `handles` and classifies every handle.
///
/// The payload asks for the distinct handles in first-seen order, and the result has one entry
/// per distinct handle in that order. A whole-run failure (permission check, start, timeout,
/// output over the cap, unsuccessful exit, invalid JSON) fails every handle and is returned as
/// [`FetchError`]. Dropping the future kills the backend's process group.
pub async fn fetch(
    spec: &BackendSpec,
    options: &FetchOptions,
    handles: &[String],
) -> Result<Fetched, FetchError> {
    fetch_recorded(spec, options, handles).await.1
}

/// [`fetch()`], also returning the [`RunRecord`] of the run for the caller's metrics.
pub async fn fetch_recorded(
    spec: &BackendSpec,
    options: &FetchOptions,
    handles: &[String],
) -> (RunRecord, Result<Fetched, FetchError>) {
    run(spec, options, handles).await.finish(&[])
}

/// One run of `spec` for `handles`, before its texts are scrubbed of the values the caller
/// holds: [`Ran::scrubs_held`] says whether they are needed, [`Ran::finish`] takes them by
/// borrow and gives what [`fetch_recorded()`] gives.
pub(crate) async fn run<'a, S: AsRef<str> + Clone>(
    spec: &'a BackendSpec,
    options: &FetchOptions,
    handles: &'a [S],
) -> Ran<'a, S> {
    fetch::fetch(spec, options, handles).await
}

/// Asks the backend for its version (`<command> --version`, as the Agent asks). Only for built-in
/// backend types: a backend script is not expected to understand `--version`.
pub async fn version(spec: &BackendSpec, options: &FetchOptions) -> Result<String, String> {
    fetch::version(spec, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_debug_shows_config_keys_not_values() {
        let mut config = serde_json::Map::new();
        config.insert("vault_token".into(), "hunter2-token".into());
        let spec = BackendSpec::new("keyturn-backend")
            .with_check(PermissionCheck::Skip)
            .with_backend_type(Some("hashicorp.vault".into()))
            .with_config(config);
        let printed = format!("{spec:?}");
        assert!(printed.contains("vault_token"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    /// `sh` printing `stdout` and `stderr` and exiting with `code`, unchecked.
    fn script(stdout: &str, stderr: &str, code: i32) -> BackendSpec {
        let program =
            format!("cat >/dev/null; printf '%s' \"$1\"; printf '%s' \"$2\" >&2; exit {code}");
        BackendSpec::new("sh")
            .with_args(["-c", program.as_str(), "sh", stdout, stderr])
            .with_check(PermissionCheck::Skip)
    }

    #[tokio::test]
    async fn held_values_are_asked_for_only_where_a_text_may_repeat_them() {
        let options = FetchOptions::new(Duration::from_secs(20), 1 << 20);
        let handles = ["h".to_owned()];
        let held = [Secret::new("old-value")];

        let plain = script(r#"{"h":{"value":"v"}}"#, "", 0);
        assert!(!run(&plain, &options, &handles).await.scrubs_held());
        let silent_failure = script("", "", 1);
        assert!(!run(&silent_failure, &options, &handles).await.scrubs_held());

        let error_text = script(r#"{"h":{"error":"rotation of old-value failed"}}"#, "", 0);
        let ran = run(&error_text, &options, &handles).await;
        assert!(ran.scrubs_held());
        let (record, result) = ran.finish(&held);
        let fetched = result.unwrap();
        let error = fetched[0].1.as_ref().unwrap_err();
        assert_eq!(
            error.message,
            "an error occurred while resolving 'h': rotation of <redacted> failed"
        );
        assert_eq!(record.handle_failures, [(FailureKind::Error, 1)]);
        // The scrubbing above came from `held`: without it the text is left as it is.
        let (_, result) = run(&error_text, &options, &handles).await.finish(&[]);
        let fetched = result.unwrap();
        let error = fetched[0].1.as_ref().unwrap_err();
        assert!(error.message.ends_with("rotation of old-value failed"));

        let stderr = script("", "the previous value was old-value", 1);
        let ran = run(&stderr, &options, &handles).await;
        assert!(ran.scrubs_held());
        let (record, result) = ran.finish(&held);
        let error = result.unwrap_err();
        assert!(
            error
                .message
                .ends_with("; stderr: the previous value was <redacted>"),
            "{error}"
        );
        assert_eq!(record.handle_failures, [(FailureKind::BackendError, 1)]);
    }
}
