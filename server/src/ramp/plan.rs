//! `rampart ramp plan`: what a ramp file will do at a given traffic before
//! it runs — per step, when it can advance, the smallest regression its
//! guard will catch, and which settings cannot be met.
//!
//! Built on the controller's own statistics: a step advances when the hold
//! has passed, both arms have `minSamples`, and the treatment is proven not
//! worse ([`not_worse`], the same function the decision calls). The plan
//! assumes the treatment is as good as the control (both at the baseline
//! error rate) and uses expected counts, so "advances after" is the time
//! at which the expected evidence first gives the proof; the simulation
//! test below holds it to the controller's behaviour on random outcomes.

use std::time::Duration;

use super::evidence::not_worse;
use super::spec::RampSpec;
use super::stats::detectable_ratio;
use crate::model::Arm;
use rampart_engine::ramp::FULL;

/// Longest a plan looks ahead for the proof: a step that needs more is
/// reported as never advancing.
const HORIZON: Duration = Duration::from_secs(30 * 86_400);

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub percent: f64,
    pub hold: Duration,
    /// When the step may advance (complete, for the last): `None` if not
    /// within thirty days at this traffic.
    pub advances_after: Option<Duration>,
    /// The smallest rate ratio the relative guard detects (≈80 % power)
    /// with the errors expected by the end of the hold; `None` at 100 %
    /// (no control) or without expected errors.
    pub detectable_ratio: Option<f64>,
    pub warnings: Vec<String>,
}

/// A ramp's plan at one traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// Every step's time together: `None` if one never advances.
    pub total: Option<Duration>,
}

/// Plans `spec` for `per_second` evaluations reporting outcomes, failing at
/// `baseline` (a fraction) in both arms.
pub fn plan(spec: &RampSpec, per_second: f64, baseline: f64) -> Plan {
    let interval = spec.interval.as_secs_f64().max(1.0);
    let alpha = 1.0 - spec.guard.relative_confidence;
    let mut steps = Vec::with_capacity(spec.steps.len());
    for step in &spec.steps {
        let share = f64::from(step.basis_points) / f64::from(FULL);
        let has_control = step.basis_points < FULL;
        // Evidence is counted in whole closed intervals.
        let arms = |seconds: f64| {
            let closed = (seconds / interval).floor() * interval;
            let exposures = |rate: f64| (rate * closed).floor() as u64;
            let (n_t, n_c) = (exposures(per_second * share), exposures(per_second * (1.0 - share)));
            let errors = |n: u64| (n as f64 * baseline).round() as u64;
            (Arm { exposures: n_t, errors: errors(n_t) }, Arm { exposures: n_c, errors: errors(n_c) })
        };
        let ready = |seconds: f64| {
            let (treatment, control) = arms(seconds);
            treatment.exposures >= step.min_samples.max(1)
                && (!has_control
                    || (control.exposures >= step.min_samples.max(1) && not_worse(treatment, control, spec)))
        };
        let mut warnings = Vec::new();
        let hold = step.hold.as_secs_f64();
        let proof = first_true(&ready, interval, HORIZON.as_secs_f64());
        let samples = |rate: f64| (rate > 0.0).then(|| step.min_samples as f64 / rate);
        let slowest_arm = if has_control { share.min(1.0 - share) } else { share };
        if let Some(needed) = samples(per_second * slowest_arm)
            && needed > hold
        {
            warnings.push(format!(
                "the hold ({}) is shorter than minSamples ({}) needs at this traffic ({})",
                words(step.hold),
                step.min_samples,
                words(Duration::from_secs_f64(needed))
            ));
        }
        let advances_after = proof.map(|seconds| Duration::from_secs_f64(seconds.max(hold)));
        match advances_after {
            None => warnings.push(if per_second * slowest_arm <= 0.0 {
                "no traffic reaches this step's arms: it would never advance".to_owned()
            } else {
                format!(
                    "would not advance within {}: the proof that the treatment is not worse (ratio ≤ {}, or \
                     difference ≤ {:.3}%) is out of reach at this traffic and baseline",
                    words(HORIZON),
                    spec.guard.advance_max_ratio,
                    spec.guard.max_increase * 100.0
                )
            }),
            Some(after) if after > spec.policy.step_timeout => warnings.push(format!(
                "would reach its step timeout ({}) before it can advance ({})",
                words(spec.policy.step_timeout),
                words(after)
            )),
            Some(_) => {}
        }
        let detectable = if has_control {
            let (treatment, control) = arms(hold.max(interval));
            let errors = (treatment.exposures + control.exposures) as f64 * baseline;
            detectable_ratio(share, errors, alpha)
        } else {
            None
        };
        if let Some(ratio) = detectable
            && ratio > 2.0 * (1.0 + spec.guard.tolerance)
        {
            warnings.push(format!(
                "by the end of the hold the guard only detects regressions of about ×{ratio:.1} or more \
                 (tolerance ×{:.2}): raise the hold or the traffic to guard this step closely",
                1.0 + spec.guard.tolerance
            ));
        }
        steps.push(PlannedStep {
            percent: share * 100.0,
            hold: step.hold,
            advances_after,
            detectable_ratio: detectable,
            warnings,
        });
    }
    let total = steps.iter().map(|s| s.advances_after).sum::<Option<Duration>>();
    Plan { steps, total }
}

/// The first whole interval `t` in `(0, horizon]` with `ready(t)`, by
/// doubling then bisection (readiness only grows with time here).
fn first_true(ready: &impl Fn(f64) -> bool, interval: f64, horizon: f64) -> Option<f64> {
    let mut high = interval;
    while !ready(high) {
        if high >= horizon {
            return None;
        }
        high = (high * 2.0).min(horizon);
    }
    let mut low = 0.0;
    while high - low > interval {
        let middle = ((low + high) / 2.0 / interval).floor() * interval;
        if middle <= low {
            break;
        }
        if ready(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

/// A duration for people: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds.div_ceil(60)),
        3600..86_400 => format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{}d {}h", seconds / 86_400, (seconds % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests;
