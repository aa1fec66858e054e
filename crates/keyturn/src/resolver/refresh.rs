//! Refresh: re-fetch known handles, apply what changed, report it.
//!
//! Coalescing: full refreshes go through a `Coordinator` that keeps `started` (the generation
//! of the last run that began) under a short-held mutex. A requester needs generation
//! `started + 1` when a run is in progress (it must be answered by a run that started after its
//! request), or starts generation `started + 1` itself when none is. When a run completes and
//! requesters are queued, exactly one more run starts for all of them. Requesters wait on a
//! watch channel for "generation >= needed completed". So any number of concurrent requests
//! cause at most two backend runs, and every requester gets the report of a run that started
//! after it asked. Runs execute in a spawned task: a requester that gives up does not cancel
//! the run others wait on.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::{Failure, Inner, Lookup, Notification, Resolver, SharedChange};
use crate::audit::{AuditEntry, AuditWriter, FailedHandle, Record};
use crate::document::Segment;

pub use crate::audit::Trigger;

/// What one refresh run did. Never carries a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// How many handles were candidates (0: nothing to refresh, the backend did not run).
    pub candidates: usize,
    /// Handles whose value changed, sorted, each with every place it is used.
    pub changed: Vec<ChangedHandle>,
    /// Handles that failed in this run (their last known good values were kept).
    pub failures: Vec<Failure>,
    /// An error beyond per-handle failures (e.g. the audit file could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A handle whose value changed in a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedHandle {
    /// The handle.
    pub handle: String,
    /// Every place it is used: origin and path joined with `/`.
    pub places: Vec<Place>,
}

/// A place a handle is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    /// The origin (document).
    pub origin: String,
    /// The key path joined with `/`.
    pub path: String,
}

impl RefreshReport {
    /// Whether every candidate refreshed and nothing else went wrong.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.error.is_none()
    }

    /// The error a caller reports for an unsuccessful refresh: every failure, one per line.
    pub fn error_text(&self) -> Option<String> {
        if self.is_success() {
            return None;
        }
        let mut lines: Vec<String> = self
            .failures
            .iter()
            .map(|f| format!("'{}': {}", f.handle, f.message))
            .collect();
        lines.extend(self.error.clone());
        Some(lines.join("\n"))
    }

    /// The report text of the Datadog Agent (empty when there was nothing to refresh).
    pub fn to_text(&self) -> String {
        if self.candidates == 0 {
            return String::new();
        }
        let mut text = format!(
            "=== Secret stats ===\nNumber of secrets reloaded: {}\nSecrets handle reloaded:\n",
            self.changed.len()
        );
        if self.changed.is_empty() {
            text.push('\n');
        }
        for changed in &self.changed {
            text.push_str(&format!("\n- '{}':\n", changed.handle));
            for place in &changed.places {
                text.push_str(&format!(
                    "\tused in '{}' configuration in entry '{}'\n",
                    place.origin, place.path
                ));
            }
        }
        text
    }
}

/// The first periodic refresh's delay: uniform in `[1 s, interval + 1 s)`, never zero.
pub fn scatter(interval: std::time::Duration, rng: &mut impl rand::Rng) -> std::time::Duration {
    let nanos = u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    std::time::Duration::from_nanos(rng.random_range(0..nanos)) + std::time::Duration::from_secs(1)
}

/// Coalesces concurrent full refreshes (see the module docs).
pub(super) struct Coordinator {
    generations: Mutex<Generations>,
    completed: watch::Sender<Option<(u64, Arc<RefreshReport>)>>,
}

#[derive(Default)]
struct Generations {
    started: u64,
    running: bool,
    /// Trigger of the run queued behind the current one.
    queued: Option<Trigger>,
}

