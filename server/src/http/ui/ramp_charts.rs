//! The four charts of a ramp's run: exposure, error rates per check,
//! the sequential evidence, samples against the minimum. They share one
//! time axis and mark the same moments (step boundaries, the rollback), so
//! an operator can read a burst of errors across all four at one place.
//!
//! The controller records each step's counts cumulatively (they start again
//! at every step); the error chart plots what each check added, because a
//! burst in the last minute of an hour-long step is invisible in the
//! step's average.

use maud::{Markup, html};

use super::charts::{Band, Chart, Marker, Rule, Series, tick, wilson};
use super::words;
use crate::ramp::controller::checks::CheckPoint;

/// The run's charts.
pub(crate) fn render(checks: &[CheckPoint], min_samples: u64, max_error_rate: Option<f64>) -> Markup {
    let domain = checks.first().zip(checks.last()).map(|(first, last)| (first.at, last.at));
    let markers = || moments(checks);
    html! {
        (exposure(checks, domain, markers()))
        (errors(checks, max_error_rate, domain, markers()))
        (evidence(checks, domain, markers()))
        (samples(checks, min_samples, domain, markers()))
    }
}

/// What one check added to its step: (errors, exposures) per arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Increment {
    pub(crate) at: u64,
    pub(crate) treatment: (u64, u64),
    pub(crate) control: (u64, u64),
}

/// Each check's own counts: the difference to the previous check of the
/// same step, or the check's counts when it is the first of its step (or
/// the counts went down: a restarted series).
pub(crate) fn increments(checks: &[CheckPoint]) -> Vec<Increment> {
    let mut previous: Option<&CheckPoint> = None;
    let mut out = Vec::with_capacity(checks.len());
    for check in checks {
        let base = previous.filter(|p| {
            p.step == check.step
                && p.treatment_exposures <= check.treatment_exposures
                && p.treatment_errors <= check.treatment_errors
                && p.control_exposures <= check.control_exposures
                && p.control_errors <= check.control_errors
        });
        let (te, tn, ce, cn) = base.map_or((0, 0, 0, 0), |p| {
            (p.treatment_errors, p.treatment_exposures, p.control_errors, p.control_exposures)
        });
        out.push(Increment {
            at: check.at,
            treatment: (check.treatment_errors - te, check.treatment_exposures - tn),
            control: (check.control_errors - ce, check.control_exposures - cn),
        });
        previous = Some(check);
    }
    out
}

/// Step boundaries (where the exposure changed) and the rollback.
fn moments(checks: &[CheckPoint]) -> Vec<Marker> {
    let mut markers = Vec::new();
    for pair in checks.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        if now.rolled_back && !before.rolled_back {
            markers.push(Marker { at: now.at, label: "rolled back".into(), class: "marker" });
        } else if !now.rolled_back && (now.percent - before.percent).abs() > f64::EPSILON {
            markers.push(Marker { at: now.at, label: words::percent(now.percent), class: "marker-step" });
        }
    }
    if let Some(first) = checks.first().filter(|c| c.rolled_back) {
        markers.push(Marker { at: first.at, label: "rolled back".into(), class: "marker" });
    }
    markers
}

fn rate(errors: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| errors as f64 / total as f64 * 100.0)
}

fn exposure(checks: &[CheckPoint], domain: Option<(u64, u64)>, markers: Vec<Marker>) -> Markup {
    Chart {
        id: "chart-exposure",
        title: "Exposure over time",
        description: match checks.last() {
            Some(last) => format!("The treatment's share of traffic, now {}.", words::percent(last.percent)),
            None => "No checks yet.".into(),
        },
        series: vec![Series {
            label: "exposure %",
            class: "series-exposure",
            points: checks.iter().map(|c| (c.at, c.percent)).collect(),
            steps: true,
        }],
        bands: vec![],
        rules: vec![],
        log: false,
        format: |v| format!("{v:.0} %"),
        markers,
        domain,
    }
    .render()
}

