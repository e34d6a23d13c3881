//! Environments and their snapshots.
//!
//! Each environment serves one immutable [`Snapshot`], published through an
//! `ArcSwap`: readers take the current `Arc` without locking and keep it for
//! the whole request, so no request ever sees half a flag set, and a reload
//! swaps the pointer atomically.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rampart_engine::{FlagSet, LoadErrors};

use crate::config::{EnvironmentConfig, KeyDigest, ServerConfig};
use crate::loader::{self, Loaded};

/// One environment's configuration at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// Starts at 1 and grows by one with every change.
    pub version: u64,
    pub flags: FlagSet,
    pub digest: [u8; 32],
    pub loaded_at: SystemTime,
}

#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub flag_patterns: Vec<String>,
    current: ArcSwap<Snapshot>,
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
    fn new(config: &EnvironmentConfig, loaded: Loaded) -> Environment {
        Environment {
            name: config.name.clone(),
            flag_patterns: config.flags.clone(),
            current: ArcSwap::from_pointee(Snapshot {
                version: 1,
                flags: loaded.flags,
                digest: loaded.digest,
                loaded_at: SystemTime::now(),
            }),
        }
    }

    /// The snapshot to serve a request from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the files again. An invalid set is returned as `Err` and the
    /// current snapshot keeps serving.
    pub fn reload(&self) -> Result<Reload, LoadErrors> {
        let loaded = loader::load(&self.flag_patterns)?;
        let current = self.current.load();
        if loaded.digest == current.digest {
            return Ok(Reload::Unchanged);
        }
        let version = current.version + 1;
        // Reloads are serialised by the single watcher task, so a plain
        // store cannot lose a concurrent update.
        self.current.store(Arc::new(Snapshot {
            version,
            flags: loaded.flags,
            digest: loaded.digest,
            loaded_at: SystemTime::now(),
        }));
        Ok(Reload::Changed(version))
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
    /// Loads every environment's flag files; any invalid one fails start-up
    /// with its errors, labelled by environment.
    pub fn load(config: &ServerConfig) -> Result<Environments, Vec<(String, LoadErrors)>> {
        let mut list = Vec::new();
        let mut failures = Vec::new();
        for environment in &config.environments {
            match loader::load(&environment.flags) {
                Ok(loaded) => list.push(Arc::new(Environment::new(environment, loaded))),
                Err(errors) => failures.push((environment.name.clone(), errors)),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
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
