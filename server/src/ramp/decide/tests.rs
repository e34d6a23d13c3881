//! The decision function with a simulated clock.

use super::*;
use crate::model::{Arm, Pair};
use crate::ramp::evidence::explain;
use crate::ramp::spec;
use crate::ramp::stats;

pub(super) const MINUTE: u64 = 60_000;

pub(super) fn spec_with(extra: &str, steps: &str) -> RampSpec {
    let text = format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{ name: r }}\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  interval: 1m\n  steps:\n{steps}{extra}"
    );
    spec::parse("r.yaml", &text).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

fn standard() -> RampSpec {
    spec_with(
        "  guard:\n    minSamples: 100\n    absolute: { maxErrorRate: 5%, maxIncrease: 1% }\n  policy:\n    onMissingData: { pauseAfterFailedChecks: 3 }\n    onStepTimeout: { after: 3h }\n",
        "    - { percent: 5, hold: 10m }\n    - { percent: 25, hold: 10m }\n    - { percent: 50, hold: 10m }\n    - { percent: 100, hold: 10m }\n",
    )
}

pub(super) fn started(spec: &RampSpec, now: u64) -> Run {
    let run = spec.new_run("off", "run-1".into(), 0);
    let decision = decide(&run, spec, &observe(&[]), now, None);
    assert_eq!(decision.run.status, Status::Ramping);
    decision.run
}

pub(super) fn observe(buckets: &[Pair]) -> Observation {
    Observation { buckets: buckets.to_vec(), flag_enabled: true, ..Observation::default() }
}

fn pair(t: (u64, u64), c: (u64, u64)) -> Pair {
    Pair { treatment: Arm { exposures: t.0, errors: t.1 }, control: Arm { exposures: c.0, errors: c.1 } }
}

pub(super) fn healthy() -> Vec<Pair> {
    vec![pair((500, 0), (9500, 10)); 10]
}

#[test]
fn pending_until_not_before_and_while_the_flag_is_off() {
    let mut spec = standard();
    spec.not_before = Some(10 * MINUTE);
    let run = spec.new_run("off", "run-1".into(), 0);
    let d = decide(&run, &spec, &observe(&[]), MINUTE, None);
    assert_eq!(d.run.status, Status::Pending { reason: PendingReason::NotBefore });
    assert_eq!(d.run.basis_points, 0);
    let off = Observation { flag_enabled: false, ..observe(&[]) };
    let d = decide(&run, &spec, &off, 11 * MINUTE, None);
    assert_eq!(d.run.status, Status::Pending { reason: PendingReason::FlagOff });
    let d = decide(&run, &spec, &observe(&[]), 11 * MINUTE, None);
    assert_eq!((d.run.status.clone(), d.run.basis_points, d.run.step_started_at), (Status::Ramping, 500, 11 * MINUTE));
    assert_eq!(d.events[0].kind, EventKind::Started);
    assert_eq!(d.run.seq, run.seq + 1);
}

#[test]
fn a_healthy_ramp_walks_every_step_then_completes() {
    let spec = standard();
    let mut run = started(&spec, 0);
    let mut now = 0;
    let mut percents = vec![run.percent()];
    while !run.status.is_terminal() {
        now += MINUTE;
        let d = decide(&run, &spec, &observe(&healthy()), now, None);
        assert!(d.run.step <= run.step + 1, "never skips a step");
        if d.run.step != run.step || d.run.status == Status::Completed {
            percents.push(d.run.percent());
        }
        run = d.run;
        assert!(now < 100 * MINUTE);
    }
    assert_eq!(run.status, Status::Completed);
    assert_eq!(percents, [5.0, 25.0, 50.0, 100.0, 100.0]);
}

#[test]
fn the_hold_must_elapse_before_advancing() {
    let spec = standard();
    let run = started(&spec, 0);
    let d = decide(&run, &spec, &observe(&healthy()), 9 * MINUTE, None);
    assert_eq!((d.run.status, d.run.step), (Status::Ramping, 0));
    let d = decide(&run, &spec, &observe(&healthy()), 10 * MINUTE, None);
    assert_eq!((d.run.status, d.run.step), (Status::Ramping, 1));
}

