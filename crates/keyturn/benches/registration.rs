//! Registering many uses and reporting many failures (issue 9, item 3; target: each under 1 s
//! in release).
//!
//! (a) A 16 KB YAML document with 250,000 uses of one handle (5,000 written, the rest through
//! aliases): a first resolve (one backend run) and a second one under another origin (cache
//! hit: registration and rendering only). (b) A document of 100,000 distinct handles whose
//! backend fails: a resolve that reports every one with its key path. Each is timed over a few
//! rounds with a fresh resolver, next to the time of `Document::parse` of the same text, the
//! floor any resolve of it pays. Run with `cargo bench -p keyturn-resolver --bench registration`.

// A benchmark: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// A benchmark may print its results.
#![allow(clippy::print_stdout)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use keyturn::settings::BackendSelection;
use keyturn::{Document, Format, Resolver, Settings};

const ROUNDS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let answering = backend(
        dir.path(),
        "answer.sh",
        r#"printf '{"x":{"value":"v","error":null}}'"#,
    );
    let failing = backend(dir.path(), "fail.sh", "exit 3");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let many_uses = many_uses_of_one_handle();
    let document = Document::parse(many_uses.clone(), Format::Yaml).expect("parse");
    assert_eq!(document.sites().len(), 250_000);
    let parse = time(|| {
        Document::parse(many_uses.clone(), Format::Yaml).expect("parse");
    });
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let resolver = resolver(&answering);
        runtime.block_on(async {
            let start = Instant::now();
            let resolution = resolver.resolve(&document, "a", false).await;
            first.push(start.elapsed());
            assert!(resolution.is_complete(), "{:?}", resolution.failures);
            let start = Instant::now();
            let resolution = resolver.resolve(&document, "b", false).await;
            second.push(start.elapsed());
            assert!(resolution.is_complete());
        });
    }
    println!(
        "250,000 uses of one handle ({} KB): parse {:?}, first resolve {:?}, cache-hit resolve {:?} \
         (medians of {ROUNDS}; target < 1 s)",
        many_uses.len() / 1024,
        parse,
        median(first),
        median(second),
    );

    let many_failures = many_failing_handles();
    let document = Document::parse(many_failures.clone(), Format::Yaml).expect("parse");
    assert_eq!(document.handles().len(), 100_000);
    let parse = time(|| {
        Document::parse(many_failures.clone(), Format::Yaml).expect("parse");
    });
    let mut failed = Vec::new();
    for _ in 0..ROUNDS {
        let resolver = resolver(&failing);
        runtime.block_on(async {
            let start = Instant::now();
            let resolution = resolver.resolve(&document, "a", false).await;
            failed.push(start.elapsed());
            assert_eq!(resolution.failures.len(), 100_000);
        });
    }
    println!(
        "100,000 failing handles ({} KB): parse {:?}, resolve reporting every failure {:?} \
         (medians of {ROUNDS}; target < 1 s)",
        many_failures.len() / 1024,
        parse,
        median(failed),
    );
}

/// 5,000 written uses of `ENC[x]`, 50 of them anchored and copied 4,900 times by aliases.
fn many_uses_of_one_handle() -> String {
    let mut text = String::from("l0: &l0\n");
    text.push_str(&"  - ENC[x]\n".repeat(50));
    text.push_str("l1: &l1\n");
    text.push_str(&"  - *l0\n".repeat(50));
    text.push_str("l2:\n");
    text.push_str(&"  - *l1\n".repeat(97));
    text.push_str("written:\n");
    text.push_str(&"  - ENC[x]\n".repeat(4_950));
    text
}

/// 100,000 distinct handles, one per key.
fn many_failing_handles() -> String {
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&format!("key{i}: ENC[h{i}]\n"));
    }
    text
}

fn backend(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).expect("write backend");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod backend");
    path
}

fn resolver(command: &Path) -> Resolver {
    Resolver::new(Settings::default().with_backend(BackendSelection::command(command)))
}

fn time(mut work: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        work();
        samples.push(start.elapsed());
    }
    median(samples)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