impl Coordinator {
    pub(super) fn new() -> Coordinator {
        Coordinator {
            generations: Mutex::new(Generations::default()),
            completed: watch::Sender::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Resolver {
    /// Refreshes every refreshable handle and returns the report of a run that started after
    /// this call. Concurrent calls share runs (at most two for any number of callers).
    pub async fn refresh(&self, trigger: Trigger) -> Arc<RefreshReport> {
        let coordinator = &self.inner.refresh;
        let mut completed = coordinator.completed.subscribe();
        let needed = {
            let mut generations = coordinator.lock();
            if generations.running {
                generations.queued = Some(trigger);
                generations.started + 1
            } else {
                generations.running = true;
                generations.started += 1;
                let generation = generations.started;
                tokio::spawn(run_coalesced(self.inner.clone(), generation, trigger));
                generation
            }
        };
        let result = completed
            .wait_for(|done| {
                done.as_ref()
                    .is_some_and(|(generation, _)| *generation >= needed)
            })
            .await;
        match result {
            Ok(done) => done
                .as_ref()
                .map(|(_, report)| report.clone())
                .unwrap_or_default(),
            Err(_) => Arc::new(RefreshReport {
                error: Some("refresh was cancelled".to_owned()),
                ..RefreshReport::default()
            }),
        }
    }

    /// Refreshes only `handles` (those that are known and refreshable), without coalescing.
    pub async fn refresh_handles(&self, handles: &[String], trigger: Trigger) -> RefreshReport {
        self.inner.run_refresh(Some(handles), trigger).await
    }
}

/// Runs generation `generation`, then one more for whoever queued meanwhile, and so on.
async fn run_coalesced(inner: Arc<Inner>, mut generation: u64, mut trigger: Trigger) {
    // If this task dies (panic), let the next requester start a fresh run instead of waiting
    // forever.
    struct Reset<'a>(&'a Coordinator, bool);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            if self.1 {
                let mut generations = self.0.lock();
                generations.running = false;
                generations.queued = None;
            }
        }
    }
    let mut reset = Reset(&inner.refresh, true);
    loop {
        let report = inner.run_refresh(None, trigger).await;
        inner
            .refresh
            .completed
            .send_replace(Some((generation, Arc::new(report))));
        let mut generations = inner.refresh.lock();
        match generations.queued.take() {
            Some(next) => {
                generations.started += 1;
                generation = generations.started;
                trigger = next;
            }
            None => {
                generations.running = false;
                reset.1 = false;
                return;
            }
        }
    }
}