#[test]
fn no_traffic_holds_and_the_step_timeout_pauses() {
    let spec = standard();
    let run = started(&spec, 0);
    // Before a bucket has closed there is nothing to judge: no hold.
    let early = decide(&run, &spec, &observe(&[]), 500, None);
    assert_eq!((early.run.status.clone(), early.events.len()), (Status::Ramping, 0));
    let d = decide(&run, &spec, &observe(&[Pair::default()]), 30 * MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::NoTraffic });
    assert_eq!(d.events, vec![event(EventKind::Holding, Some("NoTraffic".into()), CONTROLLER)]);
    // Holding again with the same reason emits nothing.
    let again = decide(&d.run, &spec, &observe(&[Pair::default()]), 31 * MINUTE, None);
    assert!(again.events.is_empty());
    assert_eq!(again.run.seq, d.run.seq);
    let d = decide(&again.run, &spec, &observe(&[Pair::default()]), 180 * MINUTE, None);
    assert_eq!(d.run.status, Status::Paused { reason: PauseReason::StepTimeout, by: CONTROLLER.into() });
    assert_eq!(d.run.basis_points, 500);
    // Traffic returns: a paused ramp waits for a person.
    let d = decide(&d.run, &spec, &observe(&healthy()), 181 * MINUTE, None);
    assert!(matches!(d.run.status, Status::Paused { .. }));
    // Resumed, it gets a full timeout again and advances on the step's evidence.
    let resume = Command::Resume { by: "ops".into() };
    let resumed = decide(&d.run, &spec, &observe(&[Pair::default()]), 182 * MINUTE, Some(&resume)).run;
    let d = decide(&resumed, &spec, &observe(&[Pair::default()]), 183 * MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::NoTraffic });
    let d = decide(&d.run, &spec, &observe(&healthy()), 184 * MINUTE, None);
    assert_eq!((d.run.step, d.run.basis_points), (1, 2500));
}

#[test]
fn too_few_samples_or_no_proof_hold() {
    let spec = standard();
    let run = started(&spec, 0);
    let d = decide(&run, &spec, &observe(&[pair((50, 0), (950, 1))]), 20 * MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::InsufficientSamples });
    // 150 clean treatment requests: difference bound 1 − 0.025^(1/150) ≈ 2.4 % > 1 %.
    let d = decide(&run, &spec, &observe(&[pair((150, 0), (2850, 3))]), 20 * MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::Inconclusive });
    let explained = explain(&d.run, &spec, &observe(&[pair((150, 0), (2850, 3))]), 20 * MINUTE);
    assert!(explained.missing_to_advance.iter().any(|m| m.contains("not worse")), "{explained:?}");
}

#[test]
fn the_rule_of_three_advances_on_the_difference_scale() {
    // Zero errors on both sides: ≈ 3 / maxIncrease treatment samples are needed.
    let spec = standard();
    let run = started(&spec, 0);
    let needed = (3.0_f64 / 0.01) as u64;
    let few = decide(&run, &spec, &observe(&[pair((needed - 40, 0), (6000, 0))]), 20 * MINUTE, None);
    assert_eq!(few.run.status, Status::Holding { reason: HoldReason::Inconclusive });
    let enough = decide(&run, &spec, &observe(&[pair((needed + 80, 0), (7000, 0))]), 20 * MINUTE, None);
    assert_eq!(enough.run.step, 1);
}

#[test]
fn an_error_spike_rolls_back_at_the_first_check_from_any_active_state() {
    let spec = standard();
    let run = started(&spec, 0);
    let spike = [pair((500, 25), (1500, 7))];
    for status in [
        Status::Ramping,
        Status::Holding { reason: HoldReason::NoTraffic },
        Status::Paused { reason: PauseReason::Operator, by: "ops".into() },
    ] {
        let run = Run { status, ..run.clone() };
        let d = decide(&run, &spec, &observe(&spike), MINUTE, None);
        assert_eq!(d.run.status, Status::RolledBack { reason: RollbackReason::Regression, by: CONTROLLER.into() });
        assert_eq!(d.run.basis_points, 0);
        assert!(d.evidence.lambda.unwrap() >= 100.0);
    }
}

