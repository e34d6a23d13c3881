//! What the controller offers alerts (`http::admin::alerts`): the ramps an
//! alert names, what each ramp's file says an alert does, and an audit
//! line for an alert that changed nothing (resolved, or the ramp already
//! stopped).

use std::sync::Arc;

use super::{Controller, Entry};
use crate::ramp::spec::Action;
use crate::store::{RampWrite, StoreError};

/// What an alert's labels name.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertTarget<'a> {
    pub environment: Option<&'a str>,
    pub ramp: Option<&'a str>,
    pub flag: Option<&'a str>,
}

impl Controller {
    /// The ramps an alert names — by ramp name, or every ramp of the named
    /// flag — in its environment (every environment when it names none),
    /// with what the ramp's file says a firing alert does. Nothing when it
    /// names neither a ramp nor a flag.
    pub async fn alert_targets(&self, target: AlertTarget<'_>) -> Vec<(Arc<Entry>, Action)> {
        if target.ramp.is_none() && target.flag.is_none() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for entry in self.entries() {
            if target.environment.is_some_and(|environment| environment != entry.environment)
                || target.ramp.is_some_and(|ramp| ramp != entry.name)
            {
                continue;
            }
            let state = entry.state.lock().await;
            if target.flag.is_some_and(|flag| flag != state.spec.flag) {
                continue;
            }
            let action = state.spec.policy.on_alert;
            drop(state);
            found.push((entry, action));
        }
        found
    }

    /// Appends an audit line to a ramp without changing it.
    pub async fn audit_note(
        &self,
        entry: &Entry,
        actor: &str,
        action: &str,
        lines: Vec<String>,
    ) -> Result<(), StoreError> {
        let state = entry.state.lock().await;
        let write = RampWrite {
            environment: entry.environment.clone(),
            ramp: entry.name.clone(),
            expect: Some((state.run.run_id.clone(), state.run.seq)),
            run: state.run.clone(),
            record: None,
            audit: vec![(actor.to_owned(), action.to_owned(), lines)],
            outbox: Vec::new(),
            fence: None,
        };
        self.store.write_ramp(write).await
    }
}
