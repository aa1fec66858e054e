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
//! - Periodic refresh (`secret_refresh_interval`, spec §6.6): the first at the resolver's
//!   (scattered) first-refresh delay after start, then `interval` after each scheduled refresh
//!   completes.
//! - Backoff: a refresh that failed (or left handles failed) is retried after a delay drawn
//!   uniformly from `[0, min(interval, 1 s · 2^n)]` (full jitter; n = consecutive failures
//!   before this one), floored at [`MIN_RETRY_DELAY`], instead of waiting a full interval. A
//!   success ends the backoff. Without periodic refresh there are no retries either.
//! - Triggers from outside (§6.7, `secret_refresh_on_api_key_failure_interval`): at most one
//!   waits in the channel (the others are dropped at once), and one runs only when `interval`
//!   has passed since the last one that ran. Without that setting triggers are refused.
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
/// The first retry's ceiling; it doubles with each consecutive failure up to the interval.
pub const FIRST_RETRY_CEILING: Duration = Duration::from_secs(1);

/// The pure scheduling state.
#[derive(Debug)]
pub struct Schedule {
    interval: Option<Duration>,
    trigger_interval: Option<Duration>,
    /// When the next scheduled refresh (periodic or retry) is due; `None` while one runs or
    /// when periodic refresh is off.
    next: Option<Instant>,
    /// Consecutive failed refreshes.
    failures: u32,
    /// When the last throttled trigger ran.
    last_trigger: Option<Instant>,
    rng: StdRng,
}

/// The answer of [`Schedule::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            next: interval.map(|interval| later(now, first_delay.unwrap_or(interval))),
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
        match self.next {
            Some(next) if next <= now => {
                self.next = None;
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
        if success {
            let was_retrying = self.failures > 0;
            self.failures = 0;
            if scheduled || was_retrying {
                self.next = Some(later(now, interval));
            }
            return;
        }
        let retry = later(now, backoff(self.failures, interval, &mut self.rng));
        self.failures = self.failures.saturating_add(1);
        self.next = match self.next {
            Some(next) if !scheduled => Some(next.min(retry)),
            _ => Some(retry),
        };
    }

    /// A trigger from outside arrived at `now`: whether it may run a refresh now. Records the
    /// run when it may.
    pub fn accept_trigger(&mut self, now: Instant) -> bool {
        let Some(interval) = self.trigger_interval else {
            return false;
        };
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

    /// When the next scheduled refresh is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }
}

/// `delay` after `now`, or as late as an `Instant` goes when that overflows (a schedule built
/// from settings never gets there: they clamp durations to [`crate::settings::MAX_DURATION`]).
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(crate::settings::MAX_DURATION))
        .unwrap_or(now)
}

/// The delay before retry number `failures` (0-based): uniform in `[0, min(interval, 1 s ·
/// 2^failures)]`, at least [`MIN_RETRY_DELAY`] (or the ceiling, when smaller).
pub fn backoff(failures: u32, interval: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = FIRST_RETRY_CEILING
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(interval)
        .min(interval);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos)).max(MIN_RETRY_DELAY.min(ceiling))
}

/// Why a trigger was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Queues a throttled refresh without waiting for it (§6.7). Extra triggers while one is
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
    fn failures_back_off_with_growing_ceilings_then_reset() {
        let t0 = Instant::now();
        let interval = 10;
        let mut schedule = periodic(t0, interval, SECOND);
        let mut now = t0 + SECOND;
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(schedule.step(now).due);
            schedule.completed(now, false, true);
            let next = schedule.next_due().unwrap();
            delays.push(next - now);
            now = next;
        }
        let ceilings = [1, 2, 4, 8, 10, 10, 10, 10];
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            assert!(
                *delay >= MIN_RETRY_DELAY && *delay <= ceiling * SECOND,
                "{delays:?}"
            );
        }
        // Deterministic for a seed.
        let mut again = periodic(t0, interval, SECOND);
        assert!(again.step(t0 + SECOND).due);
        again.completed(t0 + SECOND, false, true);
        assert_eq!(again.next_due().unwrap() - (t0 + SECOND), delays[0]);

        assert!(schedule.step(now).due);
        schedule.completed(now, true, true);
        assert_eq!(
            schedule.next_due(),
            Some(now + Duration::from_secs(interval))
        );
        schedule.completed(now, false, true);
        assert!(
            schedule.next_due().unwrap() - now <= SECOND,
            "backoff restarts"
        );
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
        // A later success outside the loop ends the backoff: next in a full interval.
        schedule.completed(t0 + 3 * SECOND / 2, true, false);
        assert_eq!(
            schedule.next_due(),
            Some(t0 + 3 * SECOND / 2 + 100 * SECOND)
        );
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

    /// §6.7, checklist item 29: rapid triggers run once; another after the interval runs again;
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
    async fn loop_retries_with_backoff_then_returns_to_the_interval() {
        let recorder = Recorder::new(3);
        let scheduler = Arc::new(Scheduler::new(periodic(Instant::now(), 60, SECOND)));
        let (task, stop) = spawn_loop(&scheduler, &recorder);
        tokio::time::sleep(Duration::from_secs(75)).await;
        let times: Vec<Duration> = recorder.times().into_iter().map(|(t, _)| t).collect();
        assert_eq!(times.len(), 5, "{times:?}");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, ceiling) in gaps.iter().zip([1, 2, 4]) {
            assert!(*gap <= ceiling * SECOND, "{gaps:?}");
        }
        assert_eq!(gaps[3], 60 * SECOND, "{gaps:?}");
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