#[test]
fn the_ceiling_trips_without_any_control() {
    let spec = standard();
    let run = Run { step: 3, basis_points: FULL, ..started(&spec, 0) };
    let d = decide(&run, &spec, &observe(&[pair((400, 60), (0, 0))]), MINUTE, None);
    assert_eq!(d.run.status, Status::RolledBack { reason: RollbackReason::AbsoluteCeiling, by: CONTROLLER.into() });
}

#[test]
fn rollback_is_sticky_and_wins_over_promote() {
    let spec = standard();
    let run = started(&spec, 0);
    let spike = [pair((500, 25), (1500, 7))];
    let d = decide(&run, &spec, &observe(&spike), MINUTE, Some(&Command::Promote { by: "alice".into(), force: None }));
    assert!(matches!(d.run.status, Status::RolledBack { .. }));
    assert!(d.command.as_ref().unwrap().is_err());
    // Healthy again, resumed, promoted: nothing moves.
    for command in
        [None, Some(Command::Resume { by: "a".into() }), Some(Command::Promote { by: "a".into(), force: None })]
    {
        let again = decide(&d.run, &spec, &observe(&healthy()), 100 * MINUTE, command.as_ref());
        assert_eq!(again.run.status, d.run.status);
        assert_eq!(again.run.basis_points, 0);
    }
    // Restart starts a new run, not started yet.
    let restart = Command::Restart { by: "alice".into(), run_id: "run-2".into() };
    let d = decide(&d.run, &spec, &observe(&[]), 101 * MINUTE, Some(&restart));
    assert_eq!(d.run.run_id, "run-2");
    assert!(matches!(d.run.status, Status::Pending { .. }));
    assert_eq!(d.run.basis_points, 0);
}

#[test]
fn operator_commands() {
    let spec = standard();
    let run = started(&spec, 0);
    let pause = Command::Pause { by: "bob".into() };
    let paused = decide(&run, &spec, &observe(&healthy()), 20 * MINUTE, Some(&pause)).run;
    assert_eq!(paused.status, Status::Paused { reason: PauseReason::Operator, by: "bob".into() });
    // Paused: hold elapsed and healthy, still no advance.
    let d = decide(&paused, &spec, &observe(&healthy()), 30 * MINUTE, None);
    assert_eq!((d.run.step, d.run.status.name()), (0, "Paused"));
    assert!(decide(&paused, &spec, &observe(&healthy()), 30 * MINUTE, Some(&pause)).command.unwrap().is_err());
    let resumed = decide(&paused, &spec, &observe(&healthy()), 30 * MINUTE, Some(&Command::Resume { by: "b".into() }));
    assert_eq!((resumed.run.status.clone(), resumed.run.step), (Status::Ramping, 0));
    let promoted = decide(
        &resumed.run,
        &spec,
        &observe(&[]),
        31 * MINUTE,
        Some(&Command::Promote { by: "b".into(), force: None }),
    );
    assert_eq!((promoted.run.step, promoted.run.basis_points), (1, 2500));
    let aborted = decide(&promoted.run, &spec, &observe(&[]), 32 * MINUTE, Some(&Command::Abort { by: "c".into() }));
    assert_eq!(aborted.run.status, Status::RolledBack { reason: RollbackReason::Aborted, by: "c".into() });
    assert_eq!(aborted.run.basis_points, 0);
}

