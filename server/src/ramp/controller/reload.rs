//! Ramp files edited on disk: every environment's files read again, each
//! ramp's edit applied, refused (a fixed field changed, or its step is
//! gone) or frozen (its file removed), and a set of files that does not
//! validate rejected as a whole — reported once, the ramps keeping their
//! last good configuration.

use std::sync::Arc;

use rampart_engine::LoadErrors;

use super::leases::lease_name;
use super::{Controller, run_id};
use crate::environment::Environment;
use crate::model::{Event, EventKind, Evidence, Run, Status};
use crate::ramp::files::Bound;
use crate::ramp::spec::{self, RampSpec};
use crate::ramp::webhooks;
use crate::store::{RampWrite, StoreError};

impl Controller {
    /// Re-reads every environment's ramp files after a change on disk. An
    /// invalid set is logged with file and line and changes nothing.
    pub async fn reload(&self) {
        for environment in self.environments.iter() {
            let bound = match self.read(environment).await {
                Ok(bound) => {
                    self.rejected.lock().unwrap_or_else(|e| e.into_inner()).remove(&environment.name);
                    bound
                }
                Err(errors) => {
                    self.reject(environment, errors).await;
                    continue;
                }
            };
            let mut present = Vec::new();
            for bound in bound {
                present.push(bound.spec.name.clone());
                if let Err(error) = self.reload_one(environment, bound).await {
                    tracing::error!(environment = %environment.name, %error, "cannot apply ramp file");
                }
            }
            for entry in self.entries().into_iter().filter(|e| e.environment == environment.name) {
                if present.contains(&entry.name) {
                    continue;
                }
                let mut state = entry.state.lock().await;
                if !state.file_missing {
                    tracing::warn!(environment = %entry.environment, ramp = %entry.name, percent = state.run.percent(), "ramp file removed: the ramp is frozen at its percent");
                    state.file_missing = true;
                    state.frozen = true;
                }
            }
        }
    }

    /// An invalid edit of an environment's ramp files: the ramps keep their
    /// last good configuration; the problems are logged, audited (on the
    /// ramps whose files they are in) and shown in their status — once per
    /// edit, however often the files are read again — and the environment's
    /// `rampart_config_last_reload_success` is 0 until they are fixed.
    async fn reject(&self, environment: &Arc<Environment>, errors: LoadErrors) {
        self.metrics.config_last_reload_ok.with_label_values(&[&environment.name]).set(0);
        let new = {
            let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            let previous = rejected.insert(environment.name.clone(), errors.0.clone());
            previous.as_ref() != Some(&errors.0)
        };
        if !new {
            return;
        }
        for error in errors.iter() {
            tracing::error!(environment = %environment.name, file = %error.file, line = error.line, ramp = error.ramp.as_deref(), "rejected ramp files, the ramps keep their last good configuration: {error}");
        }
        for entry in self.entries().into_iter().filter(|e| e.environment == environment.name) {
            if entry.token().is_none() {
                continue;
            }
            let state = entry.state.lock().await;
            let lines: Vec<String> = errors
                .iter()
                .filter(|e| e.file == state.spec.file || e.ramp.as_deref() == Some(entry.name.as_str()))
                .map(ToString::to_string)
                .collect();
            if lines.is_empty() {
                continue;
            }
            let write = RampWrite {
                environment: environment.name.clone(),
                ramp: entry.name.clone(),
                expect: Some((state.run.run_id.clone(), state.run.seq)),
                run: state.run.clone(),
                record: None,
                audit: vec![("file".to_owned(), "ramp.file_rejected".to_owned(), lines)],
                outbox: Vec::new(),
                fence: entry.fence(),
            };
            if let Err(error) = self.store.write_ramp(write).await {
                tracing::warn!(environment = %environment.name, ramp = %entry.name, %error, "cannot audit the rejected ramp file");
            }
        }
    }

