//! When the daemon refreshes on its own: the periodic schedule, retries with backoff after a
//! failure, and throttled triggers from outside.
//!
//! [`Schedule`] is the pure core: it takes `now` and a seeded RNG, and answers "is a refresh due,
//! and when should I look again" ([`Schedule::step`]). [`Scheduler`] is the shared handle the
//! daemon and the API hold: the schedule behind a short-held mutex, a [`Notify`] that wakes the
//! loop when the schedule moved, and a 1-slot trigger channel. [`Scheduler::run`] is the async
//! loop: it sleeps until the next deadline, a trigger, a change or shutdown, whichever is first.
//!
//! Rules:
//! - Periodic refresh (`secret_refresh_interval`): the first at the resolver's
//!   (scattered) first-refresh delay after start, then `interval` after each periodic refresh
//!   completes, as the Agent's ticker does.
//! - Retries: a refresh that failed (or left handles failed) is retried after a delay drawn
//!   uniformly from `[0, c]` (full jitter), c = 1 s, 8 s, 64 s for the first three retries,
//!   then the interval ([`retry_delay`]), floored at [`MIN_RETRY_DELAY`]. A success ends the
//!   retries. Without periodic refresh there are no retries either.
//! - Retries never move the periodic phase: a daemon that recovers from a failure (at start-up,
//!   or during a backend outage) refreshes next at the slot its scattered start gave it, so a
//!   fleet restarted at once, or recovering from an outage together, stays spread over the
//!   interval. `bench/fleet` measures these rules at fleet scale.
//! - Triggers from outside (the Agent refreshes after an API key failure;
//!   `secret_refresh_on_api_key_failure_interval`): at most one
//!   waits in the channel (the others are dropped at once), and one runs only when `interval`
//!   has passed since the last one that ran, and not while a retry is pending (it would only
//!   add load to a failing backend). Without that setting triggers are refused.
//!
//! Invariant: the mutex is never held across an `.await`; refreshes run one at a time in the
//! loop (refreshes from the API run on their own and report their outcome here).

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// The smallest delay before a retry, so that a string of failures never spins.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
/// The first retry's ceiling.
pub const FIRST_RETRY_CEILING: Duration = Duration::from_secs(1);
/// How many retries of a failed refresh come quickly (see [`retry_delay`]).
pub const QUICK_RETRIES: u32 = 3;

/// The pure scheduling state.
#[derive(Debug)]
pub struct Schedule {
    interval: Option<Duration>,
    trigger_interval: Option<Duration>,
    /// The next periodic refresh. It keeps its phase through failures: retries never move it,
    /// so a fleet whose first refreshes were scattered stays scattered after an outage or a
    /// fleet-wide restart.
    periodic: Option<Instant>,
    /// The next retry after a failure, while one is pending.
    retry: Option<Instant>,
    /// While the refresh [`Schedule::step`] declared due runs: whether it took the periodic
    /// slot (else it was a retry).
    running: Option<bool>,
    /// Consecutive failed refreshes.
    failures: u32,
    /// When the last throttled trigger ran.
    last_trigger: Option<Instant>,
    rng: StdRng,
}

/// The answer of [`Schedule::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// Whether a scheduled refresh is due now. The caller runs it and then reports
    /// [`Schedule::completed`] with `scheduled = true`.
    pub due: bool,
    /// When to step again at the latest (`None`: only on a trigger or a change).
    pub next: Option<Instant>,
}

impl Schedule {
    /// A schedule starting at `now`. `interval` and `first_delay` come from the resolver
    /// (`None`: periodic refresh off); `trigger_interval` from
    /// `secret_refresh_on_api_key_failure_interval`.
    pub fn new(
        now: Instant,
        interval: Option<Duration>,
        first_delay: Option<Duration>,
        trigger_interval: Option<Duration>,
        rng: StdRng,
    ) -> Schedule {
        Schedule {
            periodic: interval.map(|interval| later(now, first_delay.unwrap_or(interval))),
            retry: None,
            running: None,
            interval,
            trigger_interval,
            failures: 0,
            last_trigger: None,
            rng,
        }
    }

