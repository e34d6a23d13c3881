//! Admission of outcome reports: they are untrusted input.
//!
//! A ramp acts on them, so whoever can add outcomes can steer it. Before a
//! report is counted it passes, in order:
//!
//! 1. **its key** (`environment::access`): reporter keys (secrets kept on
//!    servers) report; SDK keys ship inside client apps, so they report
//!    only where the environment opted in (`sdkKeyOutcomes: true`), and
//!    are refused with 403 otherwise;
//! 2. **a rate**: `limits.outcomeReportsPerSecond` requests per key, with a
//!    burst of twice that (429 with `Retry-After` beyond);
//! 3. **sizes**: `ok + error` of an entry at most
//!    `limits.outcomeCountPerEntry`, the whole request at most ten times
//!    that; with an SDK key, exactly one outcome per entry, with the
//!    targeting key it was served to (a browser reports what it saw);
//! 4. **contribution** ([`super::contribution`]): what one source (a
//!    reporter key, a relay, a client address) and one targeting key may
//!    add to a ramped arm, relative to the step's evidence.
//!
//! Every refusal is counted in `rampart_outcomes_refused_total{reason}`
//! and named in the ramp's explanation; nothing of a refused report is
//! counted. The ramp controller adds its own defence: a sample-ratio
//! mismatch with an excess of treatment data holds the ramp instead of
//! acting on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::environment::Trust;
use crate::limits::{Limits, OutcomeRefusal, Rejection};
use crate::rate::TokenBucket;

use super::contribution::{Contributions, Excess, Source};

/// Most rate buckets kept (sources that reported in the last seconds).
const MAX_BUCKETS: usize = 100_000;
use super::outcomes::Report;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// An entry's `ok + error` is above the limit.
    EntryCount { index: usize, count: u64, limit: u64 },
    /// The request's outcomes together are above the limit.
    RequestCount { count: u64, limit: u64 },
    /// The key sent too many requests; retry after this long.
    Rate { retry_after: Duration },
    /// An SDK-key report whose entry is not one outcome.
    PublicCounts { index: usize },
    /// An SDK-key report whose entry names no targeting key.
    PublicWithoutKey { index: usize },
    /// More for a ramped arm than this source or targeting key may add now.
    Excess { flag: String, variant: Option<String>, excess: Excess },
}

impl Refused {
    pub fn rejection(&self) -> Rejection {
        match self {
            Refused::EntryCount { .. }
            | Refused::RequestCount { .. }
            | Refused::PublicCounts { .. }
            | Refused::PublicWithoutKey { .. } => Rejection::OutcomeCount,
            Refused::Rate { .. } => Rejection::OutcomeRate,
            Refused::Excess { .. } => Rejection::OutcomeImplausible,
        }
    }

    /// The `reason` label of `rampart_outcomes_refused_total`.
    pub fn reason(&self) -> OutcomeRefusal {
        match self {
            Refused::EntryCount { .. } => OutcomeRefusal::EntryCount,
            Refused::RequestCount { .. } => OutcomeRefusal::RequestCount,
            Refused::Rate { .. } => OutcomeRefusal::Rate,
            Refused::PublicCounts { .. } => OutcomeRefusal::SdkKeyCounts,
            Refused::PublicWithoutKey { .. } => OutcomeRefusal::SdkKeyWithoutTargetingKey,
            Refused::Excess { excess: Excess::Source { .. }, .. } => OutcomeRefusal::SourceVolume,
            Refused::Excess { excess: Excess::Client { .. }, .. } => OutcomeRefusal::ClientVolume,
            Refused::Excess { excess: Excess::Context { .. }, .. } => OutcomeRefusal::ContextVolume,
        }
    }

    /// Counts it: by reason, and as the limit it hit.
    pub fn count(&self, metrics: &crate::metrics::Metrics) {
        metrics.refused_outcome(self.reason(), Some(self.rejection()));
    }

    /// How long to wait before sending again, where waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refused::Rate { retry_after } => Some(*retry_after),
            Refused::Excess { excess: Excess::Source { .. }, .. } => Some(Duration::from_secs(1)),
            Refused::Excess { .. } => Some(Duration::from_secs(60)),
            _ => None,
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
            Refused::PublicCounts { index } => write!(
                f,
                "outcomes[{index}]: a report made with an SDK key carries one outcome per entry (ok or error \
                 is 1, the other 0); report counts from your servers with a reporter key"
            ),
            Refused::PublicWithoutKey { index } => write!(
                f,
                "outcomes[{index}]: a report made with an SDK key names the targetingKey the variant was served to"
            ),
            Refused::Excess { flag, variant, excess } => {
                let arm = match variant {
                    Some(variant) => format!("flag '{flag}' variant '{variant}'"),
                    None => format!("flag '{flag}'"),
                };
                match excess {
                    Excess::Source { allowed } => write!(
                        f,
                        "more outcomes for {arm} than this reporter may add in one second at this step's \
                         evidence (at most {allowed} now); nothing was counted: send at most that, the rest later"
                    ),
                    Excess::Client { allowed } => write!(
                        f,
                        "more outcomes for {arm} from this client than one client may report in a minute \
                         (limits.outcomesPerClientPerMinute; at most {allowed} now); nothing was counted"
                    ),
                    Excess::Context { allowed } => write!(
                        f,
                        "more outcomes for {arm} from one targeting key than one user makes in a minute \
                         (limits.outcomesPerContextPerMinute; at most {allowed} now); nothing was counted"
                    ),
                }
            }
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
    /// One per source that reported recently (at most `MAX_BUCKETS`).
    buckets: Mutex<HashMap<(String, Source), TokenBucket>>,
    /// What each source and targeting key may still add to a ramp.
    pub contributions: Contributions,
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
            contributions: Contributions::new(limits),
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

