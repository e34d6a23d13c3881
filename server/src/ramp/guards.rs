//! The latency and conversion guards' verdicts: pure functions of the
//! step's counts, like the error guard's.
//!
//! Both are proportions, so the error guard's mixture SPRT applies
//! unchanged, each with its own tolerance and its share of the ramp's
//! false-alarm budget:
//!
//! - latency: "slow" (slower than the threshold) plays the part of an
//!   error; a regression is the treatment's slow share above the control's
//!   × (1 + tolerance).
//! - conversion: higher is better, so the arms swap places: a drop of more
//!   than `maxDrop` in the treatment's conversions per exposed user is the
//!   control's rate above the treatment's × 1 / (1 − maxDrop), i.e. a
//!   tolerance of maxDrop / (1 − maxDrop) on the swapped arms. The SPRT
//!   models hits as Poisson counts; for a proportion the binomial variance
//!   is smaller, so the test errs on the side of not rolling back.
//!
//! A guard decides nothing before each arm holds its minimum, and a guard
//! with nothing to read while the step has traffic is *silent*: the ramp
//! holds (`GuardSilent`) rather than reading silence as a pass.

use super::spec::guards::{ConversionGuard, LatencyGuard, Threshold};
use super::stats::MixtureSprt;
use crate::model::{Arm, GuardKind, GuardVerdict, Latency, Pair, Tally, Verdict};

/// Control durations a threshold derived from the control's p95 needs.
pub const MIN_CONTROL_FOR_P95: u64 = 100;

/// Exposed and converted users of one arm in the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conversions {
    pub exposed: u64,
    pub converted: u64,
}

fn verdict(guard: GuardKind, treatment: Tally, control: Tally) -> GuardVerdict {
    GuardVerdict {
        guard,
        treatment,
        control,
        threshold_ms: None,
        lambda: None,
        lambda_threshold: None,
        verdict: Verdict::Inconclusive,
        note: String::new(),
    }
}

/// Λ of "the first arm's hit rate exceeds the second's × (1 + tolerance)"
/// over the step's totals (one bucket: the split is fixed within a step).
fn sprt(first: Tally, second: Tally, tolerance: f64) -> f64 {
    let arm = |tally: Tally| Arm { exposures: tally.samples, errors: tally.hits };
    MixtureSprt::compute(tolerance, &[Pair { treatment: arm(first), control: arm(second) }]).lambda
}

/// The latency guard over the step's durations (`None`: its source did not
/// answer). `min_samples`: durations each arm needs (the step's
/// `minSamples`).
pub fn latency(
    guard: &LatencyGuard,
    durations: Option<&(Latency, Latency)>,
    min_samples: u64,
    has_control: bool,
) -> GuardVerdict {
    let Some((treatment, control)) = durations else {
        let mut unavailable = verdict(GuardKind::Latency, Tally::default(), Tally::default());
        unavailable.verdict = Verdict::Unavailable;
        unavailable.note = "durations could not be read".into();
        return unavailable;
    };
    let threshold = match guard.threshold {
        Threshold::Fixed { millis } => Some(millis),
        Threshold::ControlP95 if control.total() >= MIN_CONTROL_FOR_P95 => control.quantile_bound(0.95),
        Threshold::ControlP95 => None,
    };
    let tally = |latency: &Latency| Tally {
        samples: latency.total(),
        hits: threshold.map_or(0, |millis| latency.slower_than(millis)),
    };
    let mut result = verdict(GuardKind::Latency, tally(treatment), tally(control));
    result.threshold_ms = threshold;
    if !has_control {
        result.verdict = Verdict::NotApplicable;
        result.note = "no control at 100%".into();
        return result;
    }
    let Some(millis) = threshold else {
        result.note = if control.total() < MIN_CONTROL_FOR_P95 {
            format!("the control's p95 needs {MIN_CONTROL_FOR_P95} durations, {} so far", control.total())
        } else {
            "the control's p95 is slower than 10s, the ladder's last bound".into()
        };
        return result;
    };
    let alpha = 1.0 - guard.confidence;
    result.lambda = Some(sprt(result.treatment, result.control, guard.tolerance));
    result.lambda_threshold = Some(1.0 / alpha);
    decide(&mut result, min_samples, format!("slower than {millis}ms"));
    result
}

/// The conversion guard over the step's exposed and converted users
/// (`None`: its source did not answer).
pub fn conversion(
    guard: &ConversionGuard,
    counts: Option<(Conversions, Conversions)>,
    has_control: bool,
) -> GuardVerdict {
    let Some((treatment, control)) = counts else {
        let mut unavailable = verdict(GuardKind::Conversion, Tally::default(), Tally::default());
        unavailable.verdict = Verdict::Unavailable;
        unavailable.note = "conversions could not be read".into();
        return unavailable;
    };
    let tally = |c: Conversions| Tally { samples: c.exposed, hits: c.converted.min(c.exposed) };
    let mut result = verdict(GuardKind::Conversion, tally(treatment), tally(control));
    if !has_control {
        result.verdict = Verdict::NotApplicable;
        result.note = "no control at 100%".into();
        return result;
    }
    let tolerance = guard.max_drop / (1.0 - guard.max_drop);
    result.lambda = Some(sprt(result.control, result.treatment, tolerance));
    result.lambda_threshold = Some(1.0 / (1.0 - guard.confidence));
    decide(&mut result, guard.min_users, format!("'{}' per exposed user", guard.event));
    result
}

