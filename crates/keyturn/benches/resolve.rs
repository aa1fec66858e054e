//! Per-handle cost of `Resolver::resolve` at 10,000 handles (issue 13): a flat YAML mapping of
//! 10,000 handles, parsed once, resolved
//! - `parse` and `parse_plain`: `Document::parse` of it and of the same mapping with no handle
//!   (values `VAL[...]`), what the resolve of a document pays before the resolver;
//! - `render`: the floor, `Document::render` with every value at hand (no resolver);
//! - `cached`: every value cached (registration under an origin that already holds the same
//!   uses, lookups, rendering);
//! - `first`: a fresh resolver, so one backend run (this executable run with
//!   `--echo-backend`, a compiled backend answering every handle with a 64-byte value);
//! - `once`: `Resolver::resolve_once` (what `keyturn resolve` runs): the same backend run, with
//!   nothing registered or cached.
//!
//! Before criterion's timings it prints what each costs per handle in allocations and bytes
//! allocated (a counting global allocator, `stats_alloc`), and the bytes still held by the
//! result. Run with `cargo bench -p keyturn-resolver --bench resolve`; to profile one case:
//! `perf record -g target/release/deps/resolve-* --bench --profile-time 10 cached`.

// A benchmark may print its results, and a panic is a failed run.
#![allow(clippy::print_stdout)]
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::alloc::System;
use std::process::ExitCode;
use std::time::Duration;

use criterion::Criterion;
use keyturn::settings::BackendSelection;
use keyturn::{Document, Format, Resolution, Resolver, Settings};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

mod support;
use support::{ECHO_BACKEND, VALUE, echo_backend, install_backend};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const HANDLES: usize = 10_000;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(ECHO_BACKEND) {
        return echo_backend();
    }
    let setup = Setup::new();
    allocations(&setup);
    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    bench(&mut criterion, &setup);
    criterion.final_summary();
    ExitCode::SUCCESS
}

/// The backend installed in a private directory, the document, and a resolver that has every
/// value of it cached.
struct Setup {
    /// Holds the installed backend.
    _dir: tempfile::TempDir,
    settings: Settings,
    runtime: tokio::runtime::Runtime,
    text: String,
    plain: String,
    document: Document,
    warm: Resolver,
}

impl Setup {
    fn new() -> Setup {
        let (dir, backend) = install_backend();
        let settings = Settings::default()
            .with_backend(BackendSelection::command(backend))
            .with_arguments([ECHO_BACKEND]);
        // What `keyturn resolve` runs on.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mapping = |prefix: &str| -> String {
            (0..HANDLES)
                .map(|i| format!("key{i:05}: {prefix}[db{i:05}]\n"))
                .collect()
        };
        let (text, plain) = (mapping("ENC"), mapping("VAL"));
        let document = Document::parse(text.clone(), Format::Yaml).expect("parse");
        assert_eq!(document.sites().len(), HANDLES);
        let mut setup = Setup {
            _dir: dir,
            warm: Resolver::new(settings.clone()),
            settings,
            runtime,
            text,
            plain,
            document,
        };
        let warm = setup.warm.clone();
        let resolution = setup.resolve(&warm);
        assert!(resolution.is_complete(), "{:?}", resolution.failures);
        assert!(resolution.output.contains(VALUE));
        setup.warm = warm;
        setup
    }

    fn resolve(&self, resolver: &Resolver) -> Resolution {
        self.runtime
            .block_on(resolver.resolve(&self.document, "bench.yaml", false))
    }

    fn render(&self) -> zeroize::Zeroizing<String> {
        self.document.render(|_| Some(VALUE))
    }

    fn first(&self) -> Resolution {
        let resolution = self.resolve(&Resolver::new(self.settings.clone()));
        assert!(resolution.is_complete());
        resolution
    }

    fn once(&self) -> Resolution {
        let resolver = Resolver::new(self.settings.clone());
        let resolution = self.runtime.block_on(resolver.resolve_once(&self.document));
        assert!(resolution.is_complete());
        resolution
    }
}

/// Allocations and bytes per handle of each case, counted by the global allocator.
fn allocations(setup: &Setup) {
    let per_handle = |name: &str, work: &dyn Fn() -> Box<dyn std::any::Any>| {
        // Once to warm up (lazy statics, the runtime's buffers), then counted.
        drop(work());
        let region = Region::new(GLOBAL);
        let result = work();
        let held = region.change();
        drop(result);
        let all = region.change();
        let n = HANDLES as f64;
        println!(
            "{name:>7}: {:6.2} allocations, {:7.1} bytes allocated per handle; \
             {:6.1} bytes per handle held by the result",
            all.allocations as f64 / n,
            all.bytes_allocated as f64 / n,
            (held.bytes_allocated as f64 - held.bytes_deallocated as f64) / n,
        );
    };
    println!(
        "{HANDLES} handles, flat YAML mapping ({} KB):",
        setup.document.text().len() / 1000
    );
    per_handle("parse", &|| Box::new(parse(&setup.text)));
    per_handle("plain", &|| Box::new(parse(&setup.plain)));
    per_handle("render", &|| Box::new(setup.render()));
    per_handle("cached", &|| Box::new(setup.resolve(&setup.warm)));
    per_handle("first", &|| Box::new(setup.first()));
    per_handle("once", &|| Box::new(setup.once()));
}

fn bench(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("resolve_10k");
    group.bench_function("parse", |b| b.iter_with_large_drop(|| parse(&setup.text)));
    group.bench_function("parse_plain", |b| {
        b.iter_with_large_drop(|| parse(&setup.plain))
    });
    group.bench_function("render", |b| b.iter_with_large_drop(|| setup.render()));
    group.bench_function("cached", |b| {
        b.iter_with_large_drop(|| setup.resolve(&setup.warm))
    });
    group.bench_function("first", |b| b.iter_with_large_drop(|| setup.first()));
    group.bench_function("once", |b| b.iter_with_large_drop(|| setup.once()));
    group.finish();
}

fn parse(text: &str) -> Document {
    Document::parse(text.to_owned(), Format::Yaml).expect("parse")
}