    /// Takes one request from the source's bucket (`now` in unix ms): a
    /// reporter key's, a relay's, or with a public SDK key the client
    /// address's (everyone shares the key, so it cannot be the unit).
    pub fn admit(&self, environment: &str, source: &Source, now: u64) -> Result<(), Refused> {
        let (rate, burst) = (self.per_second, 2.0 * self.per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // A full bucket is what a new one would be: forgetting it loses
            // nothing. Clients are bounded by the ones active in the last
            // two seconds, and never more than this.
            buckets.retain(|_, bucket| !bucket.is_full(now, rate, burst));
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        buckets
            .entry((environment.to_owned(), source.clone()))
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(now, rate, burst)
            .map_err(|retry_after| Refused::Rate { retry_after })
    }

    /// Checks every entry's counts and the request's total; an SDK key's
    /// entries are one outcome each, for a named targeting key.
    pub fn check_counts(&self, trust: Trust, reports: &[Report]) -> Result<(), Refused> {
        let mut total = 0u64;
        for (index, report) in reports.iter().enumerate() {
            let count = report.ok.saturating_add(report.error);
            if trust == Trust::Public {
                if count != 1 {
                    return Err(Refused::PublicCounts { index });
                }
                if report.targeting_key.as_deref().is_none_or(str::is_empty) {
                    return Err(Refused::PublicWithoutKey { index });
                }
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: u64, error: u64) -> Report {
        Report { flag: "f".into(), variant: "on".into(), ok, error, targeting_key: None, duration_ms: None }
    }

    fn key(key: &str) -> Source {
        Source::Key(crate::config::KeyDigest::of(key))
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
        assert!(gate.check_counts(Trust::Reporter, &[report(600, 400)]).is_ok());
        assert_eq!(
            gate.check_counts(Trust::Reporter, &[report(1, 1), report(1_000_000_000, 1_000_000_000)]),
            Err(Refused::EntryCount { index: 1, count: 2_000_000_000, limit: 1000 })
        );
        let many: Vec<Report> = (0..11).map(|_| report(1000, 0)).collect();
        assert_eq!(
            gate.check_counts(Trust::Reporter, &many),
            Err(Refused::RequestCount { count: 11_000, limit: 10_000 })
        );
    }

    #[test]
    fn an_sdk_key_reports_one_outcome_per_entry_for_a_named_user() {
        let gate = gate(1000, 10);
        let one = |ok, error, key: Option<&str>| Report {
            flag: "f".into(),
            variant: "on".into(),
            ok,
            error,
            targeting_key: key.map(str::to_owned),
            duration_ms: None,
        };
        assert!(gate.check_counts(Trust::Public, &[one(1, 0, Some("u1")), one(0, 1, Some("u2"))]).is_ok());
        assert_eq!(
            gate.check_counts(Trust::Public, &[one(1, 0, Some("u1")), one(0, 50_000, Some("u2"))]),
            Err(Refused::PublicCounts { index: 1 })
        );
        assert_eq!(gate.check_counts(Trust::Public, &[one(1, 1, Some("u"))]), Err(Refused::PublicCounts { index: 0 }));
        assert_eq!(gate.check_counts(Trust::Public, &[one(0, 0, Some("u"))]), Err(Refused::PublicCounts { index: 0 }));
        assert_eq!(gate.check_counts(Trust::Public, &[one(1, 0, None)]), Err(Refused::PublicWithoutKey { index: 0 }));
        assert!(gate.check_counts(Trust::Reporter, &[one(5, 0, None)]).is_ok());
    }

    #[test]
    fn the_rate_is_per_key_with_a_burst() {
        let gate = gate(1000, 5);
        for _ in 0..10 {
            assert!(gate.admit("production", &key("key-a"), 1_000).is_ok());
        }
        let Err(Refused::Rate { retry_after }) = gate.admit("production", &key("key-a"), 1_000) else {
            panic!("the burst is ten")
        };
        assert!(retry_after <= Duration::from_millis(200), "{retry_after:?}");
        assert!(gate.admit("production", &key("key-b"), 1_000).is_ok(), "another key has its own bucket");
        assert!(gate.admit("production", &key("key-a"), 1_200).is_ok(), "refilled at 5 per second");
    }
}
