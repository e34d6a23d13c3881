//! A ramp as it stands — spec, run, what is frozen or refused, and fresh
//! evidence — for the admin API to present (`http/admin/ramp_view.rs`).

use std::sync::Arc;

use super::{Controller, Entry};
use crate::model::{Evidence, Run};
use crate::ramp::spec::RampSpec;

/// One ramp at one moment.
#[derive(Debug, Clone)]
pub struct RampView {
    pub environment: String,
    pub name: String,
    pub spec: Arc<RampSpec>,
    pub run: Run,
    /// The ramp file is gone or an edit could not be applied.
    pub frozen: bool,
    pub file_missing: bool,
    pub refused_change: Option<String>,
    /// Problems of the last edit of the ramp's file, which was rejected
    /// (the ramp keeps its last good configuration until it is fixed).
    pub file_errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Observed now; `None` for an ended run.
    pub evidence: Option<Evidence>,
    /// When the view was taken (unix ms).
    pub at: u64,
    /// Whether the environment serves the ramp's flag enabled (a kill
    /// switch turns it off: the ramp then exposes nobody).
    pub flag_enabled: bool,
}

impl Controller {
    /// A ramp with fresh evidence (observed within the tick budget).
    pub async fn view(&self, entry: &Entry) -> RampView {
        self.view_with(entry, true).await
    }

    /// A ramp as it stands, without observing it (no evidence): cheap
    /// enough for lists.
    pub async fn glance(&self, entry: &Entry) -> RampView {
        self.view_with(entry, false).await
    }

    async fn view_with(&self, entry: &Entry, observe: bool) -> RampView {
        let state = entry.state.lock().await.clone();
        let now = self.clock.now_millis();
        let flag_enabled = self.environments.get(&entry.environment).is_some_and(|environment| {
            environment
                .snapshot()
                .flags
                .get(&state.run.flag)
                .is_some_and(|flag| flag.state() == rampart_engine::FlagState::Enabled)
        });
        let evidence = match self.environments.get(&entry.environment) {
            Some(environment) if observe && !state.run.status.is_terminal() => {
                let observation = self
                    .observer
                    .observe(environment, &entry.name, &entry.bucket_cache, &state.spec, &state.run, now)
                    .await;
                let mut evidence = crate::ramp::evidence::explain(&state.run, &state.spec, &observation, now);
                evidence.refused_outcomes = entry.refused_outcomes();
                Some(evidence)
            }
            _ => None,
        };
        RampView {
            environment: entry.environment.clone(),
            name: entry.name.clone(),
            file_errors: self.file_errors(&entry.environment, &entry.name, &state.spec.file),
            spec: state.spec,
            run: state.run,
            frozen: state.frozen,
            file_missing: state.file_missing,
            refused_change: state.refused,
            warnings: state.warnings,
            evidence,
            at: now,
            flag_enabled,
        }
    }

    /// Every ramp of every environment.
    pub async fn views(&self) -> Vec<RampView> {
        let mut out = Vec::new();
        for entry in self.entries() {
            out.push(self.view(&entry).await);
        }
        out
    }
}
