//! Admission of outcome reports: they are untrusted input.
//!
//! SDK keys ship inside client applications, so anyone can post outcomes
//! with one, and a ramp acts on them: a single forged report of a billion
//! errors would roll a healthy ramp back (or a billion successes push a bad
//! one forward). Before a report is counted it passes, in order:
//!
//! 1. **its key**: an environment with `reporterKeys` accepts reports only
//!    from those (server-side reporters), never from SDK keys;
//! 2. **a rate**: `limits.outcomeReportsPerSecond` requests per key, with a
//!    burst of twice that (429 with `Retry-After` beyond);
//! 3. **sizes**: `ok + error` of an entry at most
//!    `limits.outcomeCountPerEntry`, the whole request at most ten times that;
//! 4. **plausibility**: one request may not bring more outcomes for a ramped
//!    flag than ten times the busiest second of that flag in the last
//!    minute (and at least `outcomeCountPerEntry` are always allowed), so
//!    counts grow with real traffic, not in one jump.
//!
//! The ramp controller adds its own defence: a sample-ratio mismatch with
//! an excess of treatment data holds the ramp instead of acting on it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::KeyDigest;
use crate::limits::{Limits, Rejection};

use super::outcomes::Report;

/// How far back plausibility looks, in seconds.
const WINDOW_SECONDS: u64 = 60;
/// A request may bring this many times the flag's busiest recent second.
const GROWTH: u64 = 10;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// An entry's `ok + error` is above the limit.
    EntryCount { index: usize, count: u64, limit: u64 },
    /// The request's outcomes together are above the limit.
    RequestCount { count: u64, limit: u64 },
    /// The key sent too many requests; retry after this long.
    Rate { retry_after: Duration },
    /// More outcomes for a flag than its recent traffic makes believable.
    Implausible { flag: String, count: u64, allowed: u64 },
}

impl Refused {
    pub fn rejection(&self) -> Rejection {
        match self {
            Refused::EntryCount { .. } | Refused::RequestCount { .. } => Rejection::OutcomeCount,
            Refused::Rate { .. } => Rejection::OutcomeRate,
            Refused::Implausible { .. } => Rejection::OutcomeImplausible,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::EntryCount { index, count, limit } => write!(
                f,
                "outcomes[{index}]: ok + error is {count}; at most {limit} per entry (limits.outcomeCountPerEntry)"
            ),
            Refused::RequestCount { count, limit } => {
                write!(f, "the request reports {count} outcomes; at most {limit} per request")
            }
            Refused::Rate { retry_after } => write!(
                f,
                "too many outcome reports with this key (limits.outcomeReportsPerSecond); retry in {:.1} s",
                retry_after.as_secs_f64()
            ),
            Refused::Implausible { flag, count, allowed } => write!(
                f,
                "{count} outcomes for flag '{flag}' in one request is more than its recent traffic makes \
                 plausible (at most {allowed} now); nothing was counted"
            ),
        }
    }
}

/// Token bucket of one key.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: u64,
}

/// Outcomes accepted per second for one ramped flag, recent seconds only.
#[derive(Debug, Default)]
struct Volume {
    seconds: VecDeque<(u64, u64)>,
}

impl Volume {
    fn peak(&self, now: u64) -> u64 {
        self.seconds.iter().filter(|(second, _)| second + WINDOW_SECONDS > now).map(|(_, n)| *n).max().unwrap_or(0)
    }

    fn add(&mut self, now: u64, count: u64) {
        match self.seconds.back_mut() {
            Some((second, total)) if *second == now => *total += count,
            _ => self.seconds.push_back((now, count)),
        }
        while self.seconds.front().is_some_and(|(second, _)| second + WINDOW_SECONDS <= now) {
            self.seconds.pop_front();
        }
    }
}

/// The admission state shared by the HTTP and gRPC outcome endpoints.
#[derive(Debug)]
pub struct OutcomeGate {
    /// Key of the hash that stands for a targeting key in stored outcomes.
    context_key: [u8; 32],
    per_entry: u64,
    per_second: f64,
    /// One per key that reported (keys are configured ones: bounded).
    buckets: Mutex<HashMap<(String, Option<KeyDigest>), Bucket>>,
    /// One per ramped flag that received outcomes (bounded by the ramps).
    volumes: Mutex<HashMap<(String, String), Volume>>,
}

impl OutcomeGate {
    /// `context_key`: the installation's secret (see
    /// [`crate::store::Store::installation_secret`]).
    pub fn new(limits: &Limits, context_key: [u8; 32]) -> OutcomeGate {
        OutcomeGate {
            context_key,
            per_entry: limits.outcome_count_per_entry,
            per_second: f64::from(limits.outcome_reports_per_second),
            buckets: Mutex::default(),
            volumes: Mutex::default(),
        }
    }

    /// What is stored for a targeting key: a keyed hash (HMAC-SHA256 with
    /// the installation's secret), so the stored value cannot be reversed
    /// by hashing a list of likely keys (emails), as a plain hash could.
    pub fn context_id(&self, targeting_key: &str) -> u64 {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.context_key).expect("any key length");
        mac.update(targeting_key.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(id)
    }

