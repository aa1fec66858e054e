//! Time budget and bounded concurrency for remote backends.
//!
//! [`Deadline`] turns the payload's `secret_backend_timeout` into the instant by which the answer
//! must be written; every remote request is given the time that remains, so a slow server makes
//! its handles fail with a timeout error instead of making the caller kill the process and lose
//! every handle. [`map_bounded`] fetches distinct remote secrets on at most a few threads.
//!
//! Invariants: results come back in input order, one per item; the work given to
//! [`map_bounded`] must not panic (a panic in a worker propagates to the caller).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Timeout assumed when the payload has none (version 1.0) or sends 0, as the Agent does.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest timeout honoured (one year, as keyturn's settings): a larger
/// `secret_backend_timeout` is read as this, so the deadline cannot overflow.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// At most this many requests to one remote store are in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

/// The instant by which the answer must be ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    /// The caller's timeout, for error messages.
    timeout: Duration,
}

impl Deadline {
    /// The deadline for a request that arrived at `started` with the caller's timeout in
    /// seconds. The answer is due at 90% of the timeout, leaving the rest for writing it and for
    /// the caller to read it before it gives up.
    pub(crate) fn for_request(started: Instant, timeout_secs: Option<u64>) -> Deadline {
        let timeout = match timeout_secs {
            None | Some(0) => DEFAULT_TIMEOUT,
            Some(secs) => Duration::from_secs(secs).min(MAX_TIMEOUT),
        };
        Deadline {
            at: started.checked_add(timeout.mul_f64(0.9)).unwrap_or(started),
            timeout,
        }
    }

    /// Time left, or `None` once the deadline has passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.at
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// This deadline, or `cap` from now when that comes first (for a request that must fail
    /// fast, such as instance metadata outside EC2). Messages still name the caller's timeout.
    pub(crate) fn capped(&self, cap: Duration) -> Deadline {
        Deadline {
            at: Instant::now()
                .checked_add(cap)
                .map_or(self.at, |capped| self.at.min(capped)),
            timeout: self.timeout,
        }
    }

    /// The caller's timeout, for "timed out" messages.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Applies `work` once to each distinct key on at most `limit` threads (one request per
/// remote secret, however many handles point into it) and returns the results by key.
pub(crate) fn map_distinct<K, R, F>(
    keys: impl IntoIterator<Item = K>,
    limit: usize,
    work: F,
) -> BTreeMap<K, R>
where
    K: Ord + Sync,
    R: Send,
    F: Fn(&K) -> R + Sync,
{
    let mut keys: Vec<K> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let results = map_bounded(&keys, limit, work);
    keys.into_iter().zip(results).collect()
}

/// Applies `work` to every item on at most `limit` threads and returns the results in input
/// order. One item, or a limit of 1, runs on the calling thread.
pub(crate) fn map_bounded<T, R, F>(items: &[T], limit: usize, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let workers = limit.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(&work).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    // A poisoned lock only means another worker panicked; the slots are still
                    // plain data.
                    let mut slots = slots.lock().unwrap_or_else(|poison| poison.into_inner());
                    if let Some(slot) = slots.get_mut(index) {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_ninety_percent_of_the_timeout_and_zero_means_default() {
        let start = Instant::now();
        for (timeout, expected) in [
            (None, Duration::from_secs(27)),
            (Some(0), Duration::from_secs(27)),
            (Some(10), Duration::from_secs(9)),
        ] {
            let deadline = Deadline::for_request(start, timeout);
            assert_eq!(deadline.at - start, expected);
        }
        let past = Deadline::for_request(start - Duration::from_secs(5), Some(1));
        assert_eq!(past.remaining(), None);
    }

    #[test]
    fn map_bounded_keeps_order_and_bounds_threads() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..50).collect();
        let out = map_bounded(&items, 4, |item| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            item * 2
        });
        assert_eq!(out, items.iter().map(|item| item * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(map_bounded(&[] as &[usize], 8, |item| *item).is_empty());
        let calls = AtomicUsize::new(0);
        let by_key = map_distinct(["b", "a", "b", "a", "c"], 4, |key| {
            calls.fetch_add(1, Ordering::SeqCst);
            key.to_uppercase()
        });
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(by_key.get("b").map(String::as_str), Some("B"));
    }
}
