//! The four scenarios and the figures taken from each run.

use std::time::Duration;

use serde::Serialize;

use crate::policy::{Kind, Settings};
use crate::sim::{self, Fleet, Run, Triggers};
use crate::store::StoreModel;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The names `--scenario` accepts, in the order `all` runs them.
pub(crate) const NAMES: [&str; 4] = ["steady", "restart", "outage", "triggers"];

/// A fleet plus what to measure of it.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) fleet: Fleet,
    /// The part of the run the peak and mean are taken over.
    pub(crate) window: (Duration, Duration),
    /// Refusals are counted from here on (the end of the warm-up).
    pub(crate) warm: Duration,
    /// For `outage`: the outage, and the steady hour before it gives the mean.
    pub(crate) outage: Option<(Duration, Duration)>,
    /// What the plot shows: `[from, to)` in buckets of `step`.
    pub(crate) plot: (Duration, Duration, Duration),
    /// Whether the plot's request axis is logarithmic (a start-up burst next to a steady load).
    pub(crate) plot_log: bool,
}

/// The base every scenario changes: 10,000 daemons refreshing hourly, one remote secret each,
/// against a store that serves 1,000 requests a second.
fn base(daemons: u32, seed: u64) -> Fleet {
    Fleet {
        daemons,
        secrets: 1,
        starts: (Duration::ZERO, HOUR),
        triggers: None,
        settings: Settings {
            interval: HOUR,
            trigger_interval: Some(5 * MINUTE),
            naive_retry: Duration::from_secs(10),
        },
        store: StoreModel {
            rate: 1000.0,
            burst: 1000.0,
            median_latency: Duration::from_millis(50),
            latency_sigma: 0.6,
            refusal_latency: Duration::from_millis(5),
            outages: Vec::new(),
        },
        duration: 26 * HOUR,
        seed,
    }
}

/// The scenario called `name`, for a fleet of `daemons`.
pub(crate) fn named(name: &str, daemons: u32, seed: u64) -> Option<Scenario> {
    let mut fleet = base(daemons, seed);
    // Daemons start over the first hour; the first two hours are warm-up.
    let warm = 2 * HOUR;
    let scenario = match name {
        "steady" => Scenario {
            name: "steady",
            window: (warm, warm + 24 * HOUR),
            warm,
            outage: None,
            plot: (warm, warm + 24 * HOUR, MINUTE),
            plot_log: false,
            fleet,
        },
        "restart" => {
            // A deploy: every daemon restarts within the same second.
            fleet.starts = (Duration::ZERO, Duration::from_secs(1));
            fleet.duration = 6 * HOUR;
            Scenario {
                name: "restart",
                window: (MINUTE, 6 * HOUR),
                warm: Duration::ZERO,
                outage: None,
                plot: (Duration::ZERO, 2 * HOUR, Duration::from_secs(10)),
                plot_log: true,
                fleet,
            }
        }
        "outage" => {
            let start = warm + HOUR;
            let end = start + 10 * MINUTE;
            fleet.store.outages = vec![(start, end)];
            fleet.duration = end + 3 * HOUR;
            Scenario {
                name: "outage",
                window: (end, end + HOUR),
                warm,
                outage: Some((start, end)),
                plot: (
                    start - 30 * MINUTE,
                    end + 90 * MINUTE,
                    Duration::from_secs(10),
                ),
                plot_log: false,
                fleet,
            }
        }
        "triggers" => {
            // The periodic load alone is 80% of the store's quota; one daemon in ten asks for
            // a refresh every minute.
            let periodic = f64::from(daemons) * f64::from(fleet.secrets) / HOUR.as_secs_f64();
            fleet.store.rate = periodic / 0.8;
            fleet.store.burst = fleet.store.rate * 10.0;
            fleet.triggers = Some(Triggers {
                share: 0.1,
                every: MINUTE,
            });
            fleet.duration = warm + 6 * HOUR;
            Scenario {
                name: "triggers",
                window: (warm, warm + 6 * HOUR),
                warm,
                outage: None,
                plot: (warm, warm + 6 * HOUR, MINUTE),
                plot_log: false,
                fleet,
            }
        }
        _ => return None,
    };
    Some(scenario)
}

