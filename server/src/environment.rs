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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rampart_engine::ramp::{self, Exposure};
use rampart_engine::{Flag, FlagSet, FlagState, LoadError, LoadErrors, Source};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::changes::{self, ChangeEvent, Changes};
use crate::config::{EnvironmentConfig, KeyDigest, ServerConfig};
use crate::limits::Limits;
use crate::loader::{self, ReadFiles};
use crate::store::{Committed, EnvironmentState, FlagRecord, StateOverride};

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
    pub loaded_at: SystemTime,
    flagd_json: OnceLock<String>,
    document_json: OnceLock<String>,
}

impl Snapshot {
    /// The whole configuration as flagd's sync payload: every flag with
    /// `$evaluators` inlined and the flag-set metadata merged into its own,
    /// `defaultVariant` as `""` when there is none (what flagd sends).
    /// Serialised once per snapshot, whatever the number of clients.
    pub fn flagd_json(&self) -> &str {
        self.flagd_json.get_or_init(|| {
            let flags: serde_json::Map<String, Value> = self
                .flags
                .iter()
                .filter(|flag| !flag.definition().is_null())
                .map(|flag| {
                    let mut definition = flag.definition().clone();
                    if let Some(fields) = definition.as_object_mut() {
                        fields.insert("metadata".into(), Value::Object(flag.metadata().clone()));
                        if fields.get("defaultVariant").is_none_or(Value::is_null) {
                            fields.insert("defaultVariant".into(), Value::String(String::new()));
                        }
                    }
                    (flag.key().to_owned(), definition)
                })
                .collect();
            serde_json::json!({ "flags": flags }).to_string()
        })
    }

    /// The whole configuration as a flagd flag-set document (what
    /// Rampart's own sync sends): `{"flags": {…}, "metadata": {…}}`.
    pub fn document_json(&self) -> &str {
        self.document_json.get_or_init(|| {
            let flags: serde_json::Map<String, Value> = self
                .flags
                .iter()
                .filter(|flag| !flag.definition().is_null())
                .map(|flag| (flag.key().to_owned(), flag.definition().clone()))
                .collect();
            serde_json::json!({ "flags": flags, "metadata": self.flags.metadata() }).to_string()
        })
    }

    /// The file a flag comes from, when it is file-owned.
    pub fn file_of(&self, key: &str) -> Option<&str> {
        self.flags.get(key).map(|f| f.source()).filter(|s| *s != API_SOURCE)
    }
}

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
    api_flags: Arc<BTreeMap<String, Arc<Flag>>>,
    pub overrides: Arc<BTreeMap<String, StateOverride>>,
    /// Ramp exposures by flag key, set by the ramp controller from persisted
    /// runs only.
    pub exposures: Arc<BTreeMap<String, Exposure>>,
    /// The shared store's revision these inputs reflect (0: embedded store).
    pub revision: u64,
    /// What the files may cost.
    limits: Arc<Limits>,
    /// Refuse files with an invalid flag instead of serving it as
    /// `PARSE_ERROR`.
    strict: bool,
    /// The problems of the flags the files define.
    pub problems: Arc<Vec<LoadError>>,
}

impl Inputs {
    fn new(
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
        let compiled = FlagSet::load_lenient_with(&sources, &self.limits.flag_files);
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
        Arc::make_mut(&mut self.api).insert(key.to_owned(), Arc::new(record));
        Arc::make_mut(&mut self.api_flags).insert(key.to_owned(), flag);
        Ok(())
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

    /// Combines file flags, API flags and overrides into one flag set. A
    /// key defined both in a file and through the API is an error naming
    /// both.
    pub fn compose(&self) -> Result<Built, LoadErrors> {
        let all = self.file_flags.shared().cloned().chain(self.api_flags.values().cloned());
        let all = all.map(|flag| match self.exposures.get(flag.key()) {
            Some(exposure) => ramped(&flag, exposure),
            None => flag,
        });
        let mut flags = FlagSet::from_flags(all, self.file_flags.metadata().clone())?;
        let mut file_states = BTreeMap::new();
        for (key, state_override) in self.overrides.iter() {
            let file_state = flags.get(key).filter(|f| f.source() != API_SOURCE).map(|f| f.state());
            if let Some(file_state) = file_state {
                file_states.insert(key.clone(), file_state);
                flags.set_state(key, state_override.state);
            }
        }
        Ok(Built { flags, file_states })
    }
}

/// The flag with a ramp's exposure compiled into its targeting (flagd
/// JsonLogic, see `rampart_engine::ramp`). A ramp whose variants the flag
/// no longer has leaves the flag as it is.
fn ramped(flag: &Arc<Flag>, exposure: &Exposure) -> Arc<Flag> {
    let has = |name: &str| flag.variants().any(|(variant, _)| variant == name);
    if exposure.basis_points == 0 || !has(&exposure.treatment) || !has(&exposure.control) {
        return flag.clone();
    }
    let mut definition = ramp::ramped_definition(flag.key(), flag.definition(), exposure);
    if let Some(fields) = definition.as_object_mut() {
        fields.insert("metadata".into(), Value::Object(flag.metadata().clone()));
    }
    match Flag::compile(flag.key(), definition, flag.source()) {
        Ok(ramped) => Arc::new(ramped),
        Err(errors) => {
            tracing::error!(flag = flag.key(), %errors, "cannot compile the ramped flag; serving it unramped");
            flag.clone()
        }
    }
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

#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub flag_patterns: Vec<String>,
    /// What the server adds to every evaluation context here.
    pub context: crate::enrichment::Enrichment,
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
    fn new(config: &EnvironmentConfig, inputs: Inputs) -> Result<Environment, LoadErrors> {
        let built = inputs.compose()?;
        let snapshot = snapshot(1, built, &inputs);
        Ok(Environment {
            name: config.name.clone(),
            flag_patterns: config.flags.clone(),
            context: config.context.clone(),
            limits: inputs.limits.clone(),
            current: ArcSwap::from_pointee(snapshot),
            revision: AtomicU64::new(inputs.revision),
            inputs: Mutex::new(inputs),
            changes: Changes::new(1),
            metrics: OnceLock::new(),
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
        let next = Arc::new(snapshot(version, built, inputs));
        self.current.store(next.clone());
        if let Some(metrics) = self.metrics.get() {
            metrics.serving(&self.name, &next);
        }
        self.changes.publish(ChangeEvent::new(previous.version, &next, changed));
        version
    }
}

fn snapshot(version: u64, built: Built, inputs: &Inputs) -> Snapshot {
    Snapshot {
        version,
        flags: built.flags,
        file_states: built.file_states,
        files_digest: inputs.files_digest,
        files: inputs.file_names.clone(),
        api: inputs.api.clone(),
        overrides: inputs.overrides.clone(),
        problems: inputs.problems.clone(),
        loaded_at: SystemTime::now(),
        flagd_json: OnceLock::new(),
        document_json: OnceLock::new(),
    }
}

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
