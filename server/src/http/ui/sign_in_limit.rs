//! Failed dashboard sign-ins are rate limited, per client address and
//! overall, so admin tokens cannot be guessed at the speed of the network.
//! Only failures are charged: an operator with a valid token is never
//! kept out by someone else's guessing from another address (the overall
//! bound is high enough for that, and counted when reached).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::rate::TokenBucket;

/// Failed attempts one address may make in a burst, then a tenth a second
/// (one per 6 s).
const PER_CLIENT_BURST: f64 = 10.0;
const PER_CLIENT_RATE: f64 = 1.0 / 6.0;
/// Failed attempts from everyone together, in a burst, then this many a
/// second.
const OVERALL_BURST: f64 = 100.0;
const OVERALL_RATE: f64 = 1.0 / 0.6;
/// Addresses tracked at most (those whose bucket is not full again).
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct SignInLimit {
    buckets: Mutex<(HashMap<IpAddr, TokenBucket>, TokenBucket)>,
}

impl Default for SignInLimit {
    fn default() -> Self {
        SignInLimit { buckets: Mutex::new((HashMap::new(), TokenBucket::full(OVERALL_BURST, 0))) }
    }
}

impl SignInLimit {
    /// Whether a sign-in from `client` may be tried now (`now` in unix
    /// ms); `Err` says how long to wait.
    pub(crate) fn check(&self, client: Option<IpAddr>, now: u64) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.1.level(now, OVERALL_RATE, OVERALL_BURST) < 1.0 {
            return Err(Duration::from_secs_f64(1.0 / OVERALL_RATE));
        }
        let own = client
            .and_then(|c| buckets.0.get(&c))
            .map_or(PER_CLIENT_BURST, |b| b.level(now, PER_CLIENT_RATE, PER_CLIENT_BURST));
        if own < 1.0 { Err(Duration::from_secs_f64(1.0 / PER_CLIENT_RATE)) } else { Ok(()) }
    }

    /// Charges a failed attempt.
    pub(crate) fn failed(&self, client: Option<IpAddr>, now: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.1.charge(now, OVERALL_RATE, OVERALL_BURST);
        let Some(client) = client else { return };
        if buckets.0.len() >= MAX_CLIENTS {
            buckets.0.retain(|_, b| !b.is_full(now, PER_CLIENT_RATE, PER_CLIENT_BURST));
        }
        if buckets.0.len() >= MAX_CLIENTS && !buckets.0.contains_key(&client) {
            return;
        }
        buckets.0.entry(client).or_insert_with(|| TokenBucket::full(PER_CLIENT_BURST, now)).charge(
            now,
            PER_CLIENT_RATE,
            PER_CLIENT_BURST,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_are_limited_per_address_and_overall() {
        let limit = SignInLimit::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            assert!(limit.check(Some(a), 1_000).is_ok());
            limit.failed(Some(a), 1_000);
        }
        assert_eq!(limit.check(Some(a), 1_000), Err(Duration::from_secs(6)));
        assert!(limit.check(Some(b), 1_000).is_ok(), "another address is not held back");
        assert!(limit.check(Some(a), 7_000).is_ok(), "one more after six seconds");
        for n in 0..90u8 {
            limit.failed(Some(IpAddr::from([198, 51, 100, n])), 1_000);
        }
        assert_eq!(limit.check(Some(b), 1_000), Err(Duration::from_millis(600)), "a hundred failures from anywhere");
    }
}
