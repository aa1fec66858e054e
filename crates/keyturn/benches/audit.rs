//! Audit appends per second with an empty and with a 10 MB audit file: the same record, fsync
//! included. The cost of an append must not depend on the size of the file (target: within 10%).
//!
//! The file lives under Cargo's target temporary directory (a real disk, so fsync costs what it
//! costs). Between iterations, untimed, a file that grew by more than 1 MB is cut back to its
//! starting size, so each case stays at its nominal size.
//!
//! Absolute figures drift a lot on a shared machine (fsync waits for the disk), so the last
//! case measures both sizes alternately and prints the ratio of their medians.

// A benchmark: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keyturn::Secret;
use keyturn::audit::{AuditEntry, AuditLimits, AuditWriter, Record, Trigger};
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2014-02-04 10:30:00 UTC);
const MB: u64 = 1 << 20;

/// A refresh of 10 handles, one of them a key.
fn record() -> Record {
    let mut entries: Vec<AuditEntry> = (0..9)
        .map(|i| {
            AuditEntry::new(
                format!("prod/db/password-{i}"),
                &Secret::new("s3cr3t"),
                ["password"],
            )
        })
        .collect();
    entries.push(AuditEntry::new(
        "prod/datadog/api_key",
        &Secret::new("0123456789abcdef0123456789abcdef"),
        ["api_key"],
    ));
    Record {
        trigger: Trigger::Timer,
        entries,
        failed: Vec::new(),
        held_back: Vec::new(),
    }
}

/// An audit file of about `existing` bytes of records within the retention, and a writer for it
/// that never rotates.
struct Seeded {
    _dir: tempfile::TempDir,
    path: PathBuf,
    size: u64,
    writer: AuditWriter,
}

impl Seeded {
    fn new(record: &Record, existing: u64) -> Seeded {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
        let path = dir.path().join(keyturn::audit::FILE_NAME);
        let mut seed = AuditWriter::new(path.clone(), AuditLimits::default());
        seed.append(record, NOW).expect("seed append");
        let line = fs::read(&path).expect("seed read");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("seed open");
        let mut size = line.len() as u64;
        while size + line.len() as u64 <= existing {
            file.write_all(&line).expect("seed write");
            size += line.len() as u64;
        }
        file.sync_all().expect("seed sync");
        let limits = AuditLimits::new(u64::MAX, AuditLimits::default().retention);
        Seeded {
            _dir: dir,
            writer: AuditWriter::new(path.clone(), limits),
            path,
            size,
        }
    }

    /// Untimed: cuts the file back to its starting size once it grew by more than 1 MB.
    fn reset_if_grown(&self) {
        let len = fs::metadata(&self.path).expect("stat").len();
        if len > self.size + MB {
            let file = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .expect("open");
            file.set_len(self.size).expect("truncate");
        }
    }

    fn append(&mut self, record: &Record) {
        self.writer.append(black_box(record), NOW).expect("append");
    }
}

fn appends(c: &mut Criterion) {
    let record = record();
    let mut group = c.benchmark_group("audit_append");
    group.measurement_time(Duration::from_secs(8));
    for (label, existing) in [("0MB", 0), ("10MB", 10 * MB)] {
        let mut seeded = Seeded::new(&record, existing);
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    seeded.reset_if_grown();
                    let start = Instant::now();
                    seeded.append(&record);
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

/// The two sizes measured alternately, append by append, so both see the same disk load on a
/// shared machine; prints the median of each and their ratio.
fn paired(_: &mut Criterion) {
    const ROUNDS: usize = 3000;
    let record = record();
    let mut empty = Seeded::new(&record, 0);
    let mut large = Seeded::new(&record, 10 * MB);
    let mut timings = [Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS)];
    for _ in 0..ROUNDS {
        let [empty_timings, large_timings] = &mut timings;
        for (seeded, timings) in [(&mut empty, empty_timings), (&mut large, large_timings)] {
            seeded.reset_if_grown();
            let start = Instant::now();
            seeded.append(&record);
            timings.push(start.elapsed());
        }
    }
    let [empty, large] = timings.map(|mut timings| {
        timings.sort();
        timings[timings.len() / 2]
    });
    println!(
        "audit_append/paired: median 0MB {empty:?}, 10MB {large:?}, 10MB/0MB {:.3}",
        large.as_secs_f64() / empty.as_secs_f64()
    );
}

criterion_group!(benches, appends, paired);
criterion_main!(benches);
