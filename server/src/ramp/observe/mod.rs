//! What a ramp's tick sees: the current step's closed buckets of treatment
//! and control counts from the ramp's [`BucketSource`] — outcome reports
//! kept in the store, or Prometheus — the extra metrics, and what the
//! decision must know of the flag. Bounded in time: a source slower than
//! the tick's budget is unavailable for that tick, never a stuck ramp.

mod guards;
mod outcomes;
mod prometheus;

pub use guards::GuardCache;
pub use outcomes::OutcomeCache;

use std::sync::Arc;
use std::time::Duration;

use rampart_engine::FlagState;

use super::evidence::Observation;
use super::prometheus::{Cache, Names, PrometheusSource};
use super::spec::{self, MetricSource, PrometheusGuard, RampSpec};
use super::stats::SprtSums;
use crate::environment::Environment;
use crate::model::{HoldReason, Pair, Run, Status};
use crate::store::Store;

/// How far behind "now" the newest bucket read ends: outcome writes are
/// acknowledged only once committed, so after this lag no more counts can
/// land in a bucket that was read.
pub const WATERMARK_LAG_MS: u64 = 1500;

/// The step of a run being observed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<'a> {
    pub environment: &'a str,
    pub ramp: &'a str,
    pub run: &'a Run,
    /// Bucket width.
    pub interval_ms: u64,
    pub now: u64,
    /// The oldest second with an outcome write in flight: seconds from it
    /// on are not closed yet, whatever the clock says.
    pub open_from: Option<u64>,
}

/// Where a ramp's treatment and control counts come from.
pub(crate) trait BucketSource {
    /// Whether the source can be read at all: a ramp that cannot be
    /// watched does not start.
    async fn ready(&self, _window: &Window<'_>) -> Result<(), HoldReason> {
        Ok(())
    }

    /// The current step's closed buckets, oldest first, or why they cannot
    /// be known.
    async fn buckets(&self, window: &Window<'_>) -> Result<Vec<Pair>, HoldReason>;

    /// What a tick reads: readiness before the run starts, buckets after.
    async fn read(&self, window: &Window<'_>) -> Result<Vec<Pair>, HoldReason> {
        if matches!(window.run.status, Status::Pending { .. }) {
            self.ready(window).await.map(|()| Vec::new())
        } else {
            self.buckets(window).await
        }
    }
}

/// What a ramp keeps between ticks so a tick reads only what is new.
#[derive(Debug, Default)]
pub struct Caches {
    /// Prometheus results of the current step's closed buckets.
    pub prometheus: std::sync::Mutex<Cache>,
    /// The current step's closed outcome buckets.
    pub outcomes: std::sync::Mutex<OutcomeCache>,
    /// The mixture SPRT's sums over the current step's closed buckets.
    pub sprt: std::sync::Mutex<SprtCache>,
    /// The latency and conversion guards' sums over the current step.
    pub guards: std::sync::Mutex<GuardCache>,
}

/// The mixture SPRT's sums over a step's closed buckets, and those buckets
/// (to check that what a source answers still begins with them).
#[derive(Debug, Default)]
pub struct SprtCache {
    /// (run id, step start) the sums belong to.
    step: Option<(String, u64)>,
    covered: Vec<Pair>,
    sums: Option<SprtSums>,
}

impl SprtCache {
    /// The sums over `buckets` but the last (which may still be filling),
    /// adding to the kept ones only the buckets after them. Sources answer
    /// closed buckets that never change; if they did (a source's cache was
    /// reset), the sums start over.
    fn update(&mut self, run: &Run, tolerance: f64, buckets: &[Pair]) -> SprtSums {
        let closed = &buckets[..buckets.len().saturating_sub(1)];
        let step = (run.run_id.as_str(), run.step_started_at);
        let kept = self.step.as_ref().is_some_and(|(id, at)| (id.as_str(), *at) == step)
            && self.sums.as_ref().is_some_and(|sums| sums.is_for(tolerance))
            && closed.starts_with(&self.covered);
        if !kept {
            self.step = Some((run.run_id.clone(), run.step_started_at));
            self.covered.clear();
            self.sums = Some(SprtSums::new(tolerance));
        }
        let new = &closed[self.covered.len()..];
        let sums = self.sums.get_or_insert_with(|| SprtSums::new(tolerance));
        sums.add(new);
        self.covered.extend_from_slice(new);
        sums.clone()
    }
}

/// Observes ramps for the controller.
#[derive(Debug)]
pub struct Observer {
    store: Arc<dyn Store>,
    /// Outcome writes not committed yet (see [`crate::ramp::in_flight`]).
    pub in_flight: Arc<crate::ramp::in_flight::InFlight>,
    prometheus: PrometheusSource,
    /// Longest an observation may take.
    budget: Duration,
}

impl Observer {
    pub fn new(store: Arc<dyn Store>, prometheus: PrometheusSource, budget: Duration) -> Observer {
        Observer { store, in_flight: Arc::default(), prometheus, budget }
    }