    /// Takes one request from the key's bucket (`now` in unix ms).
    pub fn admit(&self, environment: &str, key: Option<&str>, now: u64) -> Result<(), Refused> {
        let capacity = 2.0 * self.per_second;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry((environment.to_owned(), key.map(KeyDigest::of)))
            .or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_sub(bucket.at) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(Refused::Rate { retry_after: Duration::from_secs_f64(wait.max(0.001)) })
        }
    }

    /// Checks every entry's counts and the request's total.
    pub fn check_counts(&self, reports: &[Report]) -> Result<(), Refused> {
        let mut total = 0u64;
        for (index, report) in reports.iter().enumerate() {
            let count = report.ok.saturating_add(report.error);
            if count > self.per_entry {
                return Err(Refused::EntryCount { index, count, limit: self.per_entry });
            }
            total = total.saturating_add(count);
        }
        let limit = self.per_entry.saturating_mul(10);
        if total > limit {
            return Err(Refused::RequestCount { count: total, limit });
        }
        Ok(())
    }

    /// Checks the counted outcomes per flag (`counts`: flag → outcomes)
    /// against recent traffic and, when all are plausible, records them
    /// (`now` in unix seconds). Nothing is recorded when one is refused.
    pub fn plausible(&self, environment: &str, counts: &HashMap<&str, u64>, now: u64) -> Result<(), Refused> {
        let mut volumes = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        for (flag, count) in counts {
            let peak = volumes.get(&(environment.to_owned(), (*flag).to_owned())).map_or(0, |v| v.peak(now));
            let allowed = self.per_entry.max(peak.saturating_mul(GROWTH));
            if *count > allowed {
                return Err(Refused::Implausible { flag: (*flag).to_owned(), count: *count, allowed });
            }
        }
        for (flag, count) in counts {
            volumes.entry((environment.to_owned(), (*flag).to_owned())).or_default().add(now, *count);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: u64, error: u64) -> Report {
        Report { flag: "f".into(), variant: "on".into(), ok, error, targeting_key: None }
    }

    fn gate(per_entry: u64, per_second: u32) -> OutcomeGate {
        let limits =
            Limits { outcome_count_per_entry: per_entry, outcome_reports_per_second: per_second, ..Limits::default() };
        OutcomeGate::new(&limits, [7; 32])
    }

    #[test]
    fn context_ids_are_keyed_by_the_installation() {
        use sha2::Digest;
        let limits = Limits::default();
        let (a, b) = (OutcomeGate::new(&limits, [1; 32]), OutcomeGate::new(&limits, [2; 32]));
        let email = "alice@example.com";
        assert_eq!(a.context_id(email), a.context_id(email));
        assert_ne!(a.context_id(email), b.context_id(email));
        let plain = sha2::Sha256::digest(email.as_bytes());
        let plain = u64::from_le_bytes(plain[..8].try_into().unwrap());
        assert_ne!(a.context_id(email), plain, "not a dictionary-reversible plain hash");
    }

    #[test]
    fn counts_are_bounded_per_entry_and_per_request() {
        let gate = gate(1000, 10);
        assert!(gate.check_counts(&[report(600, 400)]).is_ok());
        assert_eq!(
            gate.check_counts(&[report(1, 1), report(1_000_000_000, 1_000_000_000)]),
            Err(Refused::EntryCount { index: 1, count: 2_000_000_000, limit: 1000 })
        );
        let many: Vec<Report> = (0..11).map(|_| report(1000, 0)).collect();
        assert_eq!(gate.check_counts(&many), Err(Refused::RequestCount { count: 11_000, limit: 10_000 }));
    }

    #[test]
    fn the_rate_is_per_key_with_a_burst() {
        let gate = gate(1000, 5);
        for _ in 0..10 {
            assert!(gate.admit("production", Some("key-a"), 1_000).is_ok());
        }
        let Err(Refused::Rate { retry_after }) = gate.admit("production", Some("key-a"), 1_000) else {
            panic!("the burst is ten")
        };
        assert!(retry_after <= Duration::from_millis(200), "{retry_after:?}");
        assert!(gate.admit("production", Some("key-b"), 1_000).is_ok(), "another key has its own bucket");
        assert!(gate.admit("production", Some("key-a"), 1_200).is_ok(), "refilled at 5 per second");
    }

    #[test]
    fn volume_may_grow_tenfold_per_request_not_more() {
        let gate = gate(1000, 5);
        let counts = |n| HashMap::from([("f", n)]);
        assert!(gate.plausible("e", &counts(1000), 100).is_ok(), "the floor");
        assert!(matches!(gate.plausible("e", &counts(20_000), 101), Err(Refused::Implausible { allowed: 10_000, .. })));
        assert!(gate.plausible("e", &counts(10_000), 101).is_ok());
        assert!(gate.plausible("e", &counts(100_000), 102).is_ok());
        // A minute later the peak has passed.
        assert!(gate.plausible("e", &counts(100_000), 200).is_err());
    }
}
