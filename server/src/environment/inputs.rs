//! What an environment's snapshot is compiled from: its flag files, the
//! flags created through the admin API, kill-switch overrides and ramp
//! exposures. Each is compiled on its own and kept compiled, so a change
//! to one flag compiles one flag and recombines the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_engine::ramp::Exposure;
use rampart_engine::{Flag, FlagSet, FlagState, LoadError, LoadErrors, Source};
use serde_json::Value;

use crate::limits::Limits;
use crate::loader::ReadFiles;
use crate::snapshot::{API_SOURCE, Snapshot};
use crate::store::{Committed, FlagRecord, StateOverride};

/// The inputs a snapshot is compiled from. Files and each API flag are
/// compiled on their own and kept compiled, so a change to one flag
/// compiles one flag and recombines the rest.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub files_digest: [u8; 32],
    pub file_names: Vec<String>,
    /// The flags of the files alone.
    pub file_flags: Arc<FlagSet>,
    /// Shared with the snapshots built from these inputs; copied (shallowly)
    /// only when a change writes to them.
    pub api: Arc<BTreeMap<String, Arc<FlagRecord>>>,
    pub(super) api_flags: Arc<BTreeMap<String, Arc<Flag>>>,
    pub overrides: Arc<BTreeMap<String, StateOverride>>,
    /// Ramp exposures by flag key, set by the ramp controller from persisted
    /// runs only.
    pub exposures: Arc<BTreeMap<String, Exposure>>,
    /// The shared store's revision these inputs reflect (0: embedded store).
    pub revision: u64,
    /// What the files may cost.
    pub(super) limits: Arc<Limits>,
    /// Refuse files with an invalid flag instead of serving it as
    /// `PARSE_ERROR`.
    strict: bool,
    /// The problems of the flags the files define.
    pub problems: Arc<Vec<LoadError>>,
}

impl Inputs {
    pub(super) fn new(
        files: ReadFiles,
        api: BTreeMap<String, FlagRecord>,
        overrides: BTreeMap<String, StateOverride>,
        revision: u64,
        limits: Arc<Limits>,
        strict: bool,
    ) -> Result<Inputs, LoadErrors> {
        let mut inputs = Inputs {
            files_digest: [0; 32],
            file_names: Vec::new(),
            file_flags: Arc::default(),
            api: Arc::default(),
            api_flags: Arc::default(),
            overrides: Arc::new(overrides),
            exposures: Arc::default(),
            revision,
            limits,
            strict,
            problems: Arc::default(),
        };
        inputs.set_files(files)?;
        for (key, record) in api {
            inputs.put_api(&key, record)?;
        }
        Ok(inputs)
    }

    /// Compiles the files (alone) and takes them as the new file flags. A
    /// problem with a whole document (syntax, size) refuses the set; a
    /// problem with one flag does too with `strictFlags`, and otherwise
    /// leaves that flag answering `PARSE_ERROR`, as flagd does.
    pub fn set_files(&mut self, files: ReadFiles) -> Result<(), LoadErrors> {
        let sources: Vec<Source<'_>> = files.files.iter().map(|f| Source::from_path(&f.name, &f.text)).collect();
        // Unchanged flags are taken as they are from the current files' set.
        let compiled = FlagSet::load_lenient_reusing(&sources, &self.limits.flag_files, &self.file_flags);
        let whole_set = compiled.errors.iter().any(|error| error.flag.is_none());
        if !compiled.errors.is_empty() && (self.strict || whole_set) {
            return Err(compiled.errors);
        }
        self.file_flags = Arc::new(compiled.flags);
        self.problems = Arc::new(compiled.errors.0);
        self.files_digest = files.digest;
        self.file_names = files.files.into_iter().map(|f| f.name).collect();
        Ok(())
    }

    /// Compiles one API-owned flag and adds or replaces it.
    pub fn put_api(&mut self, key: &str, record: FlagRecord) -> Result<(), LoadErrors> {
        let definition = record.definition.clone().unwrap_or_default();
        let flag = compile_api_flag(key, &definition)?;
        self.put_api_compiled(key, record, flag);
        Ok(())
    }

    /// Puts an API-owned flag already compiled from `record`'s definition.
    pub fn put_api_compiled(&mut self, key: &str, record: FlagRecord, flag: Arc<Flag>) {
        Arc::make_mut(&mut self.api).insert(key.to_owned(), Arc::new(record));
        Arc::make_mut(&mut self.api_flags).insert(key.to_owned(), flag);
    }

