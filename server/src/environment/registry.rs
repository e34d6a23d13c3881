//! All environments, and which one a key selects: SDK keys for
//! evaluation and streams, reporter keys for outcome reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use rampart_engine::LoadErrors;

use super::{Environment, Inputs};
use crate::config::{KeyDigest, ServerConfig};
use crate::loader;
use crate::store::EnvironmentState;

/// All environments, and which SDK key selects which.
#[derive(Debug)]
pub struct Environments {
    list: Vec<Arc<Environment>>,
    by_key: HashMap<KeyDigest, usize>,
    /// Reporter keys, and which environments accept outcomes only from them.
    reporters: HashMap<KeyDigest, usize>,
    reporters_only: Vec<bool>,
    open: bool,
    /// Identifies this process's version numbering: versions restart at 1
    /// with the process, so a client resumes only within the same epoch.
    pub epoch: String,
}

/// Why a request could not be given an environment.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRejection {
    Missing,
    Unknown,
    /// An SDK key, where the environment accepts outcomes only from its
    /// reporter keys.
    NotAReporter,
}

impl KeyRejection {
    /// What the client is told, the same on every transport.
    pub fn message(&self) -> &'static str {
        match self {
            KeyRejection::Missing => {
                "an SDK key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' \
                 (streams also take ?key=, gRPC the flagd selector)"
            }
            KeyRejection::Unknown => "the SDK key is not valid for any environment",
            KeyRejection::NotAReporter => {
                "this environment accepts outcome reports only from its reporter keys (reporterKeys), not SDK keys"
            }
        }
    }
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
        let limits = Arc::new(config.limits.clone());
        for environment in &config.environments {
            let state = stored.remove(&environment.name).unwrap_or_default();
            let loaded = match loader::read(&environment.flags, &limits) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    failures.push((environment.name.clone(), errors));
                    continue;
                }
            };
            let inputs = match Inputs::new(
                loaded,
                state.flags,
                state.overrides,
                state.revision,
                limits.clone(),
                config.strict_flags,
            ) {
                Ok(inputs) => inputs,
                Err(errors) => {
                    failures.push((environment.name.clone(), errors));
                    continue;
                }
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
        let epoch = format!(
            "{:x}-{:x}",
            SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
            std::process::id()
        );
        let reporters = config
            .environments
            .iter()
            .enumerate()
            .flat_map(|(index, environment)| environment.reporter_keys.iter().map(move |key| (*key, index)))
            .collect();
        let reporters_only = config.environments.iter().map(|e| !e.reporter_keys.is_empty()).collect();
        Ok(Environments { list, by_key, reporters, reporters_only, open: config.open_evaluation(), epoch })
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

    /// The environment an outcome report's key selects: a reporter key, or
    /// an SDK key of an environment that has no reporter keys.
    pub fn for_reporter(&self, key: Option<&str>) -> Result<&Arc<Environment>, KeyRejection> {
        if let Some(&index) = key.and_then(|key| self.reporters.get(&KeyDigest::of(key))) {
            return Ok(&self.list[index]);
        }
        let environment = self.for_key(key)?;
        let index = self.list.iter().position(|e| Arc::ptr_eq(e, environment)).unwrap_or_default();
        if self.reporters_only[index] { Err(KeyRejection::NotAReporter) } else { Ok(environment) }
    }
}