#[test]
fn missing_data_holds_then_pauses_and_resets_on_a_good_observation() {
    let spec = standard();
    let mut run = started(&spec, 0);
    let unavailable = Observation { missing: Some(HoldReason::MetricsUnavailable), ..observe(&healthy()) };
    for check in 1..=2 {
        run = decide(&run, &spec, &unavailable, check * MINUTE, None).run;
        assert_eq!(run.status, Status::Holding { reason: HoldReason::MetricsUnavailable });
        assert_eq!(run.failed_checks, check as u32);
    }
    let recovered = decide(&run, &spec, &observe(&healthy()), 3 * MINUTE, None).run;
    assert_eq!((recovered.status.clone(), recovered.failed_checks), (Status::Ramping, 0));
    for check in 3..=5 {
        run = decide(&run, &spec, &unavailable, check * MINUTE, None).run;
    }
    assert_eq!(run.status, Status::Paused { reason: PauseReason::MissingDataLimit, by: CONTROLLER.into() });
    // Even with data and the hold long over, a paused ramp does not resume itself.
    let d = decide(&run, &spec, &observe(&healthy()), 60 * MINUTE, None);
    assert_eq!(d.run.status.name(), "Paused");
}

/// A small deterministic generator (SplitMix64), so the simulations are
/// reproducible and never flaky.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Binomial(n, p) by inversion (means here are small).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        let u = self.next();
        let mut pmf = (1.0 - p).powf(n as f64);
        let mut cdf = pmf;
        let mut k = 0;
        while u > cdf && k < n {
            pmf *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
            k += 1;
            cdf += pmf;
        }
        k
    }
}

/// Runs one ramp for `checks` one-minute checks at a fixed step; returns
/// the check at which it rolled back.
fn simulate(
    spec: &RampSpec,
    random: &mut Random,
    (n_t, n_c): (u64, u64),
    (rate_t, rate_c): (f64, f64),
    checks: u64,
) -> Option<u64> {
    let mut run = started(spec, 0);
    let mut buckets = Vec::new();
    for check in 1..=checks {
        buckets.push(pair((n_t, random.binomial(n_t, rate_t)), (n_c, random.binomial(n_c, rate_c))));
        run = decide(&run, spec, &observe(&buckets), check * MINUTE, None).run;
        if matches!(run.status, Status::RolledBack { .. }) {
            return Some(check);
        }
        assert_eq!(run.step, 0);
    }
    None
}

/// 1 000 requests a minute, 5 % treatment, baseline
/// 0.1 %, a check every minute for an hour, α = 1 %.
#[test]
fn false_rollbacks_stay_below_alpha_over_a_thousand_healthy_runs() {
    let spec = spec_with("", "    - { percent: 5, hold: 2h }\n    - { percent: 100, hold: 1h }\n");
    let alpha = 1.0 - spec.guard.relative_confidence;
    let mut random = Random(7);
    let runs = 1000;
    let false_rollbacks =
        (0..runs).filter(|_| simulate(&spec, &mut random, (50, 950), (0.001, 0.001), 60).is_some()).count();
    // Ville's inequality bounds the probability by α: at most 10 of 1 000,
    // and a 99 % binomial upper bound on the observed rate stays below 2α.
    let upper = stats::clopper_pearson(false_rollbacks as u64, runs, 0.99).upper;
    eprintln!("false rollbacks: {false_rollbacks} / {runs} (α = {alpha}, 99 % upper bound {upper:.4})");
    assert!(false_rollbacks as f64 <= alpha * runs as f64, "{false_rollbacks} false rollbacks in {runs} runs");
    assert!(upper < 2.0 * alpha);
}

#[test]
fn sustained_regressions_are_detected_and_transient_errors_are_not() {
    let spec = spec_with("", "    - { percent: 5, hold: 2h }\n    - { percent: 100, hold: 1h }\n");
    let mut random = Random(11);
    // 10×: 50 treatment requests a minute at 1 % vs 0.1 %.
    let detected: Vec<u64> =
        (0..100).filter_map(|_| simulate(&spec, &mut random, (50, 950), (0.01, 0.001), 60)).collect();
    let mut sorted = detected.clone();
    sorted.sort_unstable();
    eprintln!(
        "10× at 50 req/min: detected in {} of 100 runs, median check {:?}",
        detected.len(),
        sorted.get(sorted.len() / 2)
    );
    assert!(detected.len() >= 90, "{}", detected.len());
    // One transient treatment error in an hour of clean traffic never rolls back.
    let run = started(&spec, 0);
    let mut buckets = vec![pair((50, 1), (950, 1))];
    buckets.extend(std::iter::repeat_n(pair((50, 0), (950, 1)), 59));
    for check in 1..=60 {
        let d = decide(&run, &spec, &observe(&buckets[..check]), check as u64 * MINUTE, None);
        assert!(!matches!(d.run.status, Status::RolledBack { .. }), "check {check}");
    }
}

