//! Refresh: re-fetch known handles, apply what changed, report it.
//!
//! Coalescing: every refresh, of all handles or of named ones (`?handle=`), goes through a
//! `Coordinator`. At most one run is in progress; requesters that arrive while it runs join the
//! one run *queued* behind it, merging what they ask for into its scope (all handles absorbs
//! any set; sets are united). When the run in progress completes, the queued run starts, once,
//! for all of them. Each run publishes its result on a watch channel of its own, which its
//! requesters hold. So any number of concurrent requests, scoped or not, cause at most two
//! backend runs, and every requester gets the report of a run that started after it asked,
//! restricted to the handles it asked for. Runs execute in a spawned task: a requester that
//! gives up does not cancel the run others wait on.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use super::observer::RefreshOutcome;
use super::{Failure, Inner, Lookup, Notification, Resolver, SharedChange};
use crate::audit::{AuditEntry, AuditWriter, FailedHandle, HeldBackUse, Record};
use crate::document::Segment;

/// What started a refresh (also written in its audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// The refresh run right after start-up.
    Startup,
    /// The periodic refresh timer.
    Timer,
    /// A request on the HTTP API.
    Api,
    /// The `keyturn refresh` command.
    Cli,
    /// A signal sent to the daemon.
    Signal,
}

impl Trigger {
    /// The stable lowercase name, as written in the audit file's `trigger` field and in labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Timer => "timer",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::Signal => "signal",
        }
    }
}

impl serde::Serialize for Trigger {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What one refresh run did. Never carries a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RefreshReport {
    /// How many handles were candidates (0: nothing to refresh, the backend did not run).
    pub candidates: usize,
    /// Handles whose new value was applied somewhere, sorted, each with the places it was
    /// applied to.
    pub changed: Vec<ChangedHandle>,
    /// Uses whose new value was not applied: their origin's refresh allowlist held them back,
    /// so they keep the value they were last rendered with. Sorted by handle, then origin.
    pub held_back: Vec<HeldBack>,
    /// Handles that failed in this run (their last known good values were kept).
    pub failures: Vec<Failure>,
    /// An error beyond per-handle failures (e.g. the audit file could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A handle whose value changed in a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChangedHandle {
    /// The handle.
    pub handle: String,
    /// Every place the new value was applied to: origin and path joined with `/`.
    pub places: Vec<Place>,
}

/// A place a handle is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Place {
    /// The origin (document).
    pub origin: String,
    /// The key path joined with `/`.
    pub path: String,
}

/// A use a refresh did not change although its handle's value changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeldBack {
    /// The handle.
    pub handle: String,
    /// Where it is used.
    #[serde(flatten)]
    pub place: Place,
    /// Why it was held back.
    pub reason: HoldReason,
}

/// Why a use was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HoldReason {
    /// No segment of its key path is in its origin's refresh allowlist.
    RefreshAllowlist,
}

impl RefreshReport {
    /// Whether every candidate refreshed and nothing else went wrong.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.error.is_none()
    }

    /// The error a caller reports for an unsuccessful refresh: each cause once (a failure of a
    /// whole backend run names every handle it affects), then any other error.
    pub fn error_text(&self) -> Option<String> {
        if self.is_success() {
            return None;
        }
        let mut lines: Vec<String> = super::group_failures(&self.failures)
            .iter()
            .map(ToString::to_string)
            .collect();
        lines.extend(self.error.clone());
        Some(lines.join("\n"))
    }

    /// The report text of the Datadog Agent (empty when there was nothing to refresh), then,
    /// when the refresh allowlist held uses back, which ones and why.
    pub fn to_text(&self) -> String {
        if self.candidates == 0 {
            return String::new();
        }
        let mut text = format!(
            "=== Secret stats ===\nNumber of secrets reloaded: {}\nSecrets handle reloaded:\n",
            self.changed.len()
        );
        for changed in &self.changed {
            let _ = write!(text, "\n- '{}':", changed.handle);
            for place in &changed.places {
                let _ = write!(
                    text,
                    "\n\tused in '{}' configuration in entry '{}'",
                    place.origin, place.path
                );
            }
        }
        text.push('\n');
        if !self.held_back.is_empty() {
            let _ = write!(
                text,
                "\nNumber of uses held back: {}\nUses held back (not under their origin's \
                 refresh_allowlist; they keep their previous value):\n",
                self.held_back.len()
            );
            let mut previous: Option<&str> = None;
            for held in &self.held_back {
                if previous != Some(held.handle.as_str()) {
                    let _ = write!(text, "\n- '{}':", held.handle);
                    previous = Some(&held.handle);
                }
                let _ = write!(
                    text,
                    "\n\tkept in '{}' configuration in entry '{}'",
                    held.place.origin, held.place.path
                );
            }
            text.push('\n');
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

/// Which handles a refresh run re-fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    /// Every refreshable handle.
    All,
    /// Only these (those that are known and refreshable).
    Handles(BTreeSet<String>),
}

impl Scope {
    /// Widens this scope to cover `other` too.
    fn merge(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::All, _) => {}
            (_, Scope::All) => *self = Scope::All,
            (Scope::Handles(mine), Scope::Handles(theirs)) => mine.extend(theirs),
        }
    }

    fn contains(&self, handle: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Handles(handles) => handles.contains(handle),
        }
    }
}

