//! A ramp file as written: serde shapes with unknown fields rejected,
//! checked and completed by [`super::check`] into a [`super::RampSpec`].

use serde::Deserialize;

use super::{Action, Direction, MetricRole, Severity, SrmAction, Unit};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawFile {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) metadata: RawMetadata,
    pub(super) spec: RawSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetadata {
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSpec {
    pub(super) environment: Option<String>,
    pub(super) flag: String,
    pub(super) treatment: String,
    pub(super) control: Option<String>,
    pub(super) salt: Option<String>,
    pub(super) revision: Option<u64>,
    pub(super) start: Option<RawStart>,
    pub(super) interval: Option<String>,
    pub(super) steps: Vec<RawStep>,
    #[serde(default)]
    pub(super) guard: RawGuard,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    pub(super) windows: Option<crate::ramp::windows::RawWindows>,
    #[serde(default)]
    pub(super) metrics: Vec<RawMetric>,
    #[serde(default)]
    pub(super) notify: Vec<RawNotify>,
    pub(super) dry_run: Option<bool>,
    pub(super) alerts: Option<RawAlerts>,
    pub(super) latency: Option<super::guards::RawLatency>,
    pub(super) conversion: Option<super::guards::RawConversion>,
}

/// `alerts`: what an Alertmanager alert naming the ramp does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAlerts {
    pub(super) on_firing: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetric {
    pub(super) name: String,
    pub(super) role: MetricRole,
    pub(super) source: Option<String>,
    pub(super) query: String,
    pub(super) direction: Option<Direction>,
    #[serde(default)]
    pub(super) relative: RawRelative,
    pub(super) min_buckets: Option<u64>,
    #[serde(default)]
    pub(super) dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawNotify {
    pub(super) webhook: String,
    pub(super) secret_ref: Option<String>,
    #[serde(default)]
    pub(super) events: Vec<String>,
    pub(super) min_severity: Option<Severity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPrometheus {
    pub(super) url: Option<String>,
    pub(super) errors: String,
    pub(super) total: String,
    pub(super) lag: Option<String>,
    pub(super) token_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawStart {
    pub(super) not_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawStep {
    pub(super) percent: Number,
    pub(super) hold: Option<String>,
    pub(super) min_samples: Option<u64>,
    pub(super) approve: Option<bool>,
}

/// A number, or a string like `"2%"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Number {
    Float(f64),
    Text(String),
}

impl Number {
    /// The value in percent units: `2`, `2.0` and `"2%"` are all 2 %.
    pub(super) fn percent(&self) -> Option<f64> {
        match self {
            Number::Float(v) => Some(*v),
            Number::Text(text) => text.trim().trim_end_matches('%').trim().parse().ok(),
        }
        .filter(|v: &f64| v.is_finite())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawGuard {
    pub(super) source: Option<String>,
    pub(super) prometheus: Option<RawPrometheus>,
    pub(super) min_samples: Option<u64>,
    pub(super) unit: Option<Unit>,
    #[serde(default)]
    pub(super) absolute: RawAbsolute,
    #[serde(default)]
    pub(super) relative: RawRelative,
    pub(super) critical: Option<bool>,
    #[serde(default)]
    pub(super) spans: super::spans::RawSpans,
    pub(super) otlp_metric: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAbsolute {
    pub(super) max_error_rate: Option<Number>,
    pub(super) confidence: Option<Number>,
    pub(super) max_increase: Option<Number>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRelative {
    pub(super) tolerance: Option<Number>,
    pub(super) confidence: Option<Number>,
    pub(super) advance_max_ratio: Option<f64>,
    pub(super) advance_confidence: Option<Number>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPolicy {
    pub(super) on_regression: Option<Action>,
    pub(super) on_missing_data: Option<RawMissingData>,
    pub(super) on_step_timeout: Option<RawTimeout>,
    pub(super) on_sample_ratio_mismatch: Option<SrmAction>,
    pub(super) approval_timeout: Option<RawTimeout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMissingData {
    pub(super) pause_after_failed_checks: Option<u32>,
    pub(super) then: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawTimeout {
    pub(super) after: String,
    pub(super) then: Option<Action>,
}

// ---- defaults (documented in docs/ramps.md) --------------------------------
