//! The ramp controller at run time: ticks every ramp at its interval,
//! persists each transition with compare-and-set **before** changing
//! exposure, and applies operator commands as an immediate tick (so guards
//! run first and a regression wins over a racing `promote`).
//!
//! Each ramp has its own async mutex: a tick, a command and a reload of the
//! same ramp never interleave. The rest of the controller is split by
//! concern: [`reconcile`] (files and stored runs at start-up and on
//! replication), [`reload`] (ramp files edited on disk), [`leases`] (which replica drives which ramp), [`persist`]
//! (a transition and everything written with it) [`view`] (a ramp as
//! operators see it) and [`checks`] (the run's checks over time, for charts).

pub mod alerts;
pub mod checks;
mod leases;
mod persist;
mod reconcile;
mod reload;
mod stages;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Command};
use super::observe::Observer;
use super::spec::RampSpec;
use crate::config::ServerConfig;
use crate::environment::Environments;
use crate::metrics::Metrics;
use crate::model::{Evidence, RollbackReason, Run, Status};
use crate::store::{Store, StoreError};
use crate::time::Clock;

pub use view::RampView;

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
    /// The current step's closed buckets, so a tick reads only what is new.
    bucket_cache: super::observe::Caches,
    /// The fencing token of this replica's lease on the ramp, while it
    /// holds it: only the holder ticks the ramp.
    lease: std::sync::Mutex<Option<u64>>,
    /// The current run's checks, for the dashboard's charts.
    checks: std::sync::Mutex<checks::CheckSeries>,
    state: Mutex<EntryState>,
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

/// The flag and variants an active run counts outcomes for, and what the
/// evidence bounds need to know of its step (see
/// [`crate::ramp::contribution`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counting {
    flag: String,
    treatment: String,
    control: String,
    /// The step's identity: evidence belongs to one step of one run.
    step: (String, usize),
    basis_points: u32,
    min_samples: u64,
    /// Each arm's exposures in the step, as last observed.
    evidence: (u64, u64),
    /// Outcome reports for the step refused, by reason.
    refused: BTreeMap<String, u64>,
    /// Which OTLP spans count, when the ramp's evidence is outcomes.
    spans: Option<super::otlp_selection::FlagSpans>,
    /// The tracking event its conversion guard counts.
    conversion_event: Option<String>,
}

impl Counting {
    fn of(run: &Run, spec: &RampSpec) -> Option<Counting> {
        (!run.status.is_terminal()).then(|| Counting {
            flag: run.flag.clone(),
            treatment: run.treatment.clone(),
            control: run.control.clone(),
            step: (run.run_id.clone(), run.step),
            basis_points: run.basis_points,
            min_samples: spec.steps.get(run.step).map_or(super::spec::DEFAULT_MIN_SAMPLES, |step| step.min_samples),
            evidence: (0, 0),
            refused: BTreeMap::new(),
            spans: super::otlp_selection::FlagSpans::of(spec),
            conversion_event: spec.conversion.as_ref().map(|c| c.event.clone()),
        })
    }

    fn arm(&self, variant: &str) -> Option<super::contribution::Arm> {
        use super::contribution::{Arm, Role};
        let (role, evidence) = if variant == self.treatment {
            (Role::Treatment, self.evidence.0)
        } else if variant == self.control {
            (Role::Control, self.evidence.1)
        } else {
            return None;
        };
        Some(Arm { role, basis_points: self.basis_points, min_samples: self.min_samples, evidence })
    }
}

impl Entry {
    fn set_counting(&self, run: &Run, spec: &RampSpec) {
        let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
        let next = Counting::of(run, spec);
        // The same step keeps what was observed of it.
        let same = counting.take().filter(|c| next.as_ref().is_some_and(|n| n.step == c.step));
        *counting = next.map(|mut next| {
            if let Some(same) = same {
                (next.evidence, next.refused) = (same.evidence, same.refused);
            }
            next
        });
    }

