//! The shared secret store: a request-rate quota, a latency distribution, and scripted outages.
//!
//! Capacity is a token bucket (`rate` requests a second, up to `burst` saved up), the way
//! request quotas of managed stores are usually enforced: a request that finds no token is
//! refused at once (HTTP 429), and during an outage every request fails (HTTP 5xx). A request
//! that is served takes a log-normally distributed time.

use std::time::Duration;

use rand::Rng;

/// How the store behaves.
#[derive(Debug, Clone)]
pub(crate) struct StoreModel {
    /// Requests a second the store serves over time.
    pub(crate) rate: f64,
    /// Requests it can serve at once after being idle.
    pub(crate) burst: f64,
    /// Median latency of a served request.
    pub(crate) median_latency: Duration,
    /// Log-normal shape: the spread of latencies (0: every request takes the median).
    pub(crate) latency_sigma: f64,
    /// Time to refuse a request (quota or outage).
    pub(crate) refusal_latency: Duration,
    /// `[start, end)` windows in which every request fails.
    pub(crate) outages: Vec<(Duration, Duration)>,
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Answer {
    pub(crate) served: bool,
    pub(crate) latency: Duration,
}

/// The store's state during a run.
#[derive(Debug)]
pub(crate) struct Store {
    model: StoreModel,
    tokens: f64,
    last: Duration,
}

impl Store {
    pub(crate) fn new(model: StoreModel) -> Store {
        Store {
            tokens: model.burst,
            last: Duration::ZERO,
            model,
        }
    }

    /// A request arriving at `now`. Calls come in time order.
    pub(crate) fn request(&mut self, now: Duration, rng: &mut impl Rng) -> Answer {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.model.rate).min(self.model.burst);
        let down = self
            .model
            .outages
            .iter()
            .any(|&(start, end)| start <= now && now < end);
        if down || self.tokens < 1.0 {
            return Answer {
                served: false,
                latency: self.model.refusal_latency,
            };
        }
        self.tokens -= 1.0;
        Answer {
            served: true,
            latency: self.latency(rng),
        }
    }

    fn latency(&self, rng: &mut impl Rng) -> Duration {
        // Box-Muller: one standard normal draw from two uniform ones.
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let factor = (self.model.latency_sigma * normal).exp().min(100.0);
        self.model.median_latency.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn model(rate: f64, burst: f64) -> StoreModel {
        StoreModel {
            rate,
            burst,
            median_latency: Duration::from_millis(50),
            latency_sigma: 0.0,
            refusal_latency: Duration::from_millis(5),
            outages: vec![(Duration::from_secs(100), Duration::from_secs(200))],
        }
    }

    #[test]
    fn quota_refuses_past_the_burst_and_refills_at_the_rate() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = Store::new(model(10.0, 5.0));
        let t = Duration::from_secs(1);
        let served = (0..8).filter(|_| store.request(t, &mut rng).served).count();
        assert_eq!(served, 5, "the burst");
        // Half a second later: 5 tokens back.
        let t = t + Duration::from_millis(500);
        let served = (0..8).filter(|_| store.request(t, &mut rng).served).count();
        assert_eq!(served, 5);
    }

    #[test]
    fn outage_refuses_everything_inside_its_window_only() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = Store::new(model(1000.0, 1000.0));
        assert!(store.request(Duration::from_secs(99), &mut rng).served);
        assert!(!store.request(Duration::from_secs(100), &mut rng).served);
        assert!(
            !store
                .request(Duration::from_millis(199_999), &mut rng)
                .served
        );
        assert!(store.request(Duration::from_secs(200), &mut rng).served);
    }

    #[test]
    fn latency_is_the_median_without_spread() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = Store::new(model(1000.0, 1000.0));
        let answer = store.request(Duration::ZERO, &mut rng);
        assert_eq!(answer.latency, Duration::from_millis(50));
    }
}
