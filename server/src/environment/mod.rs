//! Environments: each one's current snapshot, and every change to it.
//!
//! An environment's flags come from three inputs: its flag files, the flags
//! created through the admin API, and kill-switch overrides of file-owned
//! flags. Every change to any input compiles a new [`Snapshot`] from all
//! three and publishes it through an `ArcSwap`: readers take the current
//! `Arc` without locking and keep it for the whole request, so no request
//! ever sees half a flag set. Changes are serialised per environment by an
//! async mutex around the inputs, held across the store write, so the
//! published snapshot always matches what the store acknowledged.

mod access;
mod inputs;
mod registry;
mod relayed;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rampart_engine::ramp::Exposure;
use rampart_engine::{Flag, LoadError, LoadErrors};
use tokio::sync::Mutex;

pub use access::{KeyRejection, Purpose, RelayRejection, Trust};
use inputs::snapshot;
pub use inputs::{Built, Inputs, compile_api_flag};
pub use registry::{Credentials, Environments};
pub use relayed::UPSTREAM_SOURCE;

use crate::changes::{self, ChangeEvent, Changes};
use crate::config::EnvironmentConfig;
use crate::limits::Limits;
use crate::loader;
use crate::snapshot::Snapshot;
use crate::store::{EnvironmentState, FlagRecord, StateOverride};
use crate::time::Clock;

#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub flag_patterns: Vec<String>,
    /// What the server adds to every evaluation context here.
    pub context: crate::enrichment::Enrichment,
    /// Production (`protected: true`): dangerous dashboard actions here
    /// ask for the name of what they act on.
    pub protected: bool,
    /// Evaluations counted since the last flush to the store.
    pub usage: usage::Usage,
    limits: Arc<Limits>,
    current: ArcSwap<Snapshot>,
    inputs: Mutex<Inputs>,
    /// `inputs.revision`, readable without waiting for the inputs' lock
    /// (held across store writes, which can take the store's timeout).
    revision: AtomicU64,
    /// Every published change, for the streams.
    pub changes: Arc<Changes>,
    /// Where each published snapshot is reported (set once at start-up).
    metrics: OnceLock<Arc<crate::metrics::Metrics>>,
    /// When each snapshot is published.
    clock: Clock,
    /// What the last reload of the files did, for operators (the dashboard).
    last_reload: std::sync::Mutex<Option<ReloadRecord>>,
}

/// A reload of the files, as operators see it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// Unix milliseconds.
    pub at: u64,
    pub result: ReloadResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new files serve, at this snapshot version.
    Applied(u64),
    /// The files are as the served ones.
    Unchanged,
    /// Refused, each problem with its file and line: the last good set serves.
    Rejected(Vec<String>),
}

/// What applying another replica's change did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replicated {
    /// Taken; the new snapshot version when the flags changed.
    Applied(Option<u64>),
    /// Already had it.
    Stale,
    /// A revision between was missed: resynchronise.
    Gap { have: u64 },
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files changed and the new flag set is live, at this version.
    Changed(u64),
    /// The files are as they were.
    Unchanged,
}

impl Environment {
    fn new(config: &EnvironmentConfig, inputs: Inputs, clock: Clock) -> Result<Environment, LoadErrors> {
        let built = inputs.compose()?;
        let snapshot = snapshot(1, built, &inputs, clock.now_millis());
        Ok(Environment {
            name: config.name.clone(),
            flag_patterns: config.flags.clone(),
            context: config.context.clone(),
            protected: config.protected,
            usage: usage::Usage::default(),
            limits: inputs.limits.clone(),
            current: ArcSwap::from_pointee(snapshot),
            revision: AtomicU64::new(inputs.revision),
            inputs: Mutex::new(inputs),
            changes: Changes::new(1),
            metrics: OnceLock::new(),
            clock,
            last_reload: std::sync::Mutex::new(None),
        })
    }

    /// Reports what this environment serves to `metrics`, now and after
    /// every change, whatever made it (files, admin API, ramps, replicas).
    pub fn report_to(&self, metrics: Arc<crate::metrics::Metrics>) {
        metrics.serving(&self.name, &self.snapshot());
        let _ = self.metrics.set(metrics);
    }

    /// The snapshot to serve a request from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the flag files again. An invalid set is returned as `Err` and
    /// the current snapshot keeps serving.
    pub async fn reload_files(&self) -> Result<Reload, LoadErrors> {
        let reload = self.read_files().await;
        let result = match &reload {
            Ok(Reload::Changed(version)) => ReloadResult::Applied(*version),
            Ok(Reload::Unchanged) => ReloadResult::Unchanged,
            Err(errors) => ReloadResult::Rejected(errors.iter().map(ToString::to_string).collect()),
        };
        let record = ReloadRecord { at: self.clock.now_millis(), result };
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
        reload
    }

    /// What the last reload of the files did (`None` before the first).
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn read_files(&self) -> Result<Reload, LoadErrors> {
        let patterns = self.flag_patterns.clone();
        let limits = self.limits.clone();
        let loaded = tokio::task::spawn_blocking(move || loader::read(&patterns, &limits))
            .await
            .map_err(|e| LoadErrors(vec![LoadError::new("<reload>", e.to_string())]))??;
        let mut inputs = self.inputs.lock().await;
        if loaded.digest == inputs.files_digest {
            return Ok(Reload::Unchanged);
        }
        let mut candidate = inputs.clone();
        candidate.set_files(loaded)?;
        let built = candidate.compose()?;
        *inputs = candidate;
        Ok(Reload::Changed(self.publish(built, &inputs)))
    }