    /// Outcome reports for the current step refused so far, by reason.
    pub fn refused_outcomes(&self) -> BTreeMap<String, u64> {
        self.counting.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.refused.clone()).unwrap_or_default()
    }

    /// What a tick observed of the current step (exposures per arm).
    fn observed(&self, run: &Run, treatment: u64, control: u64) {
        let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counting) = counting.as_mut().filter(|c| c.step == (run.run_id.clone(), run.step)) {
            counting.evidence = (treatment, control);
        }
    }

    /// What changes whenever the ramp does: its persisted sequence number
    /// and the checks made since (for the dashboard's live updates).
    pub async fn change_mark(&self) -> (u64, u64) {
        let seq = self.state.lock().await.run.seq;
        (seq, self.checks.lock().unwrap_or_else(|e| e.into_inner()).seen())
    }

    /// The checks of run `run_id` so far (empty for another run).
    pub fn checks(&self, run_id: &str) -> Vec<checks::CheckPoint> {
        let series = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        if series.run_id() == run_id { series.points().to_vec() } else { Vec::new() }
    }
}

/// Why a command could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no ramp '{1}' in environment '{0}'")]
    NotFound(String, String),
    /// The command does not apply now; the refusal says why.
    #[error(transparent)]
    Rejected(#[from] crate::ramp::decide::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the ramps could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid ramp files, by environment.
    #[error("invalid ramp files")]
    Files(Vec<(String, rampart_engine::LoadErrors)>),
    #[error("cannot read the ramps' state: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the Prometheus client: {0}")]
    Prometheus(#[source] reqwest::Error),
}

#[derive(Debug)]
pub struct Controller {
    store: Arc<dyn Store>,
    environments: Arc<Environments>,
    metrics: Arc<Metrics>,
    observer: Observer,
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
    /// Wall time: steps, holds, buckets and every record.
    clock: Clock,
    /// Promotes a release's API-owned flag into a stage's environment
    /// when the stage starts.
    writes: crate::writes::Writes,
}

/// A new run's id: unique across replicas and restarts.
fn run_id(now: u64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let salt = std::process::id().wrapping_mul(2_654_435_761) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{now:x}-{salt:08x}")
}

impl Controller {
    fn new(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        environments: Arc<Environments>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Controller, reqwest::Error> {
        let prometheus = super::prometheus::PrometheusSource::new(config.prometheus_url.clone())?;
        // A tick holds its ramp's lock and leases are renewed between
        // ticks: observing may take a third of the lease.
        let budget = (config.ramp_lease / 3).max(Duration::from_millis(500));
        Ok(Controller {
            observer: Observer::new(store.clone(), prometheus, budget),
            store: store.clone(),
            environments,
            metrics,
            patterns: config.environments.iter().map(|e| (e.name.clone(), e.ramps.clone())).collect(),
            glob_files: config.limits.glob_files,
            rejected: std::sync::Mutex::default(),
            entries: RwLock::new(BTreeMap::new()),
            holder: leases::replica_id(&clock),
            lease_ttl: config.ramp_lease,
            writes: crate::writes::Writes::new(store.clone(), config.max_api_flags, clock.clone()),
            clock,
        })
    }

    /// This replica's name in leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The ramp file patterns of an environment (for the file watcher).
    pub fn patterns(&self, environment: &str) -> &[String] {
        self.patterns.get(environment).map_or(&[], Vec::as_slice)
    }

    /// The server's Prometheus URL (`--prometheus-url`), if any.
    pub fn prometheus_url(&self) -> Option<&str> {
        self.observer.prometheus_url()
    }

    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn entry(&self, environment: &str, name: &str) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(&(environment.to_owned(), name.to_owned())).cloned()
    }

    /// What an active ramp counts of this flag variant (for outcome
    /// reports): only its treatment and control, only while the run is
    /// active, so reports cannot grow the store without bound. `None` when
    /// no ramp counts it.
    pub fn arm(&self, environment: &str, flag: &str, variant: &str) -> Option<super::contribution::Arm> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).values().find_map(|e| {
            if e.environment != environment {
                return None;
            }
            let counting = e.counting.lock().unwrap_or_else(|e| e.into_inner());
            counting.as_ref().filter(|c| c.flag == flag).and_then(|c| c.arm(variant))
        })
    }

    /// The ramped flags of `environment` whose conversion guard counts the
    /// tracking event `event` (OpenFeature `track`), each with the arm a
    /// source's conversions are bounded against: the control's (its step
    /// evidence), since a conversion's own arm is known only once its key's
    /// exposure is read.
    pub fn conversion_flags(&self, environment: &str, event: &str) -> Vec<(String, super::contribution::Arm)> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .values()
            .filter(|e| e.environment == environment)
            .filter_map(|e| {
                let counting = e.counting.lock().unwrap_or_else(|e| e.into_inner());
                let counting = counting.as_ref().filter(|c| c.conversion_event.as_deref() == Some(event))?;
                Some((counting.flag.clone(), counting.arm(&counting.control)?))
            })
            .collect()
    }

    /// What the OTLP receiver needs to count spans in `environment`: each
    /// ramped flag whose evidence is outcome reports, with the spans that
    /// count for it. Empty when no such ramp runs (spans are then ignored
    /// without being read further).
    pub fn span_selections(&self, environment: &str) -> super::otlp_selection::Selections {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let flags = entries.values().filter(|e| e.environment == environment).filter_map(|e| {
            let counting = e.counting.lock().unwrap_or_else(|e| e.into_inner());
            counting.as_ref().and_then(|c| c.spans.clone().map(|spans| (c.flag.clone(), spans)))
        });
        super::otlp_selection::Selections::new(flags.collect())
    }

    /// An outcome write into `second` of `environment` starts; the
    /// observer reads that second as closed only once it ends.
    pub fn writing(&self, environment: &str, second: u64) -> crate::ramp::in_flight::Writing {
        self.observer.in_flight.begin(environment, second)
    }

    /// Notes a refused outcome report for the ramp counting `flag`, so its
    /// explanation says evidence was refused.
    pub fn note_refused(&self, environment: &str, flag: &str, reason: &str) {
        for entry in self.entries.read().unwrap_or_else(|e| e.into_inner()).values() {
            if entry.environment != environment {
                continue;
            }
            let mut counting = entry.counting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(counting) = counting.as_mut().filter(|c| c.flag == flag) {
                *counting.refused.entry(reason.to_owned()).or_default() += 1;
            }
        }
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
            // them: every tick's observation is bounded (`Observer`), so
            // however many ramps there are, a renewal is never more than one
            // tick late.
            for entry in self.entries() {
                self.tick_if_due(&entry).await;
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

    /// Ticks every ramp this replica drives whose interval has elapsed: one
    /// pass of [`Controller::run`] without lease renewal (tests drive the
    /// controller with it on a clock they move).
    pub async fn tick_due(&self) {
        for entry in self.entries() {
            self.tick_if_due(&entry).await;
        }
    }

    async fn tick_if_due(&self, entry: &Entry) {
        if entry.token().is_none() {
            return;
        }
        let due = {
            let state = entry.state.lock().await;
            let interval = state.spec.interval.as_millis() as u64;
            !state.frozen
                && !state.run.status.is_terminal()
                && state.last_tick.is_none_or(|last| self.clock.now_millis() >= last + interval)
        };
        if !due {
            return;
        }
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "ramp.tick",
            environment = %entry.environment,
            ramp = %entry.name,
        );
        if let Err(error) = tracing::Instrument::instrument(self.tick(entry, None, None), span).await {
            tracing::error!(environment = %entry.environment, ramp = %entry.name, %error, "ramp tick failed");
        }
    }

    /// Applies an operator command now, as a tick.
    pub async fn command(&self, environment: &str, name: &str, command: Command) -> Result<RampView, CommandError> {
        self.command_noted(environment, name, command, None).await
    }

    /// Applies an operator command with the operator's note, which its
    /// events (and so the audit log and the decision log) keep.
    pub async fn command_noted(
        &self,
        environment: &str,
        name: &str,
        command: Command,
        note: Option<String>,
    ) -> Result<RampView, CommandError> {
        let note = note.as_deref();
        let entry = self
            .entry(environment, name)
            .ok_or_else(|| CommandError::NotFound(environment.to_owned(), name.to_owned()))?;
        // A write that lost a race with the ramp's driver re-reads the
        // stored run; the command is then decided again on it.
        let result = match self.tick(&entry, Some(command.clone()), note).await {
            Err(StoreError::Conflict { .. } | StoreError::Fenced { .. }) => {
                self.tick(&entry, Some(command), note).await?
            }
            result => result?,
        };
        match result {
            Some(Err(refusal)) => Err(CommandError::Rejected(refusal)),
            _ => Ok(self.view(&entry).await),
        }
    }

    /// One tick of one ramp; returns the command's result, if any.
    async fn tick(
        &self,
        entry: &Entry,
        command: Option<Command>,
        note: Option<&str>,
    ) -> Result<Option<Result<(), crate::ramp::decide::Refusal>>, StoreError> {
        let Some(environment) = self.environments.get(&entry.environment).cloned() else { return Ok(None) };
        let mut state = entry.state.lock().await;
        let now = self.clock.now_millis();
        if state.frozen {
            // A frozen ramp (file gone, or an edit it cannot take) can still be aborted.
            return match command {
                Some(Command::Abort { by }) => {
                    let (next, mut event) = decide::rolled_back(&state.run, RollbackReason::Aborted, &by, now);
                    event.note = note.map(str::to_owned);
                    let events = vec![event];
                    self.persist(&environment, entry, &mut state, next, events, Evidence::default()).await?;
                    Ok(Some(Ok(())))
                }
                Some(_) => Ok(Some(Err(crate::ramp::decide::Refusal::Frozen))),
                None => Ok(None),
            };
        }
        let spec = state.spec.clone();
        let previous_stage_open = self.previous_stage_open(&spec, &state.run, &environment).await;
        let mut observation =
            self.observer.observe(&environment, &entry.name, &entry.bucket_cache, &spec, &state.run, now).await;
        observation.previous_stage_open = previous_stage_open;
        let limited = entry.bucket_cache.guards.lock().unwrap_or_else(|e| e.into_inner()).take_limited();
        self.metrics.rejected_many(crate::limits::Rejection::GuardUsers, limited);
        let command = command.map(|command| match command {
            Command::Restart { by, .. } => Command::Restart { by, run_id: run_id(now) },
            other => other,
        });
        let operator = command.as_ref().map(|command| command.by().to_owned());
        let mut decision = decide::decide(&state.run, &spec, &observation, now, command.as_ref());
        if let (Some(note), Some(operator)) = (note, operator) {
            for event in decision.events.iter_mut().filter(|event| event.by == operator) {
                event.note = Some(note.to_owned());
            }
        }
        if state.run.dry_run {
            // Recorded and logged as what would have happened.
            for event in &mut decision.events {
                event.would = true;
            }
        }
        state.last_tick = Some(now);
        let mut compare = decision.run.clone();
        compare.updated_at = state.run.updated_at;
        let mut evidence = super::evidence::explain(&decision.run, &spec, &observation, now);
        evidence.refused_outcomes = entry.refused_outcomes();
        entry.observed(&decision.run, evidence.treatment.exposures, evidence.control.exposures);
        let point = checks::CheckPoint::new(&decision.run, state.run.step, &evidence, now);
        let rolled_back_now = matches!(decision.run.status, Status::RolledBack { .. })
            && !matches!(state.run.status, Status::RolledBack { .. });
        if compare != state.run {
            self.persist(&environment, entry, &mut state, decision.run.clone(), decision.events, evidence).await?;
        }
        entry.checks.lock().unwrap_or_else(|e| e.into_inner()).record(&decision.run.run_id, point);
        if rolled_back_now && !state.run.dry_run {
            self.roll_back_earlier_stages(&spec, &entry.environment, now).await;
        }
        Ok(decision.command)
    }
}

#[cfg(test)]
mod tests;
