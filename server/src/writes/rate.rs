//! Writes per second per actor (an admin token's name): what one token can
//! add to the store is bounded by its rate times the definition limit, so a
//! leaked `write` token cannot fill the disk faster than that
//! (`limits.adminWritesPerSecond`, burst twice that; docs/limits.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::rate::TokenBucket;

/// Actors tracked at most (token names are configured; a full bucket is
/// forgotten first, losing nothing).
const MAX_ACTORS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct WriteRate {
    per_second: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl WriteRate {
    pub(crate) fn new(per_second: u32) -> WriteRate {
        WriteRate { per_second: f64::from(per_second.max(1)), buckets: Mutex::default() }
    }

    /// Takes one write from `actor`'s bucket (`now` in unix ms); `Err`
    /// says how long to wait.
    pub(crate) fn admit(&self, actor: &str, now: u64) -> Result<(), Duration> {
        let (rate, burst) = (self.per_second, 2.0 * self.per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ACTORS {
            buckets.retain(|_, bucket| !bucket.is_full(now, rate, burst));
        }
        buckets.entry(actor.to_owned()).or_insert_with(|| TokenBucket::full(burst, now)).take(now, rate, burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_actor_writes_at_its_rate_after_a_burst() {
        let rate = WriteRate::new(10);
        for _ in 0..20 {
            assert!(rate.admit("ci-bot", 1_000).is_ok());
        }
        let wait = rate.admit("ci-bot", 1_000).expect_err("the burst is twice the rate");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rate.admit("ana", 1_000).is_ok(), "another token has its own");
        assert!(rate.admit("ci-bot", 1_100).is_ok(), "one more a tenth of a second later");
    }
}
