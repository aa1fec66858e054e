//! One `fetch` round trip, for 1 and 10,000 handles, against its floor: a bare spawn of the
//! same backend with plain `std::process::Command` (write stdin, read stdout, wait), measured
//! in the same run. Target: fetch ≤ 1.2× the floor. The round trip ends when the caller holds
//! the values: results are dropped outside the timing (`iter_with_large_drop`), and
//! `fetch_and_drop` measures the round trip with the drop of its 10,000 zeroizing values.
//!
//! `-- --paired [ROUNDS]` measures the same two things alternately instead, round by round
//! (bare spawn then fetch, then the other way round), and prints the medians and the median
//! of the per-round ratios: on a machine whose load drifts, criterion's back-to-back groups
//! can put the floor and the fetch in different conditions, while each round here puts both
//! in the same ones.
//!
//! The backend is this very executable run with `--echo-backend`: a compiled Rust program that
//! answers every handle with a fixed 64-byte value (10,000 handles make a 1.05 MB answer).
//! `cargo bench` does not build examples, and this needs no second build. It is copied into a
//! private directory with mode 0700 so that the permission check passes.

// A benchmark: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use keyturn::backend::{BackendSpec, FetchOptions, fetch};
use keyturn_protocol::{PAYLOAD_VERSION, Request};

mod support;
use support::{ECHO_BACKEND, echo_backend, install_backend};

const PAIRED: &str = "--paired";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(ECHO_BACKEND) => return echo_backend(),
        Some(PAIRED) => {
            let rounds = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
            paired(&Setup::new(), rounds);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &Setup::new());
    criterion.final_summary();
    ExitCode::SUCCESS
}

/// The backend installed in a private directory, and how `fetch` runs it.
struct Setup {
    /// Holds the installed backend.
    _dir: tempfile::TempDir,
    backend: PathBuf,
    runtime: tokio::runtime::Runtime,
    spec: BackendSpec,
    options: FetchOptions,
}

impl Setup {
    fn new() -> Setup {
        let (dir, backend) = install_backend();
        let spec = BackendSpec::new(backend.clone()).with_args([ECHO_BACKEND]);
        Setup {
            _dir: dir,
            backend,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
            spec,
            options: FetchOptions::new(Duration::from_secs(30), 4 * 1024 * 1024),
        }
    }

    fn fetch(&self, handles: &[String]) -> keyturn::backend::Fetched {
        let fetched = self
            .runtime
            .block_on(fetch(&self.spec, &self.options, handles))
            .expect("fetch");
        assert_eq!(fetched.len(), handles.len());
        fetched
    }
}

/// `count` handles, and the payload that asks for them.
fn workload(count: usize) -> (Vec<String>, Vec<u8>) {
    let handles: Vec<String> = (0..count).map(|i| format!("handle-{i:05}")).collect();
    let payload = Request {
        version: PAYLOAD_VERSION.to_owned(),
        secrets: handles.clone(),
        secret_backend_timeout: Some(30),
        backend_type: None,
        config: None,
    }
    .to_json();
    (handles, payload)
}

/// Alternating rounds of bare spawn and fetch; prints medians and the median per-round ratio,
/// of the round trip alone and with the drop of its result.
fn paired(setup: &Setup, rounds: usize) {
    use std::time::Instant;
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let ms = |began: Instant| began.elapsed().as_secs_f64() * 1000.0;
    for count in [1usize, 10_000] {
        let (handles, payload) = workload(count);
        for _ in 0..rounds.div_ceil(10) {
            bare_spawn(&setup.backend, &payload);
            drop(setup.fetch(&handles));
        }
        let mut bare = Vec::new();
        let (mut fetched, mut ratios) = (Vec::new(), Vec::new());
        let (mut dropped, mut dropped_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Round trip, then round trip and drop of its result.
            let time_bare = || {
                let began = Instant::now();
                let stdout = std::hint::black_box(bare_spawn(&setup.backend, &payload));
                let trip = ms(began);
                drop(stdout);
                (trip, ms(began))
            };
            let time_fetch = || {
                let began = Instant::now();
                let result = std::hint::black_box(setup.fetch(&handles));
                let trip = ms(began);
                drop(result);
                (trip, ms(began))
            };
            let (b, f) = if round % 2 == 0 {
                let b = time_bare();
                (b, time_fetch())
            } else {
                let f = time_fetch();
                (time_bare(), f)
            };
            bare.push(b.0);
            fetched.push(f.0);
            ratios.push(f.0 / b.0);
            dropped.push(f.1);
            dropped_ratios.push(f.1 / b.1);
        }
        let b = median(&mut bare);
        let (f, r) = (median(&mut fetched), median(&mut ratios));
        let (d, dr) = (median(&mut dropped), median(&mut dropped_ratios));
        println!(
            "{count} handles, {rounds} rounds: bare spawn {b:.2} ms; fetch {f:.2} ms, \
             fetch / bare spawn {:.2} (per-round median {r:.2}); fetch and drop {d:.2} ms, \
             {:.2} (per-round median {dr:.2})",
            f / b,
            d / b
        );
    }
}

fn bench(c: &mut Criterion, setup: &Setup) {
    let backend = &setup.backend;
    let mut group = c.benchmark_group("backend_round_trip");
    for count in [1usize, 10_000] {
        let (handles, payload) = workload(count);
        group.bench_with_input(
            BenchmarkId::new("bare_spawn", count),
            &payload,
            |b, payload| {
                b.iter_with_large_drop(|| bare_spawn(backend, payload));
            },
        );
        // The floor plus the protocol crate's decoding of the answer: what fetch adds beyond
        // spawning is mostly decoding, which the bare floor does not do.
        group.bench_with_input(
            BenchmarkId::new("bare_spawn_and_parse", count),
            &payload,
            |b, payload| {
                b.iter_with_large_drop(|| {
                    let stdout = bare_spawn(backend, payload);
                    keyturn_protocol::parse_response(&stdout).expect("valid answer")
                });
            },
        );
        // The round trip ends when the caller holds the values; dropping them (freeing and
        // zeroizing 10,000 of them) happens whenever the caller lets go, and is measured apart.
        group.bench_with_input(BenchmarkId::new("fetch", count), &handles, |b, handles| {
            b.iter_with_large_drop(|| setup.fetch(handles));
        });
        group.bench_with_input(
            BenchmarkId::new("fetch_and_drop", count),
            &handles,
            |b, handles| {
                b.iter(|| setup.fetch(handles));
            },
        );
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
