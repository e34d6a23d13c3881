//! Environments and their snapshots.
//!
//! An environment's flags come from three inputs: its flag files, the flags
//! created through the admin API, and kill-switch overrides of file-owned
//! flags. Every change to any input compiles a new [`Snapshot`] from all
//! three and publishes it through an `ArcSwap`: readers take the current
//! `Arc` without locking and keep it for the whole request, so no request
//! ever sees half a flag set. Changes are serialised per environment by an
//! async mutex around the inputs, held across the store write, so the
//! published snapshot always matches what the store acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rampart_engine::{FlagSet, FlagState, LoadError, LoadErrors, Source};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::config::{EnvironmentConfig, KeyDigest, ServerConfig};
use crate::loader::{self, FileText};
use crate::store::{EnvironmentState, FlagRecord, StateOverride};

/// The source name of flags created through the admin API.
pub const API_SOURCE: &str = "<admin api>";

/// One environment's configuration at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Starts at 1 and grows by one with every change.
    pub version: u64,
    pub flags: FlagSet,
    /// Digest of the flag files.
    pub files_digest: [u8; 32],
    pub files: Vec<String>,
    /// API-owned flags, with their versions.
    pub api: BTreeMap<String, FlagRecord>,
    /// Kill-switch overrides of file-owned flags (also those whose flag has
    /// since left the files: they show up as drift).
    pub overrides: BTreeMap<String, StateOverride>,
    /// What the files say for flags whose state is overridden.
    pub file_states: BTreeMap<String, FlagState>,
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// The file a flag comes from, when it is file-owned.
    pub fn file_of(&self, key: &str) -> Option<&str> {
        self.flags.get(key).map(|f| f.source()).filter(|s| *s != API_SOURCE)
    }
}

/// The inputs a snapshot is compiled from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub files: Vec<FileText>,
    pub files_digest: [u8; 32],
    pub api: BTreeMap<String, FlagRecord>,
    pub overrides: BTreeMap<String, StateOverride>,
}

impl Inputs {
    /// Compiles files, API flags and overrides into one flag set. A key
    /// defined both in a file and through the API is an error naming both.
    pub fn compile(&self) -> Result<Built, LoadErrors> {
        let api_document = (!self.api.is_empty()).then(|| {
            let flags: Map<String, Value> = self
                .api
                .iter()
                .filter_map(|(key, record)| record.definition.clone().map(|d| (key.clone(), d)))
                .collect();
            serde_json::json!({ "flags": flags }).to_string()
        });
        let mut sources: Vec<Source<'_>> =
            self.files.iter().map(|file| Source::from_path(&file.name, &file.text)).collect();
        if let Some(text) = &api_document {
            sources.push(Source::json(API_SOURCE, text));
        }
        let mut flags = FlagSet::load(&sources)?;
        let mut file_states = BTreeMap::new();
        for (key, state_override) in &self.overrides {
            let file_state = flags.get(key).filter(|f| f.source() != API_SOURCE).map(|f| f.state());
            if let (Some(file_state), Some(state)) = (file_state, FlagState::parse(&state_override.state)) {
                file_states.insert(key.clone(), file_state);
                flags.set_state(key, state);
            }
        }
        Ok(Built { flags, file_states })
    }
}

/// A compiled flag set, with the states the files give the flags that a
/// kill-switch override changed.
#[derive(Debug)]
pub struct Built {
    pub flags: FlagSet,
    pub file_states: BTreeMap<String, FlagState>,
}

