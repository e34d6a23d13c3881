//! The evidence behind a ramp decision: counts per arm and the statistics
//! the guards compared with their thresholds, kept with every decision.

use serde::{Deserialize, Serialize};

/// Counts of one arm (treatment or control).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    pub exposures: u64,
    pub errors: u64,
}

/// Treatment and control counts of one closed time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub treatment: Arm,
    pub control: Arm,
}

/// What an extra metric may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricRole {
    /// A confirmed regression rolls back.
    #[serde(rename = "guard")]
    Guard,
    /// Must show "not worse" before the step may advance.
    #[serde(rename = "gate")]
    Gate,
    /// Recorded only.
    #[serde(rename = "monitor")]
    Monitor,
}

/// An extra metric's verdict at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// A regression, beyond chance.
    #[serde(rename = "fail")]
    Fail,
    /// Not worse, beyond chance.
    #[serde(rename = "pass")]
    Pass,
    #[serde(rename = "inconclusive")]
    Inconclusive,
    /// Its source did not answer.
    #[serde(rename = "unavailable")]
    Unavailable,
    /// No control to compare with (at 100 %).
    #[serde(rename = "not applicable")]
    NotApplicable,
}

/// An extra metric's comparison at this check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricVerdict {
    pub name: String,
    pub role: MetricRole,
    pub dry_run: bool,
    /// Buckets with a value for both arms.
    pub buckets: u64,
    /// Buckets where the treatment was worse than control beyond the tolerance.
    pub worse: u64,
    /// Sign-test p-values: of a regression, and of "not worse".
    pub p_regression: Option<f64>,
    pub p_not_worse: Option<f64>,
    pub verdict: Verdict,
}

/// Which proportion guard a [`GuardVerdict`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuardKind {
    /// The share of requests slower than a threshold (`spec.latency`).
    #[serde(rename = "latency")]
    Latency,
    /// Conversions per exposed user (`spec.conversion`).
    #[serde(rename = "conversion")]
    Conversion,
}

/// One arm of a proportion guard: how many were judged, and how many of
/// them were hits (slower than the threshold; converted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub samples: u64,
    pub hits: u64,
}

/// A latency or conversion guard at this check: the same mixture SPRT as
/// the error guard, on its own proportion and tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardVerdict {
    pub guard: GuardKind,
    pub treatment: Tally,
    pub control: Tally,
    /// Latency: the threshold in milliseconds (given, or the control's p95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_ms: Option<u32>,
    pub lambda: Option<f64>,
    pub lambda_threshold: Option<f64>,
    pub verdict: Verdict,
    /// In words, for the dashboard and `explain`: what the verdict rests
    /// on, or which source is silent.
    pub note: String,
}

/// The evidence behind a decision, reported as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub treatment: Arm,
    pub control: Arm,
    pub buckets: usize,
    pub treatment_rate: Option<f64>,
    pub control_rate: Option<f64>,
    /// Mixture SPRT Λ and the threshold 1/α it is compared with.
    pub lambda: Option<f64>,
    pub lambda_threshold: Option<f64>,
    /// Clopper–Pearson lower bound of the treatment's error rate (ceiling check).
    pub ceiling_lower: Option<f64>,
    pub ratio_estimate: Option<f64>,
    pub ratio_upper: Option<f64>,
    pub difference_upper: Option<f64>,
    /// Smallest ratio the relative guard could detect by the end of the
    /// hold at the current traffic (a guide).
    pub detectable_ratio: Option<f64>,
    /// Sample-ratio check: the expected treatment share and the z statistic
    /// of the observed one (|z| > 3.29 is a mismatch at α = 0.1 %).
    pub expected_share: Option<f64>,
    pub srm_z: Option<f64>,
    /// Extra metrics and their paired sign tests.
    #[serde(default)]
    pub metrics: Vec<MetricVerdict>,
    /// Latency and conversion guards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<GuardVerdict>,
    /// What stands between this step and the next.
    pub missing_to_advance: Vec<String>,
    /// Outcome reports for this step refused before they were counted, by
    /// reason (`rampart_outcomes_refused_total`): evidence that someone
    /// sent more than one source may add, or in a shape a key may not use.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub refused_outcomes: std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_verdicts_keep_their_stored_names() {
        let stored = r#"{"name":"p99","role":"gate","dryRun":false,"buckets":3,"worse":0,"pRegression":null,"pNotWorse":null,"verdict":"not applicable"}"#;
        let verdict: MetricVerdict = serde_json::from_str(stored).expect("stored verdict loads");
        assert_eq!((verdict.role, verdict.verdict), (MetricRole::Gate, Verdict::NotApplicable));
        assert_eq!(serde_json::to_string(&verdict).expect("serialise"), stored);
    }
}
