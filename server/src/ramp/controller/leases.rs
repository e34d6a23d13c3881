//! Which replica drives which ramp: a lease per ramp in the store, with a
//! fencing token every write of the driver carries, so a replica paused
//! past its lease cannot apply a step late.

use super::{Controller, Entry};
use crate::store::Fence;
use crate::time::Clock;

/// A name for this process in leases: host, process id and start time.
pub(super) fn replica_id(clock: &Clock) -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "rampart".into());
    format!("{host}-{}-{:x}", std::process::id(), clock.now_millis())
}

/// The lease's name in the store.
pub(super) fn lease_name(environment: &str, ramp: &str) -> String {
    format!("ramp:{environment}/{ramp}")
}

impl Entry {
    pub(super) fn lease_name(&self) -> String {
        lease_name(&self.environment, &self.name)
    }

    /// This replica's fencing token for the ramp, while it holds the lease.
    pub(super) fn token(&self) -> Option<u64> {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_token(&self, token: Option<u64>) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// What the driver's writes carry.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.token().map(|token| Fence { lease: self.lease_name(), token })
    }
}

impl Controller {
    /// Takes or renews the lease of every ramp. A replica that takes one
    /// over first reads the ramp's state from the store, so it resumes at
    /// the step the previous holder persisted.
    pub(super) async fn maintain_leases(&self) {
        for entry in self.entries() {
            let before = entry.token();
            match self.store.acquire_lease(&entry.lease_name(), &self.holder, self.lease_ttl).await {
                Ok(Some(token)) => {
                    if before != Some(token) {
                        let Some(environment) = self.environments.get(&entry.environment).cloned() else { continue };
                        let mut state = entry.state.lock().await;
                        self.refresh(&environment, &entry, &mut state).await;
                        state.last_tick = None;
                        entry.set_token(Some(token));
                        if before.is_none() {
                            tracing::info!(environment = %entry.environment, ramp = %entry.name, token, step = state.run.step + 1, state = state.run.status.name(), "took the ramp's lease: this replica drives it");
                        }
                    }
                }
                Ok(None) => {
                    if before.is_some() {
                        tracing::warn!(environment = %entry.environment, ramp = %entry.name, "lost the ramp's lease: another replica drives it");
                        entry.set_token(None);
                    }
                }
                Err(error) => {
                    tracing::debug!(environment = %entry.environment, ramp = %entry.name, %error, "cannot renew the ramp's lease");
                }
            }
            self.metrics
                .ramp_leader
                .with_label_values(&[&entry.environment, &entry.name])
                .set(i64::from(entry.token().is_some()));
        }
    }

    /// Gives every held lease up, so another replica takes over at once.
    pub async fn release_leases(&self) {
        for entry in self.entries() {
            if entry.token().is_some() {
                entry.set_token(None);
                if let Err(error) = self.store.release_lease(&entry.lease_name(), &self.holder).await {
                    tracing::warn!(environment = %entry.environment, ramp = %entry.name, %error, "cannot release the ramp's lease");
                }
            }
        }
    }
}