    /// The server's Prometheus URL, for people reading a ramp's settings.
    pub fn prometheus_url(&self) -> Option<&str> {
        self.prometheus.default_url()
    }

    /// The run's current step, within the budget: a source slower than
    /// that is unavailable for this tick.
    pub async fn observe(
        &self,
        environment: &Environment,
        ramp: &str,
        cache: &Caches,
        spec: &RampSpec,
        run: &Run,
        now: u64,
    ) -> Observation {
        let observed = self.observe_unbounded(environment, ramp, cache, spec, run, now);
        match tokio::time::timeout(self.budget, observed).await {
            Ok(observation) => observation,
            Err(_) => {
                tracing::warn!(environment = %environment.name, %ramp, budget = ?self.budget, "metrics took longer than a tick may");
                Observation {
                    missing: Some(HoldReason::MetricsUnavailable),
                    flag_enabled: flag_enabled(environment, &run.flag),
                    ..Observation::default()
                }
            }
        }
    }

    async fn observe_unbounded(
        &self,
        environment: &Environment,
        ramp: &str,
        cache: &Caches,
        spec: &RampSpec,
        run: &Run,
        now: u64,
    ) -> Observation {
        let interval_ms = spec.interval.as_millis() as u64;
        let names = Names {
            flag: &run.flag,
            environment: &environment.name,
            ramp,
            treatment: &run.treatment,
            control: &run.control,
        };
        let mut observation = Observation {
            flag_enabled: flag_enabled(environment, &run.flag),
            expected_share: expected_share(environment, run).await,
            ..Observation::default()
        };
        if !spec.metrics.is_empty() && !matches!(run.status, Status::Pending { .. }) {
            observation.metrics = self.extra_metrics(spec, names, run, interval_ms, now).await;
        }
        let open_from = self.in_flight.oldest(&environment.name);
        let window = Window { environment: &environment.name, ramp, run, interval_ms, now, open_from };
        let read = match &spec.guard.source {
            MetricSource::Prometheus(guard) => {
                let cache = &cache.prometheus;
                prometheus::PrometheusBuckets { source: &self.prometheus, guard, names, cache }.read(&window).await
            }
            MetricSource::Builtin => {
                let (store, unit, cache) = (self.store.as_ref(), spec.guard.unit, &cache.outcomes);
                outcomes::OutcomeBuckets { store, unit, cache }.read(&window).await
            }
        };
        match read {
            Ok(buckets) => {
                let mut sprt = cache.sprt.lock().unwrap_or_else(|e| e.into_inner());
                observation.sprt = Some(sprt.update(run, spec.guard.tolerance, &buckets));
                observation.buckets = buckets;
            }
            Err(reason) => observation.missing = Some(reason),
        }
        let from_prometheus = spec.latency.as_ref().and_then(|l| l.prometheus.as_ref().map(|q| (l, q)));
        let reads = guards::GuardReads {
            store: self.store.as_ref(),
            latency: spec.latency.is_some() && from_prometheus.is_none(),
            conversion: spec.conversion.as_ref().map(|c| c.event.as_str()),
        };
        if (reads.latency || reads.conversion.is_some()) && !matches!(run.status, Status::Pending { .. }) {
            // Unreadable counts leave both `None`: the guards say
            // "unavailable" and the step does not advance on them.
            if let Ok((latency, conversions)) = reads.read(&window, &cache.guards).await {
                observation.latency = latency;
                observation.conversions = conversions;
            }
        }
        if let Some((latency, queries)) = from_prometheus
            && !matches!(run.status, Status::Pending { .. })
        {
            let window = (names, run, interval_ms, now);
            observation.latency = self.prometheus_latency(spec, latency, queries, window).await;
        }
        observation
    }

