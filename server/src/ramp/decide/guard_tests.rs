//! Guards besides the error guard in the decision: extra metrics (gate,
//! guard, monitor), and the latency and conversion guards — a regression
//! rolls back with its own reason, a silent guard holds the step, the
//! budget is split among them.

use super::*;
use crate::model::{Arm, Latency, Pair};
use crate::ramp::guards::Conversions;
use crate::ramp::spec;

const MINUTE: u64 = 60_000;

fn spec_with(extra: &str) -> RampSpec {
    let text = format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{ name: r }}\nspec:\n  flag: f\n  treatment: \"on\"\n  \
         control: \"off\"\n  interval: 1m\n  steps:\n    - {{ percent: 50, hold: 10m }}\n    - {{ percent: 100, hold: 10m }}\n  \
         guard:\n    minSamples: 100\n    absolute: {{ maxIncrease: 5% }}\n{extra}"
    );
    spec::parse("r.yaml", &text).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

fn healthy() -> Observation {
    let pair = Pair { treatment: Arm { exposures: 1000, errors: 0 }, control: Arm { exposures: 1000, errors: 0 } };
    Observation { buckets: vec![pair; 12], flag_enabled: true, ..Observation::default() }
}

fn durations(fast: u64, slow: u64) -> Latency {
    let mut latency = Latency::default();
    latency.add(Latency::slot_of(20.0), fast);
    latency.add(Latency::slot_of(800.0), slow);
    latency
}

fn running(spec: &RampSpec) -> Run {
    let run = spec.new_run("off", "run-1".into(), 0);
    decide(&run, spec, &healthy(), 0, None).run
}

#[test]
fn a_slower_treatment_rolls_back_with_its_own_reason() {
    let spec = spec_with("  latency: { slowerThan: 300ms }\n");
    let run = running(&spec);
    let slower = Observation { latency: Some((durations(700, 300), durations(970, 30))), ..healthy() };
    let decision = decide(&run, &spec, &slower, 12 * MINUTE, None);
    assert!(
        matches!(decision.run.status, Status::RolledBack { reason: RollbackReason::LatencyRegression, .. }),
        "{:?}",
        decision.run.status
    );
    // The same durations in both arms advance.
    let even = Observation { latency: Some((durations(970, 30), durations(970, 30))), ..healthy() };
    assert_eq!(decide(&run, &spec, &even, 12 * MINUTE, None).run.percent(), 100.0);
}

#[test]
fn a_silent_guard_holds_the_step_and_says_which() {
    let spec = spec_with("  conversion: { event: checkout, maxDrop: 10% }\n");
    let run = running(&spec);
    let nothing = Observation { conversions: Some((Conversions::default(), Conversions::default())), ..healthy() };
    let decision = decide(&run, &spec, &nothing, 12 * MINUTE, None);
    assert_eq!(decision.run.status, Status::Holding { reason: HoldReason::GuardSilent });
    let explained = crate::ramp::evidence::explain(&decision.run, &spec, &nothing, 12 * MINUTE);
    assert!(
        explained.missing_to_advance.iter().any(|m| m.contains("conversion guard") && m.contains("treatment")),
        "{:?}",
        explained.missing_to_advance
    );
    // Unreadable counts are not a pass either.
    let unreadable = Observation { conversions: None, ..healthy() };
    assert_eq!(
        decide(&run, &spec, &unreadable, 12 * MINUTE, None).run.status,
        Status::Holding { reason: HoldReason::GuardSilent }
    );
    // Too few users: not judged yet.
    let few = Conversions { exposed: 40, converted: 4 };
    let young = Observation { conversions: Some((few, few)), ..healthy() };
    assert_eq!(
        decide(&run, &spec, &young, 12 * MINUTE, None).run.status,
        Status::Holding { reason: HoldReason::InsufficientSamples }
    );
}

#[test]
fn a_drop_in_conversions_rolls_back() {
    let spec = spec_with("  conversion: { event: checkout, maxDrop: 10% }\n");
    let run = running(&spec);
    let arm = |exposed, converted| Conversions { exposed, converted };
    let dropped = Observation { conversions: Some((arm(2000, 150), arm(2000, 400))), ..healthy() };
    let decision = decide(&run, &spec, &dropped, 12 * MINUTE, None);
    assert!(
        matches!(decision.run.status, Status::RolledBack { reason: RollbackReason::ConversionDrop, .. }),
        "{:?}",
        decision.run.status
    );
}

