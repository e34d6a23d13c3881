//! What the latency and conversion guards read: the step's durations per
//! arm, and its exposed and converted users per arm, kept between ticks
//! so a tick reads from the store only the seconds closed since the last.
//!
//! Exposed users are the targeting keys the ramp's evidence named in the
//! step (outcome reports with `targetingKey`, spans with
//! `feature_flag.context.id`): the arm a key counts in is the variant it
//! was served, as its own outcomes said. A conversion counts for a key
//! exposed in the step, once per step whatever how often it was tracked,
//! so neither a loop in an app nor a flood of `track` calls for keys
//! nobody served can move the guard.

use std::collections::HashSet;

use super::Window;
use crate::model::{HoldReason, Latency};
use crate::ramp::guards::Conversions;
use crate::store::Store;

/// Most users kept per arm and step (and twice as many converted); past it, new
/// keys are not added (the guard reads the step's first users) and
/// `rampart_ramp_guard_users_limited_total` counts the keys left out.
pub(super) const MAX_USERS_PER_ARM: usize = 1_000_000;

/// The step's sums so far.
#[derive(Debug, Default)]
pub struct GuardCache {
    /// (run id, step start) the sums belong to.
    step: Option<(String, u64)>,
    /// Seconds before this one have been read.
    read_to: u64,
    latency: (Latency, Latency),
    exposed: [HashSet<u64>; 2],
    /// Keys that converted in the step, whichever arm served them.
    converted: HashSet<u64>,
    /// Keys left out because an arm was full, not yet counted in
    /// `rampart_limit_rejections_total{limit="guard_users"}`.
    limited: u64,
}

impl GuardCache {
    /// Keys left out since the last call.
    pub fn take_limited(&mut self) -> u64 {
        std::mem::take(&mut self.limited)
    }
}

/// What the guards of one ramp need read.
pub(super) struct GuardReads<'a> {
    pub store: &'a dyn Store,
    /// Read durations (the ramp has a latency guard).
    pub latency: bool,
    /// Read conversions of this event (the ramp has a conversion guard).
    pub conversion: Option<&'a str>,
}

/// The guards' view of the step: (durations, conversions), each `None`
/// when the ramp has no such guard.
pub(super) type GuardCounts = (Option<(Latency, Latency)>, Option<(Conversions, Conversions)>);

impl GuardReads<'_> {
    pub(super) async fn read(
        &self,
        window: &Window<'_>,
        cache: &std::sync::Mutex<GuardCache>,
    ) -> Result<GuardCounts, HoldReason> {
        let run = window.run;
        let step_from = run.step_started_at.div_ceil(1000);
        let watermark = window.now.saturating_sub(super::WATERMARK_LAG_MS) / 1000;
        let to = window.open_from.map_or(watermark, |open| watermark.min(open));
        let step = (run.run_id.clone(), run.step_started_at);
        let from = {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.step.as_ref() != Some(&step) {
                *cache = GuardCache { step: Some(step.clone()), read_to: step_from, ..GuardCache::default() };
            }
            cache.read_to
        };
        let unavailable = |error: crate::store::StoreError| {
            tracing::warn!(%error, "cannot read a guard's counts");
            HoldReason::MetricsUnavailable
        };
        let arm = |variant: &str| {
            if variant == run.treatment {
                Some(0)
            } else if variant == run.control {
                Some(1)
            } else {
                None
            }
        };
        let (mut latency, mut exposed, mut converted) = (Vec::new(), Vec::new(), Vec::new());
        if to > from {
            if self.latency {
                let counts = self.store.outcomes(window.environment, &run.flag, from, to).await.map_err(unavailable)?;
                latency = counts.into_iter().filter_map(|c| arm(&c.variant).map(|a| (a, c.latency))).collect();
            }
            if let Some(event) = self.conversion {
                let outcomes =
                    self.store.context_outcomes(window.environment, &run.flag, from, to).await.map_err(unavailable)?;
                exposed = outcomes.into_iter().filter_map(|o| arm(&o.variant).map(|a| (a, o.context))).collect();
                let conversions =
                    self.store.conversions(window.environment, &run.flag, from, to).await.map_err(unavailable)?;
                converted = conversions.into_iter().filter(|c| c.event == event).map(|c| c.context).collect();
            }
        }
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.step.as_ref() != Some(&step) || cache.read_to != from {
            // Another tick moved the sums meanwhile: it read these seconds.
            return Ok(cache.counts(self.latency, self.conversion.is_some()));
        }
        for (arm, durations) in latency {
            let sums = if arm == 0 { &mut cache.latency.0 } else { &mut cache.latency.1 };
            sums.merge(&durations);
        }
        for (arm, context) in exposed {
            cache.add_exposed(arm, context);
        }
        for context in converted {
            // A conversion's arm is its key's: the count intersects the
            // converted keys with each arm's exposed ones.
            cache.add_converted(context);
        }
        cache.read_to = cache.read_to.max(to);
        Ok(cache.counts(self.latency, self.conversion.is_some()))
    }
}

impl GuardCache {
    fn add_exposed(&mut self, arm: usize, context: u64) {
        if self.exposed[arm].len() < MAX_USERS_PER_ARM || self.exposed[arm].contains(&context) {
            self.exposed[arm].insert(context);
        } else {
            self.limited += 1;
        }
    }

    fn add_converted(&mut self, context: u64) {
        if self.converted.len() < 2 * MAX_USERS_PER_ARM || self.converted.contains(&context) {
            self.converted.insert(context);
        } else {
            self.limited += 1;
        }
    }

    fn counts(&self, latency: bool, conversion: bool) -> GuardCounts {
        let conversions = conversion.then(|| {
            let arm = |a: usize| Conversions {
                exposed: self.exposed[a].len() as u64,
                converted: self.converted.iter().filter(|c| self.exposed[a].contains(c)).count() as u64,
            };
            (arm(0), arm(1))
        });
        (latency.then_some(self.latency), conversions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversion_counts_once_and_only_for_a_key_its_arm_exposed() {
        let mut cache = GuardCache::default();
        for key in 0..10 {
            cache.add_exposed(0, key);
        }
        for key in 10..30 {
            cache.add_exposed(1, key);
        }
        for key in [1, 1, 1, 2, 15, 99, 98] {
            cache.add_converted(key);
        }
        let (_, conversions) = cache.counts(false, true);
        let (treatment, control) = conversions.expect("a conversion guard");
        assert_eq!((treatment.exposed, treatment.converted), (10, 2), "key 1 three times is one conversion");
        assert_eq!((control.exposed, control.converted), (20, 1), "keys nobody served do not count");
    }
}
