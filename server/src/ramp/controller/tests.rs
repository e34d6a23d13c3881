//! The controller in-process, on a clock the test moves: minutes of ramp
//! run in milliseconds, and "nothing happens for a while" is checked over
//! simulated time instead of waited for. The real store (embedded) and the
//! real decision, file reading and persistence are used; only time is the
//! test's. End-to-end behaviour with the real binary is in
//! `tests/tests/ramps*.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{CommandError, Controller, RampView};
use crate::cli::ServeArgs;
use crate::config::ServerConfig;
use crate::environment::Environments;
use crate::metrics::Metrics;
use crate::model::{EventKind, Status};
use crate::ramp::decide::Command;
use crate::store::embedded::EmbeddedStore;
use crate::store::{OutcomeCount, Store};
use crate::time::{Clock, ManualClock};

const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RAMP: &str = "checkout-v2";
/// 2026-11-29T00:00:00Z.
const START: u64 = 1_796_342_400_000;

/// A ramp file on `new-checkout` with a 1 s interval.
fn ramp_file(revision: u64, steps: &str, extra: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: {RAMP}\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  revision: {revision}\n  interval: 1s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    absolute: {{ maxErrorRate: 50%, maxIncrease: 10% }}\n{extra}"
    )
}

/// Requests per second of each arm and their error rates.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    requests: f64,
    treatment_errors: f64,
    control_errors: f64,
}

const HEALTHY: Traffic = Traffic { requests: 800.0, treatment_errors: 0.005, control_errors: 0.005 };

/// The controller of `config` with the real embedded store, on a clock the
/// test moves (from [`START`]).
pub(super) async fn controller_on_a_manual_clock(
    config: &ServerConfig,
) -> (ManualClock, Arc<dyn Store>, Arc<Controller>) {
    let (clock, manual) = Clock::manual(START);
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.data_dir).expect("store"));
    let environments = Arc::new(Environments::load(config, BTreeMap::new(), clock.clone()).expect("environments"));
    let metrics = Arc::new(Metrics::new(environments.iter().map(|e| e.name.as_str())));
    let controller = Controller::load(config, store.clone(), environments, metrics, clock).await.expect("controller");
    (manual, store, controller)
}

struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    store: Arc<dyn Store>,
    controller: Arc<Controller>,
}

impl Harness {
    async fn start(ramp: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("flags.yaml"), FLAGS).expect("flags");
        std::fs::write(dir.path().join("ramp.yaml"), ramp).expect("ramp");
        let args = ServeArgs {
            flags: vec![dir.path().join("flags.yaml").to_string_lossy().into_owned()],
            ramps: vec![dir.path().join("ramp.yaml").to_string_lossy().into_owned()],
            data_dir: Some(dir.path().join("data")),
            ..Default::default()
        };
        let config = ServerConfig::resolve(&args, &|_| None).expect("config");
        let (clock, store, controller) = controller_on_a_manual_clock(&config).await;
        Harness { dir, clock, store, controller }
    }

    /// One simulated second: the traffic of that second is reported (split
    /// at the current percent), the clock moves on, and due ramps tick.
    async fn second(&self, traffic: Option<Traffic>) {
        if let Some(traffic) = traffic {
            let percent = self.view().await.run.percent() / 100.0;
            let treatment = traffic.requests * percent;
            let control = traffic.requests - treatment;
            let second = self.clock.now_millis() / 1000;
            let count = |variant: &str, total: f64, rate: f64| {
                let error = (total * rate).round() as u64;
                OutcomeCount {
                    flag: "new-checkout".into(),
                    variant: variant.into(),
                    second,
                    ok: (total.round() as u64).saturating_sub(error),
                    error,
                    ..Default::default()
                }
            };
            let counts =
                vec![count("on", treatment, traffic.treatment_errors), count("off", control, traffic.control_errors)];
            self.store.record_outcomes("default", counts, Vec::new()).await.expect("record");
        }
        self.clock.advance(Duration::from_secs(1));
        self.controller.tick_due().await;
    }

    /// `seconds` simulated seconds of `traffic`.
    async fn run(&self, seconds: u64, traffic: Option<Traffic>) {
        for _ in 0..seconds {
            self.second(traffic).await;
        }
    }

    /// Runs until `done` holds, for at most `limit` simulated seconds.
    async fn run_until(&self, limit: u64, traffic: Option<Traffic>, done: impl Fn(&RampView) -> bool) -> RampView {
        for _ in 0..limit {
            let view = self.view().await;
            if done(&view) {
                return view;
            }
            self.second(traffic).await;
        }
        panic!("not reached within {limit} simulated seconds: {:?}", self.view().await.run.status);
    }

    async fn view(&self) -> RampView {
        let entry = self.controller.entry("default", RAMP).expect("ramp entry");
        self.controller.view(&entry).await
    }

    async fn command(&self, command: Command) -> Result<RampView, CommandError> {
        self.controller.command("default", RAMP, command).await
    }

    async fn history(&self) -> Vec<crate::store::RampDecisionRecord> {
        self.store.ramp_history("default", RAMP, 1000).await.expect("history")
    }

    async fn events(&self, kind: EventKind) -> usize {
        self.history().await.iter().flat_map(|d| &d.events).filter(|e| e.kind == kind).count()
    }

    /// Edits the ramp file and lets the controller read it again.
    async fn rewrite(&self, ramp: &str) {
        std::fs::write(self.dir.path().join("ramp.yaml"), ramp).expect("ramp");
        self.controller.reload().await;
    }
}