/// What a run did: its report, and the handles it re-fetched (to restrict the report to what
/// each requester asked for).
struct Run {
    report: Arc<RefreshReport>,
    candidates: BTreeSet<String>,
}

impl Run {
    /// The report as a requester of `scope` sees it: only its handles.
    fn report_for(&self, scope: &Scope) -> Arc<RefreshReport> {
        let Scope::Handles(handles) = scope else {
            return self.report.clone();
        };
        let report = &self.report;
        Arc::new(RefreshReport {
            candidates: self.candidates.intersection(handles).count(),
            changed: report
                .changed
                .iter()
                .filter(|c| handles.contains(&c.handle))
                .cloned()
                .collect(),
            held_back: report
                .held_back
                .iter()
                .filter(|h| handles.contains(&h.handle))
                .cloned()
                .collect(),
            failures: report
                .failures
                .iter()
                .filter(|f| handles.contains(&f.handle))
                .cloned()
                .collect(),
            error: report.error.clone(),
        })
    }
}

/// A run waiting for its turn or in progress: what it covers and where its result goes.
struct Job {
    trigger: Trigger,
    scope: Scope,
    done: watch::Sender<Option<Arc<Run>>>,
}

impl Job {
    fn new(trigger: Trigger, scope: Scope) -> Job {
        Job {
            trigger,
            scope,
            done: watch::Sender::new(None),
        }
    }
}

/// Coalesces concurrent refreshes (see the module docs).
pub(super) struct Coordinator {
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    running: bool,
    /// The run queued behind the one in progress, for everyone who asked meanwhile.
    queued: Option<Job>,
}

