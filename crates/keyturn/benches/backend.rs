//! One `fetch` round trip, for 1 and 10,000 handles, against its floor: a bare spawn of the
//! same backend with plain `std::process::Command` (write stdin, read stdout, wait), measured
//! in the same run. Target: fetch ≤ 1.2× the floor.
//!
//! The backend is this very executable run with `--echo-backend`: a compiled Rust program that
//! answers every handle with a fixed 64-byte value (10,000 handles make a ~0.8 MB answer).
//! `cargo bench` does not build examples, and this needs no second build. It is copied into a
//! private directory with mode 0700 so that the permission check passes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use keyturn::backend::{BackendSpec, FetchOptions, PermissionCheck, fetch};
use keyturn::metrics::Metrics;
use keyturn_protocol::{Entry, PAYLOAD_VERSION, Request, Response, encode_response};

const ECHO_BACKEND: &str = "--echo-backend";

/// What every handle resolves to.
const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(ECHO_BACKEND) {
        return echo_backend();
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    ExitCode::SUCCESS
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let backend = install_backend(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let metrics = Metrics::new();
    let spec = BackendSpec {
        command: backend.clone(),
        args: vec![ECHO_BACKEND.to_owned()],
        check: PermissionCheck::Strict,
        backend_type: None,
        config: None,
    };
    let options = FetchOptions {
        timeout: Duration::from_secs(30),
        output_max_size: 4 * 1024 * 1024,
        remove_trailing_line_break: false,
    };
    let mut group = c.benchmark_group("backend_round_trip");
    for count in [1usize, 10_000] {
        let handles: Vec<String> = (0..count).map(|i| format!("handle-{i:05}")).collect();
        let payload = Request {
            version: PAYLOAD_VERSION.to_owned(),
            secrets: handles.clone(),
            secret_backend_timeout: Some(30),
            backend_type: None,
            config: None,
        }
        .to_json();
        group.bench_with_input(
            BenchmarkId::new("bare_spawn", count),
            &payload,
            |b, payload| {
                b.iter(|| bare_spawn(&backend, payload));
            },
        );
        // The floor plus the protocol crate's decoding of the answer: what fetch adds beyond
        // spawning is mostly decoding, which the bare floor does not do.
        group.bench_with_input(
            BenchmarkId::new("bare_spawn_and_parse", count),
            &payload,
            |b, payload| {
                b.iter(|| {
                    let stdout = bare_spawn(&backend, payload);
                    keyturn_protocol::parse_response(&stdout).expect("valid answer")
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("fetch", count), &handles, |b, handles| {
            b.iter(|| {
                let fetched = runtime
                    .block_on(fetch(&spec, &options, handles, &metrics))
                    .expect("fetch");
                assert_eq!(fetched.len(), handles.len());
                fetched
            });
        });
    }
    group.finish();
}

/// The floor: spawn, write the payload, close stdin, read stdout to the end, wait.
fn bare_spawn(backend: &Path, payload: &[u8]) -> Vec<u8> {
    // The floor must not go through keyturn's spawner: this is what it is compared to.
    #[allow(clippy::disallowed_methods)]
    let mut child = std::process::Command::new(backend)
        .arg(ECHO_BACKEND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(payload).expect("write stdin");
    drop(stdin);
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut stdout)
        .expect("read stdout");
    assert!(child.wait().expect("wait").success());
    stdout
}

/// Copies this executable into `dir` with mode 0700.
fn install_backend(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().expect("the bench executable");
    let backend = dir.join("echo_backend");
    std::fs::copy(exe, &backend).expect("copy the bench executable");
    std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    backend
}

/// The backend side: one request on stdin, every handle answered with [`VALUE`].
fn echo_backend() -> ExitCode {
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
