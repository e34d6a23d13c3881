//! All environments, loaded together (which key selects which is in
//! [`super::access`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rampart_engine::LoadErrors;

use super::{Environment, Inputs};
use crate::config::{KeyDigest, ServerConfig};
use crate::loader;
use crate::store::EnvironmentState;
use crate::time::Clock;

/// All environments, and which SDK key selects which.
#[derive(Debug)]
pub struct Environments {
    pub(super) list: Vec<Arc<Environment>>,
    pub(super) by_key: HashMap<KeyDigest, usize>,
    /// Reporter keys, and which environments accept outcomes only from them.
    pub(super) reporters: HashMap<KeyDigest, usize>,
    pub(super) reporters_only: Vec<bool>,
    pub(super) open: bool,
    /// Admin tokens: refused wherever an SDK key is expected.
    pub(super) admin_tokens: HashSet<KeyDigest>,
    /// Identifies this process's version numbering: versions restart at 1
    /// with the process, so a client resumes only within the same epoch.
    pub epoch: String,
}

impl Environments {
    /// Loads every environment from its flag files and its stored state;
    /// any invalid one fails start-up with its errors, labelled by
    /// environment.
    pub fn load(
        config: &ServerConfig,
        mut stored: BTreeMap<String, EnvironmentState>,
        clock: Clock,
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
            match Environment::new(environment, inputs, clock.clone()) {
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
        let epoch = format!("{:x}-{:x}", clock.now_millis(), std::process::id());
        let reporters = config
            .environments
            .iter()
            .enumerate()
            .flat_map(|(index, environment)| environment.reporter_keys.iter().map(move |key| (*key, index)))
            .collect();
        let reporters_only = config.environments.iter().map(|e| !e.reporter_keys.is_empty()).collect();
        let admin_tokens = config.admin_tokens.iter().map(|token| token.digest).collect();
        Ok(Environments {
            list,
            by_key,
            reporters,
            reporters_only,
            open: config.open_evaluation(),
            admin_tokens,
            epoch,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Environment>> {
        self.list.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Environment>> {
        self.list.iter().find(|e| e.name == name)
    }
}
