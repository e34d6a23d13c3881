//! A ramp run: its state machine's states and reasons, and the persisted
//! record the controller writes with compare-and-set (docs/ramps.md).

use serde::{Deserialize, Serialize};

/// Why a ramp has not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingReason {
    #[serde(rename = "NotStarted")]
    NotStarted,
    #[serde(rename = "NotBefore")]
    NotBefore,
    #[serde(rename = "FlagOff")]
    FlagOff,
    /// The metric source does not answer: don't start a ramp you can't watch.
    #[serde(rename = "ProviderUnreachable")]
    ProviderUnreachable,
    #[serde(rename = "OutsideWindow")]
    OutsideWindow,
    /// A release's stage waiting for the stage before it to complete.
    #[serde(rename = "PreviousStage")]
    PreviousStage,
}

impl PendingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::NotStarted => "NotStarted",
            PendingReason::NotBefore => "NotBefore",
            PendingReason::FlagOff => "FlagOff",
            PendingReason::ProviderUnreachable => "ProviderUnreachable",
            PendingReason::OutsideWindow => "OutsideWindow",
            PendingReason::PreviousStage => "PreviousStage",
        }
    }
}

/// Why a ramp cannot decide yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldReason {
    #[serde(rename = "NoTraffic")]
    NoTraffic,
    #[serde(rename = "InsufficientSamples")]
    InsufficientSamples,
    #[serde(rename = "Inconclusive")]
    Inconclusive,
    #[serde(rename = "MetricsUnavailable")]
    MetricsUnavailable,
    #[serde(rename = "StaleData")]
    StaleData,
    #[serde(rename = "SampleRatioMismatch")]
    SampleRatioMismatch,
    /// Evidence passed but advancing is outside the ramp's windows.
    #[serde(rename = "OutsideWindow")]
    OutsideWindow,
    /// A latency or conversion guard has nothing to judge while the step
    /// has traffic: its source is silent, and silence is never a pass.
    #[serde(rename = "GuardSilent")]
    GuardSilent,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::NoTraffic => "NoTraffic",
            HoldReason::InsufficientSamples => "InsufficientSamples",
            HoldReason::Inconclusive => "Inconclusive",
            HoldReason::MetricsUnavailable => "MetricsUnavailable",
            HoldReason::StaleData => "StaleData",
            HoldReason::SampleRatioMismatch => "SampleRatioMismatch",
            HoldReason::OutsideWindow => "OutsideWindow",
            HoldReason::GuardSilent => "GuardSilent",
        }
    }
}

/// Why a ramp is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    #[serde(rename = "Operator")]
    Operator,
    #[serde(rename = "MissingDataLimit")]
    MissingDataLimit,
    #[serde(rename = "StepTimeout")]
    StepTimeout,
    #[serde(rename = "Regression")]
    Regression,
    #[serde(rename = "ApprovalTimeout")]
    ApprovalTimeout,
    /// The flag was turned off (its kill switch): nobody is exposed.
    #[serde(rename = "KillSwitch")]
    KillSwitch,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Operator => "Operator",
            PauseReason::MissingDataLimit => "MissingDataLimit",
            PauseReason::StepTimeout => "StepTimeout",
            PauseReason::Regression => "Regression",
            PauseReason::ApprovalTimeout => "ApprovalTimeout",
            PauseReason::KillSwitch => "KillSwitch",
        }
    }
}

/// Why a ramp was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackReason {
    #[serde(rename = "Regression")]
    Regression,
    #[serde(rename = "AbsoluteCeiling")]
    AbsoluteCeiling,
    #[serde(rename = "Aborted")]
    Aborted,
    #[serde(rename = "MissingDataLimit")]
    MissingDataLimit,
    #[serde(rename = "StepTimeout")]
    StepTimeout,
    #[serde(rename = "SampleRatioMismatch")]
    SampleRatioMismatch,
    #[serde(rename = "ApprovalTimeout")]
    ApprovalTimeout,
    /// An extra metric with role `guard` regressed (its name is in the event).
    #[serde(rename = "MetricRegression")]
    MetricRegression,
    /// A later stage of the release rolled back, and the release says to
    /// take the earlier stages back too (`rollbackEarlierStages`).
    #[serde(rename = "LaterStage")]
    LaterStage,
    /// The latency guard (`spec.latency`): more of the treatment's requests
    /// are slower than the threshold than the tolerance allows.
    #[serde(rename = "LatencyRegression")]
    LatencyRegression,
    /// The conversion guard (`spec.conversion`): conversions per exposed
    /// user dropped by more than the ramp allows.
    #[serde(rename = "ConversionDrop")]
    ConversionDrop,
}

impl RollbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackReason::Regression => "Regression",
            RollbackReason::AbsoluteCeiling => "AbsoluteCeiling",
            RollbackReason::Aborted => "Aborted",
            RollbackReason::MissingDataLimit => "MissingDataLimit",
            RollbackReason::StepTimeout => "StepTimeout",
            RollbackReason::SampleRatioMismatch => "SampleRatioMismatch",
            RollbackReason::ApprovalTimeout => "ApprovalTimeout",
            RollbackReason::MetricRegression => "MetricRegression",
            RollbackReason::LaterStage => "LaterStage",
            RollbackReason::LatencyRegression => "LatencyRegression",
            RollbackReason::ConversionDrop => "ConversionDrop",
        }
    }
}

