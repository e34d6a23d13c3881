//! Failed dashboard sign-ins are rate limited, per client address and
//! overall, so admin tokens cannot be guessed at the speed of the network.
//! Only failures are charged: an operator with a valid token is never
//! kept out by someone else's guessing from another address (the overall
//! bound is high enough for that, and counted when reached).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Failed attempts one address may make in a burst, then one per this.
const PER_CLIENT_BURST: f64 = 10.0;
const PER_CLIENT_EVERY: Duration = Duration::from_secs(6);
/// Failed attempts from everyone together, in a burst, then one per this.
const OVERALL_BURST: f64 = 100.0;
const OVERALL_EVERY: Duration = Duration::from_millis(600);
/// Addresses tracked at most (those whose bucket is not full again).
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: u64,
}

impl Bucket {
    fn refilled(self, now: u64, burst: f64, every: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.at) as f64 / every.as_millis() as f64;
        (self.tokens + elapsed).min(burst)
    }
}

#[derive(Debug)]
pub(crate) struct SignInLimit {
    clients: Mutex<(HashMap<IpAddr, Bucket>, Bucket)>,
}

impl Default for SignInLimit {
    fn default() -> Self {
        SignInLimit { clients: Mutex::new((HashMap::new(), Bucket { tokens: OVERALL_BURST, at: 0 })) }
    }
}

impl SignInLimit {
    /// Whether a sign-in from `client` may be tried now (`now` in unix
    /// ms); `Err` says how long to wait.
    pub(crate) fn check(&self, client: Option<IpAddr>, now: u64) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let overall = clients.1.refilled(now, OVERALL_BURST, OVERALL_EVERY);
        if overall < 1.0 {
            return Err(OVERALL_EVERY);
        }
        let own = client
            .and_then(|c| clients.0.get(&c))
            .map_or(PER_CLIENT_BURST, |b| b.refilled(now, PER_CLIENT_BURST, PER_CLIENT_EVERY));
        if own < 1.0 { Err(PER_CLIENT_EVERY) } else { Ok(()) }
    }

    /// Charges a failed attempt.
    pub(crate) fn failed(&self, client: Option<IpAddr>, now: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let overall = clients.1.refilled(now, OVERALL_BURST, OVERALL_EVERY);
        clients.1 = Bucket { tokens: (overall - 1.0).max(0.0), at: now };
        let Some(client) = client else { return };
        if clients.0.len() >= MAX_CLIENTS {
            clients.0.retain(|_, b| b.refilled(now, PER_CLIENT_BURST, PER_CLIENT_EVERY) < PER_CLIENT_BURST);
        }
        if clients.0.len() >= MAX_CLIENTS {
            return;
        }
        let own =
            clients.0.get(&client).map_or(PER_CLIENT_BURST, |b| b.refilled(now, PER_CLIENT_BURST, PER_CLIENT_EVERY));
        clients.0.insert(client, Bucket { tokens: (own - 1.0).max(0.0), at: now });
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
        assert_eq!(limit.check(Some(a), 1_000), Err(PER_CLIENT_EVERY));
        assert!(limit.check(Some(b), 1_000).is_ok(), "another address is not held back");
        assert!(limit.check(Some(a), 7_000).is_ok(), "one more after six seconds");
        for n in 0..90u8 {
            limit.failed(Some(IpAddr::from([198, 51, 100, n])), 1_000);
        }
        assert_eq!(limit.check(Some(b), 1_000), Err(OVERALL_EVERY), "a hundred failures from anywhere");
    }
}