#[test]
fn a_ten_times_spike_rolls_back_at_the_first_check_with_min_samples() {
    // 25 % of 2 000 requests a minute, baseline 0.5 %, treatment 5 %; the
    // default minSamples (1,000) is reached at the second check, and no
    // guard decides on fewer (one reporter cannot bring them in a minute).
    let spec = spec_with("", "    - { percent: 25, hold: 2h }\n    - { percent: 100, hold: 1h }\n");
    let mut random = Random(3);
    let checks: Vec<Option<u64>> =
        (0..200).map(|_| simulate(&spec, &mut random, (500, 1500), (0.05, 0.005), 5)).collect();
    let second = checks.iter().filter(|c| **c == Some(2)).count();
    eprintln!("10× spike: rolled back at the second check in {second} of 200 runs");
    assert!(second >= 190, "{second}");
    assert!(checks.iter().all(|c| c.is_some_and(|c| c == 2 || c == 3)), "{checks:?}");
}

/// the ratio oscillates between 1.15 and 1.25
/// around a 20 % tolerance. The ramp may hold, advance or roll back once,
/// but never oscillates and never re-ramps after a rollback.
#[test]
fn flapping_near_the_tolerance_does_not_oscillate() {
    let spec = spec_with(
        "  guard: { minSamples: 200 }\n",
        "    - { percent: 5, hold: 30m }\n    - { percent: 25, hold: 30m }\n    - { percent: 50, hold: 30m }\n    - { percent: 100, hold: 30m }\n",
    );
    let mut random = Random(5);
    for _ in 0..50 {
        let mut run = started(&spec, 0);
        let mut buckets: Vec<Pair> = Vec::new();
        let mut transitions = 0;
        let mut rolled_back = false;
        for minute in 1..=600u64 {
            let ratio = if minute % 20 < 10 { 1.15 } else { 1.25 };
            let total = 2000;
            let n_t = total * u64::from(run.basis_points) / u64::from(FULL);
            buckets.push(pair(
                (n_t, random.binomial(n_t, 0.01 * ratio)),
                (total - n_t, random.binomial(total - n_t, 0.01)),
            ));
            let d = decide(&run, &spec, &observe(&buckets), minute * MINUTE, None);
            if d.run.step != run.step {
                buckets.clear();
            }
            if d.run.status.name() != run.status.name() || d.run.step != run.step {
                transitions += 1;
            }
            if rolled_back {
                assert_eq!(d.run.status, run.status, "a rolled-back ramp never moves again");
            }
            assert!(d.run.step >= run.step, "never steps back");
            rolled_back |= matches!(d.run.status, Status::RolledBack { .. });
            run = d.run;
        }
        assert!(transitions <= 2 * spec.steps.len() + 2, "{transitions} transitions");
    }
}

/// the treatment, expected at 25 %, reports 2 %.
#[test]
fn a_sample_ratio_mismatch_holds_or_rolls_back() {
    let spec = standard();
    let run = Run { step: 1, basis_points: 2500, ..started(&spec, 0) };
    // Two buckets: the step's first is left out of the ratio (clients may
    // still be on the previous percent).
    let starved = Observation { expected_share: Some(0.25), ..observe(&[pair((200, 0), (9800, 10)); 2]) };
    let d = decide(&run, &spec, &starved, 30 * MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::SampleRatioMismatch });
    assert!(d.evidence.srm_z.unwrap() < -3.29);
    // Never advances however long it holds.
    let d = decide(&d.run, &spec, &starved, 60 * MINUTE, None);
    assert_eq!((d.run.step, d.run.status.name()), (1, "Holding"));
    // A matching split is fine.
    let matching = Observation { expected_share: Some(0.25), ..observe(&[pair((2500, 0), (7500, 10)); 2]) };
    assert_eq!(decide(&run, &spec, &matching, 30 * MINUTE, None).run.step, 2);
    let mut rollback = spec.clone();
    rollback.policy.on_sample_ratio_mismatch = crate::ramp::spec::SrmAction::Rollback;
    let d = decide(&run, &rollback, &starved, 30 * MINUTE, None);
    assert_eq!(d.run.status, Status::RolledBack { reason: RollbackReason::SampleRatioMismatch, by: CONTROLLER.into() });
}

