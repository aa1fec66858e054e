//! What a resolver tells its embedder about its work, for metrics: backend runs, the number of
//! known handles, refresh outcomes and audit write failures. Never a handle or a value.
//!
//! The library records nothing itself: [`Resolver`](super::Resolver) calls the [`Observer`]
//! given in its options (none by default). The daemon's Prometheus metrics are one observer.

use crate::backend::RunRecord;

use super::refresh::Trigger;

/// Receives a resolver's events. Every method does nothing by default, so an observer
/// implements only what it records. Keep each call short and never call back into the
/// resolver from one: [`Observer::handles_known`] is called under the resolver's lock (so that
/// the counts arrive in order).
pub trait Observer: Send + Sync {
    /// One backend run ended.
    fn backend_run(&self, _run: &RunRecord) {}

    /// The number of handles with at least one origin changed.
    fn handles_known(&self, _count: usize) {}

    /// A refresh (or the start-up resolution of a daemon) completed.
    fn refresh(&self, _trigger: Trigger, _outcome: RefreshOutcome) {}

    /// An audit record could not be written.
    fn audit_write_failure(&self) {}
}

/// How a refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// Every candidate handle was fetched.
    Ok,
    /// Some candidate handles failed.
    Partial,
    /// Every candidate handle failed.
    Failed,
}

impl RefreshOutcome {
    /// The stable lowercase name used in labels: `ok`, `partial` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::Partial => "partial",
            RefreshOutcome::Failed => "failed",
        }
    }
}

/// The observer of a resolver given none: records nothing.
pub(crate) struct Unobserved;

impl Observer for Unobserved {}