impl Inner {
    /// One refresh run: candidates, one fetch per backend group, apply, notify, report.
    pub(super) async fn run_refresh(
        self: &Arc<Self>,
        only: Option<&[String]>,
        trigger: Trigger,
    ) -> RefreshReport {
        let candidates: Vec<String> = {
            let state = self.lock();
            state
                .contexts
                .iter()
                .filter(|(handle, _)| only.is_none_or(|only| only.contains(handle)))
                .filter(|(_, contexts)| contexts.iter().any(|c| state.context_matches(c)))
                .map(|(handle, _)| handle.clone())
                .collect()
        };
        if candidates.is_empty() {
            return RefreshReport::default();
        }
        tracing::info!(
            handles = candidates.len(),
            trigger = trigger.as_str(),
            "refreshing secrets"
        );
        let results = self.fetch_all(candidates.clone()).await;

        let (mut report, notifications, entries) = {
            let mut state = self.lock();
            state.apply_refresh(candidates.len(), results, self.audit.is_some())
        };
        self.deliver(notifications);
        if !report.changed.is_empty() {
            if let Some(audit) = &self.audit {
                let failed = report
                    .failures
                    .iter()
                    .map(|f| FailedHandle {
                        handle: f.handle.clone(),
                        reason: f.kind,
                    })
                    .collect();
                let record = Record {
                    trigger,
                    entries,
                    failed,
                };
                if let Err(error) = append_audit(audit.clone(), record).await {
                    tracing::error!(%error, "could not write the audit file");
                    report.error = Some(format!("could not write the audit file: {error}"));
                }
            }
        }

        let outcome = if report.candidates == report.failures.len() && report.candidates > 0 {
            "failed"
        } else if report.failures.is_empty() {
            "ok"
        } else {
            "partial"
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.metrics.record_refresh(trigger.as_str(), outcome, now);
        if !report.failures.is_empty() {
            tracing::warn!(
                failed = report.failures.len(),
                trigger = trigger.as_str(),
                "refresh left handles unresolved"
            );
        }
        report
    }
}

/// Appends `record` from a blocking task (the append fsyncs).
async fn append_audit(audit: Arc<Mutex<AuditWriter>>, record: Record) -> Result<(), String> {
    let now = time::OffsetDateTime::now_utc();
    let appended = tokio::task::spawn_blocking(move || {
        let mut writer = audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.append(&record, now).map_err(|e| {
            // The operating system's reason (EFBIG, ENOSPC, EROFS...) is the useful part.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })
    })
    .await;
    appended.unwrap_or_else(|e| Err(format!("audit task failed: {e}")))
}

impl super::State {
    /// Applies a refresh's lookups (§6.3 with the allowlist on and notifications on). With
    /// `audit`, also returns an audit entry (masked) for every handle of the response.
    fn apply_refresh(
        &mut self,
        candidates: usize,
        results: Vec<(String, Lookup)>,
        audit: bool,
    ) -> (RefreshReport, Vec<Notification>, Vec<AuditEntry>) {
        let mut report = RefreshReport {
            candidates,
            ..RefreshReport::default()
        };
        let mut notifications = Vec::new();
        let mut entries = Vec::new();
        for (handle, lookup) in results {
            let value = match lookup {
                Ok(value) => value,
                Err((kind, message)) => {
                    let paths = self
                        .contexts
                        .get(&handle)
                        .into_iter()
                        .flatten()
                        .flat_map(|c| c.paths.iter().cloned())
                        .collect();
                    report.failures.push(Failure {
                        handle: handle.clone(),
                        kind,
                        message: message.clone(),
                        paths,
                    });
                    self.failures.insert(handle, (kind, message));
                    continue;
                }
            };
            self.failures.remove(&handle);
            let old = self
                .cache
                .get(&handle)
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            let contexts = self.contexts.get(&handle).cloned().unwrap_or_default();
            if audit {
                // Only keys can end in `key`: indexes are left out.
                let last_segments =
                    contexts
                        .iter()
                        .flat_map(|c| c.paths.iter())
                        .filter_map(|path| match path.last() {
                            Some(Segment::Key(key)) => Some(&**key),
                            Some(Segment::Index(_)) | None => None,
                        });
                entries.push(AuditEntry::new(handle.clone(), &value, last_segments));
            }
            if old != value.expose() && contexts.iter().any(|c| self.context_matches(c)) {
                let mut places = Vec::new();
                let change = SharedChange::new(&handle, old.clone(), &value);
                for context in &contexts {
                    for path in context.paths.iter() {
                        if self.use_matches(&context.origin, path) {
                            notifications.push(change.at(&context.origin, path));
                        }
                        places.push(Place {
                            origin: context.origin.to_string(),
                            path: path.join("/"),
                        });
                    }
                }
                report.changed.push(ChangedHandle {
                    handle: handle.clone(),
                    places,
                });
            }
            self.cache.insert(handle, value);
        }
        report.changed.sort_by(|a, b| a.handle.cmp(&b.handle));
        report.failures.sort_by(|a, b| a.handle.cmp(&b.handle));
        (report, notifications, entries)
    }
}

/// A generator that always yields 0, for tests of randomized schedules.
#[cfg(test)]
pub(crate) struct ZeroRng;

#[cfg(test)]
impl rand::RngCore for ZeroRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FailureKind;

    #[test]
    fn report_text_matches_the_agent() {
        let report = RefreshReport {
            candidates: 1,
            changed: vec![ChangedHandle {
                handle: "pass1".into(),
                places: vec![Place {
                    origin: "origin1".into(),
                    path: "secret_backend_arguments/0".into(),
                }],
            }],
            ..RefreshReport::default()
        };
        assert_eq!(
            report.to_text(),
            "=== Secret stats ===\nNumber of secrets reloaded: 1\nSecrets handle reloaded:\n\n- 'pass1':\n\tused in 'origin1' configuration in entry 'secret_backend_arguments/0'\n"
        );
        let none = RefreshReport {
            candidates: 3,
            ..RefreshReport::default()
        };
        assert_eq!(
            none.to_text(),
            "=== Secret stats ===\nNumber of secrets reloaded: 0\nSecrets handle reloaded:\n\n"
        );
        assert_eq!(RefreshReport::default().to_text(), "");
    }

    #[test]
    fn scatter_is_within_one_second_and_interval_plus_one() {
        use rand::SeedableRng;
        let interval = std::time::Duration::from_secs(10);
        let mut rng = rand::rngs::StdRng::seed_from_u64(12345);
        for _ in 0..1000 {
            let delay = scatter(interval, &mut rng);
            assert!(
                delay >= std::time::Duration::from_secs(1)
                    && delay < interval + std::time::Duration::from_secs(1)
            );
        }
        // A generator that always yields 0 still gives one second (item 31).
        assert_eq!(
            scatter(interval, &mut ZeroRng),
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn failure_kind_serializes_as_name() {
        let failure = Failure {
            handle: "h".into(),
            kind: FailureKind::InvalidResponse,
            message: "m".into(),
            paths: vec![["a"].into_iter().collect()],
        };
        assert_eq!(
            serde_json::to_string(&failure).unwrap(),
            r#"{"handle":"h","kind":"invalid_response","message":"m","paths":[["a"]]}"#
        );
    }
}