impl Coordinator {
    pub(super) fn new() -> Coordinator {
        Coordinator {
            runs: Mutex::new(Runs::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Resolver {
    /// Refreshes every refreshable handle and returns the report of a run that started after
    /// this call. Concurrent calls share runs (at most two for any number of callers, with
    /// [`Resolver::refresh_handles`] too).
    pub async fn refresh(&self, trigger: Trigger) -> Arc<RefreshReport> {
        self.refresh_scope(Scope::All, trigger).await
    }

    /// Refreshes only `handles` (those that are known and refreshable) and returns the report
    /// of a run that started after this call, restricted to them. Coalesced with concurrent
    /// refreshes like [`Resolver::refresh`]: a run queued behind the one in progress covers
    /// the union of what its requesters asked for.
    pub async fn refresh_handles(&self, handles: &[String], trigger: Trigger) -> RefreshReport {
        // Unknown handles are dropped here, so a merged scope never outgrows the known handles.
        let known: BTreeSet<String> = {
            let state = self.inner.lock();
            handles
                .iter()
                .filter(|h| state.contexts.contains_key(h.as_str()))
                .cloned()
                .collect()
        };
        Arc::unwrap_or_clone(self.refresh_scope(Scope::Handles(known), trigger).await)
    }

    async fn refresh_scope(&self, scope: Scope, trigger: Trigger) -> Arc<RefreshReport> {
        if scope == Scope::Handles(BTreeSet::new()) {
            return Arc::new(RefreshReport::default());
        }
        let coordinator = &self.inner.refresh;
        let mut done = {
            let mut runs = coordinator.lock();
            if runs.running {
                let queued = runs
                    .queued
                    .get_or_insert_with(|| Job::new(trigger, Scope::Handles(BTreeSet::new())));
                queued.trigger = trigger;
                queued.scope.merge(scope.clone());
                queued.done.subscribe()
            } else {
                runs.running = true;
                let job = Job::new(trigger, scope.clone());
                let done = job.done.subscribe();
                tokio::spawn(run_coalesced(self.inner.clone(), job));
                done
            }
        };
        match done.wait_for(Option::is_some).await {
            Ok(run) => run
                .as_ref()
                .map(|run| run.report_for(&scope))
                .unwrap_or_default(),
            Err(_) => Arc::new(RefreshReport {
                error: Some("refresh was cancelled".to_owned()),
                ..RefreshReport::default()
            }),
        }
    }
}

impl Resolver {
    /// Records a whole resolution that was not a refresh (the daemon's start-up, or the
    /// resolution of a reload) as one: an audit record with `trigger` naming every handle that
    /// has a value (masked like a refresh's) and every handle that failed, and the refresh
    /// counter with its outcome. Returns the audit error, if writing the record failed.
    pub async fn record_resolution(&self, trigger: Trigger) -> Result<(), String> {
        let (entries, failed, known) = {
            let state = self.inner.lock();
            let mut entries = Vec::new();
            let mut failed = Vec::new();
            let mut known: Vec<_> = state.contexts.iter().collect();
            known.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (handle, contexts) in known {
                if let Some(value) = state.cache.get(&**handle) {
                    entries.push(AuditEntry::new(
                        handle.to_string(),
                        value,
                        last_keys(contexts),
                    ));
                } else if let Some((kind, _)) = state.failures.get(&**handle) {
                    failed.push(FailedHandle {
                        handle: handle.to_string(),
                        reason: *kind,
                    });
                }
            }
            (entries, failed, state.contexts.len())
        };
        if known == 0 {
            return Ok(());
        }
        let outcome = if failed.is_empty() {
            RefreshOutcome::Ok
        } else if entries.is_empty() {
            RefreshOutcome::Failed
        } else {
            RefreshOutcome::Partial
        };
        self.inner.observer.refresh(trigger, outcome);
        let Some(audit) = &self.inner.audit else {
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let record = Record {
            trigger,
            entries,
            failed,
            held_back: Vec::new(),
        };
        append_audit(audit.clone(), record)
            .await
            .inspect_err(|error| {
                self.inner.observer.audit_write_failure();
                tracing::error!(%error, "could not write the audit file");
            })
    }
}

/// Runs `job`, then the job queued meanwhile, and so on until none is queued.
async fn run_coalesced(inner: Arc<Inner>, mut job: Job) {
    // If this task dies (panic), let the next requester start a fresh run instead of waiting
    // forever; the requesters of the queued run see it cancelled.
    struct Reset<'a>(&'a Coordinator, bool);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            if self.1 {
                let mut runs = self.0.lock();
                runs.running = false;
                runs.queued = None;
            }
        }
    }
    let mut reset = Reset(&inner.refresh, true);
    loop {
        let (report, candidates) = inner.run_refresh(&job.scope, job.trigger).await;
        job.done.send_replace(Some(Arc::new(Run {
            report: Arc::new(report),
            candidates,
        })));
        let mut runs = inner.refresh.lock();
        match runs.queued.take() {
            Some(next) => job = next,
            None => {
                runs.running = false;
                reset.1 = false;
                return;
            }
        }
    }
}

impl Inner {
    /// One refresh run: candidates, one fetch per backend group, apply, notify, report.
    /// Returns the report and the candidates.
    async fn run_refresh(
        self: &Arc<Self>,
        scope: &Scope,
        trigger: Trigger,
    ) -> (RefreshReport, BTreeSet<String>) {
        let mut candidates: Vec<Arc<str>> = {
            let state = self.lock();
            state
                .contexts
                .iter()
                .filter(|(handle, _)| scope.contains(handle))
                // A handle without a value yet is always a candidate: it has no value to hold
                // back, and it heals this way.
                .filter(|(handle, contexts)| {
                    !state.cache.contains_key(&***handle)
                        || contexts.iter().any(|c| state.context_matches(c))
                })
                .map(|(handle, _)| Arc::clone(handle))
                .collect()
        };
        // The backend is asked in handle order, whatever the order of the map.
        candidates.sort_unstable();
        if candidates.is_empty() {
            return (RefreshReport::default(), BTreeSet::new());
        }
        tracing::info!(
            handles = candidates.len(),
            trigger = trigger.as_str(),
            "refreshing secrets"
        );
        let results = self.fetch_all(&candidates).await;
        let candidates: BTreeSet<String> = candidates.iter().map(|h| h.to_string()).collect();

        let (mut report, notifications, entries) = {
            let mut state = self.lock();
            state.apply_refresh(candidates.len(), results, self.audit.is_some())
        };
        self.deliver(notifications);
        // One line for every refresh that changed a value (applied or held back) or failed;
        // none for a successful refresh that changed nothing, as in the Agent.
        let changed = !report.changed.is_empty() || !report.held_back.is_empty();
        if (changed || !report.failures.is_empty())
            && let Some(audit) = &self.audit
        {
            let failed = report
                .failures
                .iter()
                .map(|f| FailedHandle {
                    handle: f.handle.clone(),
                    reason: f.kind,
                })
                .collect();
            let held_back = report
                .held_back
                .iter()
                .map(|held| HeldBackUse {
                    handle: held.handle.clone(),
                    origin: held.place.origin.clone(),
                    path: held.place.path.clone(),
                })
                .collect();
            let record = Record {
                trigger,
                entries,
                failed,
                held_back,
            };
            if let Err(error) = append_audit(audit.clone(), record).await {
                self.observer.audit_write_failure();
                tracing::error!(%error, "could not write the audit file");
                report.error = Some(format!("could not write the audit file: {error}"));
            }
        }

        let outcome = if report.candidates == report.failures.len() && report.candidates > 0 {
            RefreshOutcome::Failed
        } else if report.failures.is_empty() {
            RefreshOutcome::Ok
        } else {
            RefreshOutcome::Partial
        };
        self.observer.refresh(trigger, outcome);
        (report, candidates)
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
    /// Applies a refresh's lookups (as the Agent does with its allowlist and notifications
    /// on), per use:
    /// a changed value is applied to (and notified for) the uses its origin's allowlist lets
    /// through, and to every use of a handle that had no value yet; the other uses are held
    /// back. With `audit`, also returns an audit entry (masked) for every handle of the
    /// response.
    fn apply_refresh(
        &mut self,
        candidates: usize,
        results: Vec<(Arc<str>, Lookup)>,
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
                        handle: handle.to_string(),
                        kind,
                        message: message.clone(),
                        paths,
                    });
                    self.failures.insert(handle, (kind, message));
                    continue;
                }
            };
            self.failures.remove(&handle);
            let previous = self.cache.get(&handle);
            let first = previous.is_none();
            let old = zeroize::Zeroizing::new(
                previous.map(|s| s.expose().to_owned()).unwrap_or_default(),
            );
            let contexts = self.contexts.get(&handle).cloned().unwrap_or_default();
            if audit {
                entries.push(AuditEntry::new(
                    handle.to_string(),
                    &value,
                    last_keys(&contexts),
                ));
            }
            if *old != value.expose() {
                let mut places = Vec::new();
                let change = SharedChange::new(&handle, old, &value);
                for context in &contexts {
                    for path in context.paths.iter() {
                        let place = Place {
                            origin: context.origin.to_string(),
                            path: path.join("/"),
                        };
                        if first || self.use_matches(&context.origin, path) {
                            notifications.push(change.at(&context.origin, path));
                            places.push(place);
                        } else {
                            report.held_back.push(HeldBack {
                                handle: handle.to_string(),
                                place,
                                reason: HoldReason::RefreshAllowlist,
                            });
                        }
                    }
                }
                if !places.is_empty() {
                    report.changed.push(ChangedHandle {
                        handle: handle.to_string(),
                        places,
                    });
                }
            }
            // Kept for long: in a buffer of its own, not its whole answer's.
            self.cache.insert(handle, value.compact());
        }
        report.changed.sort_by(|a, b| a.handle.cmp(&b.handle));
        // Stable: the uses of one handle stay in registration order.
        report.held_back.sort_by(|a, b| a.handle.cmp(&b.handle));
        report.failures.sort_by(|a, b| a.handle.cmp(&b.handle));
        (report, notifications, entries)
    }
}