fn errors(
    checks: &[CheckPoint],
    max_error_rate: Option<f64>,
    domain: Option<(u64, u64)>,
    markers: Vec<Marker>,
) -> Markup {
    let increments = increments(checks);
    let line = |arm: fn(&Increment) -> (u64, u64)| -> Vec<(u64, f64)> {
        increments.iter().filter_map(|i| rate(arm(i).0, arm(i).1).map(|r| (i.at, r))).collect()
    };
    let band = |arm: fn(&Increment) -> (u64, u64)| -> Vec<(u64, f64, f64)> {
        increments
            .iter()
            .filter_map(|i| wilson(arm(i).0, arm(i).1).map(|(low, high)| (i.at, low * 100.0, high * 100.0)))
            .collect()
    };
    let description = match (increments.last(), checks.last()) {
        (Some(i), Some(c)) => format!(
            "At the last check: treatment {} errors in {} exposures ({}), control {} in {} ({}); since the step began: treatment {}, control {}. Shaded: 95 % intervals.{}",
            i.treatment.0,
            i.treatment.1,
            words::rate(rate(i.treatment.0, i.treatment.1).map(|r| r / 100.0)),
            i.control.0,
            i.control.1,
            words::rate(rate(i.control.0, i.control.1).map(|r| r / 100.0)),
            words::rate(rate(c.treatment_errors, c.treatment_exposures).map(|r| r / 100.0)),
            words::rate(rate(c.control_errors, c.control_exposures).map(|r| r / 100.0)),
            max_error_rate.map_or(String::new(), |m| format!(
                " The treatment is rolled back above {}.",
                words::percent(m * 100.0)
            )),
        ),
        _ => "No checks yet.".into(),
    };
    Chart {
        id: "chart-errors",
        title: "Error rates per check, with 95 % intervals",
        description,
        series: vec![
            Series { label: "treatment", class: "series-treatment", points: line(|i| i.treatment), steps: false },
            Series { label: "control", class: "series-control", points: line(|i| i.control), steps: false },
        ],
        bands: vec![
            Band { class: "band-treatment", points: band(|i| i.treatment) },
            Band { class: "band-control", points: band(|i| i.control) },
        ],
        rules: max_error_rate
            .map(|m| Rule {
                label: format!("maxErrorRate {}", words::percent(m * 100.0)),
                value: m * 100.0,
                class: "rule-bad",
            })
            .into_iter()
            .collect(),
        log: false,
        format: |v| format!("{} %", tick(v)),
        markers,
        domain,
    }
    .render()
}

fn evidence(checks: &[CheckPoint], domain: Option<(u64, u64)>, markers: Vec<Marker>) -> Markup {
    let threshold = checks.iter().rev().find_map(|c| c.lambda_threshold);
    let points: Vec<(u64, f64)> = checks.iter().filter_map(|c| c.lambda.map(|l| (c.at, l))).collect();
    let description = match (points.last(), threshold) {
        (Some((_, lambda)), Some(threshold)) => format!(
            "The evidence of a regression (likelihood ratio) is {} against the rollback threshold {}.",
            words::number(Some(*lambda)),
            words::number(Some(threshold))
        ),
        _ => "No sequential evidence yet.".into(),
    };
    Chart {
        id: "chart-evidence",
        title: "Evidence of a regression (log scale) against its threshold",
        description,
        series: vec![Series { label: "likelihood ratio Λ", class: "series-evidence", points, steps: false }],
        bands: vec![],
        rules: threshold
            .map(|value| Rule { label: format!("rollback at {}", tick(value)), value, class: "rule-bad" })
            .into_iter()
            .collect(),
        log: true,
        format: tick,
        markers,
        domain,
    }
    .render()
}

