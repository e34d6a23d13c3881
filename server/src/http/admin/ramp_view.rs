//! How the admin API shows a ramp: its status (`GET …/ramps/{env}/{name}`,
//! the answer to a command) and the explanation of its guards
//! (`…/explain`), built from the controller's [`RampView`].

use serde::Serialize;

use crate::model::Evidence;
use crate::ramp::controller::RampView;

/// A ramp as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RampStatus {
    pub environment: String,
    pub name: String,
    pub flag: String,
    pub file: String,
    pub run_id: String,
    pub revision: u64,
    pub seq: u64,
    pub state: String,
    pub reason: Option<String>,
    /// Who paused or rolled back, when someone did.
    pub by: Option<String>,
    /// The step the run is at, or ended at: numbered from 1 (0 before the
    /// first step), as in the history and the logs.
    pub step: usize,
    pub steps: Vec<f64>,
    /// The run's exposure: what its flag serves while the flag is on.
    pub percent: f64,
    /// What users get now: 0 while the flag is off (its kill switch).
    pub effective_percent: f64,
    /// The ramped flag is on (a kill switch turns it off).
    pub flag_enabled: bool,
    pub treatment: String,
    pub control: String,
    pub salt: String,
    pub step_started_at: String,
    /// Seconds of hold left at the current step.
    pub hold_remaining_seconds: u64,
    pub failed_checks: u32,
    pub interval_seconds: f64,
    /// Set when the ramp file is gone or an edit could not be applied.
    pub frozen: bool,
    pub refused_change: Option<String>,
    /// Problems of the last edit of the ramp's file, which was rejected
    /// (the ramp keeps its last good configuration until it is fixed).
    pub file_errors: Vec<String>,
    pub warnings: Vec<String>,
    #[schema(value_type = Object)]
    pub evidence: Option<Evidence>,
}

impl From<RampView> for RampStatus {
    fn from(view: RampView) -> RampStatus {
        let run = &view.run;
        let hold = view.spec.steps.get(run.step).map_or(0, |s| s.hold.as_millis() as u64);
        let mut warnings = view.warnings;
        if view.file_missing {
            warnings.insert(0, "the ramp file is missing: the ramp is frozen at its percent".into());
        }
        RampStatus {
            flag: run.flag.clone(),
            file: view.spec.file.clone(),
            run_id: run.run_id.clone(),
            revision: run.revision,
            seq: run.seq,
            state: run.status.name().into(),
            reason: run.status.reason().map(str::to_owned),
            by: run.status.by().map(str::to_owned),
            step: run.display_step(),
            steps: view.spec.steps.iter().map(|s| f64::from(s.basis_points) / 100.0).collect(),
            percent: run.percent(),
            effective_percent: if view.flag_enabled { run.percent() } else { 0.0 },
            flag_enabled: view.flag_enabled,
            treatment: run.treatment.clone(),
            control: run.control.clone(),
            salt: run.salt.clone(),
            step_started_at: crate::time::rfc3339(run.step_started_at),
            hold_remaining_seconds: if run.is_active() {
                (run.step_started_at + hold).saturating_sub(view.at) / 1000
            } else {
                0
            },
            failed_checks: run.failed_checks,
            interval_seconds: view.spec.interval.as_secs_f64(),
            frozen: view.frozen,
            refused_change: view.refused_change,
            file_errors: view.file_errors,
            warnings,
            evidence: view.evidence,
            environment: view.environment,
            name: view.name,
        }
    }
}

/// What a guard does when it fails.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GuardRole {
    Rollback,
    Advance,
    Hold,
}

/// One guard's verdict at this check.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) enum GuardVerdict {
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "pass")]
    Pass,
    #[serde(rename = "inconclusive")]
    Inconclusive,
    #[serde(rename = "not applicable")]
    NotApplicable,
}

/// A guard's statistic against its threshold.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GuardCheck {
    name: &'static str,
    role: GuardRole,
    statistic: &'static str,
    value: Option<f64>,
    threshold: Option<f64>,
    verdict: GuardVerdict,
}

/// `GET …/explain`: the evidence, each guard with its verdict, and what is
/// missing to advance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Explanation {
    environment: String,
    name: String,
    state: String,
    reason: Option<String>,
    step: usize,
    percent: f64,
    dry_run: bool,
    evidence: Evidence,
    guards: Vec<GuardCheck>,
    detectable_ratio: Option<f64>,
    missing_to_advance: Vec<String>,
}

/// |z| beyond which the sample ratio is a mismatch (docs/ramps.md).
const SRM_THRESHOLD: f64 = 3.29;

impl From<RampView> for Explanation {
    fn from(view: RampView) -> Explanation {
        let spec = view.spec.clone();
        let dry_run = spec.dry_run;
        let status = RampStatus::from(view);
        let evidence = status.evidence.unwrap_or_default();
        let guard = &spec.guard;
        // Fails when the statistic is beyond the threshold.
        let beyond = |statistic: Option<f64>, threshold: Option<f64>| match (statistic, threshold) {
            (Some(s), Some(t)) if s > t => GuardVerdict::Fail,
            (Some(_), Some(_)) => GuardVerdict::Pass,
            _ => GuardVerdict::NotApplicable,
        };
        let proven = |statistic: Option<f64>, threshold: f64| {
            if statistic.is_some_and(|s| s <= threshold) { GuardVerdict::Pass } else { GuardVerdict::Inconclusive }
        };
        let guards = vec![
            GuardCheck {
                name: "absolute ceiling",
                role: GuardRole::Rollback,
                statistic: "Clopper-Pearson lower bound of the treatment error rate",
                value: evidence.ceiling_lower,
                threshold: guard.max_error_rate,
                verdict: beyond(evidence.ceiling_lower, guard.max_error_rate),
            },
            GuardCheck {
                name: "relative regression",
                role: GuardRole::Rollback,
                statistic: "mixture SPRT likelihood ratio",
                value: evidence.lambda,
                threshold: evidence.lambda_threshold,
                verdict: match (evidence.lambda, evidence.lambda_threshold) {
                    (Some(l), Some(t)) if l >= t => GuardVerdict::Fail,
                    (Some(_), Some(_)) => GuardVerdict::Pass,
                    _ => GuardVerdict::NotApplicable,
                },
            },
            GuardCheck {
                name: "not worse, ratio scale",
                role: GuardRole::Advance,
                statistic: "upper bound of the rate ratio",
                value: evidence.ratio_upper,
                threshold: Some(guard.advance_max_ratio),
                verdict: proven(evidence.ratio_upper, guard.advance_max_ratio),
            },
            GuardCheck {
                name: "not worse, difference scale",
                role: GuardRole::Advance,
                statistic: "upper bound of the rate difference",
                value: evidence.difference_upper,
                threshold: Some(guard.max_increase),
                verdict: proven(evidence.difference_upper, guard.max_increase),
            },
            GuardCheck {
                name: "sample ratio",
                role: GuardRole::Hold,
                statistic: "z of the treatment's share of exposures",
                value: evidence.srm_z,
                threshold: Some(SRM_THRESHOLD),
                verdict: beyond(evidence.srm_z.map(f64::abs), Some(SRM_THRESHOLD)),
            },
        ];
        Explanation {
            environment: status.environment,
            name: status.name,
            state: status.state,
            reason: status.reason,
            step: status.step,
            percent: status.percent,
            dry_run,
            detectable_ratio: evidence.detectable_ratio,
            missing_to_advance: evidence.missing_to_advance.clone(),
            evidence,
            guards,
        }
    }
}
