//! A token bucket: `rate` a second with a burst of `burst`, on the time the
//! caller passes (unix ms), so every limit that counts requests — outcome
//! reports, admin writes, failed sign-ins — behaves alike and tests control
//! the clock.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    at: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(burst: f64, now: u64) -> TokenBucket {
        TokenBucket { tokens: burst, at: now }
    }

    /// The tokens there would be at `now`.
    pub fn level(&self, now: u64, rate: f64, burst: f64) -> f64 {
        (self.tokens + now.saturating_sub(self.at) as f64 / 1000.0 * rate).min(burst)
    }

    /// Whether it would be full at `now` (then forgetting it loses nothing).
    pub fn is_full(&self, now: u64, rate: f64, burst: f64) -> bool {
        self.level(now, rate, burst) >= burst
    }

    /// Takes one token at `now`; `Err` says how long until there is one.
    pub fn take(&mut self, now: u64, rate: f64, burst: f64) -> Result<(), Duration> {
        self.tokens = self.level(now, rate, burst);
        self.at = now.max(self.at);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - self.tokens) / rate).max(0.001)))
        }
    }

    /// Takes one token at `now` even when there is none (a charge for a
    /// failure, floored at zero).
    pub fn charge(&mut self, now: u64, rate: f64, burst: f64) {
        self.tokens = (self.level(now, rate, burst) - 1.0).max(0.0);
        self.at = now.max(self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut bucket = TokenBucket::full(2.0, 1_000);
        assert!(bucket.take(1_000, 1.0, 2.0).is_ok());
        assert!(bucket.take(1_000, 1.0, 2.0).is_ok());
        assert_eq!(bucket.take(1_000, 1.0, 2.0), Err(Duration::from_secs(1)));
        assert!(bucket.take(2_000, 1.0, 2.0).is_ok(), "refilled at one a second");
        assert!(!bucket.is_full(2_000, 1.0, 2.0));
        assert!(bucket.is_full(4_000, 1.0, 2.0));
        bucket.charge(4_000, 1.0, 2.0);
        assert_eq!(bucket.level(4_000, 1.0, 2.0), 1.0);
    }
}
