//! The Prometheus metric source (docs/ramps.md): two templated queries per
//! variant — errors and total over `{{window}}` — evaluated at the end of
//! each closed bucket through the HTTP API.
//!
//! Only buckets that ended at least `lag` ago count (Prometheus scrapes
//! late). A query error, a timeout, NaN, a negative value or an empty
//! vector is "metrics unavailable" — never zero errors. Counter resets are
//! PromQL's job (`increase`); results are rounded to whole requests.
//! Closed buckets are immutable, so their results are cached per step and
//! re-queried only after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::spec::{PrometheusGuard, render_template};
use crate::model::{Arm, Pair};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Why Prometheus gave no usable number.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("no Prometheus URL: set --prometheus-url or guard.prometheus.url")]
    NoUrl,
    #[error("the token variable {0} is not set")]
    TokenUnset(String),
    #[error("Prometheus unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("Prometheus answered {status} without JSON: {source}")]
    NotJson {
        status: reqwest::StatusCode,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus query failed ({status}): {reason}")]
    QueryFailed { status: reqwest::StatusCode, reason: String },
    #[error("expected a vector, Prometheus answered {0}")]
    UnexpectedResult(String),
    /// Prometheus answers but has no sample: a gap in the data (late or
    /// missing scrapes), not an outage.
    #[error("the query returned an empty vector: {query}")]
    EmptyResult { query: String },
    #[error("the query returned {value}: {query}")]
    InvalidValue { value: f64, query: String },
}

impl PrometheusError {
    /// Whether Prometheus answered with no data (rather than failing).
    pub fn is_empty_result(&self) -> bool {
        matches!(self, PrometheusError::EmptyResult { .. })
    }
}

#[derive(Debug)]
pub struct PrometheusSource {
    client: reqwest::Client,
    default_url: Option<String>,
    /// Extra metrics' closed buckets, per ramp and metric: (run id, step
    /// start) they belong to, and the values by bucket index.
    metric_cache: std::sync::Mutex<MetricCache>,
}

type MetricCache = std::collections::HashMap<String, ((String, u64), BTreeMap<u64, Option<(f64, f64)>>)>;

/// Closed buckets already read for one step of one run.
#[derive(Debug, Default)]
pub struct Cache {
    /// (run id, step start) the buckets belong to.
    key: (String, u64),
    buckets: BTreeMap<u64, Pair>,
}

/// What a query's template variables are for one ramp.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub flag: &'a str,
    pub environment: &'a str,
    pub ramp: &'a str,
    pub treatment: &'a str,
    pub control: &'a str,
}

impl Names<'_> {
    /// A query template filled for one variant and window.
    fn render(&self, template: &str, variant: &str, window: &str) -> String {
        render_template(
            template,
            &[
                ("flag", self.flag),
                ("variant", variant),
                ("environment", self.environment),
                ("window", window),
                ("ramp", self.ramp),
            ],
        )
    }
}