fn rolled_back(view: &RampView) -> bool {
    matches!(view.run.status, Status::RolledBack { .. })
}

#[tokio::test]
async fn a_rollback_is_sticky_whatever_the_traffic_does_next() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let harness = Harness::start(&ramp_file(1, steps, "")).await;
    harness.run_until(60, Some(HEALTHY), |v| v.run.percent() == 25.0).await;
    let spike = Traffic { treatment_errors: 0.05, ..HEALTHY };
    let rolled = harness.run_until(60, Some(spike), rolled_back).await;
    assert!(matches!(rolled.run.status, Status::RolledBack { reason: crate::model::RollbackReason::Regression, .. }));
    assert_eq!(rolled.run.percent(), 0.0);

    // Ten healthy simulated minutes: no re-ramp, the run record untouched.
    harness.run(600, Some(HEALTHY)).await;
    let after = harness.view().await;
    assert_eq!((after.run.seq, after.run.percent()), (rolled.run.seq, 0.0));
    assert_eq!(harness.events(EventKind::RolledBack).await, 1, "exactly one rollback on record");
    for command in [Command::Promote { by: "ana".into(), force: None }, Command::Resume { by: "ana".into() }] {
        assert!(matches!(harness.command(command).await, Err(CommandError::Rejected(_))));
    }
}

#[tokio::test]
async fn flapping_near_the_tolerance_never_oscillates() {
    let steps = "    - { percent: 25, hold: 2s }\n    - { percent: 50, hold: 2s }\n    - { percent: 100, hold: 1h }\n";
    let harness = Harness::start(&ramp_file(1, steps, "")).await;
    // The treatment's error rate flaps between 1.15 and 1.25 times the
    // control's, each second, for ten simulated minutes.
    for second in 0..600 {
        let ratio = if second % 2 == 0 { 1.25 } else { 1.15 };
        let traffic = Traffic { requests: 800.0, control_errors: 0.05, treatment_errors: 0.05 * ratio };
        harness.second(Some(traffic)).await;
    }
    let decisions = harness.history().await;
    let mut percent = 0.0;
    let mut ended = false;
    for decision in &decisions {
        assert!(!ended, "nothing happens after a rollback: {decisions:#?}");
        ended = decision.to == "RolledBack";
        assert!(ended || decision.percent >= percent, "exposure never steps back except by rollback");
        percent = decision.percent;
    }
    let transitions = decisions.iter().filter(|d| d.from != d.to).count();
    assert!(transitions <= 10, "{transitions} transitions: {decisions:#?}");
}