    /// What is due at `now`, and when to look again. Returning `due` marks the refresh as
    /// running: the next deadline is set when it completes.
    pub fn step(&mut self, now: Instant) -> Step {
        match self.next_due() {
            Some(next) if next <= now => {
                self.running = Some(self.periodic.is_some_and(|periodic| periodic <= now));
                Step {
                    due: true,
                    next: None,
                }
            }
            next => Step { due: false, next },
        }
    }

    /// A refresh completed at `now`. `scheduled`: it was the one [`Schedule::step`] declared due
    /// (else it came from the API, a trigger or start-up).
    pub fn completed(&mut self, now: Instant, success: bool, scheduled: bool) {
        let Some(interval) = self.interval else {
            return;
        };
        if scheduled {
            // A refresh that took the periodic slot restarts the period (the Agent's ticker
            // reset); a retry leaves the periodic phase where it was.
            if self.running.take().unwrap_or(true) {
                self.periodic = Some(later(now, interval));
            }
        }
        if success {
            self.failures = 0;
            self.retry = None;
            return;
        }
        let retry = later(now, retry_delay(self.failures, interval, &mut self.rng));
        self.failures = self.failures.saturating_add(1);
        self.retry = match self.retry {
            Some(pending) if !scheduled => Some(pending.min(retry)),
            _ => Some(retry),
        };
    }

    /// A trigger from outside arrived at `now`: whether it may run a refresh now. Records the
    /// run when it may.
    pub fn accept_trigger(&mut self, now: Instant) -> bool {
        let Some(interval) = self.trigger_interval else {
            return false;
        };
        // While retrying after a failure, the pending retry already asks again: a trigger would
        // only add load to a backend that is failing.
        if self.failures > 0 {
            return false;
        }
        if self
            .last_trigger
            .is_some_and(|last| now.saturating_duration_since(last) < interval)
        {
            return false;
        }
        self.last_trigger = Some(now);
        true
    }

    /// Whether triggers from outside are accepted at all.
    pub fn triggers_enabled(&self) -> bool {
        self.trigger_interval.is_some()
    }

    /// When the next scheduled refresh (periodic or retry) is due; `None` while one runs or
    /// when periodic refresh is off.
    pub fn next_due(&self) -> Option<Instant> {
        if self.running.is_some() {
            return None;
        }
        match (self.periodic, self.retry) {
            (Some(periodic), Some(retry)) => Some(periodic.min(retry)),
            (periodic, retry) => periodic.or(retry),
        }
    }
}

/// `delay` after `now`, or as late as an `Instant` goes when that overflows (a schedule built
/// from settings never gets there: they clamp durations to [`crate::settings::MAX_DURATION`]).
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(crate::settings::MAX_DURATION))
        .unwrap_or(now)
}

/// The delay before retry number `failures` (0-based): uniform in `[0, min(ceiling, 1 s ·
/// 2^failures)]` (full jitter), at least [`MIN_RETRY_DELAY`] (or the ceiling, when smaller).
/// For work that retries on its own (restarting a program); the refresh schedule spaces its
/// retries by [`retry_delay`].
pub fn backoff(failures: u32, ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = FIRST_RETRY_CEILING
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(ceiling)
        .min(ceiling);
    jittered(ceiling, rng)
}