    /// The problems of the last rejected edit of a ramp's file, if any.
    pub(super) fn file_errors(&self, environment: &str, ramp: &str, file: &str) -> Vec<String> {
        let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        rejected
            .get(environment)
            .map(|errors| {
                errors
                    .iter()
                    .filter(|e| e.file == file || e.ramp.as_deref() == Some(ramp))
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn reload_one(&self, environment: &Arc<Environment>, bound: Bound) -> Result<(), StoreError> {
        let Some(entry) = self.entry(&environment.name, &bound.spec.name) else {
            let stored = self
                .store
                .ramp_runs()
                .await?
                .into_iter()
                .find(|s| s.environment == environment.name && s.ramp == bound.spec.name)
                .map(|s| s.run);
            tracing::info!(environment = %environment.name, ramp = %bound.spec.name, "new ramp file");
            let lease = lease_name(&environment.name, &bound.spec.name);
            return match self.store.acquire_lease(&lease, &self.holder, self.lease_ttl).await? {
                Some(token) => self.adopt(environment, bound, stored, token).await,
                None => {
                    self.follow(environment, bound, stored).await;
                    Ok(())
                }
            };
        };
        let leading = entry.token().is_some();
        let mut state = entry.state.lock().await;
        if state.spec.digest == bound.spec.digest && !state.file_missing && state.refused.is_none() {
            return Ok(());
        }
        let spec = bound.spec.clone();
        if spec.revision != state.run.revision && !leading {
            // The replica driving the ramp starts the new run; it arrives
            // here through the store.
            state.spec = spec;
            state.refused = None;
            state.frozen = false;
            state.file_missing = false;
            state.warnings = spec::warnings(&state.spec);
            return Ok(());
        }
        if spec.revision != state.run.revision {
            // A new revision: a new run from step 0.
            let now = self.clock.now_millis();
            let mut run = spec.new_run(&bound.control, run_id(now), now);
            run.seq = state.run.seq + 1;
            let events = vec![Event::new(EventKind::Restarted, Some(format!("revision {}", spec.revision)), "file")];
            state.spec = spec;
            state.refused = None;
            state.frozen = false;
            state.file_missing = false;
            state.warnings = spec::warnings(&state.spec);
            state.last_tick = None;
            return self.persist(environment, &entry, &mut state, run, events, Evidence::default()).await;
        }
        if let Some(refused) = refusal(&spec, &bound.control, &state.run) {
            if leading && state.refused.as_deref() != Some(refused.as_str()) {
                tracing::warn!(environment = %environment.name, ramp = %spec.name, file = %spec.file, "ramp edit refused: {refused}");
                let audit = vec![(
                    "file".to_owned(),
                    "ramp.config_change_refused".to_owned(),
                    vec![format!("ramp {}: {refused}", spec.name)],
                )];
                let event = Event::new(EventKind::ConfigChangeRefused, Some(refused.clone()), "file");
                let outbox = webhooks::deliveries(&spec, &environment.name, &state.run, &[event], &Evidence::default());
                let write = RampWrite {
                    environment: environment.name.clone(),
                    ramp: spec.name.clone(),
                    expect: Some((state.run.run_id.clone(), state.run.seq)),
                    run: state.run.clone(),
                    record: None,
                    audit,
                    outbox,
                    fence: entry.fence(),
                };
                self.store.write_ramp(write).await?;
                self.metrics
                    .ramp_transitions
                    .with_label_values(&[&environment.name, &spec.name, EventKind::ConfigChangeRefused.as_str(), ""])
                    .inc();
            }
            state.refused = Some(refused);
            state.file_missing = false;
            return Ok(());
        }
        tracing::info!(environment = %environment.name, ramp = %spec.name, "ramp file change applied");
        remap_step(&spec, &mut state.run);
        state.spec = spec;
        state.refused = None;
        state.file_missing = false;
        // A frozen run that was refused at start-up thaws when the file is fixed.
        state.frozen = false;
        state.warnings = spec::warnings(&state.spec);
        Ok(())
    }
}

/// Why a spec cannot drive a run: fixed fields differ, or the run's current
/// percent is no longer a step.
pub(super) fn refusal(spec: &RampSpec, control: &str, run: &Run) -> Option<String> {
    let running = RampSpec {
        flag: run.flag.clone(),
        treatment: run.treatment.clone(),
        control: Some(run.control.clone()),
        salt: run.salt.clone(),
        environment: spec.environment.clone(),
        dry_run: run.dry_run,
        ..spec.clone()
    };
    let candidate = RampSpec { control: Some(control.to_owned()), ..spec.clone() };
    let bp =
        if matches!(run.status, Status::Pending { .. }) || run.status.is_terminal() { 0 } else { run.basis_points };
    candidate.live_edit_refusal(&running, bp)
}

/// Points the run's step index at the step with its current percent (steps
/// may have been inserted or removed before it).
pub(super) fn remap_step(spec: &RampSpec, run: &mut Run) {
    if matches!(run.status, Status::Pending { .. }) || run.status.is_terminal() {
        return;
    }
    if let Some(index) = spec.steps.iter().position(|s| s.basis_points == run.basis_points) {
        run.step = index;
    }
}
