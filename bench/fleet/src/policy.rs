//! When one daemon refreshes: the three policies the simulation compares.
//!
//! - [`Keyturn`] drives the library's own [`Schedule`] and [`scatter`] (the functions `keyturn
//!   serve` runs), with the simulated clock and a seeded RNG injected. Nothing of keyturn's
//!   policy is re-implemented here.
//! - [`Agent`] is the Datadog Agent's policy as the behavioural reference describes it: the
//!   first periodic refresh after a scattered delay, then a ticker reset to the interval after
//!   each periodic refresh, no retry after a failure, outside triggers throttled per daemon.
//! - [`Naive`]: no scatter (every daemon refreshes one interval after it started), a failed
//!   refresh retried after a fixed delay, every outside trigger run.
//!
//! Time is a [`Duration`] since the simulation's origin; [`Clock`] maps it onto the
//! `tokio::time::Instant`s the library's schedule speaks (no runtime is needed for that).

use std::time::Duration;

use keyturn::daemon::schedule::Schedule;
use keyturn::resolver::refresh::scatter;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

/// The settings every daemon of a fleet shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// `secret_refresh_interval`.
    pub(crate) interval: Duration,
    /// `secret_refresh_on_api_key_failure_interval` (`None`: triggers refused).
    pub(crate) trigger_interval: Option<Duration>,
    /// The naive policy's fixed retry delay.
    pub(crate) naive_retry: Duration,
}

/// Which policy a fleet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Keyturn,
    Agent,
    Naive,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::Keyturn, Kind::Agent, Kind::Naive];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Keyturn => "keyturn",
            Kind::Agent => "agent",
            Kind::Naive => "naive",
        }
    }

    /// A daemon of this policy, its randomness seeded by `seed`.
    pub(crate) fn daemon(self, settings: Settings, clock: Clock, seed: u64) -> Box<dyn Policy> {
        let rng = StdRng::seed_from_u64(seed);
        match self {
            Kind::Keyturn => Box::new(Keyturn {
                settings,
                clock,
                rng,
                schedule: None,
            }),
            Kind::Agent => Box::new(Agent {
                settings,
                rng,
                next: None,
                last_trigger: None,
            }),
            Kind::Naive => Box::new(Naive {
                settings,
                next: None,
                retrying: false,
            }),
        }
    }
}

/// One daemon's refresh policy, as the simulation's event loop drives it.
pub(crate) trait Policy {
    /// The start-up resolve completed at `now`.
    fn started(&mut self, now: Duration, success: bool);
    /// When the next scheduled refresh is due (`None`: only on a trigger).
    fn next_due(&self) -> Option<Duration>;
    /// Whether a scheduled refresh is due at `now` (it is then running).
    fn step(&mut self, now: Duration) -> bool;
    /// A refresh completed at `now`; `scheduled` when [`Policy::step`] started it.
    fn completed(&mut self, now: Duration, success: bool, scheduled: bool);
    /// An outside trigger arrived at `now`: whether it runs a refresh now.
    fn accept_trigger(&mut self, now: Duration) -> bool;
}

/// Maps simulated time onto `tokio::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    fn at(self, time: Duration) -> Instant {
        self.origin + time
    }

    fn since(self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.origin)
    }
}

struct Keyturn {
    settings: Settings,
    clock: Clock,
    rng: StdRng,
    /// Built when the start-up resolve completes, as `keyturn serve` builds it.
    schedule: Option<Schedule>,
}

impl Policy for Keyturn {
    fn started(&mut self, now: Duration, success: bool) {
        let first = scatter(self.settings.interval, &mut self.rng);
        let jitter = StdRng::from_rng(&mut self.rng);
        let mut schedule = Schedule::new(
            self.clock.at(now),
            Some(self.settings.interval),
            Some(first),
            self.settings.trigger_interval,
            jitter,
        );
        schedule.completed(self.clock.at(now), success, false);
        self.schedule = Some(schedule);
    }

    fn next_due(&self) -> Option<Duration> {
        let next = self.schedule.as_ref()?.next_due()?;
        Some(self.clock.since(next))
    }

    fn step(&mut self, now: Duration) -> bool {
        let at = self.clock.at(now);
        self.schedule
            .as_mut()
            .is_some_and(|schedule| schedule.step(at).due)
    }

    fn completed(&mut self, now: Duration, success: bool, scheduled: bool) {
        let at = self.clock.at(now);
        if let Some(schedule) = self.schedule.as_mut() {
            schedule.completed(at, success, scheduled);
        }
    }

    fn accept_trigger(&mut self, now: Duration) -> bool {
        let at = self.clock.at(now);
        self.schedule
            .as_mut()
            .is_some_and(|schedule| schedule.accept_trigger(at))
    }
}

struct Agent {
    settings: Settings,
    rng: StdRng,
    next: Option<Duration>,
    last_trigger: Option<Duration>,
}

impl Policy for Agent {
    fn started(&mut self, now: Duration, _success: bool) {
        // The Agent's scatter has the same rule as keyturn's: uniform in [1 s, interval + 1 s).
        self.next = Some(now + scatter(self.settings.interval, &mut self.rng));
    }

    fn next_due(&self) -> Option<Duration> {
        self.next
    }

    fn step(&mut self, now: Duration) -> bool {
        take_if_due(&mut self.next, now)
    }

    fn completed(&mut self, now: Duration, _success: bool, scheduled: bool) {
        // The ticker is reset after each periodic refresh, failed or not; no retry.
        if scheduled {
            self.next = Some(now + self.settings.interval);
        }
    }

    fn accept_trigger(&mut self, now: Duration) -> bool {
        let Some(interval) = self.settings.trigger_interval else {
            return false;
        };
        if self
            .last_trigger
            .is_some_and(|last| now.saturating_sub(last) < interval)
        {
            return false;
        }
        self.last_trigger = Some(now);
        true
    }
}

struct Naive {
    settings: Settings,
    next: Option<Duration>,
    retrying: bool,
}

impl Policy for Naive {
    fn started(&mut self, now: Duration, success: bool) {
        self.retrying = !success;
        self.next = Some(
            now + if success {
                self.settings.interval
            } else {
                self.settings.naive_retry
            },
        );
    }

    fn next_due(&self) -> Option<Duration> {
        self.next
    }

    fn step(&mut self, now: Duration) -> bool {
        take_if_due(&mut self.next, now)
    }

    fn completed(&mut self, now: Duration, success: bool, scheduled: bool) {
        if !success {
            self.retrying = true;
            self.next = Some(now + self.settings.naive_retry);
        } else if scheduled || self.retrying {
            self.retrying = false;
            self.next = Some(now + self.settings.interval);
        }
    }

    fn accept_trigger(&mut self, _now: Duration) -> bool {
        true
    }
}

/// Whether the deadline in `next` has come at `now`; clears it when it has (the refresh then
/// runs, and the next deadline is set when it completes).
fn take_if_due(next: &mut Option<Duration>, now: Duration) -> bool {
    next.take_if(|next| *next <= now).is_some()
}