impl PrometheusSource {
    /// Fails only when no HTTP client can be built (a broken TLS set-up):
    /// never falls back to one without a timeout.
    pub fn new(default_url: Option<String>) -> Result<PrometheusSource, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(PrometheusSource { client, default_url, metric_cache: std::sync::Mutex::default() })
    }

    /// The server's `--prometheus-url` (a ramp file may name its own).
    pub fn default_url(&self) -> Option<&str> {
        self.default_url.as_deref()
    }

    fn url<'a>(&'a self, guard: &'a PrometheusGuard) -> Result<&'a str, PrometheusError> {
        guard.url.as_deref().or(self.default_url.as_deref()).ok_or(PrometheusError::NoUrl)
    }

    /// One instant query's value: the sum over the returned series.
    pub async fn query(&self, guard: &PrometheusGuard, query: &str, at_ms: u64) -> Result<f64, PrometheusError> {
        let url = format!("{}/api/v1/query", self.url(guard)?.trim_end_matches('/'));
        let time = format!("{}.{:03}", at_ms / 1000, at_ms % 1000);
        let mut request = self.client.get(url).query(&[("query", query), ("time", time.as_str())]);
        if let Some(variable) = &guard.token_ref {
            let token = std::env::var(variable).map_err(|_| PrometheusError::TokenUnset(variable.clone()))?;
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(PrometheusError::Unreachable)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|source| PrometheusError::NotJson { status, source })?;
        if body["status"] != "success" {
            let reason = body["error"].as_str().unwrap_or("no reason").to_owned();
            return Err(PrometheusError::QueryFailed { status, reason });
        }
        let values: Vec<f64> = match (body["data"]["resultType"].as_str(), &body["data"]["result"]) {
            (Some("vector"), Value::Array(series)) => {
                series.iter().filter_map(|s| s["value"][1].as_str()).filter_map(|v| v.parse().ok()).collect()
            }
            (Some("scalar"), result) => result[1].as_str().and_then(|v| v.parse().ok()).into_iter().collect(),
            (other, _) => return Err(PrometheusError::UnexpectedResult(other.unwrap_or("no result").to_owned())),
        };
        if values.is_empty() {
            return Err(PrometheusError::EmptyResult { query: query.to_owned() });
        }
        let sum: f64 = values.iter().sum();
        if !sum.is_finite() || sum < 0.0 {
            return Err(PrometheusError::InvalidValue { value: sum, query: query.to_owned() });
        }
        Ok(sum)
    }

    /// Whether Prometheus answers at all (the start-up check).
    pub async fn ready(&self, guard: &PrometheusGuard, now_ms: u64) -> Result<(), PrometheusError> {
        self.query(guard, "vector(1)", now_ms).await.map(|_| ())
    }

    /// The arms' counts over the `window_ms` ending at `end_ms`.
    pub async fn bucket(
        &self,
        guard: &PrometheusGuard,
        names: Names<'_>,
        end_ms: u64,
        window_ms: u64,
    ) -> Result<Pair, PrometheusError> {
        let window = format!("{}s", (window_ms / 1000).max(1));
        let mut arms = [Arm::default(); 2];
        for (arm, variant) in arms.iter_mut().zip([names.treatment, names.control]) {
            let total = self.query(guard, &names.render(&guard.total, variant, &window), end_ms).await?.round() as u64;
            let errors =
                self.query(guard, &names.render(&guard.errors, variant, &window), end_ms).await?.round() as u64;
            *arm = Arm { exposures: total, errors: errors.min(total) };
        }
        Ok(Pair { treatment: arms[0], control: arms[1] })
    }

    /// Every closed bucket of the step, from the cache or Prometheus.
    pub async fn buckets(
        &self,
        guard: &PrometheusGuard,
        names: Names<'_>,
        cache: &std::sync::Mutex<Cache>,
        (run_id, step_started_at): (&str, u64),
        interval_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Pair>, PrometheusError> {
        let lagged = now_ms.saturating_sub(guard.lag.as_millis() as u64);
        let closed = lagged.saturating_sub(step_started_at) / interval_ms.max(1);
        let known = {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.key != (run_id.to_owned(), step_started_at) {
                *cache = Cache { key: (run_id.to_owned(), step_started_at), buckets: BTreeMap::new() };
            }
            cache.buckets.clone()
        };
        let mut buckets = Vec::with_capacity(closed as usize);
        // Start of the window not yet counted: a bucket with no samples (a
        // scrape gap, Prometheus restarted) is folded into the next one,
        // whose window then reaches back to the last counted end. Only the
        // newest bucket may not be empty: then the data is stale.
        let mut start = step_started_at;
        for index in 0..closed {
            let end = step_started_at + (index + 1) * interval_ms;
            if let Some(pair) = known.get(&index) {
                buckets.push(*pair);
                start = end;
                continue;
            }
            match self.bucket(guard, names, end, end - start).await {
                Ok(pair) => {
                    cache.lock().unwrap_or_else(|e| e.into_inner()).buckets.insert(index, pair);
                    buckets.push(pair);
                    start = end;
                }
                Err(error) if error.is_empty_result() && index + 1 < closed => {}
                Err(error) => return Err(error),
            }
        }
        Ok(buckets)
    }
}

impl PrometheusSource {
    /// An extra metric's (treatment, control) value in every closed bucket
    /// of the step; buckets where either arm has no value are left out.
    pub async fn metric_values(
        &self,
        guard: &PrometheusGuard,
        metric: &super::spec::Metric,
        names: Names<'_>,
        (run_id, step_started_at): (&str, u64),
        interval_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(f64, f64)>, PrometheusError> {
        let lagged = now_ms.saturating_sub(guard.lag.as_millis() as u64);
        let closed = lagged.saturating_sub(step_started_at) / interval_ms.max(1);
        // Ramps are named per environment: the same name may exist in two.
        let key = format!("{}/{}/{}", names.environment, names.ramp, metric.name);
        let step = (run_id.to_owned(), step_started_at);
        let known = {
            let mut cache = self.metric_cache.lock().unwrap_or_else(|e| e.into_inner());
            let entry = cache.entry(key.clone()).or_insert_with(|| (step.clone(), BTreeMap::new()));
            if entry.0 != step {
                *entry = (step.clone(), BTreeMap::new());
            }
            entry.1.clone()
        };
        let window = format!("{}s", (interval_ms / 1000).max(1));
        let mut values = Vec::new();
        for index in 0..closed {
            let value = match known.get(&index) {
                Some(value) => *value,
                None => {
                    let end = step_started_at + (index + 1) * interval_ms;
                    let mut arms = [0.0; 2];
                    let mut missing = false;
                    for (arm, variant) in arms.iter_mut().zip([names.treatment, names.control]) {
                        match self.query(guard, &names.render(&metric.query, variant, &window), end).await {
                            Ok(value) => *arm = value,
                            Err(error) if error.is_empty_result() => missing = true,
                            Err(error) => return Err(error),
                        }
                    }
                    let value = (!missing).then_some((arms[0], arms[1]));
                    let mut cache = self.metric_cache.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(entry) = cache.get_mut(&key).filter(|e| e.0 == step) {
                        entry.1.insert(index, value);
                    }
                    value
                }
            };
            values.extend(value);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::render_template;

    #[test]
    fn templates_are_filled() {
        let query = render_template(
            r#"sum(increase(errors_total{flag="{{flag}}",variant="{{ variant }}"}[{{window}}]))"#,
            &[("flag", "f"), ("variant", "on"), ("window", "60s")],
        );
        assert_eq!(query, r#"sum(increase(errors_total{flag="f",variant="on"}[60s]))"#);
    }
}
