//! The evidence a ramp decision is made on: counts per arm from an
//! observation, the guard statistics (exact bounds, mixture SPRT), the
//! extra metrics' sign tests, the sample-ratio check, and — for operators
//! — what is still missing to advance. Pure functions, like the decision.

use super::guards::{self, Conversions};
use super::spec::{Direction, RampSpec};
use super::stats::{self, MixtureSprt, SprtSums};
use crate::model::{Arm, Evidence, GuardVerdict, HoldReason, Latency, MetricVerdict, Pair, Run, Status, Verdict};
use rampart_engine::ramp::FULL;

/// An extra metric's (treatment, control) value per closed bucket, or
/// `None` when its source could not answer.
pub type MetricValues = Option<Vec<(f64, f64)>>;

/// What the metric source saw in the current step's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Closed buckets only (older than the watermark), oldest first.
    pub buckets: Vec<Pair>,
    /// Why the observation cannot be used, if it cannot.
    pub missing: Option<HoldReason>,
    /// Whether the flag exists and is enabled.
    pub flag_enabled: bool,
    /// The treatment's expected share of exposures, when it is known (the
    /// flag has no rules of its own, so the ramp alone splits): for the
    /// sample-ratio check.
    pub expected_share: Option<f64>,
    /// Extra metrics' per-bucket (treatment, control) values, by name;
    /// `None` when the source could not answer.
    pub metrics: Vec<(String, MetricValues)>,
    /// The mixture SPRT's sums over the first `sums.buckets()` of
    /// `buckets`, kept by the observer between ticks: the decision adds
    /// only the buckets after them.
    pub sprt: Option<SprtSums>,
    /// For a release's stage: the stage before it has not completed yet,
    /// so this one may not start.
    pub previous_stage_open: bool,
    /// The step's durations, (treatment, control), when the ramp has a
    /// latency guard; `None` when they could not be read.
    pub latency: Option<(Latency, Latency)>,
    /// The step's exposed and converted users, (treatment, control), when
    /// the ramp has a conversion guard; `None` when they could not be read.
    pub conversions: Option<(Conversions, Conversions)>,
}

/// The mixture SPRT over the observation's buckets, from the kept sums
/// when they were made for this tolerance and cover a prefix.
fn mixture(tolerance: f64, observation: &Observation) -> MixtureSprt {
    match &observation.sprt {
        Some(kept) if kept.is_for(tolerance) && kept.buckets() <= observation.buckets.len() => {
            let mut sums = kept.clone();
            sums.add(&observation.buckets[kept.buckets()..]);
            sums.result()
        }
        _ => MixtureSprt::compute(tolerance, &observation.buckets),
    }
}

fn metric_verdicts(spec: &RampSpec, observation: &Observation, has_control: bool) -> Vec<MetricVerdict> {
    spec.metrics
        .iter()
        .map(|metric| {
            let mut verdict = MetricVerdict {
                name: metric.name.clone(),
                role: metric.role,
                dry_run: metric.dry_run,
                buckets: 0,
                worse: 0,
                p_regression: None,
                p_not_worse: None,
                verdict: Verdict::NotApplicable,
            };
            if !has_control {
                verdict.verdict = Verdict::NotApplicable;
                return verdict;
            }
            let values =
                observation.metrics.iter().find(|(name, _)| *name == metric.name).and_then(|(_, v)| v.as_ref());
            let Some(values) = values else {
                verdict.verdict = Verdict::Unavailable;
                return verdict;
            };
            let pairs: Vec<&(f64, f64)> = values.iter().filter(|(t, c)| t.is_finite() && c.is_finite()).collect();
            let worse = pairs
                .iter()
                .filter(|(t, c)| match metric.direction {
                    Direction::LowerIsBetter => *t > c * (1.0 + metric.tolerance),
                    Direction::HigherIsBetter => *t < c * (1.0 - metric.tolerance).max(0.0),
                })
                .count() as u64;
            let n = pairs.len() as u64;
            verdict.buckets = n;
            verdict.worse = worse;
            if n < metric.min_buckets {
                verdict.verdict = Verdict::Inconclusive;
                return verdict;
            }
            let p_regression = stats::sign_test(n, worse);
            let p_not_worse = stats::sign_test(n, n - worse);
            verdict.p_regression = Some(p_regression);
            verdict.p_not_worse = Some(p_not_worse);
            verdict.verdict = if p_regression < 1.0 - metric.confidence {
                Verdict::Fail
            } else if p_not_worse < 1.0 - metric.advance_confidence {
                Verdict::Pass
            } else {
                Verdict::Inconclusive
            };
            verdict
        })
        .collect()
}