fn samples(checks: &[CheckPoint], min_samples: u64, domain: Option<(u64, u64)>, markers: Vec<Marker>) -> Markup {
    let arm = |exposures: fn(&CheckPoint) -> u64| -> Vec<(u64, f64)> {
        checks.iter().map(|c| (c.at, exposures(c) as f64)).collect()
    };
    Chart {
        id: "chart-samples",
        title: "Samples at this step against the minimum",
        description: match checks.last() {
            Some(c) => format!(
                "Treatment {} and control {} exposures; {} each are needed to advance.",
                c.treatment_exposures, c.control_exposures, min_samples
            ),
            None => "No checks yet.".into(),
        },
        series: vec![
            Series {
                label: "treatment",
                class: "series-treatment",
                points: arm(|c| c.treatment_exposures),
                steps: false,
            },
            Series { label: "control", class: "series-control", points: arm(|c| c.control_exposures), steps: false },
        ],
        bands: vec![],
        rules: vec![Rule { label: format!("minSamples {min_samples}"), value: min_samples as f64, class: "rule-goal" }],
        log: false,
        format: |v| format!("{v:.0}"),
        markers,
        domain,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(at_minute: u64, step: usize, percent: f64, treatment: (u64, u64), control: (u64, u64)) -> CheckPoint {
        CheckPoint {
            at: 1_700_000_000_000 + at_minute * 60_000,
            percent,
            step,
            treatment_exposures: treatment.1,
            treatment_errors: treatment.0,
            control_exposures: control.1,
            control_errors: control.0,
            lambda: Some(1.0),
            lambda_threshold: Some(100.0),
            rolled_back: false,
        }
    }

    /// The issue's case: a 13.7 % burst in the last check of a quiet step
    /// moved the step's average from 1 % to 1.94 %; per check it is 13.7 %.
    #[test]
    fn a_burst_shows_at_its_own_rate_not_the_steps_average() {
        let checks = [
            check(0, 0, 5.0, (5, 500), (50, 5000)),
            check(1, 0, 5.0, (10, 1000), (100, 10_000)),
            check(2, 0, 5.0, (21, 1080), (108, 10_800)),
        ];
        let increments = increments(&checks);
        assert_eq!(increments[1].treatment, (5, 500));
        assert_eq!(increments[2].treatment, (11, 80), "what the last check added");
        let text = render(&checks, 1000, Some(0.02)).into_string();
        assert!(text.contains("treatment 11 errors in 80 exposures (13.75 %)"), "{text}");
        assert!(text.contains("maxErrorRate 2 %"), "the ceiling is drawn");
    }

    #[test]
    fn a_new_step_starts_its_counts_again_and_is_marked() {
        let checks = [
            check(0, 0, 5.0, (1, 100), (10, 1000)),
            // The advancing check still counts step 0 and decides 25 %.
            check(1, 0, 25.0, (2, 200), (20, 2000)),
            check(2, 1, 25.0, (3, 50), (2, 150)),
            check(3, 1, 25.0, (4, 400), (4, 1200)),
        ];
        let increments = increments(&checks);
        assert_eq!(increments[1].treatment, (1, 100));
        assert_eq!(increments[2].treatment, (3, 50), "the first check of a step is its own");
        assert_eq!(increments[3].treatment, (1, 350));
        let markers = moments(&checks);
        assert_eq!(markers.len(), 1);
        assert_eq!((markers[0].at, markers[0].label.as_str()), (checks[1].at, "25 %"));
        let text = render(&checks, 1000, None).into_string();
        assert_eq!(text.matches(r#"class="marker-step""#).count(), 4, "on every chart");
        assert!(!text.contains("maxErrorRate"), "no ceiling configured, none drawn");
    }

    #[test]
    fn the_four_charts_share_one_time_axis() {
        // The error chart has no point at the first check (no exposures yet)
        // and still starts where the others do.
        let checks = [check(0, 0, 5.0, (0, 0), (0, 0)), check(30, 0, 5.0, (3, 300), (30, 3000))];
        let text = render(&checks, 1000, None).into_string();
        let first_ticks: Vec<String> = text
            .split(r#"class="tick time""#)
            .skip(1)
            .map(|rest| {
                // The label's text without its markup (the zone is a <tspan>).
                let label = rest.split("</text>").next().unwrap_or("");
                let mut text = String::new();
                let mut in_tag = false;
                for c in label.split_once('>').map_or("", |(_, t)| t).chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        c if !in_tag => text.push(c),
                        _ => {}
                    }
                }
                text
            })
            .filter(|t| t.ends_with("UTC"))
            .collect();
        assert_eq!(first_ticks.len(), 4, "{first_ticks:?}");
        assert!(first_ticks.iter().all(|t| *t == first_ticks[0]), "{first_ticks:?}");
    }
}
