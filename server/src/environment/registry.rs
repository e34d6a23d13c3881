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
    /// A relay still waiting for some environment's keys from its upstream.
    pub(super) waiting: bool,
    /// Presented keys already resolved (see [`KeyTable::resolve`]).
    pub(super) resolved: KeyCache,
}

/// What a presented key reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Resolved {
    /// An admin or relay token (refused where a key is expected).
    pub(super) admin: bool,
    pub(super) reporter: Option<usize>,
    pub(super) sdk: Option<usize>,
}

/// Presented SDK and reporter keys mapped to what they reach, so a request
/// costs a hash lookup instead of a SHA-256 of its key (about 1 µs, a tenth
/// of an OFREP request's server time). Only keys that reach an environment
/// are kept: the cache holds at most one entry per configured key (a flood
/// of invalid keys adds nothing), and admin tokens are never kept. A new
/// key table (a configuration or upstream change) starts an empty cache,
/// so a removed key stops working at once.
#[derive(Default)]
pub(super) struct KeyCache {
    map: ArcSwap<HashMap<Box<str>, Resolved>>,
    writer: std::sync::Mutex<()>,
}

/// The cache holds presented keys as they were sent (reporter keys are
/// secrets): `Debug` shows how many, never which.
impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("keys", &self.map.load().len()).finish_non_exhaustive()
    }
}

impl KeyTable {
    /// What `key` reaches: from the cache, else by its digest.
    pub(super) fn resolve(&self, key: &str) -> Resolved {
        if let Some(resolved) = self.resolved.map.load().get(key) {
            return *resolved;
        }
        let digest = KeyDigest::of(key);
        let resolved = Resolved {
            admin: self.admin_tokens.contains(&digest) || self.relay_tokens.contains_key(&digest),
            reporter: self.reporters.get(&digest).copied(),
            sdk: self.by_key.get(&digest).copied(),
        };
        if !resolved.admin && (resolved.reporter.is_some() || resolved.sdk.is_some()) {
            let _writer = self.resolved.writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut map = HashMap::clone(&self.resolved.map.load());
            map.insert(key.into(), resolved);
            self.resolved.map.store(Arc::new(map));
        }
        resolved
    }
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
            // A relay knows its keys once the upstream has sent them.
            waiting: config.relay.is_some(),
            resolved: KeyCache::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[(&str, usize)]) -> KeyTable {
        KeyTable {
            by_key: keys.iter().map(|(key, index)| (KeyDigest::of(key), *index)).collect(),
            admin_tokens: [KeyDigest::of("an-admin-token")].into_iter().collect(),
            ..KeyTable::default()
        }
    }

    #[test]
    fn resolved_keys_are_cached_and_only_keys_that_reach_something() {
        let keys = table(&[("sdk-key-production", 0), ("sdk-key-staging", 1)]);
        let expected = Resolved { admin: false, reporter: None, sdk: Some(1) };
        assert_eq!(keys.resolve("sdk-key-staging"), expected);
        assert_eq!(keys.resolve("sdk-key-staging"), expected, "the same from the cache");
        for attempt in 0..1000 {
            assert_eq!(keys.resolve(&format!("guess-{attempt}")).sdk, None);
        }
        assert!(keys.resolve("an-admin-token").admin);
        assert_eq!(keys.resolved.map.load().len(), 1, "invalid keys and admin tokens are never kept");
        assert_eq!(keys.resolve("sdk-key-production").sdk, Some(0));
        assert_eq!(keys.resolved.map.load().len(), 2, "at most one entry per configured key");
        let printed = format!("{keys:?}");
        assert!(!printed.contains("sdk-key-staging") && printed.contains("keys: 2"), "{printed}");
        // A new table (keys changed) starts empty: a removed key stops at once.
        let changed = table(&[("sdk-key-production", 0)]);
        assert_eq!(changed.resolve("sdk-key-staging").sdk, None);
    }
}