/// The latency and conversion guards' verdicts, in that order.
fn guard_verdicts(run: &Run, spec: &RampSpec, observation: &Observation, has_control: bool) -> Vec<GuardVerdict> {
    let min_samples = spec.steps.get(run.step).map_or(super::spec::DEFAULT_MIN_SAMPLES, |step| step.min_samples);
    let mut verdicts = Vec::new();
    if let Some(guard) = &spec.latency {
        verdicts.push(guards::latency(guard, observation.latency.as_ref(), min_samples, has_control));
    }
    if let Some(guard) = &spec.conversion {
        verdicts.push(guards::conversion(guard, observation.conversions, has_control));
    }
    verdicts
}

/// |z| above this is a sample-ratio mismatch (two-sided α = 0.1 %).
pub(super) const SRM_Z: f64 = 3.29;
/// Expected outcomes per arm before a sample ratio is judged.
const SRM_MIN_EXPECTED: f64 = 100.0;

/// The treatment's deviation from its expected share, in standard
/// deviations, over `buckets`; `None` below `min_expected` per arm.
pub(super) fn sample_ratio_z(buckets: &[Pair], expected: f64, min_expected: f64) -> Option<f64> {
    let (treatment, control) =
        buckets.iter().fold((0u64, 0u64), |(t, c), b| (t + b.treatment.exposures, c + b.control.exposures));
    let n = (treatment + control) as f64;
    if n * expected < min_expected || n * (1.0 - expected) < min_expected {
        return None;
    }
    let sd = (n * expected * (1.0 - expected)).sqrt();
    Some((treatment as f64 - n * expected) / sd)
}
/// Beyond this z the treatment's excess of outcomes is not chance or a
/// slightly broken split but data that cannot be trusted; see `decide::decide` (3a).
pub(super) const SRM_UNTRUSTED_Z: f64 = 10.0;

/// The non-inferiority proof needed to advance, on either scale.
pub(super) fn not_worse(treatment: Arm, control: Arm, spec: &RampSpec) -> bool {
    let confidence = spec.guard.advance_confidence;
    stats::ratio_upper(treatment, control, confidence).is_some_and(|r| r <= spec.guard.advance_max_ratio)
        || stats::difference_upper(treatment, control, confidence).is_some_and(|d| d <= spec.guard.max_increase)
}

/// The evidence a tick decides on: counts and guard statistics only.
pub(super) fn for_tick(run: &Run, spec: &RampSpec, observation: &Observation, now: u64) -> Evidence {
    evidence(run, spec, observation, now, false)
}

/// The evidence a tick sees, with every statistic an operator may want
/// (bounds, detectability, what is missing to advance).
pub fn explain(run: &Run, spec: &RampSpec, observation: &Observation, now: u64) -> Evidence {
    evidence(run, spec, observation, now, true)
}

