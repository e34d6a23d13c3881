//! The built-in bucket source: outcome reports from SDKs, counted per
//! second in the store, summed into the ramp's buckets — per request, or
//! per evaluation context (a context that saw an error in a bucket counts
//! once, as one failed exposure).

use std::collections::HashMap;

use super::{BucketSource, WATERMARK_LAG_MS, Window};
use crate::model::{HoldReason, Pair};
use crate::ramp::spec::Unit;
use crate::store::Store;

pub(super) struct OutcomeBuckets<'a> {
    pub store: &'a dyn Store,
    pub unit: Unit,
}

impl BucketSource for OutcomeBuckets<'_> {
    async fn buckets(&self, window: &Window<'_>) -> Result<Vec<Pair>, HoldReason> {
        let run = window.run;
        let from = run.step_started_at.div_ceil(1000);
        let to = window.now.saturating_sub(WATERMARK_LAG_MS) / 1000;
        if to <= from {
            return Ok(Vec::new());
        }
        let width = (window.interval_ms / 1000).max(1);
        let mut buckets = vec![Pair::default(); (to - from).div_ceil(width) as usize];
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
        Ok(buckets)
    }
}
