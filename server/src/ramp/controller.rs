//! The ramp controller at run time: loads ramp files, reconciles them with
//! the persisted runs, ticks every ramp at its interval, persists each
//! transition with compare-and-set **before** changing exposure, and applies
//! operator commands as an immediate tick (so guards run first and a
//! regression wins over a racing `promote`).
//!
//! Each ramp has its own async mutex: a tick, a command and a reload of the
//! same ramp never interleave.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rampart_engine::ramp::Exposure;
use rampart_engine::{FlagState, LoadErrors};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Command, Evidence, HoldReason, Observation, Run, Status};
use super::files::{self, Bound};
use super::prometheus::Names;
use super::spec::{MetricSource, RampSpec, Unit};
use super::stats::Pair;
use crate::config::ServerConfig;
use crate::environment::{Environment, Environments};
use crate::metrics::Metrics;
use crate::store::{Fence, RampDecisionRecord, RampWrite, Store, StoreError};
use crate::time::now_millis;

/// How far behind "now" the newest bucket the controller reads ends:
/// outcome writes are acknowledged only once committed, so after this lag
/// no more counts can land in a bucket it has read.
pub const WATERMARK_LAG_MS: u64 = 1500;
/// How often the loop looks for ramps whose interval has elapsed.
const POLL: Duration = Duration::from_millis(100);

/// One ramp's live state.
#[derive(Debug)]
pub struct Entry {
    pub environment: String,
    pub name: String,
    /// What the current run counts outcomes for — (flag, treatment,
    /// control) — while it is active; readable without waiting for a tick.
    counting: std::sync::Mutex<Option<Counting>>,
    /// Prometheus results of the current step's closed buckets.
    prometheus_cache: std::sync::Mutex<super::prometheus::Cache>,
    /// The fencing token of this replica's lease on the ramp, while it
    /// holds it: only the holder ticks the ramp.
    lease: std::sync::Mutex<Option<u64>>,
    state: Mutex<EntryState>,
}

impl Entry {
    /// The lease's name in the store.
    fn lease_name(&self) -> String {
        lease_name(&self.environment, &self.name)
    }

    fn token(&self) -> Option<u64> {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_token(&self, token: Option<u64>) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    fn fence(&self) -> Option<Fence> {
        self.token().map(|token| Fence { lease: self.lease_name(), token })
    }
}

fn lease_name(environment: &str, ramp: &str) -> String {
    format!("ramp:{environment}/{ramp}")
}

#[derive(Debug, Clone)]
struct EntryState {
    /// The spec in force; edits that may not apply to the running run leave
    /// the previous one here.
    spec: Arc<RampSpec>,
    /// The ramp file is gone: the ramp is frozen at its percent.
    file_missing: bool,
    /// A refused edit, reported until the file is fixed or the revision bumped.
    refused: Option<String>,
    /// Ramp could not be matched with its file at start-up: frozen.
    frozen: bool,
    warnings: Vec<String>,
    run: Run,
    last_tick: Option<u64>,
}

/// The flag and variants an active run counts outcomes for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counting {
    flag: String,
    treatment: String,
    control: String,
}

impl Counting {
    fn of(run: &Run) -> Option<Counting> {
        (!run.status.is_terminal()).then(|| Counting {
            flag: run.flag.clone(),
            treatment: run.treatment.clone(),
            control: run.control.clone(),
        })
    }
}

/// Why a command could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no ramp '{1}' in environment '{0}'")]
    NotFound(String, String),
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A ramp as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RampStatus {
    pub environment: String,
    pub name: String,
    pub flag: String,
    pub file: String,
    pub run_id: String,
    pub revision: u64,
    pub seq: u64,
    pub state: String,
    pub reason: Option<String>,
    /// Who paused or rolled back, when someone did.
    pub by: Option<String>,
    /// The step the run is at, or ended at: numbered from 1 (0 before the
    /// first step), as in the history and the logs.
    pub step: usize,
    pub steps: Vec<f64>,
    pub percent: f64,
    pub treatment: String,
    pub control: String,
    pub salt: String,
    pub step_started_at: String,
    /// Seconds of hold left at the current step.
    pub hold_remaining_seconds: u64,
    pub failed_checks: u32,
    pub interval_seconds: f64,
    /// Set when the ramp file is gone or an edit could not be applied.
    pub frozen: bool,
    pub refused_change: Option<String>,
    /// Problems of the last edit of the ramp's file, which was rejected
    /// (the ramp keeps its last good configuration until it is fixed).
    pub file_errors: Vec<String>,
    pub warnings: Vec<String>,
    #[schema(value_type = Object)]
    pub evidence: Option<Evidence>,
}

#[derive(Debug)]
pub struct Controller {
    store: Arc<dyn Store>,
    environments: Arc<Environments>,
    metrics: Arc<Metrics>,
    prometheus: super::prometheus::PrometheusSource,
    /// Ramp file patterns per environment.
    patterns: BTreeMap<String, Vec<String>>,
    /// Most files the patterns of one environment may match.
    glob_files: usize,
    /// Each environment's ramp-file problems as last reported, so a
    /// rejected edit is logged and audited once, and shown in the status
    /// until it is fixed.
    rejected: std::sync::Mutex<BTreeMap<String, Vec<rampart_engine::LoadError>>>,
    entries: RwLock<BTreeMap<(String, String), Arc<Entry>>>,
    /// This replica's name in leases.
    holder: String,
    /// How long a lease lasts without renewal: the longest a ramp goes
    /// undriven after its holder dies.
    lease_ttl: Duration,
}

/// A name for this process in leases: host, process id and start time.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "rampart".into());
    format!("{host}-{}-{:x}", std::process::id(), now_millis())
}

fn run_id(now: u64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let salt = std::process::id().wrapping_mul(2_654_435_761) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{now:x}-{salt:08x}")
}

