//! What machine names mean, in words people read: ramp states, reasons and
//! events, times and percentages.

/// A ramp state and reason, said plainly (the words are the model's).
pub(crate) fn ramp_reason(state: &str, reason: Option<&str>) -> String {
    let why = reason.map(|reason| crate::model::words::describe_reason(Some(state), reason).unwrap_or(reason));
    let state = crate::model::words::describe_state(state);
    match why {
        Some(why) if !why.is_empty() => format!("{state}: {why}"),
        _ => state.to_owned(),
    }
}

/// An event's reason, said plainly (shown as it is when it is no reason
/// name: a metric, a refused file's error).
pub(crate) fn reason(reason: &str) -> &str {
    crate::model::words::describe_reason(None, reason).unwrap_or(reason)
}

/// A ramp event's name in words (`would_…`: what a dry run would have done).
pub(crate) fn event(name: &str) -> String {
    let (would, kind) = match name.strip_prefix("would_") {
        Some(kind) => ("would have ", kind),
        None => ("", name),
    };
    let words: &str = match crate::model::EventKind::parse(kind) {
        Some(known) => known.describe(),
        None => kind,
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
