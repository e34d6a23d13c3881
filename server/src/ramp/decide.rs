//! The ramp controller's decision: a pure function of (run state,
//! observation, spec, now, operator command), RAMPS.md §5.3.
//!
//! No clock, no IO: the runtime observes, calls [`decide`], persists the
//! new run with compare-and-set and only then changes exposure. Tests drive
//! it with a simulated clock.
//!
//! Order of a tick: guards first (rollback wins over everything, in every
//! non-terminal state, paused or not), then an operator command, then
//! missing data, then whether the step may advance — at most one step.

use serde::{Deserialize, Serialize};

use super::spec::{Action, RampSpec, SrmAction};
use super::stats::{self, Arm, MixtureSprt, Pair};
use rampart_engine::ramp::FULL;

/// Why a ramp has not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingReason {
    NotStarted,
    NotBefore,
    FlagOff,
    /// The metric source does not answer: don't start a ramp you can't watch.
    ProviderUnreachable,
    OutsideWindow,
}

/// Why a ramp cannot decide yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldReason {
    NoTraffic,
    InsufficientSamples,
    Inconclusive,
    MetricsUnavailable,
    StaleData,
    SampleRatioMismatch,
    /// Evidence passed but advancing is outside the ramp's windows.
    OutsideWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    Operator,
    MissingDataLimit,
    StepTimeout,
    Regression,
    ApprovalTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackReason {
    Regression,
    AbsoluteCeiling,
    Aborted,
    MissingDataLimit,
    StepTimeout,
    SampleRatioMismatch,
    ApprovalTimeout,
    /// An extra metric with role `guard` regressed (its name is in the event).
    MetricRegression,
}

/// The state of a run (RAMPS.md §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum Status {
    Pending {
        reason: PendingReason,
    },
    /// At a step, collecting evidence (`Baking`).
    Ramping,
    /// At a step whose evidence passed, waiting for `approve`
    /// (`Ramping(step, AwaitingApproval)` in RAMPS.md).
    AwaitingApproval,
    Holding {
        reason: HoldReason,
    },
    Paused {
        reason: PauseReason,
        by: String,
    },
    RolledBack {
        reason: RollbackReason,
        by: String,
    },
    Completed,
}

impl Status {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Status::RolledBack { .. } | Status::Completed)
    }

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

    pub fn reason(&self) -> Option<String> {
        match self {
            Status::Pending { reason } => Some(format!("{reason:?}")),
            Status::Holding { reason } => Some(format!("{reason:?}")),
            Status::Paused { reason, .. } => Some(format!("{reason:?}")),
            Status::RolledBack { reason, .. } => Some(format!("{reason:?}")),
            Status::Ramping => Some("Baking".into()),
            Status::AwaitingApproval => Some("AwaitingApproval".into()),
            Status::Completed => None,
        }
    }

    pub const NAMES: [&'static str; 6] = ["Pending", "Ramping", "Holding", "Paused", "RolledBack", "Completed"];
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
    /// Index into the spec's steps.
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
    /// A new run, not started.
    pub fn new(spec: &RampSpec, control: &str, run_id: String, now: u64) -> Run {
        Run {
            run_id,
            revision: spec.revision,
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
            flag: spec.flag.clone(),
            treatment: spec.treatment.clone(),
            control: control.to_owned(),
            salt: spec.salt.clone(),
            dry_run: spec.dry_run,
        }
    }

    pub fn percent(&self) -> f64 {
        f64::from(self.basis_points) / 100.0
    }
}

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
}

/// An operator's request, applied in a tick after the guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pause {
        by: String,
    },
    Resume {
        by: String,
    },
    /// `force`: the reason to promote although the current estimate is
    /// worse than the tolerance (without it such a promote is refused).
    Promote {
        by: String,
        force: Option<String>,
    },
    Abort {
        by: String,
    },
    Approve {
        by: String,
    },
    Restart {
        by: String,
        run_id: String,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Promote { .. } => "promote",
            Command::Abort { .. } => "abort",
            Command::Approve { .. } => "approve",
            Command::Restart { .. } => "restart",
        }
    }
}

