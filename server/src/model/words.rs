//! What states, reasons and events mean, in words people read (the
//! dashboard, and anything else that explains a ramp). Each enum's words
//! are an exhaustive `match` here, next to the enum, so a new variant does
//! not compile until it is said in words — the dashboard used to match the
//! names as strings with a fallback, and a new reason (`KillSwitch`) showed
//! up raw.

use serde::de::DeserializeOwned;

use super::{EventKind, HoldReason, PauseReason, PendingReason, RollbackReason};

impl PendingReason {
    pub fn describe(self) -> &'static str {
        match self {
            PendingReason::NotStarted => "not started yet",
            PendingReason::NotBefore => "waiting for its start time",
            PendingReason::FlagOff => "the flag is disabled",
            PendingReason::ProviderUnreachable => "its metrics source does not answer",
            PendingReason::OutsideWindow => "outside its allowed window",
            PendingReason::PreviousStage => "waiting for the release's previous stage to complete",
        }
    }
}

impl HoldReason {
    pub fn describe(self) -> &'static str {
        match self {
            // The evidence is silent: say where it should come from.
            HoldReason::NoTraffic => {
                "no traffic to judge: no outcome reports, OTLP spans or metric points reached this step \
                 (check the reporters' and exporters' endpoint and key)"
            }
            HoldReason::InsufficientSamples => "not enough samples yet",
            HoldReason::Inconclusive => "the evidence is not conclusive yet",
            HoldReason::MetricsUnavailable => "its metrics are unavailable",
            HoldReason::StaleData => "its metrics are stale",
            HoldReason::SampleRatioMismatch => "the split of traffic is not what it should be (sample ratio mismatch)",
            HoldReason::OutsideWindow => "outside its allowed window",
            HoldReason::GuardSilent => "a guard's source is silent",
        }
    }
}

impl PauseReason {
    pub fn describe(self) -> &'static str {
        match self {
            PauseReason::Operator => "paused by an operator",
            PauseReason::MissingDataLimit => "too many checks without data",
            PauseReason::StepTimeout => "the step took too long",
            PauseReason::Regression => "the treatment is worse than control",
            PauseReason::ApprovalTimeout => "nobody approved in time",
            PauseReason::KillSwitch => "the flag's kill switch is on: nobody is exposed",
        }
    }
}

impl RollbackReason {
    pub fn describe(self) -> &'static str {
        match self {
            RollbackReason::Regression => "the treatment is worse than control",
            RollbackReason::AbsoluteCeiling => "the treatment's error rate passed the ceiling",
            RollbackReason::Aborted => "aborted by an operator",
            RollbackReason::MissingDataLimit => "too many checks without data",
            RollbackReason::StepTimeout => "the step took too long",
            RollbackReason::SampleRatioMismatch => "the split of traffic stayed wrong (sample ratio mismatch)",
            RollbackReason::ApprovalTimeout => "nobody approved in time",
            RollbackReason::MetricRegression => "an extra metric regressed",
            RollbackReason::LaterStage => "a later stage of its release rolled back",
            RollbackReason::LatencyRegression => "the treatment is slower than the control beyond the tolerance",
            RollbackReason::ConversionDrop => "conversions per exposed user dropped beyond the tolerance",
        }
    }
}

impl EventKind {
    pub fn describe(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Advanced => "advanced to the next step",
            EventKind::Holding => "held",
            EventKind::Baking => "baking",
            EventKind::Pending => "pending",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::ApprovalRequested => "asked for approval",
            EventKind::Approved => "approved",
            EventKind::RolledBack => "rolled back to 0 %",
            EventKind::Completed => "completed at 100 %",
            EventKind::Restarted => "restarted",
            EventKind::ConfigChangeRefused => "refused a change of its file",
        }
    }
}

/// A state as people say it (`RolledBack` → "Rolled back").
pub fn describe_state(state: &str) -> &str {
    match state {
        "RolledBack" => "Rolled back",
        "AwaitingApproval" => "Awaiting approval",
        other => other,
    }
}

/// A stored reason name in words, read as the reason of `state` when one
/// is given (the same name can mean a pause or a rollback), else as any
/// reason; `None` for text that is no reason name (a metric's name, a
/// refused file's error), which is shown as it is.
pub fn describe_reason(state: Option<&str>, reason: &str) -> Option<&'static str> {
    fn parse<T: DeserializeOwned>(name: &str) -> Option<T> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
    let pending = || parse::<PendingReason>(reason).map(PendingReason::describe);
    let hold = || parse::<HoldReason>(reason).map(HoldReason::describe);
    let pause = || parse::<PauseReason>(reason).map(PauseReason::describe);
    let rollback = || parse::<RollbackReason>(reason).map(RollbackReason::describe);
    let ramping = || match reason {
        "Baking" => Some("holding the step while evidence gathers"),
        "AwaitingApproval" => Some("waiting for approval to go on"),
        _ => None,
    };
    match state {
        Some("Pending") => pending(),
        Some("Holding") => hold(),
        Some("Paused") => pause(),
        Some("RolledBack") => rollback(),
        Some("Ramping") => ramping(),
        _ => rollback().or_else(pause).or_else(hold).or_else(pending).or_else(ramping),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_every_state_is_said_in_words() {
        let cases = [
            ("Paused", "KillSwitch", "kill switch"),
            ("RolledBack", "Regression", "worse than control"),
            ("Holding", "OutsideWindow", "window"),
            ("Ramping", "Baking", "evidence gathers"),
        ];
        for (state, reason, words) in cases {
            let said = describe_reason(Some(state), reason).unwrap_or_default();
            assert!(said.contains(words), "{state}/{reason}: {said}");
        }
        assert_eq!(describe_reason(None, "p99 latency"), None, "not a reason name: shown as it is");
        assert_eq!(describe_reason(None, "AbsoluteCeiling"), Some("the treatment's error rate passed the ceiling"));
        for kind in EventKind::ALL {
            assert!(!kind.describe().is_empty());
        }
    }
}
