//! Prometheus metrics of the resolver, the backend runs and the daemon.
//!
//! One [`Metrics`] value is shared by everything that resolves secrets; the daemon's `/metrics`
//! route encodes it with [`Metrics::encode`], in the OpenMetrics text format when the scraper
//! asks for it and in Prometheus' classic text format (0.0.4) otherwise. Labels never carry
//! handle names or values: a handle name can itself be sensitive and would make the label set
//! unbounded.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::{FailureKind, RunRecord};
use crate::resolver::{Observer, RefreshOutcome, Trigger};

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

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The text formats [`Metrics::encode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsFormat {
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
    /// Prometheus' classic text format (`text/plain; version=0.0.4`).
    Classic,
}

impl MetricsFormat {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
            MetricsFormat::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
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
    last_success: Gauge,
    memory_lock_failed: Gauge,
    template_writes: Family<OutcomeLabels, Counter>,
    on_change_runs: Family<OutcomeLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    audit_write_failures: Counter,
}

impl Observer for Metrics {
    fn backend_run(&self, run: &RunRecord) {
        self.record_backend_run(&run.exit, run.elapsed);
        if run.unparsable_output {
            self.record_unparsable_output();
        }
        for &(kind, count) in &run.handle_failures {
            self.record_handle_failures(kind, u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    fn handles_known(&self, count: usize) {
        self.set_handles_known(count);
    }

    fn refresh(&self, trigger: Trigger, outcome: RefreshOutcome) {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.record_refresh(trigger.as_str(), outcome.as_str(), now_unix);
    }

    fn audit_write_failure(&self) {
        self.record_audit_write_failure();
    }
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
        let last_success = Gauge::default();
        registry.register(
            "last_successful_refresh_timestamp_seconds",
            "Unix time of the last refresh (or start-up resolution) that succeeded; 0 before the first",
            last_success.clone(),
        );
        let memory_lock_failed = Gauge::default();
        registry.register(
            "memory_lock_failed",
            "1 when secret_memory_lock is set but memory could not be locked, else 0",
            memory_lock_failed.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the version of keyturn in a label",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        let template_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "template_writes",
            "Writes of template destinations whose content changed, by outcome (ok, failed)",
            template_writes.clone(),
        );
        let on_change_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "on_change_runs",
            "Runs of on_change commands, by outcome (ok, failed, timeout, spawn_error)",
            on_change_runs.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the settings and templates (SIGHUP), by outcome (ok, failed)",
            reloads.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written",
            audit_write_failures.clone(),
        );
        Metrics {
            registry,
            backend_runs,
            backend_durations,
            unparsable_outputs,
            handle_failures,
            refreshes,
            handles_known,
            last_success,
            memory_lock_failed,
            template_writes,
            on_change_runs,
            reloads,
            audit_write_failures,
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

    /// Records `count` failed handles of one kind.
    pub fn record_handle_failures(&self, kind: FailureKind, count: u64) {
        self.handle_failures
            .get_or_create(&KindLabels {
                kind: kind.as_str().to_owned(),
            })
            .inc_by(count);
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
            self.last_success
                .set(i64::try_from(now_unix).unwrap_or(i64::MAX));
        }
    }

    /// Records one write of a template destination whose content changed: `ok` or `failed`.
    pub fn record_template_write(&self, outcome: &str) {
        self.outcome(&self.template_writes, outcome);
    }

    /// Records one `on_change` run: `ok`, `failed`, `timeout` or `spawn_error`.
    pub fn record_on_change(&self, outcome: &str) {
        self.outcome(&self.on_change_runs, outcome);
    }

    /// Records one reload: `ok` or `failed`.
    pub fn record_reload(&self, outcome: &str) {
        self.outcome(&self.reloads, outcome);
    }

    /// Records an audit record that could not be written.
    pub fn record_audit_write_failure(&self) {
        self.audit_write_failures.inc();
    }

    fn outcome(&self, family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
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

    /// Encodes every metric in `format`.
    pub fn encode(&self, format: MetricsFormat) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            MetricsFormat::OpenMetrics => out,
            MetricsFormat::Classic => openmetrics_to_classic(&out),
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text in the classic format. The two differ, for
/// what this registry holds, only in that a classic counter family is named after its samples
/// (`x_total`, where OpenMetrics names the family `x`), and that `# UNIT` and `# EOF` lines do
/// not exist there. Samples, labels and histograms are written the same way.
fn openmetrics_to_classic(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
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
        metrics.record_handle_failures(FailureKind::Empty, 2);
        metrics.record_refresh("api", "ok", 100);
        metrics.set_memory_lock_failed(true);
        assert!(metrics.memory_lock_failed());
        assert_eq!(metrics.backend_runs("0"), 1);
        assert_eq!(metrics.handle_failures(FailureKind::Empty), 2);
        assert_eq!(metrics.unparsable_outputs(), 1);
        let text = metrics.encode(MetricsFormat::OpenMetrics);
        assert!(
            text.contains(r#"keyturn_handle_failures_total{kind="empty"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keyturn_backend_run_duration_seconds_count{exit="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("keyturn_last_successful_refresh_timestamp_seconds 100"),
            "{text}"
        );
        assert!(
            text.contains(r#"keyturn_refreshes_total{trigger="api",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "keyturn_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("keyturn_memory_lock_failed 1"), "{text}");
        metrics.set_memory_lock_failed(false);
        assert!(
            metrics
                .encode(MetricsFormat::OpenMetrics)
                .contains("keyturn_memory_lock_failed 0")
        );
    }

    #[test]
    fn the_classic_format_names_counter_families_after_their_samples() {
        let metrics = Metrics::new();
        metrics.record_backend_run("0", Duration::from_millis(3));
        metrics.record_on_change("timeout");
        let classic = metrics.encode(MetricsFormat::Classic);
        assert!(
            classic.contains(
                "# HELP keyturn_backend_runs_total Secret backend runs, by exit status.\n\
                 # TYPE keyturn_backend_runs_total counter\n\
                 keyturn_backend_runs_total{exit=\"0\"} 1\n"
            ),
            "{classic}"
        );
        assert!(
            classic.contains("keyturn_on_change_runs_total{outcome=\"timeout\"} 1\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE keyturn_backend_run_duration_seconds histogram\n"),
            "{classic}"
        );
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        // Every sample line is unchanged.
        let samples = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            samples(&classic),
            samples(&metrics.encode(MetricsFormat::OpenMetrics))
        );
    }
}