/// The delay before retry number `failures` (0-based) of a failed refresh: uniform in `[0,
/// c]` ("full jitter"), at least [`MIN_RETRY_DELAY`] (or `c`, when smaller), where `c` is
/// 1 s, 8 s and 64 s for the first [`QUICK_RETRIES`] retries and the interval after them (never
/// more than the interval).
///
/// The quick retries cover a backend that failed for a moment (up to about a minute). After
/// them a daemon retries at a random point of the next interval, as it would have refreshed
/// anyway. That is for a fleet that fails together (a backend outage): when the backend
/// returns, each failing daemon's pending retry lands anywhere in its current window, so the
/// load right after the return is the sum over failing daemons of one over their window. With
/// windows that keep growing by a constant factor (1 s · 2^n up to the interval) that sum was
/// 3 to 4 times the fleet's steady refresh rate; with the long failures spread over a whole
/// interval it stays under the steady rate (`bench/fleet`, scenario `outage`), and a backend
/// that is down gets 4 tries per daemon and interval instead of about 12.
pub fn retry_delay(failures: u32, interval: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = if failures < QUICK_RETRIES {
        FIRST_RETRY_CEILING * 8u32.pow(failures)
    } else {
        interval
    };
    jittered(ceiling.min(interval), rng)
}

/// Uniform in `[0, ceiling]`, at least [`MIN_RETRY_DELAY`] (or `ceiling`, when smaller).
fn jittered(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos)).max(MIN_RETRY_DELAY.min(ceiling))
}

/// Why a trigger was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TriggerRefused {
    /// `secret_refresh_on_api_key_failure_interval` is not set.
    Disabled,
    /// A trigger is already waiting to be handled.
    Pending,
}

