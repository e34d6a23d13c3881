//! A ramp's verdict for deployment tools — `pass`, `fail` or `pending` —
//! from its state and its current evidence (`GET …/ramps/{env}/{name}/verdict`).
//!
//! - **pass**: the ramp completed, or the treatment is proven not worse at
//!   the current step: the proof a step needs to advance (rate-ratio or
//!   difference bound at the advance confidence) with the step's minimum
//!   samples in both arms. A deployment canary gated on a flag can proceed.
//! - **fail**: the ramp rolled back, or a guard paused it on a regression.
//! - **pending**: anything else — not started, collecting evidence, held,
//!   paused by an operator, awaiting approval.
//!
//! A pure function of the controller's view, like the decision itself.

use serde::Serialize;

use super::controller::RampView;
use super::evidence::not_worse;
use crate::model::{PauseReason, Status};
use rampart_engine::ramp::FULL;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Pending,
}

/// A verdict and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
}

/// The verdict on a ramp as it stands.
pub fn judge(view: &RampView) -> Judgement {
    let run = &view.run;
    let percent = f64::from(run.basis_points) / 100.0;
    let judged = |verdict, reason: String| Judgement { verdict, reason };
    match &run.status {
        Status::RolledBack { by, .. } => {
            let reason = run.status.reason().unwrap_or("rolled back");
            return judged(Verdict::Fail, format!("rolled back to 0% ({reason}, by {by})"));
        }
        Status::Completed => return judged(Verdict::Pass, "completed: the treatment serves 100%".into()),
        Status::Paused { reason: PauseReason::Regression, .. } => {
            return judged(Verdict::Fail, format!("paused at {percent}% by a guard on a regression"));
        }
        _ => {}
    }
    let step = view.spec.steps.get(run.step);
    let proven = match (&view.evidence, step) {
        (Some(evidence), Some(step)) if run.basis_points < FULL && !matches!(run.status, Status::Pending { .. }) => {
            evidence.treatment.exposures >= step.min_samples
                && evidence.control.exposures >= step.min_samples
                && not_worse(evidence.treatment, evidence.control, &view.spec)
        }
        _ => false,
    };
    if proven {
        return judged(Verdict::Pass, format!("the treatment is proven not worse than the control at {percent}%"));
    }
    let state = match run.status.reason() {
        Some(reason) => format!("{} ({reason})", run.status.name()),
        None => run.status.name().to_owned(),
    };
    let missing = view.evidence.as_ref().and_then(|e| e.missing_to_advance.first().cloned());
    judged(
        Verdict::Pending,
        match missing {
            Some(missing) => format!("{state} at {percent}%: still missing {missing}"),
            None => format!("{state} at {percent}%"),
        },
    )
}
