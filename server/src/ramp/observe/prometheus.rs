//! Prometheus as a bucket source: two templated queries per variant and
//! closed bucket (see `ramp/prometheus.rs`), cached per step.

use super::{BucketSource, Window};
use crate::model::{HoldReason, Pair};
use crate::ramp::prometheus::{Cache, Names, PrometheusError, PrometheusSource};
use crate::ramp::spec::PrometheusGuard;

pub(super) struct PrometheusBuckets<'a> {
    pub source: &'a PrometheusSource,
    pub guard: &'a PrometheusGuard,
    pub names: Names<'a>,
    pub cache: &'a std::sync::Mutex<Cache>,
}

impl PrometheusBuckets<'_> {
    fn unavailable(&self, window: &Window<'_>, error: PrometheusError) -> HoldReason {
        tracing::warn!(environment = %window.environment, ramp = %window.ramp, %error, "Prometheus metrics unavailable");
        // Prometheus answers but has nothing for the newest closed bucket:
        // the data is late, not zero.
        if error.is_empty_result() { HoldReason::StaleData } else { HoldReason::MetricsUnavailable }
    }
}

impl BucketSource for PrometheusBuckets<'_> {
    async fn ready(&self, window: &Window<'_>) -> Result<(), HoldReason> {
        self.source.ready(self.guard, window.now).await.map_err(|error| self.unavailable(window, error))
    }

    async fn buckets(&self, window: &Window<'_>) -> Result<Vec<Pair>, HoldReason> {
        let step = (window.run.run_id.as_str(), window.run.step_started_at);
        self.source
            .buckets(self.guard, self.names, self.cache, step, window.interval_ms, window.now)
            .await
            .map_err(|error| self.unavailable(window, error))
    }
}