#[test]
fn a_step_that_needs_approval_waits_and_times_out() {
    let mut spec = standard();
    spec.steps[0].approve = true;
    spec.policy.approval_timeout = std::time::Duration::from_secs(3600);
    let run = started(&spec, 0);
    let approve = Command::Approve { by: "lead".into() };
    // Too early: nothing to approve.
    assert!(decide(&run, &spec, &observe(&healthy()), MINUTE, Some(&approve)).command.unwrap().is_err());
    let waiting = decide(&run, &spec, &observe(&healthy()), 20 * MINUTE, None);
    assert_eq!((waiting.run.status.clone(), waiting.run.step), (Status::AwaitingApproval, 0));
    assert_eq!(waiting.events, vec![event(EventKind::ApprovalRequested, None, CONTROLLER)]);
    // Asked once; guards still run while waiting.
    let again = decide(&waiting.run, &spec, &observe(&healthy()), 21 * MINUTE, None);
    assert!(again.events.is_empty());
    let spike = decide(&waiting.run, &spec, &observe(&[pair((500, 25), (1500, 7))]), 22 * MINUTE, None);
    assert!(matches!(spike.run.status, Status::RolledBack { .. }));
    // Approved while passing: advances in the same tick.
    let approved = decide(&waiting.run, &spec, &observe(&healthy()), 30 * MINUTE, Some(&approve));
    assert_eq!((approved.command.clone(), approved.run.step), (Some(Ok(())), 1));
    assert_eq!(approved.events[0].kind, EventKind::Approved);
    // Not approved within the timeout: paused; a late approval is rejected.
    let timed_out = decide(&waiting.run, &spec, &observe(&healthy()), 81 * MINUTE, None);
    assert_eq!(timed_out.run.status, Status::Paused { reason: PauseReason::ApprovalTimeout, by: CONTROLLER.into() });
    let late = decide(&timed_out.run, &spec, &observe(&healthy()), 82 * MINUTE, Some(&approve));
    assert_eq!(late.command.unwrap().unwrap_err(), Refusal::ApprovalTimedOut);
    assert_eq!(late.run.step, 0);
    // Resume asks again.
    let resumed =
        decide(&timed_out.run, &spec, &observe(&healthy()), 83 * MINUTE, Some(&Command::Resume { by: "lead".into() }));
    let asked = decide(&resumed.run, &spec, &observe(&healthy()), 84 * MINUTE, None);
    assert_eq!(asked.run.status, Status::AwaitingApproval);
}

