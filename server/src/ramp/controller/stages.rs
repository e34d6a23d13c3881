//! Release pipelines (`kind: Release`) as the controller runs them: a
//! stage starts once the stage before it has completed (promoting an
//! API-owned flag into its environment first), and with
//! `rollbackEarlierStages` a rollback takes the earlier stages back too.
//! Each stage is otherwise an ordinary ramp (`ramp/release.rs` reads it).
//!
//! Locks: a stage only ever looks at the stages before it, so the locks a
//! tick takes follow the pipeline backwards and never form a cycle.

use std::sync::Arc;

use super::Controller;
use crate::model::{Evidence, RollbackReason, Run, Status};
use crate::ramp::decide;
use crate::ramp::spec::RampSpec;
use crate::store::StoreError;

impl Controller {
    /// Whether a pending stage must keep waiting: its previous stage has
    /// not completed (or its flag cannot be promoted here yet).
    pub(super) async fn previous_stage_open(
        &self,
        spec: &RampSpec,
        run: &Run,
        environment: &Arc<crate::environment::Environment>,
    ) -> bool {
        if !matches!(run.status, Status::Pending { .. }) {
            return false;
        }
        let Some((previous, ramp)) = spec.stage.as_ref().and_then(|stage| stage.previous()) else { return false };
        let open = match self.entry(previous, ramp) {
            Some(entry) => !matches!(entry.state.lock().await.run.status, Status::Completed),
            None => true,
        };
        open || !self.promote_stage_flag(previous, environment, &spec.flag, ramp).await
    }

    /// After this stage rolled back: the earlier stages too, when the
    /// release says so (`rollbackEarlierStages`).
    pub(super) async fn roll_back_earlier_stages(&self, spec: &RampSpec, environment: &str, now: u64) {
        let Some(stage) = spec.stage.as_ref().filter(|stage| stage.rollback_earlier) else { return };
        for earlier in stage.earlier() {
            if let Err(error) = self.roll_back_stage(earlier, &stage.release, environment, now).await {
                tracing::error!(environment = %earlier, ramp = %stage.release, %error, "cannot roll back an earlier stage");
            }
        }
    }

    /// A stage about to start whose flag is API-owned in the previous
    /// stage's environment: the flag is promoted here first (the admin
    /// API's promotion, audited, by `release`). False when it cannot be
    /// (the stage waits and tries again next tick).
    async fn promote_stage_flag(
        &self,
        previous: &str,
        here: &Arc<crate::environment::Environment>,
        flag: &str,
        release: &str,
    ) -> bool {
        let Some(from) = self.environments.get(previous) else { return true };
        if !from.snapshot().api.contains_key(flag) {
            // File-owned there: each environment's files define it (bound and checked at load).
            return true;
        }
        let reason = format!("release '{release}': its stage in '{previous}' completed");
        let actor = crate::writes::Actor::new("release", Some(&reason));
        match self.writes.promote(from, here, actor, Some(&[flag.to_owned()]), false).await {
            Ok(promotion) => {
                if promotion.applied {
                    tracing::info!(from = %previous, to = %here.name, %flag, %release, "promoted the release's flag into the next stage's environment");
                }
                true
            }
            Err(error) => {
                tracing::error!(from = %previous, to = %here.name, %flag, %release, %error, "cannot promote the release's flag: the stage waits");
                false
            }
        }
    }

    /// Rolls a release's earlier stage back to 0 % because a later stage
    /// rolled back (`rollbackEarlierStages`), completed or not.
    async fn roll_back_stage(&self, environment: &str, ramp: &str, because: &str, now: u64) -> Result<(), StoreError> {
        let (Some(entry), Some(env)) = (self.entry(environment, ramp), self.environments.get(environment).cloned())
        else {
            return Ok(());
        };
        let mut state = entry.state.lock().await;
        if matches!(state.run.status, Status::RolledBack { .. } | Status::Pending { .. }) {
            return Ok(());
        }
        let (next, mut event) = decide::rolled_back(&state.run, RollbackReason::LaterStage, "release", now);
        event.note = Some(format!("the release's stage in '{because}' rolled back"));
        tracing::warn!(%environment, %ramp, %because, "rolling an earlier stage of the release back");
        self.persist(&env, &entry, &mut state, next, vec![event], Evidence::default()).await
    }
}

#[cfg(test)]
mod tests;
