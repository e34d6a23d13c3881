//! What machine names mean, in words people read: ramp states, reasons and
//! events, times and percentages.

/// A ramp state and reason, said plainly.
pub(crate) fn ramp_reason(state: &str, reason: Option<&str>) -> String {
    let why = reason.map_or("", self::reason);
    let state = match state {
        "RolledBack" => "Rolled back",
        other => other,
    };
    if why.is_empty() { state.to_owned() } else { format!("{state}: {why}") }
}

/// A ramp reason, said plainly.
pub(crate) fn reason(reason: &str) -> &str {
    match reason {
        "NotStarted" => "not started yet",
        "NotBefore" => "waiting for its start time",
        "FlagOff" => "the flag is disabled",
        "ProviderUnreachable" => "its metrics source does not answer",
        "OutsideWindow" => "outside its allowed window",
        "NoTraffic" => "no traffic to judge",
        "InsufficientSamples" => "not enough samples yet",
        "Inconclusive" => "the evidence is not conclusive yet",
        "MetricsUnavailable" => "its metrics are unavailable",
        "StaleData" => "its metrics are stale",
        "SampleRatioMismatch" => "the split of traffic is not what it should be (sample ratio mismatch)",
        "Operator" => "paused by an operator",
        "MissingDataLimit" => "too many checks without data",
        "StepTimeout" => "the step took too long",
        "Regression" => "the treatment is worse than control",
        "ApprovalTimeout" => "nobody approved in time",
        "AbsoluteCeiling" => "the treatment's error rate passed the ceiling",
        "Aborted" => "aborted by an operator",
        "MetricRegression" => "an extra metric regressed",
        "LaterStage" => "a later stage of its release rolled back",
        "PreviousStage" => "waiting for the release's previous stage to complete",
        "Baking" => "holding the step while evidence gathers",
        "AwaitingApproval" => "waiting for approval to go on",
        other => other,
    }
}

/// A ramp event's name in words.
pub(crate) fn event(name: &str) -> String {
    let (would, kind) = match name.strip_prefix("would_") {
        Some(kind) => ("would have ", kind),
        None => ("", name),
    };
    let words = match kind {
        "started" => "started",
        "advanced" => "advanced to the next step",
        "holding" => "held",
        "baking" => "baking",
        "pending" => "pending",
        "paused" => "paused",
        "resumed" => "resumed",
        "approval_requested" => "asked for approval",
        "approved" => "approved",
        "rolled_back" => "rolled back to 0 %",
        "completed" => "completed at 100 %",
        "restarted" => "restarted",
        "config_change_refused" => "refused a change of its file",
        other => other,
    };
    format!("{would}{words}")
}

/// Unix milliseconds as `2026-11-29 16:44:03 UTC`.
pub(crate) fn time(millis: u64) -> String {
    let text = crate::time::rfc3339(millis);
    // 2026-11-29T16:44:03.123Z → 2026-11-29 16:44:03 UTC
    let trimmed = text.split('.').next().unwrap_or(&text).trim_end_matches('Z');
    format!("{} UTC", trimmed.replacen('T', " ", 1))
}

/// How long ago, roughly.
pub(crate) fn ago(now: u64, millis: u64) -> String {
    let seconds = now.saturating_sub(millis) / 1000;
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// A duration in seconds, roughly.
pub(crate) fn duration(seconds: u64) -> String {
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        _ => format!("{:.1} h", seconds as f64 / 3600.0),
    }
}

/// A percentage: whole numbers without decimals.
pub(crate) fn percent(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0} %") } else { format!("{value:.2} %") }
}

/// A rate as a percentage with enough digits for small rates.
pub(crate) fn rate(value: Option<f64>) -> String {
    match value {
        None => "—".into(),
        Some(0.0) => "0 %".into(),
        Some(v) if v < 0.001 => format!("{:.4} %", v * 100.0),
        Some(v) => format!("{:.2} %", v * 100.0),
    }
}

/// A statistic, compactly.
pub(crate) fn number(value: Option<f64>) -> String {
    match value {
        None => "—".into(),
        Some(v) if !v.is_finite() => "∞".into(),
        Some(v) if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) => format!("{v:.2e}"),
        Some(v) => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_words() {
        assert_eq!(ramp_reason("RolledBack", Some("Regression")), "Rolled back: the treatment is worse than control");
        assert_eq!(ramp_reason("Completed", None), "Completed");
        assert_eq!(event("would_advanced"), "would have advanced to the next step");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ago(200_000, 80_000), "2 min ago");
        assert_eq!(percent(5.0), "5 %");
        assert_eq!(percent(2.5), "2.50 %");
        assert_eq!(rate(Some(0.0123)), "1.23 %");
        assert_eq!(number(Some(f64::INFINITY)), "∞");
    }
}