/// The figures of one policy in one scenario (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    pub(crate) scenario: &'static str,
    pub(crate) policy: &'static str,
    pub(crate) seed: u64,
    /// Highest 1-second bucket in the window.
    pub(crate) peak_per_s: f64,
    /// Mean requests a second: over the window; for `outage`, over the steady hour before it.
    pub(crate) mean_per_s: f64,
    pub(crate) peak_to_mean: f64,
    /// Highest 60-second average in the window, per second.
    pub(crate) peak_60s_per_s: f64,
    /// What independent random phases alone give: the highest 1-second bucket expected of a
    /// Poisson process at `mean_per_s` over the window (no policy can do better without
    /// coordinating daemons).
    pub(crate) poisson_peak_per_s: f64,
    /// Requests refused by the store (quota or outage) after warm-up.
    pub(crate) refused: u64,
    /// Seconds from the store's return until the last daemon that had failed refreshed
    /// successfully (`null` without an outage, or when a daemon never recovered).
    pub(crate) recovery_s: Option<f64>,
    /// Daemons still failing when the run ended.
    pub(crate) unrecovered: u32,
    pub(crate) requests_per_daemon_per_hour: f64,
    /// Highest autocorrelation of the per-second request counts over lags 2..=600 s, in the
    /// window: near 0 without retry waves, high when retries come in synchronized waves.
    pub(crate) autocorrelation_max: f64,
    /// For `restart`: the highest 1-second bucket of the first minute.
    pub(crate) first_minute_peak_per_s: Option<f64>,
    /// For `restart`: seconds until the last daemon whose start-up resolve failed (refused by
    /// the store's quota) had resolved (`null` if one never did).
    pub(crate) all_resolved_s: Option<f64>,
}

/// Runs `scenario` under `kind` and takes its figures; also returns the run (for plots).
pub(crate) fn measure(scenario: &Scenario, kind: Kind) -> (Figures, Run) {
    let run = sim::run(&scenario.fleet, kind);
    let window = slice(&run.requests, scenario.window);
    let peak = f64::from(window.iter().copied().max().unwrap_or(0));
    let mean_window = match scenario.outage {
        Some((start, _)) => (start.saturating_sub(HOUR), start),
        None => scenario.window,
    };
    let mean = mean_of(slice(&run.requests, mean_window));
    let after_warm = slice(&run.refused, (scenario.warm, scenario.fleet.duration));
    let refused = after_warm.iter().map(|&n| u64::from(n)).sum();
    let recovery_s = scenario.outage.and_then(|(_, end)| {
        (run.unrecovered == 0)
            .then(|| {
                run.last_recovery
                    .map(|at| at.saturating_sub(end).as_secs_f64())
            })
            .flatten()
    });
    let hours = (scenario.window.1 - scenario.window.0).as_secs_f64() / 3600.0;
    let total: f64 = window.iter().map(|&n| f64::from(n)).sum();
    let first_minute_peak_per_s = (scenario.name == "restart").then(|| {
        f64::from(
            slice(&run.requests, (Duration::ZERO, MINUTE))
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
        )
    });
    let all_resolved_s = (scenario.name == "restart" && run.unrecovered == 0)
        .then(|| run.last_recovery.map_or(0.0, |at| round(at.as_secs_f64())));
    let figures = Figures {
        scenario: scenario.name,
        policy: kind.name(),
        seed: scenario.fleet.seed,
        peak_per_s: peak,
        mean_per_s: round(mean),
        peak_to_mean: round(if mean > 0.0 { peak / mean } else { 0.0 }),
        peak_60s_per_s: round(peak_moving_average(window, 60)),
        poisson_peak_per_s: poisson_peak(mean, window.len()),
        refused,
        recovery_s: recovery_s.map(round),
        unrecovered: run.unrecovered,
        requests_per_daemon_per_hour: round(total / f64::from(scenario.fleet.daemons) / hours),
        autocorrelation_max: round(autocorrelation_max(window, 2, 600)),
        first_minute_peak_per_s,
        all_resolved_s,
    };
    (figures, run)
}