/// The shared handle over a [`Schedule`]: what the daemon, the API and the loop hold.
#[derive(Debug)]
pub struct Scheduler {
    schedule: Mutex<Schedule>,
    changed: Notify,
    triggers: mpsc::Sender<()>,
    receiver: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Scheduler {
    /// A scheduler over `schedule`.
    pub fn new(schedule: Schedule) -> Scheduler {
        let (triggers, receiver) = mpsc::channel(1);
        Scheduler {
            schedule: Mutex::new(schedule),
            changed: Notify::new(),
            triggers,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Replaces the schedule (after a reload) and wakes the loop.
    pub fn replace(&self, schedule: Schedule) {
        *self.lock() = schedule;
        self.changed.notify_one();
    }

    /// Records the outcome of a refresh that did not come from the loop, and wakes the loop.
    pub fn completed(&self, success: bool) {
        self.lock().completed(Instant::now(), success, false);
        self.changed.notify_one();
    }

    /// Queues a throttled refresh without waiting for it. Extra triggers while one is
    /// waiting are dropped.
    pub fn trigger(&self) -> Result<(), TriggerRefused> {
        if !self.lock().triggers_enabled() {
            return Err(TriggerRefused::Disabled);
        }
        self.triggers
            .try_send(())
            .map_err(|_| TriggerRefused::Pending)
    }

    /// When the next scheduled refresh is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().next_due()
    }

    /// Runs the loop until `shutdown` completes. `refresh(scheduled)` runs one refresh and
    /// tells whether it succeeded; `scheduled` is false for a throttled trigger. A refresh in
    /// progress when `shutdown` completes is dropped (cancelled). Only one loop may run: a
    /// second call only waits for `shutdown`.
    pub async fn run<F, Fut>(&self, mut refresh: F, shutdown: impl Future<Output = ()>)
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = bool>,
    {
        let Some(mut receiver) = self
            .receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            tracing::error!("the refresh loop is already running; this one does nothing");
            shutdown.await;
            return;
        };
        tokio::pin!(shutdown);
        loop {
            let step = self.lock().step(Instant::now());
            let scheduled = if step.due {
                true
            } else {
                let sleep = async {
                    match step.next {
                        Some(next) => tokio::time::sleep_until(next).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = &mut shutdown => return,
                    () = sleep => continue,
                    () = self.changed.notified() => continue,
                    Some(()) = receiver.recv() => {
                        if !self.lock().accept_trigger(Instant::now()) {
                            tracing::debug!("refresh trigger ignored: too soon after the last one");
                            continue;
                        }
                        false
                    }
                }
            };
            let success = tokio::select! {
                () = &mut shutdown => return,
                success = refresh(scheduled) => success,
            };
            self.lock().completed(Instant::now(), success, scheduled);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        self.schedule
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An RNG for backoff jitter, seeded from the operating system.
pub fn os_rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    use crate::resolver::refresh::ZeroRng as Zero;

    fn seeded() -> StdRng {
        StdRng::seed_from_u64(12345)
    }

    fn periodic(now: Instant, interval: u64, first: Duration) -> Schedule {
        Schedule::new(
            now,
            Some(Duration::from_secs(interval)),
            Some(first),
            None,
            seeded(),
        )
    }

    #[test]
    fn periodic_first_at_delay_then_every_interval() {
        let t0 = Instant::now();
        let first = Duration::from_millis(6477);
        let mut schedule = periodic(t0, 10, first);
        assert_eq!(
            schedule.step(t0),
            Step {
                due: false,
                next: Some(t0 + first)
            }
        );
        assert!(!schedule.step(t0 + first - Duration::from_nanos(1)).due);
        assert!(schedule.step(t0 + first).due);
        // Running: nothing due, no deadline until it completes.
        assert_eq!(
            schedule.step(t0 + first),
            Step {
                due: false,
                next: None
            }
        );
        let done = t0 + first + Duration::from_millis(300);
        schedule.completed(done, true, true);
        assert_eq!(schedule.next_due(), Some(done + 10 * SECOND));
    }

    #[test]
    fn off_without_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(t0, None, None, None, seeded());
        assert_eq!(
            schedule.step(t0 + 1000 * SECOND),
            Step {
                due: false,
                next: None
            }
        );
        schedule.completed(t0, false, false);
        assert_eq!(schedule.next_due(), None, "no retries without an interval");
        assert!(!schedule.accept_trigger(t0));
    }

    /// Checklist items 30-31 at this level: the scattered delay the resolver computes is used
    /// as is, and an RNG that always yields 0 still gives 1 s, never an immediate refresh.
    #[test]
    fn first_refresh_uses_the_scattered_delay() {
        let t0 = Instant::now();
        let interval = 10 * SECOND;
        let first = crate::resolver::refresh::scatter(interval, &mut Zero);
        let schedule = Schedule::new(t0, Some(interval), Some(first), None, seeded());
        assert_eq!(schedule.next_due(), Some(t0 + SECOND));
        let mut rng = seeded();
        let first = crate::resolver::refresh::scatter(interval, &mut rng);
        let schedule = Schedule::new(t0, Some(interval), Some(first), None, seeded());
        let next = schedule.next_due().unwrap();
        assert!(next >= t0 + SECOND && next < t0 + interval + SECOND);
    }

    #[test]
    fn no_scatter_means_first_at_interval() {
        let t0 = Instant::now();
        let schedule = Schedule::new(t0, Some(10 * SECOND), None, None, seeded());
        assert_eq!(schedule.next_due(), Some(t0 + 10 * SECOND));
    }

    #[test]
    fn quick_retries_then_retries_spread_over_the_interval_then_reset() {
        let t0 = Instant::now();
        let interval = 1000;
        let mut schedule = periodic(t0, interval, SECOND);
        let first_failure = t0 + SECOND;
        let mut now = first_failure;
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(schedule.step(now).due);
            schedule.completed(now, false, true);
            let next = schedule.next_due().unwrap();
            delays.push(next - now);
            now = next;
        }
        for (delay, ceiling) in delays.iter().zip([1, 8, 64, 1000, 1000, 1000, 1000, 1000]) {
            assert!(
                *delay >= MIN_RETRY_DELAY && *delay <= ceiling * SECOND,
                "{delays:?}"
            );
        }
        // Deterministic for a seed.
        let mut again = periodic(t0, interval, SECOND);
        assert!(again.step(first_failure).due);
        again.completed(first_failure, false, true);
        assert_eq!(again.next_due().unwrap() - first_failure, delays[0]);

        // A retry that succeeds ends the retries; the next refresh is the periodic slot, set
        // when the last refresh that took it completed.
        assert!(schedule.step(now).due);
        schedule.completed(now, true, true);
        assert!(schedule.next_due().unwrap() > now);
        assert!(schedule.next_due().unwrap() <= now + Duration::from_secs(interval));
        schedule.completed(now, false, false);
        assert!(
            schedule.next_due().unwrap() - now <= SECOND,
            "quick retries again"
        );
    }

    /// A fleet restarted at once must stay scattered: a daemon whose start-up failed retries
    /// soon, and once it succeeds refreshes next at its scattered slot, not a period after the
    /// retry.
    #[test]
    fn retries_keep_the_periodic_phase() {
        let t0 = Instant::now();
        let mut schedule = periodic(t0, 100, 50 * SECOND);
        schedule.completed(t0, false, false);
        let retry = schedule.next_due().unwrap();
        assert!(retry <= t0 + SECOND, "{:?}", retry - t0);
        assert!(schedule.step(retry).due);
        schedule.completed(retry, true, true);
        assert_eq!(schedule.next_due(), Some(t0 + 50 * SECOND));

        // The same after a periodic refresh failed: the period restarts from that refresh,
        // the retries do not move it.
        assert!(schedule.step(t0 + 50 * SECOND).due);
        schedule.completed(t0 + 50 * SECOND, false, true);
        let retry = schedule.next_due().unwrap();
        assert!(schedule.step(retry).due);
        schedule.completed(retry, true, true);
        assert_eq!(schedule.next_due(), Some(t0 + 150 * SECOND));
    }

    /// A periodic slot that comes while a retry is pending runs (it is the earlier deadline)
    /// and counts as the period's refresh.
    #[test]
    fn periodic_slot_during_backoff_runs_and_restarts_the_period() {
        let t0 = Instant::now();
        let mut schedule = periodic(t0, 10, 9 * SECOND);
        // Failures outside the loop push the retry ceiling past the periodic slot.
        for _ in 0..5 {
            schedule.completed(t0, false, false);
        }
        schedule.retry = Some(t0 + 20 * SECOND);
        assert_eq!(schedule.next_due(), Some(t0 + 9 * SECOND));
        assert!(schedule.step(t0 + 9 * SECOND).due);
        schedule.completed(t0 + 9 * SECOND, true, true);
        assert_eq!(schedule.next_due(), Some(t0 + 19 * SECOND));
    }

    #[test]
    fn outcomes_from_outside_the_loop() {
        let t0 = Instant::now();
        let mut schedule = periodic(t0, 100, 50 * SECOND);
        // A success outside the loop does not move the periodic schedule.
        schedule.completed(t0 + SECOND, true, false);
        assert_eq!(schedule.next_due(), Some(t0 + 50 * SECOND));
        // A failure (e.g. at start-up) brings the next refresh forward.
        schedule.completed(t0 + SECOND, false, false);
        let retry = schedule.next_due().unwrap();
        assert!(retry <= t0 + 2 * SECOND, "{:?}", retry - t0);
        // A later success outside the loop ends the backoff: next at the periodic slot.
        schedule.completed(t0 + 3 * SECOND / 2, true, false);
        assert_eq!(schedule.next_due(), Some(t0 + 50 * SECOND));
    }

    // Issue 9.14: the largest interval neither panics nor wraps around.
    #[test]
    fn huge_intervals_do_not_overflow() {
        let t0 = Instant::now();
        let huge = Duration::MAX;
        let mut schedule = Schedule::new(t0, Some(huge), None, Some(huge), seeded());
        assert!(schedule.next_due().is_some_and(|next| next > t0));
        schedule.completed(t0, true, true);
        schedule.completed(t0, false, true);
        assert!(schedule.next_due().is_some_and(|next| next > t0));
    }

    #[test]
    fn backoff_bounds() {
        assert_eq!(backoff(0, 10 * SECOND, &mut Zero), MIN_RETRY_DELAY);
        assert_eq!(backoff(0, SECOND / 20, &mut Zero), SECOND / 20);
        let mut rng = seeded();
        for failures in [0, 3, 31, 32, 1000, u32::MAX] {
            let delay = backoff(failures, 60 * SECOND, &mut rng);
            assert!(delay <= 60 * SECOND, "{failures}: {delay:?}");
        }
    }

    #[test]
    fn retry_delay_bounds() {
        let hour = 3600 * SECOND;
        assert_eq!(retry_delay(0, hour, &mut Zero), MIN_RETRY_DELAY);
        assert_eq!(retry_delay(0, SECOND / 20, &mut Zero), SECOND / 20);
        let mut rng = seeded();
        for _ in 0..100 {
            assert!(retry_delay(0, hour, &mut rng) <= SECOND);
            assert!(retry_delay(1, hour, &mut rng) <= 8 * SECOND);
            assert!(retry_delay(2, hour, &mut rng) <= 64 * SECOND);
            assert!(retry_delay(2, 10 * SECOND, &mut rng) <= 10 * SECOND);
            assert!(retry_delay(u32::MAX, hour, &mut rng) <= hour);
        }
    }

    #[test]
    fn triggers_wait_while_a_retry_is_pending() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(
            t0,
            Some(100 * SECOND),
            Some(50 * SECOND),
            Some(SECOND),
            seeded(),
        );
        schedule.completed(t0, false, false);
        assert!(!schedule.accept_trigger(t0 + 2 * SECOND));
        schedule.completed(t0 + 3 * SECOND, true, false);
        assert!(schedule.accept_trigger(t0 + 4 * SECOND));
    }

    /// Rapid triggers run once; another after the interval runs again;
    /// disabled triggers are ignored.
    #[test]
    fn triggers_are_throttled() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(100);
        let mut schedule = Schedule::new(t0, None, None, Some(interval), seeded());
        let ran: Vec<bool> = [0, 1, 2, 150, 200, 260]
            .into_iter()
            .map(|ms| schedule.accept_trigger(t0 + Duration::from_millis(ms)))
            .collect();
        assert_eq!(ran, [true, false, false, true, false, true]);
    }

