//! Running secret backends. This module is the only code in keyturn that starts a process.
//!
//! STUB: the real implementation is being written; this placeholder only fixes the interface.

use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::{FailureKind, Metrics};
use crate::secret::Secret;

/// How the executable's permissions are checked before each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionCheck {
    /// No group or other permission bits (`mode & 0o077 == 0`).
    Strict,
    /// Group may read and execute; no group write, no other bits (`mode & 0o027 == 0`).
    AllowGroupExec,
    /// keyturn's own built-in backend: not checked.
    Skip,
}

/// One backend: what to run and what to tell it.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    /// The executable as configured (a bare name is looked up on `PATH`).
    pub command: PathBuf,
    /// Arguments after the executable.
    pub args: Vec<String>,
    /// Permission check applied before every run.
    pub check: PermissionCheck,
    /// Payload `type`, when a built-in backend type is selected.
    pub backend_type: Option<String>,
    /// Payload `config`, sent when non-empty.
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Limits and options of every fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Deadline of one run; also sent as `secret_backend_timeout`.
    pub timeout: Duration,
    /// Cap on each of stdout and stderr, in bytes.
    pub output_max_size: usize,
    /// Strip all trailing `\r` and `\n` from values.
    pub remove_trailing_line_break: bool,
}

/// Why one handle failed while the batch itself succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleError {
    /// Failure kind.
    pub kind: FailureKind,
    /// Human-readable message (spec §2.4 wording); never contains a value.
    pub message: String,
}

/// Why a whole batch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// `InvalidResponse` or `BackendError`.
    pub kind: FailureKind,
    /// Human-readable message; never contains a value.
    pub message: String,
}

/// The result of one backend run: per requested handle, in request order.
pub type Fetched = Vec<(String, Result<Secret, HandleError>)>;

/// Runs `spec` once for `handles` and classifies every handle.
pub async fn fetch(
    spec: &BackendSpec,
    options: &FetchOptions,
    handles: &[String],
    metrics: &Metrics,
) -> Result<Fetched, FetchError> {
    let _ = (spec, options, handles, metrics);
    Err(FetchError {
        kind: FailureKind::BackendError,
        message: "not implemented".into(),
    })
}

/// File mode, owner and group of an executable, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDetails {
    /// Octal of the full `st_mode`, e.g. `100700`.
    pub file_mode: String,
    /// Owner name.
    pub owner: String,
    /// Group name.
    pub group: String,
}

/// Checks the executable at `path` as a run would.
pub fn check_executable(path: &std::path::Path, allow_group_exec: bool) -> Result<(), FetchError> {
    let _ = (path, allow_group_exec);
    Ok(())
}

/// Reads the file details of `path`, or says why it cannot.
pub fn file_details(path: &std::path::Path) -> Result<FileDetails, String> {
    Err(format!("could not stat {}", path.display()))
}