/// The evidence behind a decision, reported as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub treatment: Arm,
    pub control: Arm,
    pub buckets: usize,
    pub treatment_rate: Option<f64>,
    pub control_rate: Option<f64>,
    /// Mixture SPRT Λ and the threshold 1/α it is compared with.
    pub lambda: Option<f64>,
    pub lambda_threshold: Option<f64>,
    /// Clopper–Pearson lower bound of the treatment's error rate (ceiling check).
    pub ceiling_lower: Option<f64>,
    pub ratio_estimate: Option<f64>,
    pub ratio_upper: Option<f64>,
    pub difference_upper: Option<f64>,
    /// Smallest ratio the relative guard could detect by the end of the
    /// hold at the current traffic (a guide).
    pub detectable_ratio: Option<f64>,
    /// Sample-ratio check: the expected treatment share and the z statistic
    /// of the observed one (|z| > 3.29 is a mismatch at α = 0.1 %).
    pub expected_share: Option<f64>,
    pub srm_z: Option<f64>,
    /// Extra metrics and their paired sign tests.
    #[serde(default)]
    pub metrics: Vec<MetricVerdict>,
    /// What stands between this step and the next.
    pub missing_to_advance: Vec<String>,
}

/// An extra metric's comparison at this check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricVerdict {
    pub name: String,
    pub role: String,
    pub dry_run: bool,
    /// Buckets with a value for both arms.
    pub buckets: u64,
    /// Buckets where the treatment was worse than control beyond the tolerance.
    pub worse: u64,
    /// Sign-test p-values: of a regression, and of "not worse".
    pub p_regression: Option<f64>,
    pub p_not_worse: Option<f64>,
    /// `fail`, `pass`, `inconclusive`, `unavailable` or `not applicable`.
    pub verdict: String,
}

fn metric_verdicts(spec: &RampSpec, observation: &Observation, has_control: bool) -> Vec<MetricVerdict> {
    spec.metrics
        .iter()
        .map(|metric| {
            let role = format!("{:?}", metric.role).to_lowercase();
            let mut verdict =
                MetricVerdict { name: metric.name.clone(), role, dry_run: metric.dry_run, ..Default::default() };
            if !has_control {
                verdict.verdict = "not applicable".into();
                return verdict;
            }
            let values =
                observation.metrics.iter().find(|(name, _)| *name == metric.name).and_then(|(_, v)| v.as_ref());
            let Some(values) = values else {
                verdict.verdict = "unavailable".into();
                return verdict;
            };
            let pairs: Vec<&(f64, f64)> = values.iter().filter(|(t, c)| t.is_finite() && c.is_finite()).collect();
            let worse = pairs
                .iter()
                .filter(|(t, c)| match metric.direction {
                    super::spec::Direction::LowerIsBetter => *t > c * (1.0 + metric.tolerance),
                    super::spec::Direction::HigherIsBetter => *t < c * (1.0 - metric.tolerance).max(0.0),
                })
                .count() as u64;
            let n = pairs.len() as u64;
            verdict.buckets = n;
            verdict.worse = worse;
            if n < metric.min_buckets {
                verdict.verdict = "inconclusive".into();
                return verdict;
            }
            let p_regression = stats::sign_test(n, worse);
            let p_not_worse = stats::sign_test(n, n - worse);
            verdict.p_regression = Some(p_regression);
            verdict.p_not_worse = Some(p_not_worse);
            verdict.verdict = if p_regression < 1.0 - metric.confidence {
                "fail"
            } else if p_not_worse < 1.0 - metric.advance_confidence {
                "pass"
            } else {
                "inconclusive"
            }
            .into();
            verdict
        })
        .collect()
}

/// A notable change, for audit, metrics and (later) webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `started`, `advanced`, `holding`, `paused`, `resumed`, `rolled_back`,
    /// `completed`, `restarted`, `baking`.
    pub kind: String,
    pub reason: Option<String>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub run: Run,
    pub events: Vec<Event>,
    pub evidence: Evidence,
    /// `Err` when the command does not apply in this state (say why).
    pub command: Option<Result<(), String>>,
}

impl Decision {
    /// Whether anything worth persisting changed.
    pub fn changed(&self, before: &Run) -> bool {
        self.run != *before
    }
}

const CONTROLLER: &str = "controller";

fn elapsed(now: u64, since: u64) -> u64 {
    now.saturating_sub(since)
}

