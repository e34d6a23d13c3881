//! The ramp controller's decision: a pure function of (run state,
//! observation, spec, now, operator command).
//!
//! No clock, no IO: the runtime observes, calls [`decide`], persists the
//! new run with compare-and-set and only then changes exposure. Tests drive
//! it with a simulated clock.
//!
//! Order of a tick: guards first (rollback wins over everything, in every
//! non-terminal state, paused or not), then an operator command, then
//! missing data, then whether the step may advance — at most one step.

use super::evidence::{self, Observation, SRM_UNTRUSTED_Z, SRM_Z, not_worse, sample_ratio_z};
use super::spec::{Action, RampSpec, SrmAction};
use crate::model::{
    Event, EventKind, Evidence, GuardKind, HoldReason, MetricRole, PauseReason, PendingReason, RollbackReason, Run,
    Status, Verdict,
};
use rampart_engine::ramp::FULL;

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

    /// The operator who gave the command.
    pub fn by(&self) -> &str {
        match self {
            Command::Pause { by }
            | Command::Resume { by }
            | Command::Promote { by, .. }
            | Command::Abort { by }
            | Command::Approve { by }
            | Command::Restart { by, .. } => by,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub run: Run,
    pub events: Vec<Event>,
    pub evidence: Evidence,
    /// `Err` when the command does not apply in this state (say why).
    pub command: Option<Result<(), Refusal>>,
}

impl Decision {
    /// Whether anything worth persisting changed.
    pub fn changed(&self, before: &Run) -> bool {
        self.run != *before
    }
}

/// The actor of the controller's own decisions.
const CONTROLLER: &str = "controller";

fn elapsed(now: u64, since: u64) -> u64 {
    now.saturating_sub(since)
}

/// Why a command was not applied now: the API answers 409 with these
/// words, and code matches on the variant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the ramp has ended ({state}); {command} does not apply, only restart")]
    Ended { state: &'static str, command: &'static str },
    #[error("restart applies to ended ramps; this one is {state}")]
    NotEnded { state: &'static str },
    #[error("the ramp has not started; {command} does not apply")]
    NotStarted { command: &'static str },
    #[error("the flag is off (its kill switch); {command} does not apply: turn the flag on, then resume")]
    KillSwitch { command: &'static str },
    #[error(
        "{command} was not applied: the treatment has far more outcomes than its share allows, so the data is not \
         trusted (sample-ratio mismatch)"
    )]
    SampleRatioMismatch { command: &'static str },
    #[error("{command} was not applied: the guard found a regression in the same check ({})", reason.as_str())]
    Regression { command: &'static str, reason: RollbackReason },
    #[error("the approval request timed out; resume the ramp to ask for approval again")]
    ApprovalTimedOut,
    #[error("no approval is pending ({state})")]
    NoApprovalPending { state: &'static str },
    #[error("the ramp is already paused")]
    AlreadyPaused,
    #[error("the ramp is not paused ({state})")]
    NotPaused { state: &'static str },
    #[error(
        "promote refused: the treatment's error rate is {ratio:.2} times the control's, worse than the tolerance \
         ({:.0}%) though not yet proven; promote with force and a reason to override",
        tolerance * 100.0
    )]
    WorseThanTolerance { ratio: f64, tolerance: f64 },
    #[error("the ramp is frozen (its file is missing or an edit was refused); only abort applies")]
    Frozen,
}

/// The tick (docs/ramps.md, "How a ramp decides").
pub fn decide(run: &Run, spec: &RampSpec, observation: &Observation, now: u64, command: Option<&Command>) -> Decision {
    let mut next = run.clone();
    next.updated_at = now;
    let evidence = evidence::for_tick(run, spec, observation, now);
    let mut decision = Decision { run: next, events: Vec::new(), evidence, command: None };

    if run.status.is_terminal() {
        decision.command = command.map(|command| match command {
            Command::Restart { by, run_id } => {
                decision.run = spec.new_run(&run.control, run_id.clone(), now);
                decision.run.seq = run.seq + 1;
                decision.events.push(event(EventKind::Restarted, None, by));
                Ok(())
            }
            other => Err(Refusal::Ended { state: run.status.name(), command: other.name() }),
        });
        return finish(run, decision);
    }
    if let Some(Command::Restart { .. }) = command {
        decision.command = Some(Err(Refusal::NotEnded { state: run.status.name() }));
    }

    if let Status::Pending { .. } = run.status {
        match command {
            Some(Command::Abort { by }) => {
                roll_back(&mut decision, RollbackReason::Aborted, by);
                decision.command = Some(Ok(()));
            }
            Some(Command::Restart { .. }) | None => {}
            Some(other) => decision.command = Some(Err(Refusal::NotStarted { command: other.name() })),
        }
        if decision.run.status.is_terminal() {
            return finish(run, decision);
        }
        let reason = if observation.previous_stage_open {
            Some(PendingReason::PreviousStage)
        } else if spec.not_before.is_some_and(|at| at > now) {
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
                decision.events.push(event(EventKind::Started, None, CONTROLLER));
            }
        }
        return finish(run, decision);
    }

    // 3-: the kill switch. A disabled flag exposes nobody, so the ramp
    // pauses (typed), whatever it was doing. Turning the flag back on
    // leaves it paused at its step until an operator resumes: the switch
    // was pulled for a reason, and the step's evidence stopped with it.
    if !observation.flag_enabled {
        match command {
            Some(Command::Abort { by }) => {
                roll_back(&mut decision, RollbackReason::Aborted, by);
                decision.command = Some(Ok(()));
                return finish(run, decision);
            }
            Some(Command::Pause { .. }) | None => {}
            Some(other) => decision.command = Some(Err(Refusal::KillSwitch { command: other.name() })),
        }
        if !matches!(run.status, Status::Paused { .. }) {
            pause(&mut decision, PauseReason::KillSwitch, CONTROLLER);
        }
        if decision.command.is_none() && command.is_some() {
            decision.command = Some(Ok(()));
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
            decision.command = Some(Err(Refusal::SampleRatioMismatch { command: command.name() }));
        }
        return finish(run, decision);
    }

    // 3: guards, in every active state.
    let failed_metric = spec
        .metrics
        .iter()
        .zip(&decision.evidence.metrics)
        .find(|(metric, verdict)| {
            metric.role == MetricRole::Guard && !metric.dry_run && verdict.verdict == Verdict::Fail
        })
        .map(|(metric, _)| metric.name.clone());
    let min_samples = spec.steps.get(run.step).map_or(super::spec::DEFAULT_MIN_SAMPLES, |step| step.min_samples);
    let failure = guard_failure(&decision.evidence, spec, run.basis_points, min_samples)
        .or_else(|| proportion_failure(&decision.evidence))
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
            decision.command = Some(Err(Refusal::Regression { command: command.name(), reason }));
        }
        return finish(run, decision);
    }

    // 4: operator commands. An approval does not end the tick: the step
    // advances only if it still passes.
    if let Some(Command::Approve { by }) = command {
        if run.status == Status::AwaitingApproval && !approval_expired(run, spec, now) {
            decision.run.approved = true;
            decision.events.push(event(EventKind::Approved, None, by));
            decision.command = Some(Ok(()));
        } else if matches!(run.status, Status::Paused { reason: PauseReason::ApprovalTimeout, .. })
            || approval_expired(run, spec, now)
        {
            decision.command = Some(Err(Refusal::ApprovalTimedOut));
            return finish(run, decision);
        } else {
            decision.command = Some(Err(Refusal::NoApprovalPending { state: run.status.name() }));
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
            Command::Pause { .. } => Err(Refusal::AlreadyPaused),
            Command::Resume { by } if paused => {
                decision.run.status = Status::Ramping;
                decision.run.failed_checks = 0;
                decision.run.timeout_from = now;
                decision.run.approval_requested_at = None;
                decision.events.push(event(EventKind::Resumed, None, by));
                Ok(())
            }
            Command::Resume { .. } => Err(Refusal::NotPaused { state: run.status.name() }),
            Command::Promote { by, force } => {
                // The guards found no proven regression, but a treatment that
                // looks worse than the tolerance is not promoted on a whim.
                let worse = decision.evidence.ratio_estimate.filter(|ratio| *ratio > 1.0 + spec.guard.tolerance);
                match (worse, force) {
                    (Some(ratio), None) => Err(Refusal::WorseThanTolerance { ratio, tolerance: spec.guard.tolerance }),
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
                    decision.events.push(event(EventKind::ApprovalRequested, None, CONTROLLER));
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
            Status::Holding { .. } => Some(EventKind::Holding),
            Status::Ramping if matches!(before.status, Status::Holding { .. }) => Some(EventKind::Baking),
            Status::Pending { .. } => Some(EventKind::Pending),
            _ => None,
        };
        if let Some(kind) = kind {
            decision.events.push(event(kind, after.status.reason().map(str::to_owned), CONTROLLER));
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

fn approval_expired(run: &Run, spec: &RampSpec, now: u64) -> bool {
    run.approval_requested_at.is_some_and(|at| elapsed(now, at) >= spec.policy.approval_timeout.as_millis() as u64)
}

fn event(kind: EventKind, reason: Option<String>, by: &str) -> Event {
    Event::new(kind, reason, by)
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
        decision.events.push(event(EventKind::Completed, None, by));
    } else {
        enter_step(&mut decision.run, spec, next, now);
        decision.events.push(event(EventKind::Advanced, Some(format!("{}%", decision.run.percent())), by));
    }
}

fn roll_back(decision: &mut Decision, reason: RollbackReason, by: &str) {
    decision.run.status = Status::RolledBack { reason, by: by.into() };
    decision.run.basis_points = 0;
    decision.events.push(event(EventKind::RolledBack, Some(reason.as_str().to_owned()), by));
}

/// A rollback decided outside a tick — aborting a frozen ramp (no spec to
/// tick with), or an earlier stage of a release whose later stage rolled
/// back: the same transition a tick makes, as the next persisted run and
/// its event.
pub fn rolled_back(run: &Run, reason: RollbackReason, by: &str, now: u64) -> (Run, Event) {
    let mut next = run.clone();
    next.status = Status::RolledBack { reason, by: by.into() };
    next.basis_points = 0;
    next.seq = run.seq + 1;
    next.updated_at = now;
    (next, event(EventKind::RolledBack, Some(reason.as_str().to_owned()), by))
}

fn pause(decision: &mut Decision, reason: PauseReason, by: &str) {
    if matches!(decision.run.status, Status::Paused { reason: current, .. } if current == reason) {
        return;
    }
    decision.run.status = Status::Paused { reason, by: by.into() };
    decision.events.push(event(EventKind::Paused, Some(reason.as_str().to_owned()), by));
}

/// Layer 1 (absolute ceiling) and Layer 2 (relative mixture SPRT), each
/// only once the arms it reads hold the step's `minSamples`: no decision
/// on a tiny denominator, either way. Besides the statistics, that is what
/// keeps one reporter from rolling a young step back: what one key may add
/// to an arm in a minute is at most half of `minSamples`
/// (`ramp::contribution`).
fn guard_failure(evidence: &Evidence, spec: &RampSpec, basis_points: u32, min_samples: u64) -> Option<RollbackReason> {
    if evidence.treatment.exposures < min_samples {
        return None;
    }
    if let (Some(ceiling), Some(lower)) = (spec.guard.max_error_rate, evidence.ceiling_lower)
        && lower > ceiling
    {
        return Some(RollbackReason::AbsoluteCeiling);
    }
    if basis_points < FULL
        && evidence.control.exposures >= min_samples
        && let (Some(lambda), Some(threshold)) = (evidence.lambda, evidence.lambda_threshold)
        && lambda >= threshold
    {
        return Some(RollbackReason::Regression);
    }
    None
}

/// A latency or conversion guard that found a regression.
fn proportion_failure(evidence: &Evidence) -> Option<RollbackReason> {
    evidence.guards.iter().find(|guard| guard.verdict == Verdict::Fail).map(|guard| match guard.guard {
        GuardKind::Latency => RollbackReason::LatencyRegression,
        GuardKind::Conversion => RollbackReason::ConversionDrop,
    })
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
    // Latency and conversion guards must have judged something: a silent
    // one is never a pass, and one short of its minimum is not either.
    for guard in &evidence.guards {
        match guard.verdict {
            Verdict::Pass | Verdict::NotApplicable | Verdict::Fail => {}
            Verdict::Unavailable => return Some(Some(HoldReason::GuardSilent)),
            Verdict::Inconclusive => return Some(Some(HoldReason::InsufficientSamples)),
        }
    }
    // Gates must pass (dry-run gates only record).
    for (metric, verdict) in spec.metrics.iter().zip(&evidence.metrics) {
        if metric.role == MetricRole::Gate && !metric.dry_run {
            match verdict.verdict {
                Verdict::Pass | Verdict::NotApplicable => {}
                Verdict::Unavailable => return Some(Some(HoldReason::MetricsUnavailable)),
                Verdict::Fail | Verdict::Inconclusive => return Some(Some(HoldReason::Inconclusive)),
            }
        }
    }
    None
}

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod tests;