/// The state of a run (docs/ramps.md, "States").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum Status {
    #[serde(rename = "Pending")]
    Pending { reason: PendingReason },
    /// At a step, collecting evidence (`Baking`).
    #[serde(rename = "Ramping")]
    Ramping,
    /// At a step whose evidence passed, waiting for `approve`.
    #[serde(rename = "AwaitingApproval")]
    AwaitingApproval,
    #[serde(rename = "Holding")]
    Holding { reason: HoldReason },
    #[serde(rename = "Paused")]
    Paused { reason: PauseReason, by: String },
    #[serde(rename = "RolledBack")]
    RolledBack { reason: RollbackReason, by: String },
    #[serde(rename = "Completed")]
    Completed,
}

impl Status {
    /// Every name [`Status::name`] returns (one gauge per state).
    pub const NAMES: [&'static str; 6] = ["Pending", "Ramping", "Holding", "Paused", "RolledBack", "Completed"];

    pub fn is_terminal(&self) -> bool {
        matches!(self, Status::RolledBack { .. } | Status::Completed)
    }

    /// The state as operators see it (awaiting approval is ramping).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending { .. } => "Pending",
            Status::Ramping | Status::AwaitingApproval => "Ramping",
            Status::Holding { .. } => "Holding",
            Status::Paused { .. } => "Paused",
            Status::RolledBack { .. } => "RolledBack",
            Status::Completed => "Completed",
        }
    }

    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Status::Pending { reason } => Some(reason.as_str()),
            Status::Holding { reason } => Some(reason.as_str()),
            Status::Paused { reason, .. } => Some(reason.as_str()),
            Status::RolledBack { reason, .. } => Some(reason.as_str()),
            Status::Ramping => Some("Baking"),
            Status::AwaitingApproval => Some("AwaitingApproval"),
            Status::Completed => None,
        }
    }

    /// Who paused or rolled back, when someone did.
    pub fn by(&self) -> Option<&str> {
        match self {
            Status::Paused { by, .. } | Status::RolledBack { by, .. } => Some(by),
            _ => None,
        }
    }
}

/// What a run ramps: fixed for the run's whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub revision: u64,
    pub flag: String,
    pub treatment: String,
    pub control: String,
    pub salt: String,
    /// A dry run never exposes anyone.
    pub dry_run: bool,
}

/// One run of a ramp, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub revision: u64,
    /// Grows with every persisted change; writes are compare-and-set on it.
    pub seq: u64,
    #[serde(flatten)]
    pub status: Status,
    /// Index into the spec's steps (shown to people numbered from 1).
    pub step: usize,
    /// Current exposure, derived only from persisted transitions.
    pub basis_points: u32,
    /// Unix milliseconds; the hold is wall time since then.
    pub step_started_at: u64,
    /// When the step timeout started counting: the step start, or the
    /// last `resume` (a resumed ramp gets a full timeout again).
    #[serde(default)]
    pub timeout_from: u64,
    pub started_at: u64,
    pub updated_at: u64,
    /// Consecutive checks without a usable observation.
    pub failed_checks: u32,
    /// The current step's approval was granted.
    #[serde(default)]
    pub approved: bool,
    /// When the current step asked for approval (unix ms).
    #[serde(default)]
    pub approval_requested_at: Option<u64>,
    pub flag: String,
    pub treatment: String,
    pub control: String,
    pub salt: String,
    /// A dry run never exposes anyone; fixed for the run.
    #[serde(default)]
    pub dry_run: bool,
}

impl Run {
    /// A new run of `target`, not started.
    pub fn new(target: Target, run_id: String, now: u64) -> Run {
        Run {
            run_id,
            revision: target.revision,
            seq: 0,
            status: Status::Pending { reason: PendingReason::NotStarted },
            step: 0,
            basis_points: 0,
            step_started_at: now,
            timeout_from: now,
            started_at: now,
            updated_at: now,
            failed_checks: 0,
            approved: false,
            approval_requested_at: None,
            flag: target.flag,
            treatment: target.treatment,
            control: target.control,
            salt: target.salt,
            dry_run: target.dry_run,
        }
    }
    /// The step as people count it: 1 for the first, 0 before the run
    /// starts (what the admin API and the dashboard show).
    pub fn display_step(&self) -> usize {
        if matches!(self.status, Status::Pending { .. }) { 0 } else { self.step + 1 }
    }

    pub fn percent(&self) -> f64 {
        f64::from(self.basis_points) / 100.0
    }

    /// Whether the run is at a step (started and not ended).
    pub fn is_active(&self) -> bool {
        !matches!(self.status, Status::Pending { .. }) && !self.status.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_keep_their_stored_names() {
        let stored = r#"{"runId":"r","revision":1,"seq":3,"state":"Paused","reason":"Operator","by":"ana","step":1,"basisPoints":2500,"stepStartedAt":5,"timeoutFrom":5,"startedAt":1,"updatedAt":6,"failedChecks":0,"approved":false,"approvalRequestedAt":null,"flag":"f","treatment":"on","control":"off","salt":"s","dryRun":false}"#;
        let run: Run = serde_json::from_str(stored).expect("stored run loads");
        assert_eq!(run.status, Status::Paused { reason: PauseReason::Operator, by: "ana".into() });
        assert_eq!(serde_json::to_string(&run).expect("serialise"), stored);
        let held: Status =
            serde_json::from_str(r#"{"state":"Holding","reason":"SampleRatioMismatch"}"#).expect("holding");
        assert_eq!(held.reason(), Some("SampleRatioMismatch"));
    }
}