    /// The step's durations from Prometheus histograms: per arm, the
    /// requests within the threshold in its ladder slot and the rest in the
    /// next one — exactly what "slower than the threshold" reads. `None`
    /// when Prometheus cannot answer (the guard is then unavailable).
    async fn prometheus_latency(
        &self,
        spec: &RampSpec,
        latency: &spec::guards::LatencyGuard,
        queries: &spec::guards::LatencyQueries,
        (names, run, interval_ms, now): (Names<'_>, &Run, u64, u64),
    ) -> Option<(crate::model::Latency, crate::model::Latency)> {
        let spec::guards::Threshold::Fixed { millis } = latency.threshold else { return None };
        let guard = prometheus_guard(spec);
        let step = (run.run_id.as_str(), run.step_started_at);
        let mut sums = [[0.0f64; 2]; 2];
        let queries = [("latency:within", &queries.within), ("latency:total", &queries.total)];
        for (index, (name, query)) in queries.into_iter().enumerate() {
            let metric = spec::Metric {
                name: name.into(),
                role: spec::MetricRole::Monitor,
                query: query.clone(),
                direction: spec::Direction::LowerIsBetter,
                tolerance: 0.0,
                confidence: latency.confidence,
                advance_confidence: latency.confidence,
                min_buckets: 1,
                dry_run: true,
            };
            let values = self
                .prometheus
                .metric_values(&guard, &metric, names, step, interval_ms, now)
                .await
                .map_err(|error| tracing::warn!(ramp = %names.ramp, %error, "latency from Prometheus unavailable"))
                .ok()?;
            for (treatment, control) in values {
                sums[index][0] += treatment.max(0.0);
                sums[index][1] += control.max(0.0);
            }
        }
        let slot = crate::model::Latency::slot_of(f64::from(millis));
        let arm = |within: f64, total: f64| {
            let mut durations = crate::model::Latency::default();
            let (within, total) = (within.round() as u64, total.round() as u64);
            durations.add(slot, within.min(total));
            durations.add(slot + 1, total.saturating_sub(within));
            durations
        };
        Some((arm(sums[0][0], sums[1][0]), arm(sums[0][1], sums[1][1])))
    }

    /// Extra metrics' per-bucket values, from the guard's Prometheus (URL,
    /// token, lag) or the server's.
    async fn extra_metrics(
        &self,
        spec: &RampSpec,
        names: Names<'_>,
        run: &Run,
        interval_ms: u64,
        now: u64,
    ) -> Vec<(String, super::evidence::MetricValues)> {
        let guard = prometheus_guard(spec);
        let guard = &guard;
        let step = (run.run_id.as_str(), run.step_started_at);
        let mut metrics = Vec::with_capacity(spec.metrics.len());
        for metric in &spec.metrics {
            let values = self
                .prometheus
                .metric_values(guard, metric, names, step, interval_ms, now)
                .await
                .map_err(|error| {
                    tracing::warn!(ramp = %names.ramp, metric = %metric.name, %error, "metric unavailable");
                })
                .ok();
            metrics.push((metric.name.clone(), values));
        }
        metrics
    }
}

/// The Prometheus a ramp's queries go to: its guard's (URL, token, lag),
/// or the server's with the default lag.
fn prometheus_guard(spec: &RampSpec) -> PrometheusGuard {
    match &spec.guard.source {
        MetricSource::Prometheus(guard) => guard.clone(),
        MetricSource::Builtin => PrometheusGuard {
            url: None,
            errors: String::new(),
            total: String::new(),
            lag: spec::DEFAULT_PROMETHEUS_LAG,
            token_ref: None,
        },
    }
}

/// Whether the environment serves `flag` enabled (a disabled flag gets no
/// traffic, which the decision must not read as missing data).
fn flag_enabled(environment: &Environment, flag: &str) -> bool {
    environment.snapshot().flags.get(flag).is_some_and(|f| f.state() == FlagState::Enabled)
}

/// The treatment's expected share of exposures, known when the ramp alone
/// splits the flag (it has no rules of its own).
async fn expected_share(environment: &Environment, run: &Run) -> Option<f64> {
    let rules_free = environment.unramped_flag(&run.flag).await.is_some_and(|flag| {
        flag.definition().get("targeting").is_none_or(|t| t.is_null() || t.as_object().is_some_and(|o| o.is_empty()))
    });
    rules_free.then(|| f64::from(run.basis_points) / f64::from(rampart_engine::ramp::FULL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arm;
    use crate::ramp::stats::MixtureSprt;

    fn bucket(i: u64) -> Pair {
        Pair {
            treatment: Arm { exposures: 300 + i % 11, errors: i % 4 },
            control: Arm { exposures: 900 + i % 7, errors: (i * 5) % 3 },
        }
    }

    #[test]
    fn kept_sums_cover_closed_buckets_and_start_over_when_the_step_or_the_buckets_change() {
        let spec = crate::ramp::spec::parse(
            "r.yaml",
            "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: r}\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  steps:\n    - {percent: 50, hold: 1h}\n",
        )
        .expect("spec");
        let mut run = spec.new_run("off", "run-1".into(), 0);
        let mut cache = SprtCache::default();
        let all: Vec<Pair> = (0..200).map(bucket).collect();
        for len in (1..200).step_by(9) {
            let sums = cache.update(&run, 0.2, &all[..len]);
            assert_eq!(sums.buckets(), len - 1, "the last bucket may still fill");
            let expected = MixtureSprt::compute(0.2, &all[..len - 1]).lambda;
            assert!((sums.result().lambda - expected).abs() <= 1e-9 * expected, "{len}");
        }
        assert_eq!(cache.covered.len(), 198, "the last update saw 199 buckets");
        // A source answering different closed buckets: start over.
        let mut changed = all.clone();
        changed[3].treatment.errors += 50;
        let sums = cache.update(&run, 0.2, &changed);
        let expected = MixtureSprt::compute(0.2, &changed[..199]).lambda;
        assert!((sums.result().lambda - expected).abs() <= 1e-9 * expected);
        // Another tolerance or another step: start over.
        assert!(cache.update(&run, 0.5, &all[..10]).is_for(0.5));
        assert_eq!(cache.covered.len(), 9);
        run.step_started_at = 60_000;
        assert_eq!(cache.update(&run, 0.5, &all[..3]).buckets(), 2);
    }
}
