//! Reconnect backoff with full jitter, shared by every loop that reconnects (request/reply
//! workers, pub/sub subscribers, stream processors).
//!
//! Before reconnect attempt n (counted from 0 since the last success) the caller waits a random
//! time in `[0, min(cap, base * 2^n)]` ("full jitter"): many workers that lost their
//! connections at the same moment spread their attempts out instead of hitting the server in
//! lock-step. The random numbers come from the caller's own RNG. Not here: the waiting itself
//! (callers nap in slices that watch their stop flag) and connection setup.

use std::time::Duration;

use rand_core::Rng;

use crate::config::RetryPolicy;

/// One loop's reconnect state.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    /// Failed attempts since the last success.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The ceiling of the next wait: `min(cap, base * 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.failures.min(30);
        self.policy
            .backoff_base
            .saturating_mul(factor)
            .min(self.policy.backoff_cap)
    }

    /// How long to wait before the next attempt: uniform in `[0, ceiling]`.
    pub fn next_delay(&self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling().as_nanos() as u64;
        if ceiling == 0 {
            return Duration::ZERO;
        }
        // The modulo bias is below 2^-30 for ceilings up to a second: irrelevant here.
        Duration::from_nanos(rng.next_u64() % (ceiling + 1))
    }

    /// An attempt failed. Returns true when the policy says to give up now.
    pub fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.policy.attempts > 0 && self.failures >= self.policy.attempts
    }

    /// An attempt succeeded: the next outage starts from `base` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// An RNG for the jitter of a loop that has no RNG of its own (pub/sub subscribers, stream
/// processors): seeded from the clock and `index`, so loops that lost their connections
/// together do not draw the same delays.
pub fn jitter_rng(index: usize) -> crate::workload::WorkerRng {
    use rand_core::SeedableRng;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    crate::workload::WorkerRng::seed_from_u64(
        nanos ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_secs(1),
            attempts,
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(policy(0));
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(b.ceiling().as_millis());
            assert!(!b.failed(), "0 attempts = never give up");
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            b.failed();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1), "no overflow");
        b.succeeded();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
    }

    #[test]
    fn delays_are_spread_over_zero_to_ceiling() {
        let mut rng = crate::workload::WorkerRng::seed_from_u64(7);
        let mut b = Backoff::new(policy(0));
        for _ in 0..4 {
            b.failed();
        }
        let ceiling = b.ceiling();
        let delays: Vec<Duration> = (0..1000).map(|_| b.next_delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= ceiling));
        let low = delays.iter().filter(|d| **d < ceiling / 4).count();
        let high = delays.iter().filter(|d| **d > ceiling * 3 / 4).count();
        // Uniform: about 250 each; lock-step (no jitter) would put all 1000 in `high`.
        assert!((150..350).contains(&low), "{low}");
        assert!((150..350).contains(&high), "{high}");
    }

    #[test]
    fn gives_up_after_the_configured_attempts_in_a_row() {
        let mut b = Backoff::new(policy(3));
        assert!(!b.failed());
        assert!(!b.failed());
        b.succeeded();
        assert!(!b.failed());
        assert!(!b.failed());
        assert!(b.failed());
    }
}