impl Controller {
    /// Loads every environment's ramp files, reconciles them with the
    /// persisted runs and applies the persisted exposures. Invalid files
    /// fail start-up, like invalid flag files.
    pub async fn load(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        environments: Arc<Environments>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Controller>, Vec<(String, LoadErrors)>> {
        let patterns: BTreeMap<String, Vec<String>> =
            config.environments.iter().map(|e| (e.name.clone(), e.ramps.clone())).collect();
        let controller = Arc::new(Controller {
            store,
            environments,
            metrics,
            prometheus: super::prometheus::PrometheusSource::new(config.prometheus_url.clone()).map_err(|error| {
                vec![("*".to_owned(), rampart_engine::LoadError::new("prometheus", error.to_string()).into())]
            })?,
            patterns,
            glob_files: config.limits.glob_files,
            rejected: std::sync::Mutex::default(),
            entries: RwLock::new(BTreeMap::new()),
            holder: replica_id(),
            lease_ttl: config.ramp_lease,
        });
        let mut failures = Vec::new();
        let mut bound = Vec::new();
        for environment in controller.environments.iter() {
            match controller.read(environment).await {
                Ok(specs) => bound.push((environment.clone(), specs)),
                Err(errors) => failures.push((environment.name.clone(), errors)),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        let stored = match controller.store.ramp_runs().await {
            Ok(stored) => stored,
            Err(error) => {
                return Err(vec![(
                    "<store>".into(),
                    LoadErrors(vec![rampart_engine::LoadError::new("<store>", error.to_string())]),
                )]);
            }
        };
        let mut runs: HashMap<(String, String), Run> =
            stored.into_iter().map(|s| ((s.environment, s.ramp), s.run)).collect();
        for (environment, specs) in bound {
            for bound in specs {
                let key = (environment.name.clone(), bound.spec.name.clone());
                let stored = runs.remove(&key);
                let lease = lease_name(&environment.name, &bound.spec.name);
                let token = match controller.store.acquire_lease(&lease, &controller.holder, controller.lease_ttl).await
                {
                    Ok(token) => token,
                    Err(error) => {
                        tracing::warn!(environment = %environment.name, ramp = %bound.spec.name, %error, "cannot take the ramp's lease");
                        None
                    }
                };
                let adopted = match token {
                    Some(token) => controller.adopt(&environment, bound, stored, token).await,
                    None => {
                        controller.follow(&environment, bound, stored).await;
                        Ok(())
                    }
                };
                if let Err(error) = adopted {
                    tracing::error!(environment = %environment.name, %error, "cannot start ramp");
                }
            }
        }
        // Runs whose file is gone stay frozen at their percent.
        for ((environment, name), run) in runs {
            let Some(env) = controller.environments.get(&environment).cloned() else { continue };
            if run.status.is_terminal() && run.basis_points == 0 {
                continue;
            }
            tracing::warn!(%environment, ramp = %name, percent = run.percent(), "ramp file missing: the ramp is frozen at its percent");
            let spec = Arc::new(placeholder_spec(&name, &run));
            controller.insert(&env, spec, run, true, None, None).await;
        }
        Ok(controller)
    }

    async fn read(&self, environment: &Arc<Environment>) -> Result<Vec<Bound>, LoadErrors> {
        let patterns = self.patterns.get(&environment.name).cloned().unwrap_or_default();
        let glob_files = self.glob_files;
        let specs = tokio::task::spawn_blocking(move || files::read(&files::expand(&patterns, glob_files)?))
            .await
            .map_err(|e| LoadErrors(vec![rampart_engine::LoadError::new("<ramps>", e.to_string())]))??;
        let mut flags = BTreeMap::new();
        for spec in &specs {
            if let Some(flag) = environment.unramped_flag(&spec.flag).await {
                flags.insert(spec.flag.clone(), flag);
            }
        }
        files::bind(specs, &environment.name, |key| flags.get(key).cloned())
    }

    /// Takes a bound spec at start-up (or a new file on reload): continues
    /// the stored run of the same revision, or starts a new run.
    async fn adopt(
        &self,
        environment: &Arc<Environment>,
        bound: Bound,
        stored: Option<Run>,
        token: u64,
    ) -> Result<(), StoreError> {
        let spec = bound.spec;
        let now = now_millis();
        let warnings = super::spec::warnings(&spec);
        for warning in &warnings {
            tracing::warn!(environment = %environment.name, ramp = %spec.name, file = %spec.file, "{warning}");
        }
        match stored {
            Some(mut run) if run.revision == spec.revision => {
                let refusal = refusal(&spec, &bound.control, &run);
                if let Some(refused) = &refusal {
                    tracing::warn!(environment = %environment.name, ramp = %spec.name, "{refused}; the ramp is frozen");
                } else {
                    remap_step(&spec, &mut run);
                    // Say where it picks up: after a restart (or a crash) this
                    // is the first word about the ramp.
                    let hold = spec.steps.get(run.step).map_or(0, |s| s.hold.as_millis() as u64);
                    let remaining = (run.step_started_at + hold).saturating_sub(now) / 1000;
                    tracing::info!(
                        environment = %environment.name,
                        ramp = %spec.name,
                        run = %run.run_id,
                        state = run.status.name(),
                        step = run.step + 1,
                        percent = run.percent(),
                        hold_remaining_seconds = remaining,
                        "ramp resumed from the store"
                    );
                }
                let frozen = refusal.is_some();
                self.insert(environment, spec, run, frozen, refusal, Some(token)).await;
                Ok(())
            }
            stored => {
                let mut run = Run::new(&spec, &bound.control, run_id(now), now);
                let expect = stored.as_ref().map(|r| (r.run_id.clone(), r.seq));
                if let Some(previous) = &stored {
                    run.seq = previous.seq + 1;
                }
                let audit = vec![(
                    "file".to_owned(),
                    "ramp.created".to_owned(),
                    vec![format!(
                        "ramp {} run {} (revision {}) from {}",
                        spec.name, run.run_id, spec.revision, spec.file
                    )],
                )];
                let written = self
                    .store
                    .write_ramp(RampWrite {
                        environment: environment.name.clone(),
                        ramp: spec.name.clone(),
                        expect,
                        run: run.clone(),
                        record: None,
                        audit,
                        outbox: Vec::new(),
                        fence: Some(Fence { lease: lease_name(&environment.name, &spec.name), token }),
                    })
                    .await;
                match written {
                    Ok(()) => {
                        self.insert(environment, spec, run, false, None, Some(token)).await;
                        Ok(())
                    }
                    // Another replica started the run first: follow it.
                    Err(StoreError::Conflict { .. } | StoreError::Fenced { .. }) => {
                        let stored = self.stored_run(&environment.name, &spec.name).await?;
                        self.follow(environment, Bound { spec, control: bound.control }, stored).await;
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
        }
    }

    async fn insert(
        &self,
        environment: &Arc<Environment>,
        spec: Arc<RampSpec>,
        run: Run,
        frozen: bool,
        refused: Option<String>,
        token: Option<u64>,
    ) {
        let warnings = super::spec::warnings(&spec);
        let name = spec.name.clone();
        self.metrics.ramp_leader.with_label_values(&[&environment.name, &name]).set(i64::from(token.is_some()));
        let entry = Arc::new(Entry {
            environment: environment.name.clone(),
            name: name.clone(),
            counting: std::sync::Mutex::new(Counting::of(&run)),
            prometheus_cache: std::sync::Mutex::default(),
            lease: std::sync::Mutex::new(token),
            state: Mutex::new(EntryState {
                spec,
                file_missing: frozen && refused.is_none(),
                refused,
                frozen,
                warnings,
                run: run.clone(),
                last_tick: None,
            }),
        });
        self.apply_exposure(environment, &run, run.dry_run).await;
        self.metrics.ramp(&environment.name, &name, run.status.name(), run.percent());
        self.entries.write().unwrap_or_else(|e| e.into_inner()).insert((environment.name.clone(), name), entry);
    }

    /// Takes a ramp another replica drives: its stored run, or until that
    /// replica has written one, a run not started (shown as pending).
    async fn follow(&self, environment: &Arc<Environment>, bound: Bound, stored: Option<Run>) {
        let spec = bound.spec;
        let run = match stored {
            Some(run) => run,
            None => Run::new(&spec, &bound.control, run_id(now_millis()), now_millis()),
        };
        self.insert(environment, spec, run, false, None, None).await;
    }

    async fn stored_run(&self, environment: &str, ramp: &str) -> Result<Option<Run>, StoreError> {
        Ok(self
            .store
            .ramp_runs()
            .await?
            .into_iter()
            .find(|s| s.environment == environment && s.ramp == ramp)
            .map(|s| s.run))
    }

    /// Takes a run another replica wrote (or this one, echoed back): newer
    /// runs replace the entry's and move exposure; older or equal ones are
    /// ignored.
    pub async fn apply_remote(&self, environment: &str, ramp: &str, run: Run) {
        let Some(entry) = self.entry(environment, ramp) else { return };
        let Some(env) = self.environments.get(environment).cloned() else { return };
        let mut state = entry.state.lock().await;
        let newer = run.seq > state.run.seq || (run.run_id != state.run.run_id && run.seq >= state.run.seq);
        if !newer || state.run == run {
            return;
        }
        self.take_run(&env, &entry, &mut state, run).await;
    }

    /// Replaces the entry's run with a stored one.
    async fn take_run(&self, environment: &Arc<Environment>, entry: &Entry, state: &mut EntryState, run: Run) {
        let exposure_changed = state.run.basis_points != run.basis_points
            || state.run.run_id != run.run_id
            || state.run.dry_run != run.dry_run;
        *entry.counting.lock().unwrap_or_else(|e| e.into_inner()) = Counting::of(&run);
        self.metrics.ramp(&entry.environment, &entry.name, run.status.name(), run.percent());
        state.run = run.clone();
        if exposure_changed {
            self.apply_exposure(environment, &run, run.dry_run).await;
        }
    }

    /// Reads the entry's run from the store again (after a lost
    /// compare-and-set or on taking a lease over).
    async fn refresh(&self, environment: &Arc<Environment>, entry: &Entry, state: &mut EntryState) {
        match self.stored_run(&entry.environment, &entry.name).await {
            Ok(Some(run)) if run != state.run => {
                tracing::info!(environment = %entry.environment, ramp = %entry.name, seq = run.seq, state = run.status.name(), "ramp state read from the store");
                self.take_run(environment, entry, state, run).await;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, %error, "cannot read the ramp from the store")
            }
        }
    }

    /// Takes or renews the lease of every ramp. A replica that takes one
    /// over first reads the ramp's state from the store, so it resumes at
    /// the step the previous holder persisted.
    async fn maintain_leases(&self) {
        for entry in self.entries() {
            let before = entry.token();
            match self.store.acquire_lease(&entry.lease_name(), &self.holder, self.lease_ttl).await {
                Ok(Some(token)) => {
                    if before != Some(token) {
                        let Some(environment) = self.environments.get(&entry.environment).cloned() else { continue };
                        let mut state = entry.state.lock().await;
                        self.refresh(&environment, &entry, &mut state).await;
                        state.last_tick = None;
                        entry.set_token(Some(token));
                        if before.is_none() {
                            tracing::info!(environment = %entry.environment, ramp = %entry.name, token, step = state.run.step + 1, state = state.run.status.name(), "took the ramp's lease: this replica drives it");
                        }
                    }
                }
                Ok(None) => {
                    if before.is_some() {
                        tracing::warn!(environment = %entry.environment, ramp = %entry.name, "lost the ramp's lease: another replica drives it");
                        entry.set_token(None);
                    }
                }
                Err(error) => {
                    tracing::debug!(environment = %entry.environment, ramp = %entry.name, %error, "cannot renew the ramp's lease");
                }
            }
            self.metrics
                .ramp_leader
                .with_label_values(&[&entry.environment, &entry.name])
                .set(i64::from(entry.token().is_some()));
        }
    }

    /// Gives every held lease up, so another replica takes over at once.
    pub async fn release_leases(&self) {
        for entry in self.entries() {
            if entry.token().is_some() {
                entry.set_token(None);
                if let Err(error) = self.store.release_lease(&entry.lease_name(), &self.holder).await {
                    tracing::warn!(environment = %entry.environment, ramp = %entry.name, %error, "cannot release the ramp's lease");
                }
            }
        }
    }

    /// Sets the environment's exposure from a persisted run; a dry-run ramp
    /// never exposes anyone.
    async fn apply_exposure(&self, environment: &Environment, run: &Run, dry_run: bool) {
        let exposure = (run.basis_points > 0 && !dry_run).then(|| Exposure {
            treatment: run.treatment.clone(),
            control: run.control.clone(),
            salt: run.salt.clone(),
            basis_points: run.basis_points,
        });
        match environment.set_exposure(&run.flag, exposure).await {
            Ok(_) => {}
            Err(errors) => {
                tracing::error!(environment = %environment.name, flag = %run.flag, %errors, "cannot apply ramp exposure")
            }
        }
    }

    /// This replica's name in leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The ramp file patterns of an environment (for the file watcher).
    pub fn patterns(&self, environment: &str) -> &[String] {
        self.patterns.get(environment).map_or(&[], Vec::as_slice)
    }

    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn entry(&self, environment: &str, name: &str) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(&(environment.to_owned(), name.to_owned())).cloned()
    }

    /// Whether an active ramp counts outcomes of this flag variant (for
    /// `/v1/outcomes`): only its treatment and control, only while the run
    /// is active, so reports cannot grow the store without bound.
    pub fn counts(&self, environment: &str, flag: &str, variant: &str) -> bool {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).values().any(|e| {
            e.environment == environment
                && e.counting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|c| c.flag == flag && (c.treatment == variant || c.control == variant))
        })
    }

    /// Ticks every due ramp this replica holds the lease of, and renews
    /// the leases, until `shutdown`; then gives the leases up.
    ///
    /// Ticks run before renewal: a replica that was paused past its lease
    /// writes with its old token and is refused by the store (the fencing
    /// token), rather than trusting its own clock.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Often enough to renew well within the lease, and to take a
        // released or expired lease over within a second.
        let renew_every = (self.lease_ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut next_renewal = tokio::time::Instant::now() + renew_every;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
            // Leases are renewed after each tick when due, not after all of
            // them: every tick is bounded (`tick_budget`), so however many
            // ramps there are, a renewal is never more than one tick late
            // (and a tick still runs before the renewal after a pause, so a
            // replica resumed after SIGSTOP writes with its old token and is
            // refused rather than trusting its own clock).
            for entry in self.entries() {
                if entry.token().is_none() {
                    continue;
                }
                let due = {
                    let state = entry.state.lock().await;
                    let interval = state.spec.interval.as_millis() as u64;
                    !state.frozen
                        && !state.run.status.is_terminal()
                        && state.last_tick.is_none_or(|last| now_millis() >= last + interval)
                };
                if due && let Err(error) = self.tick(&entry, None).await {
                    tracing::error!(environment = %entry.environment, ramp = %entry.name, %error, "ramp tick failed");
                }
                if tokio::time::Instant::now() >= next_renewal {
                    self.maintain_leases().await;
                    next_renewal = tokio::time::Instant::now() + renew_every;
                }
            }
            if tokio::time::Instant::now() >= next_renewal {
                self.maintain_leases().await;
                next_renewal = tokio::time::Instant::now() + renew_every;
            }
        }
        self.release_leases().await;
    }

    /// Applies an operator command now, as a tick.
    pub async fn command(&self, environment: &str, name: &str, command: Command) -> Result<RampStatus, CommandError> {
        let entry = self
            .entry(environment, name)
            .ok_or_else(|| CommandError::NotFound(environment.to_owned(), name.to_owned()))?;
        // A write that lost a race with the ramp's driver re-reads the
        // stored run; the command is then decided again on it.
        let result = match self.tick(&entry, Some(command.clone())).await {
            Err(StoreError::Conflict { .. } | StoreError::Fenced { .. }) => self.tick(&entry, Some(command)).await?,
            result => result?,
        };
        match result {
            Some(Err(message)) => Err(CommandError::Rejected(message)),
            _ => Ok(self.status(&entry).await),
        }
    }

    /// One tick of one ramp; returns the command's result, if any.
    async fn tick(&self, entry: &Entry, command: Option<Command>) -> Result<Option<Result<(), String>>, StoreError> {
        let Some(environment) = self.environments.get(&entry.environment).cloned() else { return Ok(None) };
        let mut state = entry.state.lock().await;
        let now = now_millis();
        if state.frozen {
            // A frozen ramp (file gone, or an edit it cannot take) can still be aborted.
            return match command {
                Some(Command::Abort { by }) => {
                    let mut next = state.run.clone();
                    next.status = Status::RolledBack { reason: decide::RollbackReason::Aborted, by: by.clone() };
                    next.basis_points = 0;
                    next.seq += 1;
                    next.updated_at = now;
                    let events = vec![decide::Event { kind: "rolled_back".into(), reason: Some("Aborted".into()), by }];
                    self.persist(&environment, entry, &mut state, next, events, Evidence::default()).await?;
                    Ok(Some(Ok(())))
                }
                Some(_) => Ok(Some(Err(
                    "the ramp is frozen (its file is missing or an edit was refused); only abort applies".into(),
                ))),
                None => Ok(None),
            };
        }
        let spec = state.spec.clone();
        let observation = self.observe_within_budget(&environment, entry, &spec, &state.run, now).await;
        let command = command.map(|command| match command {
            Command::Restart { by, .. } => Command::Restart { by, run_id: run_id(now) },
            other => other,
        });
        let mut decision = decide::decide(&state.run, &spec, &observation, now, command.as_ref());
        if state.run.dry_run {
            // Recorded and logged as what would have happened.
            for event in &mut decision.events {
                event.kind = format!("would_{}", event.kind);
            }
        }
        state.last_tick = Some(now);
        let mut compare = decision.run.clone();
        compare.updated_at = state.run.updated_at;
        if compare != state.run {
            let evidence = decide::explain(&decision.run, &spec, &observation, now);
            self.persist(&environment, entry, &mut state, decision.run, decision.events, evidence).await?;
        }
        Ok(decision.command)
    }

    /// Writes a transition, then (only then) changes exposure.
    async fn persist(
        &self,
        environment: &Arc<Environment>,
        entry: &Entry,
        state: &mut EntryState,
        next: Run,
        events: Vec<decide::Event>,
        evidence: Evidence,
    ) -> Result<(), StoreError> {
        let before = state.run.clone();
        let status_changed = before.status != next.status || before.step != next.step || before.run_id != next.run_id;
        let evidence_for_hooks = evidence.clone();
        let record = (status_changed || !events.is_empty()).then(|| RampDecisionRecord {
            at: next.updated_at,
            run_id: next.run_id.clone(),
            seq: next.seq,
            from: before.status.name().into(),
            to: next.status.name().into(),
            reason: next.status.reason(),
            step: next.step,
            percent: next.percent(),
            events: events.clone(),
            evidence,
            config: hex::encode(state.spec.digest),
            by: events.first().map_or_else(|| "controller".into(), |e| e.by.clone()),
        });
        let audit = events
            .iter()
            .map(|event| {
                let reason = event.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                (
                    event.by.clone(),
                    format!("ramp.{}", event.kind),
                    vec![format!(
                        "ramp {} run {}: {}{reason}, step {} at {}%",
                        entry.name,
                        next.run_id,
                        event.kind,
                        next.step + 1,
                        next.percent()
                    )],
                )
            })
            .collect();
        let outbox = super::webhooks::deliveries(&state.spec, &entry.environment, &next, &events, &evidence_for_hooks);
        let written = self
            .store
            .write_ramp(RampWrite {
                environment: entry.environment.clone(),
                ramp: entry.name.clone(),
                expect: Some((before.run_id.clone(), before.seq)),
                run: next.clone(),
                record,
                audit,
                outbox,
                fence: entry.fence(),
            })
            .await;
        match written {
            Ok(()) => {}
            Err(error @ StoreError::Fenced { .. }) => {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, %error, "late write of a stale lease holder refused; another replica drives the ramp");
                self.metrics.ramp_fenced_writes.with_label_values(&[&entry.environment, &entry.name]).inc();
                self.metrics.ramp_leader.with_label_values(&[&entry.environment, &entry.name]).set(0);
                entry.set_token(None);
                self.refresh(environment, entry, state).await;
                return Err(error);
            }
            Err(error @ StoreError::Conflict { .. }) => {
                self.refresh(environment, entry, state).await;
                return Err(error);
            }
            Err(error) => return Err(error),
        }
        state.run = next.clone();
        *entry.counting.lock().unwrap_or_else(|e| e.into_inner()) = Counting::of(&next);
        for event in &events {
            let reason = event.reason.clone().unwrap_or_default();
            self.metrics
                .ramp_transitions
                .with_label_values(&[&entry.environment, &entry.name, &event.kind, &reason])
                .inc();
            let level_warn = matches!(event.kind.as_str(), "rolled_back" | "paused" | "holding");
            if level_warn {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, run = %next.run_id, event = %event.kind, reason = %reason, by = %event.by, percent = next.percent(), "ramp {}", event.kind);
            } else {
                tracing::info!(environment = %entry.environment, ramp = %entry.name, run = %next.run_id, event = %event.kind, reason = %reason, by = %event.by, percent = next.percent(), "ramp {}", event.kind);
            }
        }
        self.metrics.ramp(&entry.environment, &entry.name, next.status.name(), next.percent());
        if before.basis_points != next.basis_points || before.run_id != next.run_id {
            self.apply_exposure(environment, &next, next.dry_run).await;
        }
        if next.status.is_terminal() {
            // An ended run counts nothing more: drop its buckets.
            let all = next.updated_at / 1000 + 1;
            if let Err(error) = self.store.prune_outcomes(&entry.environment, &next.flag, all).await {
                tracing::warn!(%error, "cannot prune outcome buckets");
            }
        } else if before.step_started_at != next.step_started_at || before.run_id != next.run_id {
            let before_second = next.step_started_at / 1000;
            if let Err(error) = self.store.prune_outcomes(&entry.environment, &next.flag, before_second).await {
                tracing::warn!(%error, "cannot prune old outcome buckets");
            }
        }
        Ok(())
    }

    /// [`Controller::observe`] bounded by a third of the lease (a tick holds
    /// its ramp's lock, and leases are renewed between ticks): a metric
    /// source slower than that is an unavailable one for this tick.
    async fn observe_within_budget(
        &self,
        environment: &Environment,
        entry: &Entry,
        spec: &RampSpec,
        run: &Run,
        now: u64,
    ) -> Observation {
        let budget = (self.lease_ttl / 3).max(Duration::from_millis(500));
        match tokio::time::timeout(budget, self.observe(environment, entry, spec, run, now)).await {
            Ok(observation) => observation,
            Err(_) => {
                tracing::warn!(environment = %entry.environment, ramp = %entry.name, ?budget, "metrics took longer than a tick may");
                Observation {
                    buckets: Vec::new(),
                    missing: Some(HoldReason::MetricsUnavailable),
                    flag_enabled: flag_enabled(environment, &run.flag),
                    expected_share: None,
                    metrics: Vec::new(),
                }
            }
        }
    }

    /// Counts of the current step's closed buckets.
    async fn observe(
        &self,
        environment: &Environment,
        entry: &Entry,
        spec: &RampSpec,
        run: &Run,
        now: u64,
    ) -> Observation {
        let flag_enabled = flag_enabled(environment, &run.flag);
        let from = run.step_started_at.div_ceil(1000);
        let to = now.saturating_sub(WATERMARK_LAG_MS) / 1000;
        let interval = spec.interval.as_millis() as u64;
        let width = (interval / 1000).max(1);
        // The expected split is known when the ramp alone splits the flag.
        let rules_free = environment.unramped_flag(&run.flag).await.is_some_and(|flag| {
            flag.definition()
                .get("targeting")
                .is_none_or(|t| t.is_null() || t.as_object().is_some_and(|o| o.is_empty()))
        });
        let expected_share = rules_free.then(|| f64::from(run.basis_points) / f64::from(rampart_engine::ramp::FULL));
        let mut observation =
            Observation { buckets: Vec::new(), missing: None, flag_enabled, expected_share, metrics: Vec::new() };
        let names = Names {
            flag: &run.flag,
            environment: &environment.name,
            ramp: &entry.name,
            treatment: &run.treatment,
            control: &run.control,
        };
        if !spec.metrics.is_empty() && !matches!(run.status, Status::Pending { .. }) {
            // Extra metrics use the guard's Prometheus (URL, token, lag) or the server's.
            let default_guard;
            let guard = match &spec.guard.source {
                MetricSource::Prometheus(guard) => guard,
                MetricSource::Builtin => {
                    default_guard = super::spec::PrometheusGuard {
                        url: None,
                        errors: String::new(),
                        total: String::new(),
                        lag: super::spec::DEFAULT_PROMETHEUS_LAG,
                        token_ref: None,
                    };
                    &default_guard
                }
            };
            for metric in &spec.metrics {
                let values = self
                    .prometheus
                    .metric_values(guard, metric, names, (&run.run_id, run.step_started_at), interval, now)
                    .await
                    .map_err(|error| {
                        tracing::warn!(ramp = %entry.name, metric = %metric.name, %error, "metric unavailable");
                    })
                    .ok();
                observation.metrics.push((metric.name.clone(), values));
            }
        }
        if let MetricSource::Prometheus(guard) = &spec.guard.source {
            let result = if matches!(run.status, Status::Pending { .. }) {
                self.prometheus.ready(guard, now).await.map(|()| Vec::new())
            } else {
                let step = (run.run_id.as_str(), run.step_started_at);
                self.prometheus.buckets(guard, names, &entry.prometheus_cache, step, interval, now).await
            };
            match result {
                Ok(buckets) => observation.buckets = buckets,
                Err(error) => {
                    tracing::warn!(environment = %environment.name, ramp = %entry.name, %error, "Prometheus metrics unavailable");
                    // Prometheus answers but has nothing for the newest closed
                    // bucket: the data is late, not zero.
                    observation.missing = Some(if super::prometheus::is_empty_result(&error) {
                        HoldReason::StaleData
                    } else {
                        HoldReason::MetricsUnavailable
                    });
                }
            }
            return observation;
        }
        if to <= from || matches!(run.status, Status::Pending { .. }) {
            return observation;
        }
        let buckets = (to - from).div_ceil(width) as usize;
        observation.buckets = vec![Pair::default(); buckets];
        let index = |second: u64| ((second - from) / width) as usize;
        match spec.guard.unit {
            Unit::Request => match self.store.outcomes(&environment.name, &run.flag, from, to).await {
                Ok(counts) => {
                    for count in counts {
                        let bucket = &mut observation.buckets[index(count.second)];
                        let arm = if count.variant == run.treatment {
                            &mut bucket.treatment
                        } else if count.variant == run.control {
                            &mut bucket.control
                        } else {
                            continue;
                        };
                        arm.exposures += count.ok + count.error;
                        arm.errors += count.error;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read outcome counts");
                    observation.missing = Some(HoldReason::MetricsUnavailable);
                }
            },
            Unit::Context => match self.store.context_outcomes(&environment.name, &run.flag, from, to).await {
                Ok(outcomes) => {
                    let mut seen: HashMap<(usize, bool, u64), bool> = HashMap::new();
                    for outcome in outcomes {
                        let treatment = if outcome.variant == run.treatment {
                            true
                        } else if outcome.variant == run.control {
                            false
                        } else {
                            continue;
                        };
                        *seen.entry((index(outcome.second), treatment, outcome.context)).or_default() |= outcome.error;
                    }
                    for ((bucket, treatment, _), error) in seen {
                        let bucket = &mut observation.buckets[bucket];
                        let arm = if treatment { &mut bucket.treatment } else { &mut bucket.control };
                        arm.exposures += 1;
                        arm.errors += u64::from(error);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read outcome counts");
                    observation.missing = Some(HoldReason::MetricsUnavailable);
                }
            },
        }
        observation
    }

    /// A ramp's status with fresh evidence.
    pub async fn status(&self, entry: &Entry) -> RampStatus {
        let state = entry.state.lock().await.clone();
        let now = now_millis();
        let evidence = match self.environments.get(&entry.environment) {
            Some(environment) if !state.run.status.is_terminal() => {
                let observation = self.observe_within_budget(environment, entry, &state.spec, &state.run, now).await;
                Some(decide::explain(&state.run, &state.spec, &observation, now))
            }
            _ => None,
        };
        let run = &state.run;
        let hold = state.spec.steps.get(run.step).map_or(0, |s| s.hold.as_millis() as u64);
        let active = !matches!(run.status, Status::Pending { .. }) && !run.status.is_terminal();
        let by = match &run.status {
            Status::Paused { by, .. } | Status::RolledBack { by, .. } => Some(by.clone()),
            _ => None,
        };
        RampStatus {
            environment: entry.environment.clone(),
            name: entry.name.clone(),
            flag: run.flag.clone(),
            file: state.spec.file.clone(),
            run_id: run.run_id.clone(),
            revision: run.revision,
            seq: run.seq,
            state: run.status.name().into(),
            reason: run.status.reason(),
            by,
            step: if matches!(run.status, Status::Pending { .. }) { 0 } else { run.step + 1 },
            steps: state.spec.steps.iter().map(|s| f64::from(s.basis_points) / 100.0).collect(),
            percent: run.percent(),
            treatment: run.treatment.clone(),
            control: run.control.clone(),
            salt: run.salt.clone(),
            step_started_at: crate::time::rfc3339(run.step_started_at),
            hold_remaining_seconds: if active { (run.step_started_at + hold).saturating_sub(now) / 1000 } else { 0 },
            failed_checks: run.failed_checks,
            interval_seconds: state.spec.interval.as_secs_f64(),
            frozen: state.frozen,
            refused_change: state.refused.clone(),
            file_errors: self.file_errors(&entry.environment, &entry.name, &state.spec.file),
            warnings: {
                let mut warnings = state.warnings.clone();
                if state.file_missing {
                    warnings.insert(0, "the ramp file is missing: the ramp is frozen at its percent".into());
                }
                warnings
            },
            evidence,
        }
    }

    /// The current evidence, each guard's statistic against its threshold,
    /// and what is missing to advance.
    pub async fn explain(&self, entry: &Entry) -> serde_json::Value {
        let status = self.status(entry).await;
        let spec = entry.state.lock().await.spec.clone();
        let evidence = status.evidence.clone().unwrap_or_default();
        let verdict = |statistic: Option<f64>, threshold: Option<f64>, fails_above: bool| match (statistic, threshold) {
            (Some(s), Some(t)) if (s > t) == fails_above && s != t => "fail",
            (Some(_), Some(_)) => "pass",
            _ => "not applicable",
        };
        let guard = &spec.guard;
        let srm_threshold = Some(3.29);
        serde_json::json!({
            "environment": status.environment,
            "name": status.name,
            "state": status.state,
            "reason": status.reason,
            "step": status.step,
            "percent": status.percent,
            "dryRun": spec.dry_run,
            "evidence": evidence,
            "guards": [
                {"name": "absolute ceiling", "role": "rollback", "statistic": "Clopper-Pearson lower bound of the treatment error rate",
                 "value": evidence.ceiling_lower, "threshold": guard.max_error_rate,
                 "verdict": verdict(evidence.ceiling_lower, guard.max_error_rate, true)},
                {"name": "relative regression", "role": "rollback", "statistic": "mixture SPRT likelihood ratio",
                 "value": evidence.lambda, "threshold": evidence.lambda_threshold,
                 "verdict": match (evidence.lambda, evidence.lambda_threshold) {
                     (Some(l), Some(t)) if l >= t => "fail",
                     (Some(_), Some(_)) => "pass",
                     _ => "not applicable",
                 }},
                {"name": "not worse, ratio scale", "role": "advance", "statistic": "upper bound of the rate ratio",
                 "value": evidence.ratio_upper, "threshold": guard.advance_max_ratio,
                 "verdict": if evidence.ratio_upper.is_some_and(|r| r <= guard.advance_max_ratio) { "pass" } else { "inconclusive" }},
                {"name": "not worse, difference scale", "role": "advance", "statistic": "upper bound of the rate difference",
                 "value": evidence.difference_upper, "threshold": guard.max_increase,
                 "verdict": if evidence.difference_upper.is_some_and(|d| d <= guard.max_increase) { "pass" } else { "inconclusive" }},
                {"name": "sample ratio", "role": "hold", "statistic": "z of the treatment's share of exposures",
                 "value": evidence.srm_z, "threshold": srm_threshold,
                 "verdict": verdict(evidence.srm_z.map(f64::abs), srm_threshold, true)},
            ],
            "detectableRatio": evidence.detectable_ratio,
            "missingToAdvance": evidence.missing_to_advance,
        })
    }

    pub async fn statuses(&self) -> Vec<RampStatus> {
        let mut out = Vec::new();
        for entry in self.entries() {
            out.push(self.status(&entry).await);
        }
        out
    }

    /// Re-reads every environment's ramp files after a change on disk. An
    /// invalid set is logged with file and line and changes nothing.
    pub async fn reload(&self) {
        for environment in self.environments.iter() {
            let bound = match self.read(environment).await {
                Ok(bound) => {
                    self.rejected.lock().unwrap_or_else(|e| e.into_inner()).remove(&environment.name);
                    bound
                }
                Err(errors) => {
                    self.reject(environment, errors).await;
                    continue;
                }
            };
            let mut present = Vec::new();
            for bound in bound {
                present.push(bound.spec.name.clone());
                if let Err(error) = self.reload_one(environment, bound).await {
                    tracing::error!(environment = %environment.name, %error, "cannot apply ramp file");
                }
            }
            for entry in self.entries().into_iter().filter(|e| e.environment == environment.name) {
                if present.contains(&entry.name) {
                    continue;
                }
                let mut state = entry.state.lock().await;
                if !state.file_missing {
                    tracing::warn!(environment = %entry.environment, ramp = %entry.name, percent = state.run.percent(), "ramp file removed: the ramp is frozen at its percent");
                    state.file_missing = true;
                    state.frozen = true;
                }
            }
        }
    }

    /// An invalid edit of an environment's ramp files: the ramps keep their
    /// last good configuration; the problems are logged, audited (on the
    /// ramps whose files they are in) and shown in their status — once per
    /// edit, however often the files are read again — and the environment's
    /// `rampart_config_last_reload_success` is 0 until they are fixed.
    async fn reject(&self, environment: &Arc<Environment>, errors: LoadErrors) {
        self.metrics.config_last_reload_ok.with_label_values(&[&environment.name]).set(0);
        let new = {
            let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            let previous = rejected.insert(environment.name.clone(), errors.0.clone());
            previous.as_ref() != Some(&errors.0)
        };
        if !new {
            return;
        }
        for error in errors.iter() {
            tracing::error!(environment = %environment.name, file = %error.file, line = error.line, ramp = error.ramp.as_deref(), "rejected ramp files, the ramps keep their last good configuration: {error}");
        }
        for entry in self.entries().into_iter().filter(|e| e.environment == environment.name) {
            if entry.token().is_none() {
                continue;
            }
            let state = entry.state.lock().await;
            let lines: Vec<String> = errors
                .iter()
                .filter(|e| e.file == state.spec.file || e.ramp.as_deref() == Some(entry.name.as_str()))
                .map(ToString::to_string)
                .collect();
            if lines.is_empty() {
                continue;
            }
            let write = RampWrite {
                environment: environment.name.clone(),
                ramp: entry.name.clone(),
                expect: Some((state.run.run_id.clone(), state.run.seq)),
                run: state.run.clone(),
                record: None,
                audit: vec![("file".to_owned(), "ramp.file_rejected".to_owned(), lines)],
                outbox: Vec::new(),
                fence: entry.fence(),
            };
            if let Err(error) = self.store.write_ramp(write).await {
                tracing::warn!(environment = %environment.name, ramp = %entry.name, %error, "cannot audit the rejected ramp file");
            }
        }
    }

    /// The problems of the last rejected edit of a ramp's file, if any.
    fn file_errors(&self, environment: &str, ramp: &str, file: &str) -> Vec<String> {
        let rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        rejected
            .get(environment)
            .map(|errors| {
                errors
                    .iter()
                    .filter(|e| e.file == file || e.ramp.as_deref() == Some(ramp))
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn reload_one(&self, environment: &Arc<Environment>, bound: Bound) -> Result<(), StoreError> {
        let Some(entry) = self.entry(&environment.name, &bound.spec.name) else {
            let stored = self
                .store
                .ramp_runs()
                .await?
                .into_iter()
                .find(|s| s.environment == environment.name && s.ramp == bound.spec.name)
                .map(|s| s.run);
            tracing::info!(environment = %environment.name, ramp = %bound.spec.name, "new ramp file");
            let lease = lease_name(&environment.name, &bound.spec.name);
            return match self.store.acquire_lease(&lease, &self.holder, self.lease_ttl).await? {
                Some(token) => self.adopt(environment, bound, stored, token).await,
                None => {
                    self.follow(environment, bound, stored).await;
                    Ok(())
                }
            };
        };
        let leading = entry.token().is_some();
        let mut state = entry.state.lock().await;
        if state.spec.digest == bound.spec.digest && !state.file_missing && state.refused.is_none() {
            return Ok(());
        }
        let spec = bound.spec.clone();
        if spec.revision != state.run.revision && !leading {
            // The replica driving the ramp starts the new run; it arrives
            // here through the store.
            state.spec = spec;
            state.refused = None;
            state.frozen = false;
            state.file_missing = false;
            state.warnings = super::spec::warnings(&state.spec);
            return Ok(());
        }
        if spec.revision != state.run.revision {
            // A new revision: a new run from step 0.
            let now = now_millis();
            let mut run = Run::new(&spec, &bound.control, run_id(now), now);
            run.seq = state.run.seq + 1;
            let events = vec![decide::Event {
                kind: "restarted".into(),
                reason: Some(format!("revision {}", spec.revision)),
                by: "file".into(),
            }];
            state.spec = spec;
            state.refused = None;
            state.frozen = false;
            state.file_missing = false;
            state.warnings = super::spec::warnings(&state.spec);
            state.last_tick = None;
            return self.persist(environment, &entry, &mut state, run, events, Evidence::default()).await;
        }
        if let Some(refused) = refusal(&spec, &bound.control, &state.run) {
            if leading && state.refused.as_deref() != Some(refused.as_str()) {
                tracing::warn!(environment = %environment.name, ramp = %spec.name, file = %spec.file, "ramp edit refused: {refused}");
                let audit = vec![(
                    "file".to_owned(),
                    "ramp.config_change_refused".to_owned(),
                    vec![format!("ramp {}: {refused}", spec.name)],
                )];
                let event = decide::Event {
                    kind: "config_change_refused".into(),
                    reason: Some(refused.clone()),
                    by: "file".into(),
                };
                let outbox =
                    super::webhooks::deliveries(&spec, &environment.name, &state.run, &[event], &Evidence::default());
                let write = RampWrite {
                    environment: environment.name.clone(),
                    ramp: spec.name.clone(),
                    expect: Some((state.run.run_id.clone(), state.run.seq)),
                    run: state.run.clone(),
                    record: None,
                    audit,
                    outbox,
                    fence: entry.fence(),
                };
                self.store.write_ramp(write).await?;
                self.metrics
                    .ramp_transitions
                    .with_label_values(&[&environment.name, &spec.name, "config_change_refused", ""])
                    .inc();
            }
            state.refused = Some(refused);
            state.file_missing = false;
            return Ok(());
        }
        tracing::info!(environment = %environment.name, ramp = %spec.name, "ramp file change applied");
        remap_step(&spec, &mut state.run);
        state.spec = spec;
        state.refused = None;
        state.file_missing = false;
        // A frozen run that was refused at start-up thaws when the file is fixed.
        state.frozen = false;
        state.warnings = super::spec::warnings(&state.spec);
        Ok(())
    }
}

/// Why a spec cannot drive a run: fixed fields differ, or the run's current
/// percent is no longer a step.
fn refusal(spec: &RampSpec, control: &str, run: &Run) -> Option<String> {
    let running = RampSpec {
        flag: run.flag.clone(),
        treatment: run.treatment.clone(),
        control: Some(run.control.clone()),
        salt: run.salt.clone(),
        environment: spec.environment.clone(),
        dry_run: run.dry_run,
        ..spec.clone()
    };
    let candidate = RampSpec { control: Some(control.to_owned()), ..spec.clone() };
    let bp =
        if matches!(run.status, Status::Pending { .. }) || run.status.is_terminal() { 0 } else { run.basis_points };
    candidate.live_edit_refusal(&running, bp)
}

/// Points the run's step index at the step with its current percent (steps
/// may have been inserted or removed before it).
fn remap_step(spec: &RampSpec, run: &mut Run) {
    if matches!(run.status, Status::Pending { .. }) || run.status.is_terminal() {
        return;
    }
    if let Some(index) = spec.steps.iter().position(|s| s.basis_points == run.basis_points) {
        run.step = index;
    }
}

/// A spec standing in for a missing file: enough to show the frozen run.
fn placeholder_spec(name: &str, run: &Run) -> RampSpec {
    use super::spec::{Action, Guard, MetricSource, Policy, SrmAction};
    RampSpec {
        name: name.to_owned(),
        environment: None,
        flag: run.flag.clone(),
        treatment: run.treatment.clone(),
        control: Some(run.control.clone()),
        salt: run.salt.clone(),
        revision: run.revision,
        not_before: None,
        interval: super::spec::DEFAULT_INTERVAL,
        steps: Vec::new(),
        guard: Guard {
            source: MetricSource::Builtin,
            unit: Unit::Request,
            max_error_rate: None,
            absolute_confidence: super::spec::DEFAULT_ABSOLUTE_CONFIDENCE,
            max_increase: super::spec::DEFAULT_MAX_INCREASE,
            tolerance: super::spec::DEFAULT_TOLERANCE,
            relative_confidence: super::spec::DEFAULT_RELATIVE_CONFIDENCE,
            advance_max_ratio: 1.0 + 2.0 * super::spec::DEFAULT_TOLERANCE,
            advance_confidence: super::spec::DEFAULT_ADVANCE_CONFIDENCE,
            critical: true,
        },
        policy: Policy {
            on_regression: Action::Rollback,
            pause_after_failed_checks: super::spec::DEFAULT_FAILED_CHECKS,
            on_missing_data: Action::Pause,
            step_timeout: super::spec::DEFAULT_STEP_TIMEOUT,
            on_step_timeout: Action::Pause,
            on_sample_ratio_mismatch: SrmAction::Hold,
            approval_timeout: super::spec::DEFAULT_APPROVAL_TIMEOUT,
            on_approval_timeout: Action::Pause,
        },
        metrics: Vec::new(),
        windows: None,
        dry_run: false,
        notify: Vec::new(),
        file: "<missing>".into(),
        digest: [0; 32],
        lines: super::spec::KeyLines::default(),
    }
}

/// Whether the environment serves `flag` enabled (a disabled flag gets no
/// traffic, which the decision must not read as missing data).
fn flag_enabled(environment: &Environment, flag: &str) -> bool {
    environment.snapshot().flags.get(flag).is_some_and(|f| f.state() == FlagState::Enabled)
}
