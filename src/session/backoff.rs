//! Reconnect pacing: how long a host waits after a failed connect before the next attempt.
//!
//! Exponential from `min`, doubling per consecutive failure up to `max`, each delay scaled by a
//! random factor in [0.8, 1.2] so that many daemons (or hosts) that failed together do not retry
//! in lockstep. A permanent failure (host key refused, authentication rejected) waits `max` at
//! once: retrying sooner cannot help until the user changes something.

use std::time::Duration;

/// Spread of the random factor around the nominal delay.
const JITTER: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after the `failures`-th consecutive failure (1 for the first), given a random
    /// `unit` in [0, 1).
    pub fn delay(&self, failures: u32, permanent: bool, unit: f64) -> Duration {
        let nominal = if permanent {
            self.max
        } else {
            let doublings = failures.saturating_sub(1).min(30);
            self.min.saturating_mul(1 << doublings).min(self.max)
        };
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        nominal.mul_f64(factor).clamp(self.min, self.max)
    }
}

/// A uniformly distributed number in [0, 1); 0.5 (no jitter) if the OS has no randomness.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn delays_double_from_min_and_stop_at_max() {
        let nominal: Vec<u64> = (1..=9)
            .map(|n| BACKOFF.delay(n, false, 0.5).as_secs())
            .collect();
        assert_eq!(nominal, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(BACKOFF.delay(u32::MAX, false, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spreads_by_a_fifth_but_stays_within_min_and_max() {
        assert_eq!(BACKOFF.delay(3, false, 0.0), Duration::from_millis(3200));
        assert_eq!(BACKOFF.delay(3, false, 1.0), Duration::from_millis(4800));
        assert_eq!(BACKOFF.delay(1, false, 0.0), BACKOFF.min);
        assert_eq!(BACKOFF.delay(10, false, 1.0), BACKOFF.max);
        assert_eq!(BACKOFF.delay(10, false, 0.0), Duration::from_secs(48));
    }

    #[test]
    fn permanent_failures_wait_the_maximum_at_once() {
        assert!(BACKOFF.delay(1, true, 0.5) == BACKOFF.max);
        assert!(BACKOFF.delay(1, true, 0.0) >= Duration::from_secs(48));
    }

    #[test]
    fn random_units_lie_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u != draws[0]));
    }
}
