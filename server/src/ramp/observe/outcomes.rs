//! The built-in bucket source: outcome reports from SDKs, counted per
//! second in the store, summed into the ramp's buckets — per request, or
//! per evaluation context (a context that saw an error in a bucket counts
//! once, as one failed exposure).
//!
//! Buckets that have closed (ended before the watermark) never change, so
//! they are kept ([`OutcomeCache`]) and a tick reads from the store only
//! the seconds after them: its cost grows with the buckets that are new
//! since the last tick, not with the age of the step.

use std::collections::HashMap;

use super::{BucketSource, WATERMARK_LAG_MS, Window};
use crate::model::{HoldReason, Pair};
use crate::ramp::spec::Unit;
use crate::store::Store;

pub(super) struct OutcomeBuckets<'a> {
    pub store: &'a dyn Store,
    pub unit: Unit,
    pub cache: &'a std::sync::Mutex<OutcomeCache>,
}

/// A step's closed buckets, as read so far.
#[derive(Debug, Default)]
pub struct OutcomeCache {
    /// (run id, step start, bucket width, unit) the buckets belong to.
    key: Option<(String, u64, u64, Unit)>,
    /// The step's first buckets, all closed, oldest first.
    closed: Vec<Pair>,
}

impl BucketSource for OutcomeBuckets<'_> {
    async fn buckets(&self, window: &Window<'_>) -> Result<Vec<Pair>, HoldReason> {
        let run = window.run;
        let step_from = run.step_started_at.div_ceil(1000);
        let watermark = window.now.saturating_sub(WATERMARK_LAG_MS) / 1000;
        // A second with a write in flight is not closed yet.
        let to = window.open_from.map_or(watermark, |open| watermark.min(open));
        if to <= step_from {
            return Ok(Vec::new());
        }
        let width = (window.interval_ms / 1000).max(1);
        let key = (run.run_id.clone(), run.step_started_at, width, self.unit);
        let closed_now = ((to - step_from) / width) as usize;
        let mut known: Vec<Pair> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.key.as_ref() == Some(&key) { cache.closed.clone() } else { Vec::new() }
        };
        known.truncate(closed_now);
        // Read only what follows the closed buckets already known.
        let from = step_from + known.len() as u64 * width;
        let mut buckets = vec![Pair::default(); (to - from).div_ceil(width) as usize];
        self.read_into(window, from, to, width, &mut buckets).await?;
        let closed_read = closed_now - known.len();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.key.as_ref() != Some(&key) {
                *cache = OutcomeCache { key: Some(key), closed: Vec::new() };
            }
            if cache.closed.len() == known.len() {
                cache.closed.extend_from_slice(&buckets[..closed_read]);
            }
        }
        known.extend(buckets);
        Ok(known)
    }
}

impl OutcomeBuckets<'_> {
    /// Adds the outcomes of seconds `[from, to)` into `buckets` (the first
    /// starting at `from`).
    async fn read_into(
        &self,
        window: &Window<'_>,
        from: u64,
        to: u64,
        width: u64,
        buckets: &mut [Pair],
    ) -> Result<(), HoldReason> {
        let run = window.run;
        let index = |second: u64| ((second - from) / width) as usize;
        let unavailable = |error: crate::store::StoreError| {
            tracing::warn!(%error, "cannot read outcome counts");
            HoldReason::MetricsUnavailable
        };
        match self.unit {
            Unit::Request => {
                let counts = self.store.outcomes(window.environment, &run.flag, from, to).await.map_err(unavailable)?;
                for count in counts {
                    let bucket = &mut buckets[index(count.second)];
                    let arm = if count.variant == run.treatment {
                        &mut bucket.treatment
                    } else if count.variant == run.control {
                        &mut bucket.control
                    } else {
                        continue;
                    };
                    arm.exposures += count.ok + count.error;
                    arm.errors += count.error;
                }
            }
            Unit::Context => {
                let outcomes =
                    self.store.context_outcomes(window.environment, &run.flag, from, to).await.map_err(unavailable)?;
                let mut seen: HashMap<(usize, bool, u64), bool> = HashMap::new();
                for outcome in outcomes {
                    let treatment = if outcome.variant == run.treatment {
                        true
                    } else if outcome.variant == run.control {
                        false
                    } else {
                        continue;
                    };
                    *seen.entry((index(outcome.second), treatment, outcome.context)).or_default() |= outcome.error;
                }
                for ((bucket, treatment, _), error) in seen {
                    let bucket = &mut buckets[bucket];
                    let arm = if treatment { &mut bucket.treatment } else { &mut bucket.control };
                    arm.exposures += 1;
                    arm.errors += u64::from(error);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{ContextOutcome, OutcomeCount};

    const SPEC: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: r}\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  interval: 10s\n  steps:\n    - {percent: 50, hold: 12h}\n";

    fn count(second: u64, variant: &str, ok: u64, error: u64) -> OutcomeCount {
        OutcomeCount { flag: "f".into(), variant: variant.into(), second, ok, error, ..Default::default() }
    }

    fn context(second: u64, variant: &str, context: u64, error: bool) -> ContextOutcome {
        ContextOutcome { flag: "f".into(), variant: variant.into(), second, context, error }
    }

    #[tokio::test]
    async fn closed_buckets_are_read_once_and_give_what_a_full_read_gives() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let spec = crate::ramp::spec::parse("r.yaml", SPEC).expect("spec");
        let mut run = spec.new_run("off", "run-1".into(), 1_000_000);
        run.status = crate::model::Status::Ramping;
        for unit in [Unit::Request, Unit::Context] {
            let cache = Mutex::new(OutcomeCache::default());
            let cached = OutcomeBuckets { store: &store, unit, cache: &cache };
            let fresh_cache = Mutex::new(OutcomeCache::default());
            let mut now = 1_000_000u64;
            for round in 0..30u64 {
                // Outcomes for the next few seconds, some contexts seen twice in a bucket.
                let second = now / 1000;
                let counts: Vec<OutcomeCount> =
                    (0..7).map(|i| count(second + i, if i % 2 == 0 { "on" } else { "off" }, 3, i % 3)).collect();
                let contexts: Vec<ContextOutcome> = (0..7)
                    .map(|i| context(second + i, if i % 2 == 0 { "on" } else { "off" }, round % 4, i == 3))
                    .collect();
                store.record_outcomes("prod", counts, contexts).await.expect("recorded");
                now += 7_000;
                let window =
                    Window { environment: "prod", ramp: "r", run: &run, interval_ms: 10_000, now, open_from: None };
                let incremental = cached.buckets(&window).await.expect("buckets");
                *fresh_cache.lock().expect("lock") = OutcomeCache::default();
                let fresh = OutcomeBuckets { store: &store, unit, cache: &fresh_cache };
                assert_eq!(incremental, fresh.buckets(&window).await.expect("buckets"), "{unit:?}, round {round}");
            }
            let closed = cache.lock().expect("lock").closed.len();
            assert!(closed >= 18, "{unit:?}: closed buckets are kept ({closed})");
        }
    }
}