/// Fail past the threshold once both arms hold `min`; silent when an arm
/// has nothing; pass when both hold `min`; otherwise inconclusive.
fn decide(result: &mut GuardVerdict, min: u64, what: String) {
    let (t, c) = (result.treatment, result.control);
    let rate = |tally: Tally| 100.0 * tally.hits as f64 / tally.samples.max(1) as f64;
    if t.samples == 0 || c.samples == 0 {
        let silent = if t.samples == 0 { "treatment" } else { "control" };
        result.verdict = Verdict::Unavailable;
        result.note = format!("silent: nothing from the {silent} in this step");
        return;
    }
    result.note = format!("{what}: treatment {:.2}%, control {:.2}%", rate(t), rate(c));
    if t.samples < min || c.samples < min {
        result.verdict = Verdict::Inconclusive;
        result.note.push_str(&format!(" (each arm needs {min})"));
        return;
    }
    let failed = matches!((result.lambda, result.lambda_threshold), (Some(l), Some(th)) if l >= th);
    result.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durations(fast: u64, slow: u64) -> Latency {
        let mut latency = Latency::default();
        latency.add(Latency::slot_of(40.0), fast);
        latency.add(Latency::slot_of(900.0), slow);
        latency
    }

    fn latency_guard(threshold: Threshold) -> LatencyGuard {
        LatencyGuard { threshold, tolerance: 0.2, confidence: 0.99, prometheus: None }
    }

    #[test]
    fn a_slower_treatment_fails_and_an_equal_one_passes() {
        let guard = latency_guard(Threshold::Fixed { millis: 300 });
        let slower = (durations(1500, 500), durations(1900, 100));
        let result = latency(&guard, Some(&slower), 1000, true);
        assert_eq!(result.verdict, Verdict::Fail, "{result:?}");
        assert_eq!((result.treatment.hits, result.control.hits), (500, 100));
        let equal = (durations(1900, 100), durations(1900, 100));
        assert_eq!(latency(&guard, Some(&equal), 1000, true).verdict, Verdict::Pass);
        assert_eq!(latency(&guard, Some(&equal), 5000, true).verdict, Verdict::Inconclusive, "below minSamples");
        assert_eq!(latency(&guard, Some(&equal), 1000, false).verdict, Verdict::NotApplicable);
        assert_eq!(latency(&guard, None, 1000, true).verdict, Verdict::Unavailable);
        let silent = latency(&guard, Some(&(Latency::default(), durations(10, 0))), 1, true);
        assert_eq!(silent.verdict, Verdict::Unavailable);
        assert!(silent.note.contains("treatment"), "{}", silent.note);
    }

    #[test]
    fn the_controls_p95_is_the_threshold_once_it_is_known() {
        let guard = latency_guard(Threshold::ControlP95);
        let few = (durations(10, 0), durations(50, 0));
        let result = latency(&guard, Some(&few), 1, true);
        assert_eq!((result.verdict, result.threshold_ms), (Verdict::Inconclusive, None));
        assert!(result.note.contains("p95 needs 100"), "{}", result.note);
        // Control: 97 % ≤ 50 ms, so its p95 bound is 50 ms; the treatment
        // has 30 % above it.
        let mut control = durations(0, 0);
        control.add(Latency::slot_of(45.0), 1940);
        control.add(Latency::slot_of(120.0), 60);
        let mut treatment = Latency::default();
        treatment.add(Latency::slot_of(45.0), 1400);
        treatment.add(Latency::slot_of(120.0), 600);
        let result = latency(&guard, Some(&(treatment, control)), 1000, true);
        assert_eq!(result.threshold_ms, Some(50));
        assert_eq!(result.verdict, Verdict::Fail, "{result:?}");
    }

    #[test]
    fn a_drop_in_conversions_fails_and_a_rise_passes() {
        let guard = ConversionGuard { event: "checkout".into(), max_drop: 0.1, confidence: 0.99, min_users: 100 };
        let arm = |exposed, converted| Conversions { exposed, converted };
        let dropped = conversion(&guard, Some((arm(2000, 200), arm(2000, 400))), true);
        assert_eq!(dropped.verdict, Verdict::Fail, "{dropped:?}");
        let rose = conversion(&guard, Some((arm(2000, 440), arm(2000, 400))), true);
        assert_eq!(rose.verdict, Verdict::Pass, "{rose:?}");
        let young = conversion(&guard, Some((arm(50, 0), arm(50, 40))), true);
        assert_eq!(young.verdict, Verdict::Inconclusive, "below minUsers nothing is decided");
        assert_eq!(conversion(&guard, Some((arm(0, 0), arm(10, 1))), true).verdict, Verdict::Unavailable);
        // More conversions than exposed users (a forged flood) count as
        // every user converting, no more.
        let flooded = conversion(&guard, Some((arm(2000, 9000), arm(2000, 400))), true);
        assert_eq!(flooded.treatment.hits, 2000);
    }
}
