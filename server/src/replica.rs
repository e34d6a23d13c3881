//! Keeping a replica in step with the others through the Redis store.
//!
//! Every commit bumps its environment's revision and publishes the records
//! it wrote; every ramp write bumps the ramps' revision and publishes the
//! run. This task applies those messages in revision order. Pub/sub loses
//! whatever is sent while a connection is down, so nothing relies on it
//! alone:
//!
//! - a message that skips a revision triggers a full read of that
//!   environment (or of all ramps);
//! - every second the newest revisions are read (one `MGET`): a replica
//!   found behind on two checks in a row — so not merely racing a message
//!   in flight — reads the environment again;
//! - a dropped subscription forces that check at once.
//!
//! While Redis is away the snapshot keeps serving; reads resume, and the
//! replica catches up, when it returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::environment::{Environment, Environments, Replicated};
use crate::metrics::Metrics;
use crate::ramp::controller::Controller;
use crate::store::redis::{Notice, RedisStore};

/// How often the newest revisions are compared with what is served.
const CHECK: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Replica {
    pub store: Arc<RedisStore>,
    pub environments: Arc<Environments>,
    pub controller: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    /// The ramps' revision taken at start-up (with the runs).
    pub ramps_revision: u64,
    /// The store data's epoch at start-up.
    pub epoch: String,
}

impl Replica {
    pub async fn run(mut self, mut notices: mpsc::UnboundedReceiver<Notice>, shutdown: CancellationToken) {
        let names: Vec<String> = self.environments.iter().map(|e| e.name.clone()).collect();
        // Revisions found behind at the last check.
        let mut behind: BTreeMap<String, u64> = BTreeMap::new();
        let mut ramps_behind: Option<u64> = None;
        let mut check = tokio::time::interval(CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set when the subscription dropped: the next check that reaches
        // Redis reads every lagging environment at once.
        let mut force = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = notices.recv() => match notice {
                    None => return,
                    Some(Notice::Disconnected) => {
                        tracing::warn!("lost the change subscription; resynchronising when redis answers");
                        force = true;
                    }
                    Some(notice) => {
                        self.apply(notice).await;
                        continue;
                    }
                },
                _ = check.tick() => {}
            }
            self.store.ping_subscriber().await;
            let Ok(revisions) = self.store.revisions(&names).await else {
                self.metrics.store_up.set(0);
                continue;
            };
            self.metrics.store_up.set(1);
            if revisions.epoch.as_ref() != Some(&self.epoch) {
                self.restart().await;
                continue;
            }
            let ramps = revisions.ramps;
            for (name, revision) in names.iter().zip(revisions.environments) {
                let Some(environment) = self.environments.get(name).cloned() else { continue };
                let have = environment.revision();
                if revision <= have {
                    behind.remove(name);
                    continue;
                }
                if force || behind.get(name).is_some_and(|seen| *seen <= revision && *seen > have) {
                    behind.remove(name);
                    self.resync(&environment).await;
                } else {
                    behind.insert(name.clone(), revision);
                }
            }
            if ramps <= self.ramps_revision {
                ramps_behind = None;
            } else if force || ramps_behind.is_some_and(|seen| seen > self.ramps_revision) {
                ramps_behind = None;
                self.resync_ramps().await;
            } else {
                ramps_behind = Some(ramps);
            }
            force = false;
        }
    }

    async fn apply(&mut self, notice: Notice) {
        match notice {
            Notice::Environment { environment, revision, flags, overrides } => {
                let Some(env) = self.environments.get(&environment).cloned() else { return };
                match env.apply_replicated(revision, flags, overrides).await {
                    Ok(Replicated::Applied(Some(version))) => {
                        tracing::debug!(environment = %env.name, revision, version, "applied a change from the store");
                    }
                    Ok(Replicated::Applied(None) | Replicated::Stale) => {}
                    Ok(Replicated::Gap { have }) => {
                        tracing::info!(environment = %env.name, have, revision, "missed changes; resynchronising");
                        self.resync(&env).await;
                    }
                    Err(errors) => {
                        tracing::error!(environment = %env.name, revision, %errors, "cannot apply a change from the store; the last good flags keep serving");
                    }
                }
            }
            Notice::Ramp { revision, environment, ramp, run } => {
                self.controller.apply_remote(&environment, &ramp, *run).await;
                if revision == self.ramps_revision + 1 {
                    self.ramps_revision = revision;
                } else if revision > self.ramps_revision {
                    self.resync_ramps().await;
                }
            }
            Notice::Disconnected => {}
        }
    }

    /// Redis lost its data or was replaced: its revisions started again.
    /// Everything is read again from what it now holds (the shared store is
    /// the source of truth; run Redis with persistence, docs/deploy.md).
    async fn restart(&mut self) {
        let Ok(epoch) = self.store.epoch().await else { return };
        tracing::error!(previous = %self.epoch, now = %epoch, "redis lost its data or was replaced: reading everything again from it");
        for environment in self.environments.iter() {
            self.resync_with(environment, true).await;
        }
        self.ramps_revision = 0;
        self.resync_ramps().await;
        self.epoch = epoch;
    }

    async fn resync(&self, environment: &Arc<Environment>) {
        self.resync_with(environment, false).await;
    }

    async fn resync_with(&self, environment: &Arc<Environment>, restart: bool) {
        self.metrics.replication_resyncs.with_label_values(&[&environment.name]).inc();
        let state = match self.store.load_environment(&environment.name).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(environment = %environment.name, %error, "cannot resynchronise");
                return;
            }
        };
        let revision = state.revision;
        match environment.resync(state, restart).await {
            Ok(Replicated::Applied(_)) => {
                tracing::info!(environment = %environment.name, revision, "resynchronised from the store");
            }
            Ok(_) => {}
            Err(errors) => {
                tracing::error!(environment = %environment.name, revision, %errors, "the stored flags do not compile here; the last good flags keep serving");
            }
        }
    }

    async fn resync_ramps(&mut self) {
        match self.store.load_ramps().await {
            Ok((revision, runs)) => {
                for stored in runs {
                    self.controller.apply_remote(&stored.environment, &stored.ramp, stored.run).await;
                }
                self.ramps_revision = self.ramps_revision.max(revision);
            }
            Err(error) => tracing::warn!(%error, "cannot resynchronise the ramps"),
        }
    }
}