#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub flag_patterns: Vec<String>,
    current: ArcSwap<Snapshot>,
    inputs: Mutex<Inputs>,
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
    fn new(config: &EnvironmentConfig, inputs: Inputs) -> Result<Environment, LoadErrors> {
        let built = inputs.compile()?;
        let snapshot = snapshot(1, built, &inputs);
        Ok(Environment {
            name: config.name.clone(),
            flag_patterns: config.flags.clone(),
            current: ArcSwap::from_pointee(snapshot),
            inputs: Mutex::new(inputs),
        })
    }

    /// The snapshot to serve a request from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the flag files again. An invalid set is returned as `Err` and
    /// the current snapshot keeps serving.
    pub async fn reload_files(&self) -> Result<Reload, LoadErrors> {
        let patterns = self.flag_patterns.clone();
        let loaded = tokio::task::spawn_blocking(move || loader::read(&patterns))
            .await
            .map_err(|e| LoadErrors(vec![LoadError::new("<reload>", e.to_string())]))??;
        let mut inputs = self.inputs.lock().await;
        if loaded.digest == inputs.files_digest {
            return Ok(Reload::Unchanged);
        }
        let candidate = Inputs { files: loaded.files, files_digest: loaded.digest, ..inputs.clone() };
        let built = candidate.compile()?;
        *inputs = candidate;
        Ok(Reload::Changed(self.publish(built, &inputs)))
    }

    /// Runs `change` with the environment's inputs locked: it may compile a
    /// candidate, write to the store, and return the inputs to publish.
    /// The snapshot is swapped only when it returns `Ok(Some(inputs))`.
    pub async fn change<T, E>(
        &self,
        change: impl AsyncFnOnce(&Inputs) -> Result<(Option<(Inputs, Built)>, T), E>,
    ) -> Result<T, E> {
        let mut inputs = self.inputs.lock().await;
        let (publish, result) = change(&inputs).await?;
        if let Some((next, built)) = publish {
            *inputs = next;
            self.publish(built, &inputs);
        }
        Ok(result)
    }

    fn publish(&self, built: Built, inputs: &Inputs) -> u64 {
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(snapshot(version, built, inputs)));
        version
    }
}

fn snapshot(version: u64, built: Built, inputs: &Inputs) -> Snapshot {
    Snapshot {
        version,
        flags: built.flags,
        file_states: built.file_states,
        files_digest: inputs.files_digest,
        files: inputs.files.iter().map(|f| f.name.clone()).collect(),
        api: inputs.api.clone(),
        overrides: inputs.overrides.clone(),
        loaded_at: SystemTime::now(),
    }
}

/// All environments, and which SDK key selects which.
#[derive(Debug)]
pub struct Environments {
    list: Vec<Arc<Environment>>,
    by_key: HashMap<KeyDigest, usize>,
    open: bool,
}

/// Why a request could not be given an environment.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRejection {
    Missing,
    Unknown,
}

impl Environments {
    /// Loads every environment from its flag files and its stored state;
    /// any invalid one fails start-up with its errors, labelled by
    /// environment.
    pub fn load(
        config: &ServerConfig,
        mut stored: BTreeMap<String, EnvironmentState>,
    ) -> Result<Environments, Vec<(String, LoadErrors)>> {
        let mut list = Vec::new();
        let mut failures = Vec::new();
        for environment in &config.environments {
            let state = stored.remove(&environment.name).unwrap_or_default();
            let loaded = match loader::read(&environment.flags) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    failures.push((environment.name.clone(), errors));
                    continue;
                }
            };
            let inputs = Inputs {
                files: loaded.files,
                files_digest: loaded.digest,
                api: state.flags,
                overrides: state.overrides,
            };
            match Environment::new(environment, inputs) {
                Ok(environment) => list.push(Arc::new(environment)),
                Err(errors) => failures.push((environment.name.clone(), errors)),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        for orphan in stored.keys() {
            tracing::warn!(environment = %orphan, "the store has flags for an environment that is not configured");
        }
        let by_key = config
            .environments
            .iter()
            .enumerate()
            .flat_map(|(index, environment)| environment.sdk_keys.iter().map(move |key| (*key, index)))
            .collect();
        Ok(Environments { list, by_key, open: config.open_evaluation() })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Environment>> {
        self.list.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Environment>> {
        self.list.iter().find(|e| e.name == name)
    }

    /// The environment a request's SDK key selects. With open evaluation
    /// (no keys configured, a single environment) no key is needed.
    pub fn for_key(&self, key: Option<&str>) -> Result<&Arc<Environment>, KeyRejection> {
        if self.open {
            return Ok(&self.list[0]);
        }
        let key = key.ok_or(KeyRejection::Missing)?;
        self.by_key.get(&KeyDigest::of(key)).map(|&index| &self.list[index]).ok_or(KeyRejection::Unknown)
    }
}