/// The buckets of `[from, to)`.
pub(crate) fn slice(buckets: &[u32], (from, to): (Duration, Duration)) -> &[u32] {
    let from = usize::try_from(from.as_secs()).unwrap_or(usize::MAX);
    let to = usize::try_from(to.as_secs()).unwrap_or(usize::MAX);
    let to = to.min(buckets.len());
    buckets.get(from.min(to)..to).unwrap_or(&[])
}

fn mean_of(buckets: &[u32]) -> f64 {
    if buckets.is_empty() {
        return 0.0;
    }
    buckets.iter().map(|&n| f64::from(n)).sum::<f64>() / buckets.len() as f64
}

fn peak_moving_average(buckets: &[u32], width: usize) -> f64 {
    if buckets.len() < width || width == 0 {
        return mean_of(buckets);
    }
    let mut sum: u64 = buckets.iter().take(width).map(|&n| u64::from(n)).sum();
    let mut best = sum;
    for (out, add) in buckets.iter().zip(buckets.iter().skip(width)) {
        sum = sum + u64::from(*add) - u64::from(*out);
        best = best.max(sum);
    }
    best as f64 / width as f64
}

/// The smallest k with P(X > k) < 1/n for X ~ Poisson(mean): the peak n independent 1-second
/// buckets reach about half the time.
pub(crate) fn poisson_peak(mean: f64, n: usize) -> f64 {
    if mean <= 0.0 || n == 0 {
        return 0.0;
    }
    let target = 1.0 / n as f64;
    let mut term = (-mean).exp();
    let mut cdf = term;
    let mut k = 0u32;
    while 1.0 - cdf >= target && k < 100_000 {
        k += 1;
        term *= mean / f64::from(k);
        cdf += term;
    }
    f64::from(k)
}

/// The highest autocorrelation of `buckets` over lags `from..=to`.
pub(crate) fn autocorrelation_max(buckets: &[u32], from: usize, to: usize) -> f64 {
    let mean = mean_of(buckets);
    let centred: Vec<f64> = buckets.iter().map(|&n| f64::from(n) - mean).collect();
    let variance: f64 = centred.iter().map(|x| x * x).sum();
    if variance == 0.0 {
        return 0.0;
    }
    (from..=to.min(centred.len().saturating_sub(1)))
        .map(|lag| {
            centred
                .iter()
                .zip(centred.iter().skip(lag))
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / variance
        })
        .fold(0.0, f64::max)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_peak_grows_with_the_number_of_buckets() {
        assert_eq!(poisson_peak(0.0, 100), 0.0);
        // Poisson(1): P(X > 2) = 0.080, P(X > 3) = 0.019, P(X > 4) = 0.0037.
        assert_eq!(poisson_peak(1.0, 10), 2.0);
        assert_eq!(poisson_peak(1.0, 100), 4.0);
    }

    #[test]
    fn autocorrelation_finds_a_period() {
        let waves: Vec<u32> = (0..600).map(|i| if i % 10 == 0 { 50 } else { 1 }).collect();
        assert!(autocorrelation_max(&waves, 2, 100) > 0.9);
        let flat = vec![3; 600];
        assert_eq!(autocorrelation_max(&flat, 2, 100), 0.0);
    }

    #[test]
    fn every_name_is_a_scenario() {
        for name in NAMES {
            assert_eq!(named(name, 10, 1).map(|s| s.name), Some(name));
        }
        assert!(named("nope", 10, 1).is_none());
    }
}