/// The tick (RAMPS.md §5.3).
pub fn decide(run: &Run, spec: &RampSpec, observation: &Observation, now: u64, command: Option<&Command>) -> Decision {
    let mut next = run.clone();
    next.updated_at = now;
    let evidence = evidence(run, spec, observation, now, false);
    let mut decision = Decision { run: next, events: Vec::new(), evidence, command: None };

    if run.status.is_terminal() {
        decision.command = command.map(|command| match command {
            Command::Restart { by, run_id } => {
                decision.run = Run::new(spec, &run.control, run_id.clone(), now);
                decision.run.seq = run.seq + 1;
                decision.events.push(event("restarted", None, by));
                Ok(())
            }
            other => Err(format!(
                "the ramp has ended ({}); {} does not apply, only restart",
                run.status.name(),
                other.name()
            )),
        });
        return finish(run, decision);
    }
    if let Some(Command::Restart { .. }) = command {
        decision.command = Some(Err(format!("restart applies to ended ramps; this one is {}", run.status.name())));
    }

    if let Status::Pending { .. } = run.status {
        match command {
            Some(Command::Abort { by }) => {
                roll_back(&mut decision, RollbackReason::Aborted, by);
                decision.command = Some(Ok(()));
            }
            Some(Command::Restart { .. }) | None => {}
            Some(other) => {
                decision.command = Some(Err(format!("the ramp has not started; {} does not apply", other.name())))
            }
        }
        if decision.run.status.is_terminal() {
            return finish(run, decision);
        }
        let reason = if spec.not_before.is_some_and(|at| at > now) {
            Some(PendingReason::NotBefore)
        } else if !observation.flag_enabled {
            Some(PendingReason::FlagOff)
        } else if observation.missing.is_some() {
            Some(PendingReason::ProviderUnreachable)
        } else if spec.windows.as_ref().is_some_and(|w| !w.is_open(now)) {
            Some(PendingReason::OutsideWindow)
        } else {
            None
        };
        match reason {
            Some(reason) => decision.run.status = Status::Pending { reason },
            None => {
                enter_step(&mut decision.run, spec, 0, now);
                decision.events.push(event("started", None, CONTROLLER));
            }
        }
        return finish(run, decision);
    }

    // 3a: data that cannot be trusted. Far more treatment outcomes than the
    // split allows is what forged reports look like (SDK keys are public),
    // not what a failing treatment looks like (it reports fewer), nor what
    // clients still on the previous (lower) percent cause: acting on it
    // would let anyone roll a ramp back. Hold instead. Every bucket counts
    // here, the step's first included.
    let untrusted = observation
        .expected_share
        .filter(|_| run.basis_points < rampart_engine::ramp::FULL)
        .and_then(|expected| sample_ratio_z(&observation.buckets, expected, 10.0))
        .is_some_and(|z| z > SRM_UNTRUSTED_Z);
    if untrusted {
        match spec.policy.on_sample_ratio_mismatch {
            SrmAction::Rollback => roll_back(&mut decision, RollbackReason::SampleRatioMismatch, CONTROLLER),
            SrmAction::Hold if matches!(run.status, Status::Paused { .. }) => {}
            SrmAction::Hold => decision.run.status = Status::Holding { reason: HoldReason::SampleRatioMismatch },
        }
        if let Some(command) = command {
            decision.command = Some(Err(format!(
                "{} was not applied: the treatment has far more outcomes than its share allows, so the data \
                 is not trusted (sample-ratio mismatch)",
                command.name()
            )));
        }
        return finish(run, decision);
    }

    // 3: guards, in every active state.
    let failed_metric = spec
        .metrics
        .iter()
        .zip(&decision.evidence.metrics)
        .find(|(metric, verdict)| {
            metric.role == super::spec::MetricRole::Guard && !metric.dry_run && verdict.verdict == "fail"
        })
        .map(|(metric, _)| metric.name.clone());
    let failure = guard_failure(&decision.evidence, spec, run.basis_points)
        .or(failed_metric.as_ref().map(|_| RollbackReason::MetricRegression));
    if let Some(reason) = failure {
        let action = if spec.guard.critical { spec.policy.on_regression } else { Action::Pause };
        match action {
            Action::Rollback => roll_back(&mut decision, reason, CONTROLLER),
            Action::Pause => pause(&mut decision, PauseReason::Regression, CONTROLLER),
        }
        if let (Some(metric), Some(event)) = (failed_metric, decision.events.last_mut()) {
            event.reason = Some(format!("MetricRegression({metric})"));
        }
        if let Some(command) = command {
            decision.command = Some(Err(format!(
                "{} was not applied: the guard found a regression in the same check ({reason:?})",
                command.name()
            )));
        }
        return finish(run, decision);
    }

    // 4: operator commands. An approval does not end the tick: the step
    // advances only if it still passes.
    if let Some(Command::Approve { by }) = command {
        if run.status == Status::AwaitingApproval && !approval_expired(run, spec, now) {
            decision.run.approved = true;
            decision.events.push(event("approved", None, by));
            decision.command = Some(Ok(()));
        } else if matches!(run.status, Status::Paused { reason: PauseReason::ApprovalTimeout, .. })
            || approval_expired(run, spec, now)
        {
            decision.command =
                Some(Err("the approval request timed out; resume the ramp to ask for approval again".into()));
            return finish(run, decision);
        } else {
            decision.command = Some(Err(format!("no approval is pending ({})", run.status.name())));
            return finish(run, decision);
        }
    } else if let Some(command) = command.filter(|c| !matches!(c, Command::Restart { .. })) {
        let paused = matches!(run.status, Status::Paused { .. });
        decision.command = Some(match command {
            Command::Abort { by } => {
                roll_back(&mut decision, RollbackReason::Aborted, by);
                Ok(())
            }
            Command::Pause { by } if !paused => {
                pause(&mut decision, PauseReason::Operator, by);
                Ok(())
            }
            Command::Pause { .. } => Err("the ramp is already paused".into()),
            Command::Resume { by } if paused => {
                decision.run.status = Status::Ramping;
                decision.run.failed_checks = 0;
                decision.run.timeout_from = now;
                decision.run.approval_requested_at = None;
                decision.events.push(event("resumed", None, by));
                Ok(())
            }
            Command::Resume { .. } => Err(format!("the ramp is not paused ({})", run.status.name())),
            Command::Promote { by, force } => {
                // The guards found no proven regression, but a treatment that
                // looks worse than the tolerance is not promoted on a whim.
                let worse = decision.evidence.ratio_estimate.filter(|ratio| *ratio > 1.0 + spec.guard.tolerance);
                match (worse, force) {
                    (Some(ratio), None) => Err(format!(
                        "promote refused: the treatment's error rate is {ratio:.2} times the control's, worse than \
                         the tolerance ({:.0}%) though not yet proven; promote with force and a reason to override",
                        spec.guard.tolerance * 100.0
                    )),
                    (_, force) => {
                        advance(&mut decision, spec, now, by);
                        if let (Some(reason), Some(event)) = (force, decision.events.last_mut()) {
                            let step = event.reason.take().unwrap_or_default();
                            event.reason = Some(format!("{step} (forced: {reason})").trim_start().to_owned());
                        }
                        Ok(())
                    }
                }
            }
            Command::Restart { .. } | Command::Approve { .. } => Ok(()),
        });
        return finish(run, decision);
    }

    // 5: missing data.
    if let Some(missing) = observation.missing {
        decision.run.failed_checks = run.failed_checks.saturating_add(1);
        if matches!(run.status, Status::Paused { .. }) {
            return finish(run, decision);
        }
        if decision.run.failed_checks >= spec.policy.pause_after_failed_checks {
            match spec.policy.on_missing_data {
                Action::Pause => pause(&mut decision, PauseReason::MissingDataLimit, CONTROLLER),
                Action::Rollback => roll_back(&mut decision, RollbackReason::MissingDataLimit, CONTROLLER),
            }
        } else {
            decision.run.status = Status::Holding { reason: missing };
        }
        return finish(run, decision);
    }
    decision.run.failed_checks = 0;

    // 6: sample-ratio mismatch: the arms are not comparable.
    if decision.evidence.srm_z.is_some_and(|z| z.abs() > SRM_Z) && !matches!(run.status, Status::Paused { .. }) {
        match spec.policy.on_sample_ratio_mismatch {
            SrmAction::Hold => decision.run.status = Status::Holding { reason: HoldReason::SampleRatioMismatch },
            SrmAction::Rollback => roll_back(&mut decision, RollbackReason::SampleRatioMismatch, CONTROLLER),
        }
        return finish(run, decision);
    }

    // 7: a paused ramp stays paused (guards above still ran).
    if matches!(run.status, Status::Paused { .. }) {
        return finish(run, decision);
    }

    // 8: may it advance?
    let window_closed = spec.windows.as_ref().is_some_and(|w| !w.is_open(now));
    match blocking(&decision.evidence, spec, run, now) {
        // 9: evidence passed, but advancing waits for the window (rollback never does).
        None if window_closed => decision.run.status = Status::Holding { reason: HoldReason::OutsideWindow },
        // 10: a step that needs approval waits for it; guards keep running.
        None if spec.steps.get(run.step).is_some_and(|s| s.approve) && !decision.run.approved => {
            if approval_expired(run, spec, now) {
                match spec.policy.on_approval_timeout {
                    Action::Pause => pause(&mut decision, PauseReason::ApprovalTimeout, CONTROLLER),
                    Action::Rollback => roll_back(&mut decision, RollbackReason::ApprovalTimeout, CONTROLLER),
                }
            } else {
                if decision.run.approval_requested_at.is_none() {
                    decision.run.approval_requested_at = Some(now);
                    decision.events.push(event("approval_requested", None, CONTROLLER));
                }
                decision.run.status = Status::AwaitingApproval;
            }
        }
        None => advance(&mut decision, spec, now, CONTROLLER),
        Some(blocked) => {
            let step_age = elapsed(now, run.step_started_at.max(run.timeout_from));
            if step_age >= spec.policy.step_timeout.as_millis() as u64 {
                match spec.policy.on_step_timeout {
                    Action::Pause => pause(&mut decision, PauseReason::StepTimeout, CONTROLLER),
                    Action::Rollback => roll_back(&mut decision, RollbackReason::StepTimeout, CONTROLLER),
                }
            } else {
                decision.run.status = match blocked {
                    None => Status::Ramping,
                    Some(reason) => Status::Holding { reason },
                };
            }
        }
    }
    finish(run, decision)
}

