//! Ramps and their stored runs brought together: at start-up (every file
//! with the run persisted for it, frozen runs for files that are gone),
//! when another replica writes a run (through the store's replication),
//! and when this replica loses a race and reads the run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rampart_engine::{LoadError, LoadErrors};

use super::leases::lease_name;
use super::reload::{refusal, remap_step};
use super::{Controller, Counting, Entry, EntryState, StartError, run_id};
use crate::config::ServerConfig;
use crate::environment::{Environment, Environments};
use crate::metrics::Metrics;
use crate::model::Run;
use crate::ramp::files::{self, Bound};
use crate::ramp::spec::{self, RampSpec};
use crate::store::{Fence, RampWrite, Store, StoreError};

impl Controller {
    /// Loads every environment's ramp files, reconciles them with the
    /// persisted runs and applies the persisted exposures. Invalid files
    /// fail start-up, like invalid flag files.
    pub async fn load(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        environments: Arc<Environments>,
        metrics: Arc<Metrics>,
        clock: crate::time::Clock,
    ) -> Result<Arc<Controller>, StartError> {
        let controller =
            Controller::new(config, store, environments, metrics, clock).map_err(StartError::Prometheus)?;
        let controller = Arc::new(controller);
        let mut failures = Vec::new();
        let mut bound = Vec::new();
        for environment in controller.environments.iter() {
            match controller.read(environment).await {
                Ok(specs) => bound.push((environment.clone(), specs)),
                Err(errors) => failures.push((environment.name.clone(), errors)),
            }
        }
        if !failures.is_empty() {
            return Err(StartError::Files(failures));
        }
        let stored = controller.store.ramp_runs().await?;
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
            let spec = Arc::new(RampSpec::placeholder(&name, &run));
            controller.insert(&env, spec, run, true, None, None).await;
        }
        Ok(controller)
    }

    pub(super) async fn read(&self, environment: &Arc<Environment>) -> Result<Vec<Bound>, LoadErrors> {
        let patterns = self.patterns.get(&environment.name).cloned().unwrap_or_default();
        let glob_files = self.glob_files;
        let name = environment.name.clone();
        let known: Vec<String> = self.patterns.keys().cloned().collect();
        let specs =
            tokio::task::spawn_blocking(move || files::read(&files::expand(&patterns, glob_files)?, &name, &known))
                .await
                .map_err(|e| LoadErrors(vec![LoadError::new("<ramps>", e.to_string())]))??;
        let mut flags = BTreeMap::new();
        for spec in &specs {
            if let Some(flag) = environment.unramped_flag(&spec.flag).await {
                flags.insert(spec.flag.clone(), flag);
            } else if let Some((previous, _)) = spec.stage.as_ref().and_then(|stage| stage.previous())
                && let Some(from) = self.environments.get(previous)
                && from.snapshot().api.contains_key(&spec.flag)
                && let Some(flag) = from.unramped_flag(&spec.flag).await
            {
                // A release's API-owned flag, promoted here when this stage starts.
                flags.insert(spec.flag.clone(), flag);
            }
        }
        files::bind(specs, &environment.name, |key| flags.get(key).cloned())
    }

    /// Takes a bound spec at start-up (or a new file on reload): continues
    /// the stored run of the same revision, or starts a new run.
    pub(super) async fn adopt(
        &self,
        environment: &Arc<Environment>,
        bound: Bound,
        stored: Option<Run>,
        token: u64,
    ) -> Result<(), StoreError> {
        let spec = bound.spec;
        let now = self.clock.now_millis();
        let warnings = spec::warnings(&spec);
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
                let mut run = spec.new_run(&bound.control, run_id(now), now);
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
        let warnings = spec::warnings(&spec);
        let name = spec.name.clone();
        self.metrics.ramp_leader.with_label_values(&[&environment.name, &name]).set(i64::from(token.is_some()));
        let entry = Arc::new(Entry {
            environment: environment.name.clone(),
            name: name.clone(),
            counting: std::sync::Mutex::new(Counting::of(&run, &spec)),
            bucket_cache: Default::default(),
            checks: std::sync::Mutex::default(),
            lease: std::sync::Mutex::new(token),
            state: tokio::sync::Mutex::new(EntryState {
                spec,
                file_missing: frozen && refused.is_none(),
                refused,
                frozen,
                warnings,
                run: run.clone(),
                last_tick: None,
            }),
        });
        self.apply_exposure(environment, &run).await;
        self.metrics.ramp(&environment.name, &name, run.status.name(), run.percent());
        self.entries.write().unwrap_or_else(|e| e.into_inner()).insert((environment.name.clone(), name), entry);
    }

    /// Takes a ramp another replica drives: its stored run, or until that
    /// replica has written one, a run not started (shown as pending).
    pub(super) async fn follow(&self, environment: &Arc<Environment>, bound: Bound, stored: Option<Run>) {
        let spec = bound.spec;
        let run = match stored {
            Some(run) => run,
            None => spec.new_run(&bound.control, run_id(self.clock.now_millis()), self.clock.now_millis()),
        };
        self.insert(environment, spec, run, false, None, None).await;
    }

    pub(super) async fn stored_run(&self, environment: &str, ramp: &str) -> Result<Option<Run>, StoreError> {
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
        entry.set_counting(&run, &state.spec);
        self.metrics.ramp(&entry.environment, &entry.name, run.status.name(), run.percent());
        state.run = run.clone();
        if exposure_changed {
            self.apply_exposure(environment, &run).await;
        }
    }

    /// Reads the entry's run from the store again (after a lost
    /// compare-and-set or on taking a lease over).
    pub(super) async fn refresh(&self, environment: &Arc<Environment>, entry: &Entry, state: &mut EntryState) {
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
}