/// the hold ends at 15:58, the window closes at
/// 16:00, the tick comes at 16:01: no advance until it reopens, but a
/// regression at 16:30 still rolls back.
#[test]
fn windows_block_advancing_but_never_rollback() {
    let text = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: { name: r }\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  windows: { timezone: Europe/Paris, allow: [\"Mon-Thu 09:00-16:00\"] }\n  steps:\n    - { percent: 5, hold: 1h }\n    - { percent: 100, hold: 1h }\n  guard: { minSamples: 100, absolute: { maxIncrease: 1% } }\n";
    let spec = spec::parse("r.yaml", text).unwrap();
    let at = |rfc3339: &str| crate::time::parse(rfc3339).unwrap();
    // Started Thursday 14:58 Paris (13:58 UTC); hold ends 15:58.
    let run = spec.new_run("off", "run-1".into(), at("2026-11-26T13:58:00Z"));
    let run = decide(&run, &spec, &observe(&[]), at("2026-11-26T13:58:00Z"), None).run;
    assert_eq!(run.status, Status::Ramping);
    let late = decide(&run, &spec, &observe(&healthy()), at("2026-11-26T15:01:00Z"), None);
    assert_eq!((late.run.status.clone(), late.run.step), (Status::Holding { reason: HoldReason::OutsideWindow }, 0));
    let spike = decide(&late.run, &spec, &observe(&[pair((500, 25), (1500, 7))]), at("2026-11-26T15:30:00Z"), None);
    assert!(matches!(spike.run.status, Status::RolledBack { .. }), "rollback ignores windows");
    // Friday is closed too; Monday 09:00 Paris it advances.
    let friday = decide(&late.run, &spec, &observe(&healthy()), at("2026-11-27T10:00:00Z"), None);
    assert_eq!(friday.run.step, 0);
    let monday = decide(&late.run, &spec, &observe(&healthy()), at("2026-11-30T08:00:00Z"), None);
    assert_eq!(monday.run.step, 1);
    // A ramp does not start outside its window.
    let pending = spec.new_run("off", "run-2".into(), 0);
    let d = decide(&pending, &spec, &observe(&[]), at("2026-11-28T12:00:00Z"), None);
    assert_eq!(d.run.status, Status::Pending { reason: PendingReason::OutsideWindow });
}

/// a DST change inside a hold neither shortens
/// nor lengthens it (holds are UTC milliseconds).
#[test]
fn a_dst_change_does_not_change_a_hold() {
    let text = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: { name: r }\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  windows: { timezone: Europe/Paris }\n  steps:\n    - { percent: 5, hold: 3h }\n    - { percent: 100, hold: 1h }\n  guard: { minSamples: 100, absolute: { maxIncrease: 1% } }\n";
    let spec = spec::parse("r.yaml", text).unwrap();
    let at = |rfc3339: &str| crate::time::parse(rfc3339).unwrap();
    // Paris leaves summer time at 03:00 local on 2026-10-25 (01:00 UTC).
    let start = at("2026-10-25T00:00:00Z");
    let run = decide(&spec.new_run("off", "r".into(), start), &spec, &observe(&[]), start, None).run;
    let before = decide(&run, &spec, &observe(&healthy()), at("2026-10-25T02:59:59Z"), None);
    assert_eq!(before.run.step, 0);
    let after = decide(&run, &spec, &observe(&healthy()), at("2026-10-25T03:00:00Z"), None);
    assert_eq!(after.run.step, 1);
}

#[test]
fn forged_treatment_errors_hold_the_ramp_instead_of_rolling_it_back() {
    // The report: 10,000 entries of a billion errors each for the treatment
    // at a 5% split. The sample ratio is off by millions of deviations.
    let spec = standard();
    let run = started(&spec, 0);
    let forged = pair((10_000_000_000_000, 10_000_000_000_000), (9500, 10));
    // In the step's first bucket: the untrusted check counts every bucket.
    let poisoned = Observation { expected_share: Some(0.05), ..observe(&[forged]) };
    let d = decide(&run, &spec, &poisoned, MINUTE, None);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::SampleRatioMismatch });
    let poisoned = Observation { expected_share: Some(0.05), ..observe(&[pair((500, 0), (9500, 10)), forged]) };
    let d = decide(&run, &spec, &poisoned, MINUTE, None);
    assert!(d.evidence.srm_z.unwrap() > 1e6, "{:?}", d.evidence.srm_z);
    assert_eq!(d.run.status, Status::Holding { reason: HoldReason::SampleRatioMismatch });
    assert_eq!(d.run.basis_points, run.basis_points);
    // A real regression with a matching split still rolls back.
    let failing = Observation { expected_share: Some(0.05), ..observe(&[pair((500, 400), (9500, 10))]) };
    let d = decide(&run, &spec, &failing, MINUTE, None);
    assert!(matches!(d.run.status, Status::RolledBack { .. }), "{:?}", d.run.status);
    // A treatment that crashes before reporting has fewer outcomes than its
    // share: the guards still act on its errors.
    let crashing = Observation { expected_share: Some(0.05), ..observe(&[pair((100, 90), (9900, 10))]) };
    let d = decide(&run, &spec, &crashing, MINUTE, None);
    assert!(matches!(d.run.status, Status::RolledBack { .. }), "{:?}", d.run.status);
}