/// Adds the events implied by a status change and bumps the sequence.
fn finish(before: &Run, mut decision: Decision) -> Decision {
    let after = &decision.run;
    if after.status != before.status && decision.events.is_empty() {
        let kind = match &after.status {
            Status::Holding { .. } => Some("holding"),
            Status::Ramping if matches!(before.status, Status::Holding { .. }) => Some("baking"),
            Status::Pending { .. } => Some("pending"),
            _ => None,
        };
        if let Some(kind) = kind {
            decision.events.push(event(kind, after.status.reason(), CONTROLLER));
        }
    }
    let changed_state = after.status != before.status
        || after.step != before.step
        || after.basis_points != before.basis_points
        || after.run_id != before.run_id;
    if changed_state && after.run_id == before.run_id {
        decision.run.seq = before.seq + 1;
    }
    decision
}

/// |z| above this is a sample-ratio mismatch (two-sided α = 0.1 %).
const SRM_Z: f64 = 3.29;
/// Expected outcomes per arm before a sample ratio is judged.
const SRM_MIN_EXPECTED: f64 = 100.0;

/// The treatment's deviation from its expected share, in standard
/// deviations, over `buckets`; `None` below `min_expected` per arm.
fn sample_ratio_z(buckets: &[Pair], expected: f64, min_expected: f64) -> Option<f64> {
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
/// slightly broken split but data that cannot be trusted; see `decide` (3a).
const SRM_UNTRUSTED_Z: f64 = 10.0;

fn approval_expired(run: &Run, spec: &RampSpec, now: u64) -> bool {
    run.approval_requested_at.is_some_and(|at| elapsed(now, at) >= spec.policy.approval_timeout.as_millis() as u64)
}

fn event(kind: &str, reason: Option<String>, by: &str) -> Event {
    Event { kind: kind.into(), reason, by: by.into() }
}

fn enter_step(run: &mut Run, spec: &RampSpec, step: usize, now: u64) {
    run.step = step;
    run.basis_points = spec.steps.get(step).map_or(FULL, |s| s.basis_points);
    run.step_started_at = now;
    run.timeout_from = now;
    run.failed_checks = 0;
    run.approved = false;
    run.approval_requested_at = None;
    run.status = Status::Ramping;
}

fn advance(decision: &mut Decision, spec: &RampSpec, now: u64, by: &str) {
    let next = decision.run.step + 1;
    if next >= spec.steps.len() {
        decision.run.status = Status::Completed;
        decision.run.basis_points = FULL;
        decision.run.step_started_at = now;
        decision.events.push(event("completed", None, by));
    } else {
        enter_step(&mut decision.run, spec, next, now);
        decision.events.push(event("advanced", Some(format!("{}%", decision.run.percent())), by));
    }
}

fn roll_back(decision: &mut Decision, reason: RollbackReason, by: &str) {
    decision.run.status = Status::RolledBack { reason, by: by.into() };
    decision.run.basis_points = 0;
    decision.events.push(event("rolled_back", Some(format!("{reason:?}")), by));
}

fn pause(decision: &mut Decision, reason: PauseReason, by: &str) {
    if matches!(decision.run.status, Status::Paused { reason: current, .. } if current == reason) {
        return;
    }
    decision.run.status = Status::Paused { reason, by: by.into() };
    decision.events.push(event("paused", Some(format!("{reason:?}")), by));
}

/// Layer 1 (absolute ceiling) and Layer 2 (relative mixture SPRT).
fn guard_failure(evidence: &Evidence, spec: &RampSpec, basis_points: u32) -> Option<RollbackReason> {
    if let (Some(ceiling), Some(lower)) = (spec.guard.max_error_rate, evidence.ceiling_lower)
        && lower > ceiling
    {
        return Some(RollbackReason::AbsoluteCeiling);
    }
    if basis_points < FULL
        && let (Some(lambda), Some(threshold)) = (evidence.lambda, evidence.lambda_threshold)
        && lambda >= threshold
    {
        return Some(RollbackReason::Regression);
    }
    None
}

/// Why the step cannot advance: `None` if it can; `Some(None)` while the
/// hold runs (baking); `Some(Some(reason))` to hold.
fn blocking(evidence: &Evidence, spec: &RampSpec, run: &Run, now: u64) -> Option<Option<HoldReason>> {
    let step = spec.steps.get(run.step)?;
    if evidence.treatment.exposures + evidence.control.exposures == 0 {
        // Before the step's first bucket has closed there is nothing to
        // judge yet: waiting, not "no traffic".
        return Some((evidence.buckets > 0).then_some(HoldReason::NoTraffic));
    }
    if elapsed(now, run.step_started_at) < step.hold.as_millis() as u64 {
        return Some(None);
    }
    let has_control = run.basis_points < FULL;
    if evidence.treatment.exposures < step.min_samples || (has_control && evidence.control.exposures < step.min_samples)
    {
        return Some(Some(HoldReason::InsufficientSamples));
    }
    if has_control && !not_worse(evidence.treatment, evidence.control, spec) {
        return Some(Some(HoldReason::Inconclusive));
    }
    // Gates must pass (dry-run gates only record).
    for (metric, verdict) in spec.metrics.iter().zip(&evidence.metrics) {
        if metric.role == super::spec::MetricRole::Gate && !metric.dry_run {
            match verdict.verdict.as_str() {
                "pass" | "not applicable" => {}
                "unavailable" => return Some(Some(HoldReason::MetricsUnavailable)),
                _ => return Some(Some(HoldReason::Inconclusive)),
            }
        }
    }
    None
}

/// The non-inferiority proof needed to advance, on either scale.
fn not_worse(treatment: Arm, control: Arm, spec: &RampSpec) -> bool {
    let confidence = spec.guard.advance_confidence;
    stats::ratio_upper(treatment, control, confidence).is_some_and(|r| r <= spec.guard.advance_max_ratio)
        || stats::difference_upper(treatment, control, confidence).is_some_and(|d| d <= spec.guard.max_increase)
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
    let sprt = has_control.then(|| MixtureSprt::compute(guard.tolerance, &observation.buckets));
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
        missing_to_advance: Vec::new(),
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
        missing.push(format!("a usable observation ({reason:?})"));
    }
    let remaining = (hold - age).max(0.0);
    if remaining > 0.0 {
        missing.push(format!("hold: {:.0}s left of {:.0}s", remaining / 1000.0, hold / 1000.0));
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

#[cfg(test)]
mod tests;