    pub fn remove_api(&mut self, key: &str) {
        Arc::make_mut(&mut self.api).remove(key);
        Arc::make_mut(&mut self.api_flags).remove(key);
    }

    /// Records the version the store assigned to a flag just written.
    pub fn set_api_version(&mut self, key: &str, version: u64) {
        if let Some(record) = Arc::make_mut(&mut self.api).get_mut(key) {
            Arc::make_mut(record).version = version;
        }
    }

    /// Takes the revision a local commit produced when it directly follows
    /// this one. Otherwise other replicas' changes came in between: their
    /// messages (or a resynchronisation) bring them, and the revision moves
    /// on only then, so none of them is skipped.
    pub fn committed(&mut self, environment: &str, committed: &Committed) {
        if let Some(&revision) = committed.revisions.get(environment)
            && revision == self.revision + 1
        {
            self.revision = revision;
        }
    }

    pub fn overrides_mut(&mut self) -> &mut BTreeMap<String, StateOverride> {
        Arc::make_mut(&mut self.overrides)
    }

    /// Combines file flags, API flags, ramp exposures and overrides into
    /// one flag set: the files' flags are shared as they are, and what
    /// changes them (API flags, ramped flags, overridden states) goes on
    /// top, so this costs the size of those, not of the files. A key
    /// defined both in a file and through the API is an error naming both.
    pub fn compose(&self) -> Result<Built, LoadErrors> {
        let clashes: Vec<LoadError> = self
            .api_flags
            .iter()
            .filter_map(|(key, flag)| {
                let file_flag = self.file_flags.get(key)?;
                Some(LoadError::new(flag.source(), format!("is also defined in {}", file_flag.source())).in_flag(key))
            })
            .collect();
        if !clashes.is_empty() {
            return Err(LoadErrors(clashes));
        }
        let mut top: BTreeMap<&str, Arc<Flag>> = self.api_flags.iter().map(|(k, f)| (k.as_str(), f.clone())).collect();
        let unramped = |key: &str, top: &BTreeMap<&str, Arc<Flag>>| {
            top.get(key).cloned().or_else(|| self.file_flags.shared_flag(key).cloned())
        };
        for (key, exposure) in self.exposures.iter() {
            if let Some(flag) = unramped(key, &top) {
                let ramped = ramped(&flag, exposure);
                if !Arc::ptr_eq(&ramped, &flag) {
                    top.insert(key.as_str(), ramped);
                }
            }
        }
        let mut file_states = BTreeMap::new();
        for (key, state_override) in self.overrides.iter() {
            let Some(flag) = unramped(key, &top).filter(|f| f.source() != API_SOURCE) else { continue };
            file_states.insert(key.clone(), flag.state());
            if flag.state() != state_override.state {
                top.insert(key.as_str(), Arc::new(flag.with_state(state_override.state)));
            }
        }
        let flags = FlagSet::on(&self.file_flags, top.into_values())?;
        Ok(Built { flags, file_states })
    }
}

/// The flag under a ramp's exposure: streamed as flagd JsonLogic (see
/// `rampart_engine::ramp`), evaluated natively with the same answers. An
/// exposure that changes nothing (a ramp whose variants the flag no longer
/// has, 0 %) leaves the flag as it is.
fn ramped(flag: &Arc<Flag>, exposure: &Exposure) -> Arc<Flag> {
    flag.with_exposure(exposure).map_or_else(|| flag.clone(), Arc::new)
}

/// Compiles an API-owned flag on its own, exactly as a file flag (from the
/// value itself: nothing is re-serialised, so the nesting limit is the
/// definition's own).
pub fn compile_api_flag(key: &str, definition: &Value) -> Result<Arc<Flag>, LoadErrors> {
    Flag::compile(key, definition.clone(), API_SOURCE).map(Arc::new)
}

/// A compiled flag set, with the states the files give the flags that a
/// kill-switch override changed.
#[derive(Debug)]
pub struct Built {
    pub flags: FlagSet,
    pub file_states: BTreeMap<String, FlagState>,
}

pub(super) fn snapshot(version: u64, built: Built, inputs: &Inputs, at: u64) -> Snapshot {
    Snapshot {
        version,
        flags: built.flags,
        file_states: built.file_states,
        files_digest: inputs.files_digest,
        files: inputs.file_names.clone(),
        api: inputs.api.clone(),
        overrides: inputs.overrides.clone(),
        problems: inputs.problems.clone(),
        loaded_at: at,
    }
}