    /// Runs `change` with the environment's inputs locked: it may compile a
    /// candidate, write to the store, and return the inputs to publish.
    /// The snapshot is swapped only when it returns `Ok(Some(inputs))`.
    /// Returns the change's result and the snapshot it published (or, when
    /// it published nothing, the one current under the lock): exactly what
    /// this change wrote, whatever other writers do next.
    pub async fn change<T, E>(
        &self,
        change: impl AsyncFnOnce(&Inputs) -> Result<(Option<(Inputs, Built)>, T), E>,
    ) -> Result<(T, Arc<Snapshot>), E> {
        let mut inputs = self.inputs.lock().await;
        let (publish, result) = change(&inputs).await?;
        if let Some((next, built)) = publish {
            *inputs = next;
            self.revision.store(inputs.revision, Ordering::Relaxed);
            self.publish(built, &inputs);
        }
        Ok((result, self.snapshot()))
    }

    /// Sets (or, with `None`, clears) a ramp's exposure of one flag and
    /// publishes the result. Returns the new version, or `None` when nothing changed.
    pub async fn set_exposure(&self, flag: &str, exposure: Option<Exposure>) -> Result<Option<u64>, LoadErrors> {
        let mut inputs = self.inputs.lock().await;
        if inputs.exposures.get(flag) == exposure.as_ref() {
            return Ok(None);
        }
        let mut candidate = inputs.clone();
        let exposures = Arc::make_mut(&mut candidate.exposures);
        match exposure {
            Some(exposure) => exposures.insert(flag.to_owned(), exposure),
            None => exposures.remove(flag),
        };
        let built = candidate.compose()?;
        *inputs = candidate;
        Ok(Some(self.publish(built, &inputs)))
    }

    /// Applies a change another replica committed at `revision` (flags:
    /// `None` for deleted; overrides: `None` for cleared). A revision this
    /// environment has is ignored; one that skips a revision is not applied
    /// and asks for a resynchronisation.
    pub async fn apply_replicated(
        &self,
        revision: u64,
        flags: BTreeMap<String, Option<FlagRecord>>,
        overrides: BTreeMap<String, Option<StateOverride>>,
    ) -> Result<Replicated, LoadErrors> {
        let mut inputs = self.inputs.lock().await;
        if revision <= inputs.revision {
            return Ok(Replicated::Stale);
        }
        if revision != inputs.revision + 1 {
            return Ok(Replicated::Gap { have: inputs.revision });
        }
        let mut candidate = inputs.clone();
        let mut changed = false;
        for (key, record) in flags {
            match record.filter(|r| r.definition.is_some()) {
                Some(record) if candidate.api.get(&key).is_some_and(|r| **r == record) => {}
                Some(record) => {
                    candidate.put_api(&key, record)?;
                    changed = true;
                }
                None if candidate.api.contains_key(&key) => {
                    candidate.remove_api(&key);
                    changed = true;
                }
                None => {}
            }
        }
        for (key, state_override) in overrides {
            if candidate.overrides.get(&key) != state_override.as_ref() {
                match state_override {
                    Some(state_override) => candidate.overrides_mut().insert(key, state_override),
                    None => candidate.overrides_mut().remove(&key),
                };
                changed = true;
            }
        }
        candidate.revision = revision;
        self.install(&mut inputs, candidate, changed)
    }

    /// Replaces the API-owned flags and overrides with a full read of the
    /// shared store, unless this environment is already at least as new
    /// (or, with `restart`, whatever the revisions: the store's data was
    /// lost or replaced and its numbering started again).
    pub async fn resync(&self, state: EnvironmentState, restart: bool) -> Result<Replicated, LoadErrors> {
        let mut inputs = self.inputs.lock().await;
        if state.revision <= inputs.revision && !restart {
            return Ok(Replicated::Stale);
        }
        let mut candidate = inputs.clone();
        let mut changed = false;
        let gone: Vec<String> = candidate.api.keys().filter(|k| !state.flags.contains_key(*k)).cloned().collect();
        for key in gone {
            candidate.remove_api(&key);
            changed = true;
        }
        for (key, record) in state.flags {
            if candidate.api.get(&key).is_none_or(|r| **r != record) {
                candidate.put_api(&key, record)?;
                changed = true;
            }
        }
        if *candidate.overrides != state.overrides {
            candidate.overrides = Arc::new(state.overrides);
            changed = true;
        }
        candidate.revision = state.revision;
        self.install(&mut inputs, candidate, changed)
    }

    /// Takes replicated inputs: compiles and publishes them when the flags
    /// changed; otherwise only the revision moves.
    fn install(&self, inputs: &mut Inputs, candidate: Inputs, changed: bool) -> Result<Replicated, LoadErrors> {
        let built = if changed { Some(candidate.compose()?) } else { None };
        *inputs = candidate;
        self.revision.store(inputs.revision, Ordering::Relaxed);
        Ok(Replicated::Applied(built.map(|built| self.publish(built, inputs))))
    }

    /// The shared store's revision this environment serves.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }

    /// The flag as its files and the admin API define it, without any ramp
    /// exposure: what ramps are validated against.
    pub async fn unramped_flag(&self, key: &str) -> Option<Arc<Flag>> {
        let inputs = self.inputs.lock().await;
        inputs.file_flags.shared().find(|f| f.key() == key).or_else(|| inputs.api_flags.get(key)).cloned()
    }

    fn publish(&self, built: Built, inputs: &Inputs) -> u64 {
        let previous = self.current.load_full();
        let version = previous.version + 1;
        let changed = changes::diff(&previous.flags, &built.flags);
        let next = Arc::new(snapshot(version, built, inputs, self.clock.now_millis()));
        self.current.store(next.clone());
        if let Some(metrics) = self.metrics.get() {
            metrics.serving(&self.name, &next);
        }
        self.changes.publish(ChangeEvent::new(previous.version, &next, changed));
        version
    }
}