#[test]
fn the_false_alarm_budget_is_split_among_every_guard() {
    let alone = spec_with("");
    let three = spec_with("  latency: { slowerThan: p95 }\n  conversion: { event: checkout }\n");
    let alpha = |confidence: f64| 1.0 - confidence;
    assert!((alpha(three.guard.relative_confidence) - alpha(alone.guard.relative_confidence) / 3.0).abs() < 1e-12);
    assert!((alpha(three.latency.as_ref().expect("latency").confidence) - 0.01 / 3.0).abs() < 1e-12);
    assert!((alpha(three.conversion.as_ref().expect("conversion").confidence) - 0.01 / 3.0).abs() < 1e-12);
}

// ---- extra metrics ----

mod metrics {
    use super::super::tests::{MINUTE, healthy, observe, spec_with, started};
    use super::super::*;
    use crate::model::Verdict;

    fn with_metric(role: &str, dry_run: bool) -> RampSpec {
        spec_with(
            &format!(
                "  guard:\n    minSamples: 100\n    absolute: {{ maxIncrease: 1% }}\n  metrics:\n    - {{ name: p99, role: {role}, query: 'p99{{variant=\"{{{{variant}}}}\"}}', relative: {{ tolerance: 15% }}, dryRun: {dry_run} }}\n"
            ),
            "    - { percent: 25, hold: 10m }\n    - { percent: 100, hold: 10m }\n",
        )
    }

    fn observe_latency(treatment: f64, control: f64, buckets: usize) -> Observation {
        let values = (0..buckets).map(|i| (treatment + i as f64 * 0.001, control + i as f64 * 0.001)).collect();
        Observation { metrics: vec![("p99".into(), Some(values))], ..observe(&healthy()) }
    }

    #[test]
    fn a_latency_gate_must_pass_and_a_latency_guard_rolls_back() {
        let gate = with_metric("gate", false);
        let run = Run { basis_points: 2500, ..started(&gate, 0) };
        // Too few buckets: inconclusive, hold.
        let d = decide(&run, &gate, &observe_latency(0.2, 0.2, 3), 20 * MINUTE, None);
        assert_eq!(d.run.status, Status::Holding { reason: HoldReason::Inconclusive });
        // Slower than control × 1.15 in every bucket: a gate holds…
        let slow = observe_latency(0.5, 0.2, 10);
        let d = decide(&run, &gate, &slow, 20 * MINUTE, None);
        assert_eq!((d.run.status.clone(), d.run.step), (Status::Holding { reason: HoldReason::Inconclusive }, 0));
        assert_eq!(d.evidence.metrics[0].verdict, Verdict::Fail);
        // …as the same speed passes.
        let d = decide(&run, &gate, &observe_latency(0.2, 0.2, 10), 20 * MINUTE, None);
        assert_eq!(d.run.step, 1);
        assert_eq!(d.evidence.metrics[0].verdict, Verdict::Pass);
        // Unavailable: hold without failing.
        let unavailable = Observation { metrics: vec![("p99".into(), None)], ..observe(&healthy()) };
        let d = decide(&run, &gate, &unavailable, 20 * MINUTE, None);
        assert_eq!(d.run.status, Status::Holding { reason: HoldReason::MetricsUnavailable });

        // A guard rolls back on the regression; in dry run it only records.
        let guard = with_metric("guard", false);
        let d = decide(&Run { basis_points: 2500, ..started(&guard, 0) }, &guard, &slow, 5 * MINUTE, None);
        assert_eq!(
            d.run.status,
            Status::RolledBack { reason: RollbackReason::MetricRegression, by: CONTROLLER.into() }
        );
        assert_eq!(d.events[0].reason.as_deref(), Some("MetricRegression(p99)"));
        let quiet = with_metric("guard", true);
        let d = decide(&Run { basis_points: 2500, ..started(&quiet, 0) }, &quiet, &slow, 20 * MINUTE, None);
        assert_eq!(
            (d.run.step, d.evidence.metrics[0].verdict, d.evidence.metrics[0].dry_run),
            (1, Verdict::Fail, true)
        );
        let monitor = with_metric("monitor", false);
        let d = decide(&Run { basis_points: 2500, ..started(&monitor, 0) }, &monitor, &slow, 20 * MINUTE, None);
        assert_eq!(d.run.step, 1, "a monitor never acts");
    }
}
