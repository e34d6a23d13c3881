//! A transition and everything written with it: the run (compare-and-set
//! on `(run id, seq)`, fenced by the lease), its decision record, audit
//! entries and webhook deliveries in one store write — and only then the
//! exposure, metrics, logs and the pruning of outcome buckets no longer
//! needed.

use std::sync::Arc;

use rampart_engine::ramp::Exposure;

use super::{Controller, Entry, EntryState};
use crate::environment::Environment;
use crate::model::{Event, Evidence, Run};
use crate::store::{RampDecisionRecord, RampWrite, StoreError};

impl Controller {
    /// Writes a transition, then (only then) changes exposure.
    pub(super) async fn persist(
        &self,
        environment: &Arc<Environment>,
        entry: &Entry,
        state: &mut EntryState,
        next: Run,
        events: Vec<Event>,
        evidence: Evidence,
    ) -> Result<(), StoreError> {
        let before = state.run.clone();
        let write = transition(entry, state, &before, &next, &events, evidence);
        match self.store.write_ramp(write).await {
            Ok(()) => {}
            Err(error @ StoreError::Fenced { .. }) => {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, %error, "late write of a stale lease holder refused; another replica drives the ramp");
                self.metrics.ramp_fenced_writes.with_label_values(&[&entry.environment, &entry.name]).inc();
                self.metrics.ramp_leader.with_label_values(&[&entry.environment, &entry.name]).set(0);
                entry.set_token(None);
                self.refresh(environment, entry, state).await;
                return Err(error);
            }
            Err(error @ StoreError::Conflict { .. }) => {
                self.refresh(environment, entry, state).await;
                return Err(error);
            }
            Err(error) => return Err(error),
        }
        state.run = next.clone();
        entry.set_counting(&next, &state.spec);
        for event in &events {
            let (name, reason) = (event.name(), event.reason.clone().unwrap_or_default());
            self.metrics.ramp_transitions.with_label_values(&[&entry.environment, &entry.name, &name, &reason]).inc();
            if event.kind.is_warning() {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, run = %next.run_id, event = %name, reason = %reason, by = %event.by, percent = next.percent(), "ramp {name}");
            } else {
                tracing::info!(environment = %entry.environment, ramp = %entry.name, run = %next.run_id, event = %name, reason = %reason, by = %event.by, percent = next.percent(), "ramp {name}");
            }
        }
        self.metrics.ramp(&entry.environment, &entry.name, next.status.name(), next.percent());
        if before.basis_points != next.basis_points || before.run_id != next.run_id {
            self.apply_exposure(environment, &next).await;
        }
        self.prune_buckets(&entry.environment, &before, &next).await;
        Ok(())
    }

    /// Outcome buckets a run no longer reads: all of them once it ended,
    /// those before the step's start when a step begins.
    async fn prune_buckets(&self, environment: &str, before: &Run, next: &Run) {
        let before_second = if next.status.is_terminal() {
            next.updated_at / 1000 + 1
        } else if before.step_started_at != next.step_started_at || before.run_id != next.run_id {
            next.step_started_at / 1000
        } else {
            return;
        };
        if let Err(error) = self.store.prune_outcomes(environment, &next.flag, before_second).await {
            tracing::warn!(%error, "cannot prune outcome buckets");
        }
    }

    /// Sets the environment's exposure from a persisted run; a dry-run ramp
    /// never exposes anyone.
    pub(super) async fn apply_exposure(&self, environment: &Environment, run: &Run) {
        let exposure = (run.basis_points > 0 && !run.dry_run).then(|| Exposure {
            treatment: run.treatment.clone(),
            control: run.control.clone(),
            salt: run.salt.clone(),
            basis_points: run.basis_points,
        });
        if let Err(errors) = environment.set_exposure(&run.flag, exposure).await {
            tracing::error!(environment = %environment.name, flag = %run.flag, %errors, "cannot apply ramp exposure");
        }
    }
}

/// The store write of a transition from `before` to `next`.
fn transition(
    entry: &Entry,
    state: &EntryState,
    before: &Run,
    next: &Run,
    events: &[Event],
    evidence: Evidence,
) -> RampWrite {
    let status_changed = before.status != next.status || before.step != next.step || before.run_id != next.run_id;
    let outbox = super::super::webhooks::deliveries(&state.spec, &entry.environment, next, events, &evidence);
    let record = (status_changed || !events.is_empty()).then(|| RampDecisionRecord {
        at: next.updated_at,
        run_id: next.run_id.clone(),
        seq: next.seq,
        from: before.status.name().into(),
        to: next.status.name().into(),
        reason: next.status.reason().map(str::to_owned),
        step: next.step,
        percent: next.percent(),
        events: events.to_vec(),
        evidence,
        config: hex::encode(state.spec.digest),
        by: events.first().map_or_else(|| "controller".into(), |e| e.by.clone()),
    });
    let audit = events
        .iter()
        .map(|event| {
            let name = event.name();
            let reason = event.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            let mut changes = vec![format!(
                "ramp {} run {}: {name}{reason}, step {} at {}%",
                entry.name,
                next.run_id,
                next.step + 1,
                next.percent()
            )];
            if let Some(note) = &event.note {
                changes.push(format!("reason: {note}"));
            }
            (event.by.clone(), format!("ramp.{name}"), changes)
        })
        .collect();
    RampWrite {
        environment: entry.environment.clone(),
        ramp: entry.name.clone(),
        expect: Some((before.run_id.clone(), before.seq)),
        run: next.clone(),
        record,
        audit,
        outbox,
        fence: entry.fence(),
    }
}
