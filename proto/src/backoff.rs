//! How every `rampart.v1` client waits before trying again — the SDK's
//! stream, a relay's subscription and its outcome forwarding: capped
//! exponential backoff with jitter, so a fleet whose server restarted does
//! not come back in one instant. One schedule, kept here beside the
//! protocol both sides speak.

use std::time::Duration;

/// `initial · 2^(failures−1)`, capped at `max`, times a random factor in
/// [0.5, 1].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// xorshift state: jitter needs spread, not cryptography.
    state: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        // A per-process random seed, so processes restarted together do not
        // retry in step.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        Backoff { initial, max, state: hasher.finish() | 1 }
    }

    /// The wait after `failures` failures in a row (1 for the first).
    pub fn delay(&mut self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        base.mul_f64(0.5 + 0.5 * self.unit())
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below_them() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for (failures, ceiling) in [(1, 100), (2, 200), (3, 400), (7, 5000), (40, 5000)] {
            let delay = backoff.delay(failures);
            let ceiling = Duration::from_millis(ceiling);
            assert!(delay <= ceiling && delay >= ceiling / 2, "{failures}: {delay:?}");
        }
        let spread: std::collections::BTreeSet<Duration> = (0..20).map(|_| backoff.delay(3)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
    }
}
