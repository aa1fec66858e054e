//! The discrete-event loop: N daemons, one store, simulated time.
//!
//! Each daemon starts (one start-up resolve), then asks its [`Policy`] when to refresh; a
//! refresh sends `secrets` requests to the store at once (one per remote secret, as
//! keyturn-backend does) and succeeds when every one was served. Outside triggers arrive on a
//! fixed period for a chosen share of the fleet. While a daemon's refresh runs, it ignores its
//! deadline and drops triggers (the daemon runs one refresh at a time). Every request is counted
//! in a 1-second bucket.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::{Clock, Kind, Policy, Settings};
use crate::store::{Store, StoreModel};

/// A fleet and what it runs against.
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    pub(crate) daemons: u32,
    /// Requests per refresh (remote secrets per daemon).
    pub(crate) secrets: u32,
    /// Daemons start at independent uniform times in `[from, to)`.
    pub(crate) starts: (Duration, Duration),
    pub(crate) triggers: Option<Triggers>,
    pub(crate) settings: Settings,
    pub(crate) store: StoreModel,
    /// How long to simulate.
    pub(crate) duration: Duration,
    pub(crate) seed: u64,
}

/// Outside refresh triggers (`keyturn refresh`, the Agent's API-key failure path).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Triggers {
    /// Share of the fleet that asks.
    pub(crate) share: f64,
    /// How often each of those daemons asks.
    pub(crate) every: Duration,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Requests that reached the store, per 1-second bucket.
    pub(crate) requests: Vec<u32>,
    /// Of those, refused (quota or outage).
    pub(crate) refused: Vec<u32>,
    /// The latest time at which a daemon that had failed refreshed successfully again.
    pub(crate) last_recovery: Option<Duration>,
    /// Daemons whose last refresh had failed when the run ended.
    pub(crate) unrecovered: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Start,
    Wake {
        token: u64,
    },
    Done {
        success: bool,
        scheduled: bool,
        startup: bool,
    },
    Trigger,
}

struct Daemon {
    policy: Box<dyn Policy>,
    started: bool,
    running: bool,
    token: u64,
    failing: bool,
}

/// Runs `fleet` under `kind`. Deterministic for a given seed.
pub(crate) fn run(fleet: &Fleet, kind: Kind) -> Run {
    let mut rng = StdRng::seed_from_u64(fleet.seed);
    let clock = Clock::new();
    let buckets = usize::try_from(fleet.duration.as_secs()).unwrap_or(usize::MAX) + 1;
    let mut out = Run {
        requests: vec![0; buckets],
        refused: vec![0; buckets],
        last_recovery: None,
        unrecovered: 0,
    };
    let mut store = Store::new(fleet.store.clone());
    let mut queue = Queue::default();
    let mut daemons: Vec<Daemon> = (0..fleet.daemons)
        .map(|id| {
            let seed = fleet.seed ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let start = uniform(&mut rng, fleet.starts.0, fleet.starts.1);
            queue.push(start, id, Event::Start);
            if let Some(triggers) = fleet.triggers
                && rng.random_bool(triggers.share)
            {
                let first = start + uniform(&mut rng, Duration::ZERO, triggers.every);
                queue.push(first, id, Event::Trigger);
            }
            Daemon {
                policy: kind.daemon(fleet.settings, clock, seed),
                started: false,
                running: false,
                token: 0,
                failing: false,
            }
        })
        .collect();

    while let Some((now, id, event)) = queue.pop() {
        if now > fleet.duration {
            break;
        }
        let Some(daemon) = usize::try_from(id).ok().and_then(|i| daemons.get_mut(i)) else {
            continue;
        };
        match event {
            Event::Start => {
                daemon.running = true;
                let (success, latency) = refresh(fleet, &mut store, &mut rng, now, &mut out);
                let done = Event::Done {
                    success,
                    scheduled: false,
                    startup: true,
                };
                queue.push(now + latency, id, done);
            }
            Event::Done {
                success,
                scheduled,
                startup,
            } => {
                daemon.running = false;
                if startup {
                    daemon.started = true;
                    daemon.policy.started(now, success);
                } else {
                    daemon.policy.completed(now, success, scheduled);
                }
                if !success {
                    daemon.failing = true;
                } else if daemon.failing {
                    daemon.failing = false;
                    out.last_recovery = out.last_recovery.max(Some(now));
                }
                arm(&mut queue, daemon, id, now);
            }
            Event::Wake { token } => {
                if token != daemon.token || daemon.running {
                    continue;
                }
                if daemon.policy.step(now) {
                    daemon.running = true;
                    let (success, latency) = refresh(fleet, &mut store, &mut rng, now, &mut out);
                    let done = Event::Done {
                        success,
                        scheduled: true,
                        startup: false,
                    };
                    queue.push(now + latency, id, done);
                } else {
                    arm(&mut queue, daemon, id, now);
                }
            }
            Event::Trigger => {
                if let Some(triggers) = fleet.triggers {
                    queue.push(now + triggers.every, id, Event::Trigger);
                }
                if !daemon.started || daemon.running || !daemon.policy.accept_trigger(now) {
                    continue;
                }
                daemon.running = true;
                let (success, latency) = refresh(fleet, &mut store, &mut rng, now, &mut out);
                let done = Event::Done {
                    success,
                    scheduled: false,
                    startup: false,
                };
                queue.push(now + latency, id, done);
            }
        }
    }
    out.unrecovered = u32::try_from(daemons.iter().filter(|d| d.failing).count()).unwrap_or(0);
    out
}

/// Sends one refresh's requests; returns whether all were served and when the last answered.
fn refresh(
    fleet: &Fleet,
    store: &mut Store,
    rng: &mut StdRng,
    now: Duration,
    out: &mut Run,
) -> (bool, Duration) {
    let bucket = usize::try_from(now.as_secs()).unwrap_or(usize::MAX);
    let mut success = true;
    let mut latency = Duration::ZERO;
    for _ in 0..fleet.secrets {
        let answer = store.request(now, rng);
        if let Some(count) = out.requests.get_mut(bucket) {
            *count += 1;
        }
        if !answer.served {
            success = false;
            if let Some(count) = out.refused.get_mut(bucket) {
                *count += 1;
            }
        }
        latency = latency.max(answer.latency);
    }
    (success, latency)
}

/// Schedules the daemon's next wake-up at its policy's deadline, invalidating older ones.
fn arm(queue: &mut Queue, daemon: &mut Daemon, id: u32, now: Duration) {
    daemon.token += 1;
    if let Some(next) = daemon.policy.next_due() {
        queue.push(
            next.max(now),
            id,
            Event::Wake {
                token: daemon.token,
            },
        );
    }
}

fn uniform(rng: &mut StdRng, from: Duration, to: Duration) -> Duration {
    if to <= from {
        return from;
    }
    from + Duration::from_secs_f64(rng.random_range(0.0..(to - from).as_secs_f64()))
}

/// Events in time order; ties in the order they were pushed.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Duration, u64, u32, Event)>>,
    pushed: u64,
}

impl Queue {
    fn push(&mut self, at: Duration, id: u32, event: Event) {
        self.pushed += 1;
        self.heap.push(Reverse((at, self.pushed, id, event)));
    }

    fn pop(&mut self) -> Option<(Duration, u32, Event)> {
        self.heap
            .pop()
            .map(|Reverse((at, _, id, event))| (at, id, event))
    }
}