    /// Records when the loop refreshed, as offsets from the start, and fails the first
    /// `failures` refreshes.
    #[derive(Clone)]
    struct Recorder {
        start: Instant,
        times: Arc<Mutex<Vec<(Duration, bool)>>>,
        failures: Arc<Mutex<usize>>,
    }

    impl Recorder {
        fn new(failures: usize) -> Recorder {
            Recorder {
                start: Instant::now(),
                times: Arc::default(),
                failures: Arc::new(Mutex::new(failures)),
            }
        }

        fn refresh(&self) -> impl FnMut(bool) -> std::future::Ready<bool> + 'static {
            let this = self.clone();
            move |scheduled| {
                this.times
                    .lock()
                    .unwrap()
                    .push((this.start.elapsed(), scheduled));
                let mut failures = this.failures.lock().unwrap();
                let success = *failures == 0;
                *failures = failures.saturating_sub(1);
                std::future::ready(success)
            }
        }

        fn times(&self) -> Vec<(Duration, bool)> {
            self.times.lock().unwrap().clone()
        }
    }

    fn spawn_loop(
        scheduler: &Arc<Scheduler>,
        recorder: &Recorder,
    ) -> (
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduler = scheduler.clone();
        let refresh = recorder.refresh();
        let task = tokio::spawn(async move {
            scheduler
                .run(refresh, async {
                    let _ = stopped.await;
                })
                .await;
        });
        (task, stop)
    }

    /// Checklist item 30: first refresh at the scattered delay, then every interval.
    #[tokio::test(start_paused = true)]
    async fn loop_runs_periodic_refreshes() {
        let recorder = Recorder::new(0);
        // Whole milliseconds: tokio's timer has millisecond resolution.
        let first = Duration::from_millis(6477);
        let scheduler = Arc::new(Scheduler::new(periodic(Instant::now(), 10, first)));
        let (task, stop) = spawn_loop(&scheduler, &recorder);
        tokio::time::sleep(Duration::from_secs(27)).await;
        assert_eq!(
            recorder.times(),
            [
                (first, true),
                (first + 10 * SECOND, true),
                (first + 20 * SECOND, true)
            ]
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn loop_retries_then_returns_to_the_periodic_slot() {
        let recorder = Recorder::new(2);
        let scheduler = Arc::new(Scheduler::new(periodic(Instant::now(), 600, SECOND)));
        let (task, stop) = spawn_loop(&scheduler, &recorder);
        tokio::time::sleep(Duration::from_secs(700)).await;
        let times: Vec<Duration> = recorder.times().into_iter().map(|(t, _)| t).collect();
        assert_eq!(times.len(), 4, "{times:?}");
        // The first (periodic) refresh at 1 s failed: a retry within 1 s, then one within 8 s.
        assert!(times[1] - times[0] <= SECOND, "{times:?}");
        assert!(times[2] - times[1] <= 8 * SECOND, "{times:?}");
        // The second retry succeeded; the next periodic refresh keeps the phase: 1 s + 600 s.
        assert_eq!(times[3], 601 * SECOND, "{times:?}");
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn loop_handles_throttled_triggers_and_refuses_extra_ones() {
        let recorder = Recorder::new(0);
        let schedule = Schedule::new(Instant::now(), None, None, Some(60 * SECOND), seeded());
        let scheduler = Arc::new(Scheduler::new(schedule));
        assert_eq!(scheduler.trigger(), Ok(()));
        assert_eq!(scheduler.trigger(), Err(TriggerRefused::Pending));
        let (task, stop) = spawn_loop(&scheduler, &recorder);
        tokio::time::sleep(SECOND).await;
        assert_eq!(recorder.times(), [(Duration::ZERO, false)]);
        // Within the interval: accepted into the channel, ignored by the loop.
        assert_eq!(scheduler.trigger(), Ok(()));
        tokio::time::sleep(SECOND).await;
        assert_eq!(recorder.times().len(), 1);
        tokio::time::sleep(60 * SECOND).await;
        assert_eq!(scheduler.trigger(), Ok(()));
        tokio::time::sleep(SECOND).await;
        assert_eq!(recorder.times().len(), 2);
        stop.send(()).unwrap();
        task.await.unwrap();

        let disabled = Scheduler::new(Schedule::new(Instant::now(), None, None, None, seeded()));
        assert_eq!(disabled.trigger(), Err(TriggerRefused::Disabled));
    }

    #[tokio::test(start_paused = true)]
    async fn loop_wakes_when_an_outside_failure_moves_the_schedule() {
        let recorder = Recorder::new(0);
        let scheduler = Arc::new(Scheduler::new(periodic(
            Instant::now(),
            3600,
            3000 * SECOND,
        )));
        let (task, stop) = spawn_loop(&scheduler, &recorder);
        tokio::task::yield_now().await;
        scheduler.completed(false);
        tokio::time::sleep(2 * SECOND).await;
        let times = recorder.times();
        assert_eq!(times.len(), 1, "{times:?}");
        assert!(times[0].0 <= SECOND && times[0].1);
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_a_refresh_in_progress() {
        let scheduler = Scheduler::new(periodic(Instant::now(), 10, SECOND));
        let started = Arc::new(Notify::new());
        let run = scheduler.run(
            |_| {
                started.notify_one();
                std::future::pending::<bool>()
            },
            started.notified(),
        );
        // Completes: the refresh starts at 1 s, then shutdown (the notification) ends the loop.
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap();
    }
}