#[tokio::test]
async fn zero_traffic_holds_then_the_step_timeout_pauses_until_someone_resumes() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 100, hold: 1s }\n";
    let policy = "  policy:\n    onStepTimeout: { after: 4s, then: pause }\n";
    let harness = Harness::start(&ramp_file(1, steps, policy)).await;
    let holding = harness.run_until(30, None, |v| matches!(v.run.status, Status::Holding { .. })).await;
    assert_eq!((holding.run.status.reason(), holding.run.percent()), (Some("NoTraffic"), 5.0));
    let paused = harness.run_until(30, None, |v| matches!(v.run.status, Status::Paused { .. })).await;
    assert_eq!((paused.run.status.reason(), paused.run.percent()), (Some("StepTimeout"), 5.0));
    assert_eq!(harness.events(EventKind::Paused).await, 1, "one alert");

    // Traffic returns: for ten simulated minutes the paused ramp waits for a person.
    harness.run(600, Some(HEALTHY)).await;
    assert!(matches!(harness.view().await.run.status, Status::Paused { .. }));
    assert_eq!(harness.events(EventKind::Advanced).await + harness.events(EventKind::RolledBack).await, 0);
    harness.command(Command::Resume { by: "ana".into() }).await.expect("resume");
    let done = harness.run_until(60, Some(HEALTHY), |v| v.run.status == Status::Completed).await;
    assert_eq!(done.run.percent(), 100.0);
}

#[tokio::test]
async fn after_a_rollback_reloading_the_file_changes_nothing_and_a_new_revision_starts_over() {
    let steps = "    - { percent: 5, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let harness = Harness::start(&ramp_file(1, steps, "")).await;
    harness.run_until(30, Some(HEALTHY), |v| v.run.percent() == 5.0).await;
    let aborted = harness.command(Command::Abort { by: "ana".into() }).await.expect("abort");
    assert!(rolled_back(&aborted));

    harness.rewrite(&format!("{}# touched\n", ramp_file(1, steps, ""))).await;
    harness.run(300, Some(HEALTHY)).await;
    let still = harness.view().await;
    assert_eq!((still.run.run_id.as_str(), still.run.seq), (aborted.run.run_id.as_str(), aborted.run.seq));
    assert!(rolled_back(&still));

    harness.rewrite(&ramp_file(2, steps, "")).await;
    let restarted = harness.run_until(30, Some(HEALTHY), |v| v.run.percent() == 5.0).await;
    assert_ne!(restarted.run.run_id, aborted.run.run_id);
    assert_eq!(restarted.run.revision, 2);
}

/// A report is stamped with the second it arrives in and becomes visible
/// when its commit lands; a slow commit (a busy machine, a store reopened
/// after a restart) can land after that second passed the watermark. The
/// second is not read as closed while a write into it is in flight, so the
/// acknowledged outcomes are counted (before, the tick cached the second as
/// closed and empty, and they were never seen).
#[tokio::test]
async fn outcomes_whose_commit_lands_after_the_watermark_are_still_counted() {
    let h =
        Harness::start(&ramp_file(1, "    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n", "")).await;
    h.run(3, None).await;
    assert_eq!(h.view().await.run.percent(), 50.0);
    let second = h.clock.now_millis() / 1000;
    let writing = h.controller.writing("default", second);
    // Ticks go by while the commit is slow: the second is well past the watermark.
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(1));
        h.controller.tick_due().await;
    }
    let count = |variant: &str, ok| OutcomeCount {
        flag: "new-checkout".into(),
        variant: variant.into(),
        second,
        ok,
        error: 0,
        ..Default::default()
    };
    h.store.record_outcomes("default", vec![count("on", 7), count("off", 9)], Vec::new()).await.expect("record");
    drop(writing);
    h.run(2, None).await;
    let evidence = h.view().await.evidence.expect("evidence");
    assert_eq!((evidence.treatment.exposures, evidence.control.exposures), (7, 9));
}
