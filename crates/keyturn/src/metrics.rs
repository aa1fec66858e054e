//! Prometheus metrics of the resolver and the backend runs.
//!
//! One [`Metrics`] value is shared by everything that resolves secrets; the daemon's `/metrics`
//! route encodes it with [`Metrics::encode`]. Labels never carry handle names or values: a
//! handle name can itself be sensitive and would make the label set unbounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why a handle failed to resolve; the label values of `keyturn_handle_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExitLabels {
    /// `0`, the numeric exit code, `signal`, `timeout`, or `error` (could not run).
    exit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefreshLabels {
    trigger: String,
    outcome: String,
}

/// The metrics of one resolver.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    backend_runs: Family<ExitLabels, Counter>,
    backend_durations: Family<ExitLabels, Histogram>,
    unparsable_outputs: Counter,
    handle_failures: Family<KindLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    handles_known: Gauge,
    since_last_refresh: Gauge<f64, AtomicU64>,
    last_refresh_unix: AtomicU64,
    memory_lock_failed: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates the metrics, registered under the `keyturn` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keyturn");
        let backend_runs = Family::<ExitLabels, Counter>::default();
        registry.register(
            "backend_runs",
            "Secret backend runs, by exit status",
            backend_runs.clone(),
        );
        let backend_durations = Family::<ExitLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0])
        });
        registry.register(
            "backend_run_duration_seconds",
            "Duration of secret backend runs, by exit status",
            backend_durations.clone(),
        );
        let unparsable_outputs = Counter::default();
        registry.register(
            "backend_unparsable_outputs",
            "Backend runs whose output was not a valid response",
            unparsable_outputs.clone(),
        );
        let handle_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "handle_failures",
            "Handles that failed to resolve, by kind",
            handle_failures.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "refreshes",
            "Refreshes by trigger and outcome",
            refreshes.clone(),
        );
        let handles_known = Gauge::default();
        registry.register(
            "handles_known",
            "Handles with at least one origin",
            handles_known.clone(),
        );
        let since_last_refresh = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "seconds_since_last_successful_refresh",
            "Seconds since the last refresh that succeeded (-1 before the first)",
            since_last_refresh.clone(),
        );
        since_last_refresh.set(-1.0);
        let memory_lock_failed = Gauge::default();
        registry.register(
            "memory_lock_failed",
            "1 when secret_memory_lock is set but memory could not be locked, else 0",
            memory_lock_failed.clone(),
        );
        Metrics {
            registry,
            backend_runs,
            backend_durations,
            unparsable_outputs,
            handle_failures,
            refreshes,
            handles_known,
            since_last_refresh,
            last_refresh_unix: AtomicU64::new(0),
            memory_lock_failed,
        }
    }

    /// Records one backend run. `exit` is `"0"`, the exit code, `"signal"`, `"timeout"` or
    /// `"error"`.
    pub fn record_backend_run(&self, exit: &str, elapsed: Duration) {
        let labels = ExitLabels {
            exit: exit.to_owned(),
        };
        self.backend_runs.get_or_create(&labels).inc();
        self.backend_durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records one unparsable backend output.
    pub fn record_unparsable_output(&self) {
        self.unparsable_outputs.inc();
    }

    /// Records one failed handle.
    pub fn record_handle_failure(&self, kind: FailureKind) {
        self.handle_failures
            .get_or_create(&KindLabels {
                kind: kind.as_str().to_owned(),
            })
            .inc();
    }

    /// Records one refresh. `trigger` is `startup`, `timer`, `api`, `cli` or `signal`;
    /// `outcome` is `ok`, `partial` or `failed`.
    pub fn record_refresh(&self, trigger: &str, outcome: &str, now_unix: u64) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                trigger: trigger.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if outcome == "ok" {
            self.last_refresh_unix.store(now_unix, Ordering::Relaxed);
        }
    }

    /// Sets the number of handles known to the resolver.
    pub fn set_handles_known(&self, count: usize) {
        self.handles_known
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records whether a memory lock that was asked for is not in effect
    /// (see [`crate::hygiene::harden`]).
    pub fn set_memory_lock_failed(&self, failed: bool) {
        self.memory_lock_failed.set(i64::from(failed));
    }

    /// Whether a memory lock that was asked for is not in effect.
    pub fn memory_lock_failed(&self) -> bool {
        self.memory_lock_failed.get() != 0
    }

    /// Number of backend runs recorded with this exit label.
    pub fn backend_runs(&self, exit: &str) -> u64 {
        self.backend_runs
            .get_or_create(&ExitLabels {
                exit: exit.to_owned(),
            })
            .get()
    }

    /// Number of unparsable backend outputs.
    pub fn unparsable_outputs(&self) -> u64 {
        self.unparsable_outputs.get()
    }

    /// Number of handle failures recorded with this kind.
    pub fn handle_failures(&self, kind: FailureKind) -> u64 {
        self.handle_failures
            .get_or_create(&KindLabels {
                kind: kind.as_str().to_owned(),
            })
            .get()
    }

    /// Encodes every metric in the Prometheus text format, as of `now_unix`.
    pub fn encode(&self, now_unix: u64) -> String {
        let last = self.last_refresh_unix.load(Ordering::Relaxed);
        if last > 0 {
            self.since_last_refresh
                .set(now_unix.saturating_sub(last) as f64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_encodes() {
        let metrics = Metrics::new();
        metrics.record_backend_run("0", Duration::from_millis(3));
        metrics.record_backend_run("timeout", Duration::from_secs(30));
        metrics.record_unparsable_output();
        metrics.record_handle_failure(FailureKind::Empty);
        metrics.record_handle_failure(FailureKind::Empty);
        metrics.record_refresh("api", "ok", 100);
        metrics.set_memory_lock_failed(true);
        assert!(metrics.memory_lock_failed());
        assert_eq!(metrics.backend_runs("0"), 1);
        assert_eq!(metrics.handle_failures(FailureKind::Empty), 2);
        assert_eq!(metrics.unparsable_outputs(), 1);
        let text = metrics.encode(130);
        assert!(
            text.contains(r#"keyturn_handle_failures_total{kind="empty"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keyturn_backend_run_duration_seconds_count{exit="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("keyturn_seconds_since_last_successful_refresh 30"),
            "{text}"
        );
        assert!(
            text.contains(r#"keyturn_refreshes_total{trigger="api",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("keyturn_memory_lock_failed 1"), "{text}");
        metrics.set_memory_lock_failed(false);
        assert!(metrics.encode(130).contains("keyturn_memory_lock_failed 0"));
    }
}
