//! Cache-hit resolve latency while a refresh waits on a slow backend (issue 3, target: p99
//! under 1 ms).
//!
//! A document of 20 handles is resolved once (filling the cache). Then, for the same wall-clock
//! window, cache-hit resolves of that document are timed twice: with nothing else running
//! (baseline), and while a full refresh waits on a backend that takes 2 s to answer. Prints
//! p50/p99/max of both and the p99 ratio. Run with
//! `cargo bench -p keyturn-resolver --bench resolve_during_refresh`.

// A benchmark: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]
// A benchmark may print its results.
#![allow(clippy::print_stdout)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use keyturn::resolver::Trigger;
use keyturn::settings::BackendSelection;
use keyturn::{Document, Format, Resolver, Settings};

const HANDLES: usize = 20;
const WINDOW: Duration = Duration::from_millis(1500);
const SLOW_BACKEND_DELAY: &str = "2";

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("backend.sh");
    let body = format!(
        r#"#!/bin/sh
dir=$(dirname "$0")
input=$(cat)
if [ -f "$dir/slow" ]; then : > "$dir/running"; sleep {SLOW_BACKEND_DELAY}; fi
list=$(printf '%s' "$input" | sed -e 's/.*"secrets":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | tr -d '"')
printf '{{'
sep=''
for h in $list; do printf '%s"%s":{{"value":"value-of-%s","error":null}}' "$sep" "$h" "$h"; sep=','; done
printf '}}'
"#
    );
    fs::write(&script, body).expect("write backend");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).expect("chmod backend");

    let mut text =
        String::from("# service configuration\nservice: billing\nlisten: 0.0.0.0:8080\n");
    for i in 0..HANDLES {
        text.push_str(&format!(
            "backend_{i}:\n  host: db{i}.internal\n  password: ENC[secret_{i}]\n"
        ));
    }
    let document = Document::parse(text, Format::Yaml).expect("parse");
    assert_eq!(
        document.sites().len(),
        HANDLES,
        "the document parser found the handles"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let settings = Settings::default().with_backend(BackendSelection::command(script));
        let resolver = Resolver::new(settings);
        let first = resolver.resolve(&document, "bench", false).await;
        assert!(first.is_complete(), "{:?}", first.failures);

        let baseline = sample(&resolver, &document).await;

        fs::write(dir.path().join("slow"), "").expect("slow flag");
        let refreshing = tokio::spawn({
            let resolver = resolver.clone();
            async move { resolver.refresh(Trigger::Api).await }
        });
        // Time only while the backend is running (bounded wait for it to start).
        let started = Instant::now();
        while !dir.path().join("running").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the backend never started"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let during = sample(&resolver, &document).await;
        assert!(
            !refreshing.is_finished(),
            "the refresh was still waiting while sampling"
        );
        let report = refreshing.await.expect("refresh task");
        assert!(report.is_success());

        print_stats("cache-hit resolve, idle", &baseline);
        print_stats("cache-hit resolve, refresh waiting 2 s", &during);
        println!(
            "p99 ratio (during / idle): {:.2}",
            percentile(&during, 99.0).as_secs_f64() / percentile(&baseline, 99.0).as_secs_f64()
        );
    });
}

/// Times back-to-back cache-hit resolves for [`WINDOW`].
async fn sample(resolver: &Resolver, document: &Document) -> Vec<Duration> {
    let mut samples = Vec::new();
    let end = Instant::now() + WINDOW;
    while Instant::now() < end {
        let start = Instant::now();
        let resolution = resolver.resolve(document, "bench", false).await;
        samples.push(start.elapsed());
        assert!(resolution.is_complete());
    }
    samples.sort();
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn print_stats(label: &str, sorted: &[Duration]) {
    println!(
        "{label}: n={} p50={:?} p99={:?} max={:?} (target p99 < 1ms)",
        sorted.len(),
        percentile(sorted, 50.0),
        percentile(sorted, 99.0),
        sorted[sorted.len() - 1],
    );
}
