//! All environments, loaded together (which key selects which is in
//! [`super::access`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

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
    /// Which key reaches what: fixed by the configuration, except on a relay,
    /// where each environment's keys arrive from the upstream.
    pub(super) keys: ArcSwap<KeyTable>,
    /// A relay's credentials per environment, as the upstream last sent them.
    pub(super) relayed: std::sync::Mutex<Vec<Option<Credentials>>>,
    /// Identifies this process's version numbering: versions restart at 1
    /// with the process, so a client resumes only within the same epoch.
    pub epoch: String,
}

/// Which key reaches which environment, for what.
#[derive(Debug, Default)]
pub(super) struct KeyTable {
    pub(super) by_key: HashMap<KeyDigest, usize>,
    /// Reporter keys, and which environments also take outcomes from SDK keys.
    pub(super) reporters: HashMap<KeyDigest, usize>,
    pub(super) sdk_key_outcomes: Vec<bool>,
    pub(super) open: bool,
    /// Admin tokens: refused wherever an SDK key is expected.
    pub(super) admin_tokens: HashSet<KeyDigest>,
    /// Relay tokens: their name and the environments (indices) each may follow.
    pub(super) relay_tokens: HashMap<KeyDigest, (String, Vec<usize>)>,
    /// The relay tokens configured here (kept when upstream credentials change).
    pub(super) local_relay_tokens: HashMap<KeyDigest, (String, Vec<usize>)>,
}

/// Who may use one environment, as digests: what an upstream sends a relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub open: bool,
    pub sdk_keys: Vec<KeyDigest>,
    pub reporter_keys: Vec<KeyDigest>,
    pub relay_tokens: Vec<KeyDigest>,
    /// SDK keys may report outcomes (the environment opted in).
    pub sdk_key_outcomes: bool,
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
        let sdk_key_outcomes = config.environments.iter().map(|e| e.sdk_key_outcomes).collect();
        let admin_tokens = config.admin_tokens.iter().map(|token| token.digest).collect();
        let local_relay_tokens: HashMap<KeyDigest, (String, Vec<usize>)> = config
            .admin_tokens
            .iter()
            .filter(|token| token.role == crate::config::Role::Relay)
            .map(|token| {
                let scope = token
                    .environments
                    .iter()
                    .filter_map(|name| config.environments.iter().position(|e| &e.name == name))
                    .collect();
                (token.digest, (token.name.clone(), scope))
            })
            .collect();
        let keys = KeyTable {
            by_key,
            reporters,
            sdk_key_outcomes,
            open: config.open_evaluation(),
            admin_tokens,
            relay_tokens: local_relay_tokens.clone(),
            local_relay_tokens,
        };
        let relayed = std::sync::Mutex::new(vec![None; list.len()]);
        Ok(Environments { list, keys: ArcSwap::from_pointee(keys), relayed, epoch })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Environment>> {
        self.list.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Environment>> {
        self.list.iter().find(|e| e.name == name)
    }
}