/// The last key of every use's path, for the audit's likely-key rule (only keys can end in
/// `key`: uses that end in a list index are left out).
fn last_keys(contexts: &[super::Context]) -> impl Iterator<Item = &str> {
    contexts
        .iter()
        .flat_map(|c| c.paths.iter())
        .filter_map(|path| match path.last() {
            Some(Segment::Key(key)) => Some(&**key),
            Some(Segment::Index(_)) | None => None,
        })
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
    use crate::backend::FailureKind;

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
    fn error_text_says_each_cause_once() {
        let failure = |handle: &str, kind, message: &str, path: &str| Failure {
            handle: handle.into(),
            kind,
            message: message.into(),
            paths: vec![path.split('/').map(str::to_owned).collect()],
        };
        let report = RefreshReport {
            candidates: 5,
            failures: vec![
                failure(
                    "a",
                    FailureKind::Error,
                    "an error occurred while resolving 'a': token refused",
                    "x",
                ),
                failure(
                    "b",
                    FailureKind::Error,
                    "an error occurred while resolving 'b': token refused",
                    "y/0",
                ),
                failure("c", FailureKind::Missing, "not there", "z"),
                failure("d", FailureKind::BackendError, "exit status 3", "p"),
                failure("e", FailureKind::BackendError, "exit status 3", "q"),
            ],
            ..RefreshReport::default()
        };
        assert_eq!(
            report.error_text().unwrap(),
            "an error occurred while resolving each of them: token refused (error); affects 2 \
             handles: 'a' at x; 'b' at y/0\n\
             'c' (missing) at z: not there\n\
             exit status 3 (backend_error); affects 2 handles: 'd' at p; 'e' at q"
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
