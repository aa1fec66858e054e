//! What the benchmarks that run a backend share: the bench executable itself as a compiled
//! backend (run with [`ECHO_BACKEND`]), installed where the permission check accepts it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use keyturn_protocol::{Entry, Request, Response, encode_response};

/// The argument that makes a bench executable answer as a backend.
pub(crate) const ECHO_BACKEND: &str = "--echo-backend";

/// What every handle resolves to.
pub(crate) const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Copies this executable into a new private directory with mode 0700, where the permission
/// check accepts it; the directory lives as long as the returned `TempDir`.
pub(crate) fn install_backend() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let exe = std::env::current_exe().expect("the bench executable");
    let backend = dir.path().join("echo_backend");
    std::fs::copy(exe, &backend).expect("copy the bench executable");
    std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    (dir, backend)
}

/// The backend side: one request on stdin, every handle answered with [`VALUE`].
pub(crate) fn echo_backend() -> ExitCode {
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return ExitCode::FAILURE;
    }
    let Ok(request) = Request::from_json(&input) else {
        return ExitCode::FAILURE;
    };
    let response: Response = request
        .secrets
        .into_iter()
        .map(|handle| (handle, Entry::value(VALUE)))
        .collect();
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(&encode_response(&response))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