/// The counts and the guard statistics; with `full`, also the advance
/// proofs and the report (exact bounds cost bisections: a tick computes
/// them only when it needs them).
fn evidence(run: &Run, spec: &RampSpec, observation: &Observation, now: u64, full: bool) -> Evidence {
    let mut treatment = Arm::default();
    let mut control = Arm::default();
    for bucket in &observation.buckets {
        treatment.exposures += bucket.treatment.exposures;
        treatment.errors += bucket.treatment.errors;
        control.exposures += bucket.control.exposures;
        control.errors += bucket.control.errors;
    }
    let rate = |arm: Arm| (arm.exposures > 0).then(|| arm.errors as f64 / arm.exposures as f64);
    let guard = &spec.guard;
    let has_control = run.basis_points < FULL;
    let sprt = has_control.then(|| mixture(guard.tolerance, observation));
    let alpha = 1.0 - guard.relative_confidence;
    let mut evidence = Evidence {
        treatment,
        control,
        buckets: observation.buckets.len(),
        treatment_rate: rate(treatment),
        control_rate: rate(control),
        lambda: sprt.as_ref().map(|s| s.lambda),
        lambda_threshold: has_control.then(|| ((1.0 / alpha) * 1e6).round() / 1e6),
        ceiling_lower: (treatment.exposures > 0 && (full || guard.max_error_rate.is_some()))
            .then(|| stats::clopper_pearson(treatment.errors, treatment.exposures, guard.absolute_confidence).lower),
        ratio_estimate: match (rate(treatment), rate(control)) {
            (Some(t), Some(c)) if c > 0.0 => Some(t / c),
            _ => None,
        },
        ratio_upper: if has_control && full {
            stats::ratio_upper(treatment, control, guard.advance_confidence)
        } else {
            None
        },
        difference_upper: if has_control && full {
            stats::difference_upper(treatment, control, guard.advance_confidence)
        } else {
            None
        },
        detectable_ratio: None,
        expected_share: observation.expected_share.filter(|_| has_control),
        srm_z: None,
        metrics: metric_verdicts(spec, observation, has_control),
        guards: guard_verdicts(run, spec, observation, has_control),
        missing_to_advance: Vec::new(),
        refused_outcomes: Default::default(),
    };
    if let Some(expected) = evidence.expected_share {
        // The step's first closed bucket still holds outcomes of clients
        // that had not yet received the new percent: it is left out, and a
        // verdict needs a hundred expected outcomes in each arm.
        evidence.srm_z = sample_ratio_z(observation.buckets.get(1..).unwrap_or_default(), expected, SRM_MIN_EXPECTED);
    }
    let Some(step) = spec.steps.get(run.step) else { return evidence };
    if !full || matches!(run.status, Status::Pending { .. }) || run.status.is_terminal() {
        return evidence;
    }
    // A guide for operators: errors expected by the end of the hold.
    let age = elapsed(now, run.step_started_at).max(1) as f64;
    let hold = step.hold.as_millis() as f64;
    let total = treatment.exposures + control.exposures;
    if has_control && total > 0 {
        let share = treatment.exposures as f64 / total as f64;
        let errors = (treatment.errors + control.errors) as f64 * (hold / age).max(1.0);
        evidence.detectable_ratio = stats::detectable_ratio(share, errors, alpha);
    }
    let missing = &mut evidence.missing_to_advance;
    if let Some(reason) = observation.missing {
        missing.push(format!("a usable observation ({})", reason.as_str()));
    }
    let remaining = (hold - age).max(0.0);
    if remaining > 0.0 {
        // In the words of every other duration people read (the dashboard's too).
        let words = |millis: f64| super::plan::words(std::time::Duration::from_millis(millis as u64));
        missing.push(format!("hold: {} left of {}", words(remaining), words(hold)));
    }
    if treatment.exposures < step.min_samples {
        missing.push(format!("treatment samples: {} of {}", treatment.exposures, step.min_samples));
    }
    if has_control && control.exposures < step.min_samples {
        missing.push(format!("control samples: {} of {}", control.exposures, step.min_samples));
    }
    if has_control && !not_worse(treatment, control, spec) {
        let ratio = evidence.ratio_upper.map_or("n/a".into(), |r| format!("{r:.3}"));
        let difference = evidence.difference_upper.map_or("n/a".into(), |d| format!("{:.4}%", d * 100.0));
        evidence.missing_to_advance.push(format!(
            "proof that the treatment is not worse: rate-ratio upper bound {ratio} (needs ≤ {}) or \
             difference upper bound {difference} (needs ≤ {:.4}%)",
            spec.guard.advance_max_ratio,
            spec.guard.max_increase * 100.0
        ));
    }
    for guard in &evidence.guards {
        if matches!(guard.verdict, Verdict::Unavailable | Verdict::Inconclusive) {
            let name = match guard.guard {
                crate::model::GuardKind::Latency => "latency",
                crate::model::GuardKind::Conversion => "conversion",
            };
            evidence.missing_to_advance.push(format!("the {name} guard: {}", guard.note));
        }
    }
    if matches!(run.status, Status::Paused { .. }) {
        evidence.missing_to_advance.push("resume (the ramp is paused)".into());
    }
    if evidence.srm_z.is_some_and(|z| z.abs() > SRM_Z) {
        evidence.missing_to_advance.push(format!(
            "a sample ratio matching the split: the treatment has {:.1}% of exposures, {:.1}% expected",
            100.0 * treatment.exposures as f64 / (treatment.exposures + control.exposures).max(1) as f64,
            100.0 * evidence.expected_share.unwrap_or_default()
        ));
    }
    if step.approve && !run.approved {
        evidence.missing_to_advance.push("approval (POST …/approve)".into());
    }
    evidence
}

fn elapsed(now: u64, since: u64) -> u64 {
    now.saturating_sub(since)
}