#[test]
fn a_handful_of_outcomes_or_the_first_bucket_give_no_sample_ratio_verdict() {
    let spec = standard();
    let run = Run { step: 1, basis_points: 2500, ..started(&spec, 0) };
    // The report's case: 219 against 295 in the step's first bucket (z ≈ -3.35).
    let first = Observation { expected_share: Some(0.25), ..observe(&[pair((219, 0), (881, 0))]) };
    let d = decide(&run, &spec, &first, 30 * MINUTE, None);
    assert_eq!(d.evidence.srm_z, None);
    assert_ne!(d.run.status, Status::Holding { reason: HoldReason::SampleRatioMismatch });
    // A handful of outcomes after it: still no verdict.
    let few = Observation { expected_share: Some(0.25), ..observe(&[pair((219, 0), (881, 0)), pair((0, 0), (30, 0))]) };
    assert_eq!(decide(&run, &spec, &few, 30 * MINUTE, None).evidence.srm_z, None);
}

#[test]
fn promote_is_refused_while_the_treatment_looks_worse_unless_forced() {
    let spec = standard();
    let run = started(&spec, 0);
    // Three times the control's error rate, not yet proven by the guards.
    let worse = observe(&[pair((500, 3), (9500, 19))]);
    let promote = Command::Promote { by: "ana".into(), force: None };
    let d = decide(&run, &spec, &worse, MINUTE, Some(&promote));
    assert!(matches!(&d.command, Some(Err(Refusal::WorseThanTolerance { .. }))), "{:?}", d.command);
    assert_eq!((d.run.step, d.run.status.clone()), (0, Status::Ramping));
    let forced = Command::Promote { by: "ana".into(), force: Some("hotfix validated by hand".into()) };
    let d = decide(&run, &spec, &worse, MINUTE, Some(&forced));
    assert_eq!((d.command, d.run.step), (Some(Ok(())), 1));
    assert!(d.events[0].reason.as_deref().is_some_and(|r| r.contains("forced: hotfix validated by hand")));
    // Looking as good as the control: promote needs no force.
    let d = decide(&run, &spec, &observe(&healthy()), MINUTE, Some(&promote));
    assert_eq!(d.command, Some(Ok(())));
}

#[test]
fn a_kill_switch_pauses_the_ramp_until_an_operator_resumes() {
    let spec = standard();
    let run = started(&spec, 0);
    let off = Observation { flag_enabled: false, ..observe(&[pair((50, 0), (950, 0))]) };
    let d = decide(&run, &spec, &off, MINUTE, None);
    assert_eq!(d.run.status, Status::Paused { reason: PauseReason::KillSwitch, by: "controller".into() });
    assert_eq!(d.run.basis_points, run.basis_points, "the step is kept for when the flag is back");
    assert_eq!(d.events[0].kind, EventKind::Paused);
    // Still off: resume is refused and says why; abort applies.
    let resume = decide(&d.run, &spec, &off, 2 * MINUTE, Some(&Command::Resume { by: "ana".into() }));
    assert_eq!(resume.command, Some(Err(Refusal::KillSwitch { command: "resume" })));
    // Back on: still paused, until resumed.
    let on = observe(&[pair((50, 0), (950, 0))]);
    let back = decide(&d.run, &spec, &on, 3 * MINUTE, None);
    assert!(matches!(back.run.status, Status::Paused { reason: PauseReason::KillSwitch, .. }));
    let resumed = decide(&back.run, &spec, &on, 4 * MINUTE, Some(&Command::Resume { by: "ana".into() }));
    assert!(matches!(resumed.run.status, Status::Ramping | Status::Holding { .. }), "{:?}", resumed.run.status);
}
