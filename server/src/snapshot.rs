//! One environment's configuration at one moment: what a request is
//! answered from, from start to end, whatever changes meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_engine::{FlagSet, FlagState, LoadError};

use crate::store::{FlagRecord, StateOverride};

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
    pub api: Arc<BTreeMap<String, Arc<FlagRecord>>>,
    /// Kill-switch overrides of file-owned flags (also those whose flag has
    /// since left the files: they show up as drift).
    pub overrides: Arc<BTreeMap<String, StateOverride>>,
    /// What the files say for flags whose state is overridden.
    pub file_states: BTreeMap<String, FlagState>,
    /// Flags of the files that cannot be used: each answers `PARSE_ERROR`
    /// (empty with `strictFlags`, which refuses such files instead).
    pub problems: Arc<Vec<LoadError>>,
    /// When it was published (unix ms).
    pub loaded_at: u64,
}

impl Snapshot {
    /// The file a flag comes from, when it is file-owned.
    pub fn file_of(&self, key: &str) -> Option<&str> {
        self.flags.get(key).map(|f| f.source()).filter(|s| *s != API_SOURCE)
    }
}
