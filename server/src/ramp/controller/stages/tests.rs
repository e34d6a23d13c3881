//! Release pipelines on a clock the test moves: two stages (staging, then
//! production) of one release file, the real store, decisions and
//! persistence. The wall-time versions with the real binary are in
//! `tests/tests/releases.rs`; these check the orchestration itself.

use std::sync::Arc;
use std::time::Duration;

use super::super::Controller;
use crate::cli::ServeArgs;
use crate::config::ServerConfig;
use crate::model::{PendingReason, RollbackReason, Status};
use crate::ramp::decide::Command;
use crate::store::{OutcomeCount, Store};
use crate::time::ManualClock;

const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RELEASE: &str = "checkout-v2";

fn release_file(rollback_earlier: bool) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Release\nmetadata:\n  name: {RELEASE}\nspec:\n  flag: new-checkout\n  \
         treatment: \"on\"\n  interval: 1s\n  rollbackEarlierStages: {rollback_earlier}\n  \
         guard:\n    minSamples: 40\n    absolute: {{ maxErrorRate: 50%, maxIncrease: 10% }}\n  stages:\n    \
         - environment: staging\n      steps: [{{percent: 50, hold: 5s}}, {{percent: 100, hold: 5s}}]\n    \
         - environment: production\n      steps: [{{percent: 10, hold: 1h}}, {{percent: 100, hold: 1h}}]\n"
    )
}

struct Pipeline {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    store: Arc<dyn Store>,
    controller: Arc<Controller>,
}

impl Pipeline {
    async fn start(rollback_earlier: bool) -> Pipeline {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("flags.yaml"), FLAGS).expect("flags");
        std::fs::write(dir.path().join("release.yaml"), release_file(rollback_earlier)).expect("release");
        std::fs::write(
            dir.path().join("rampart.yaml"),
            "environments:\n  staging:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    \
             sdkKeys: [{value: staging-key-0001}]\n  production:\n    flags: [flags.yaml]\n    \
             ramps: [release.yaml]\n    sdkKeys: [{value: production-key-0001}]\n",
        )
        .expect("config");
        let args = ServeArgs {
            config: Some(dir.path().join("rampart.yaml")),
            data_dir: Some(dir.path().join("data")),
            ..Default::default()
        };
        let config = ServerConfig::resolve(&args, &|_| None).expect("config");
        let (clock, store, controller) = super::super::tests::controller_on_a_manual_clock(&config).await;
        Pipeline { _dir: dir, clock, store, controller }
    }

    async fn status(&self, environment: &str) -> Status {
        let entry = self.controller.entry(environment, RELEASE).expect("stage entry");
        self.controller.view(&entry).await.run.status
    }

    async fn percent(&self, environment: &str) -> f64 {
        let entry = self.controller.entry(environment, RELEASE).expect("stage entry");
        self.controller.view(&entry).await.run.percent()
    }

    /// One simulated second of traffic in `environment` (800 requests split
    /// at its percent; the treatment fails at `treatment_errors`).
    async fn second(&self, traffic: &[(&str, f64)]) {
        for (environment, treatment_errors) in traffic {
            let percent = self.percent(environment).await / 100.0;
            let second = self.clock.now_millis() / 1000;
            let treatment = (800.0 * percent).round() as u64;
            let control = 800 - treatment;
            let errors = (treatment as f64 * treatment_errors).round() as u64;
            let count = |variant: &str, ok: u64, error: u64| OutcomeCount {
                flag: "new-checkout".into(),
                variant: variant.into(),
                second,
                ok,
                error,
                ..Default::default()
            };
            let control_errors = (control as f64 * 0.005).round() as u64;
            let counts =
                vec![count("on", treatment - errors, errors), count("off", control - control_errors, control_errors)];
            self.store.record_outcomes(environment, counts, Vec::new()).await.expect("record");
        }
        self.clock.advance(Duration::from_secs(1));
        self.controller.tick_due().await;
    }

    async fn run_until(&self, limit: u64, traffic: &[(&str, f64)], environment: &str, done: fn(&Status) -> bool) {
        for _ in 0..limit {
            if done(&self.status(environment).await) {
                return;
            }
            self.second(traffic).await;
        }
        panic!("{environment}: not reached within {limit} simulated seconds: {:?}", self.status(environment).await);
    }
}

const HEALTHY: f64 = 0.005;
const FAILING: f64 = 0.6;

fn completed(status: &Status) -> bool {
    matches!(status, Status::Completed)
}

fn started(status: &Status) -> bool {
    !matches!(status, Status::Pending { .. })
}

fn rolled_back(status: &Status) -> bool {
    matches!(status, Status::RolledBack { .. })
}

#[tokio::test]
async fn production_waits_for_staging_to_complete_then_starts() {
    let pipeline = Pipeline::start(false).await;
    pipeline.second(&[]).await;
    assert_eq!(pipeline.status("production").await, Status::Pending { reason: PendingReason::PreviousStage });
    // Staging ramps 50 → 100 % and completes; production stays pending the whole time.
    for _ in 0..3 {
        pipeline.second(&[("staging", HEALTHY)]).await;
        assert!(!started(&pipeline.status("production").await), "production started before staging completed");
    }
    pipeline.run_until(120, &[("staging", HEALTHY)], "staging", completed).await;
    pipeline.run_until(5, &[], "production", started).await;
    assert_eq!(pipeline.percent("production").await, 10.0);
}

#[tokio::test]
async fn a_rollback_in_staging_halts_the_pipeline() {
    let pipeline = Pipeline::start(false).await;
    pipeline.run_until(120, &[("staging", FAILING)], "staging", rolled_back).await;
    // Simulated minutes later, production has still not started.
    for _ in 0..120 {
        pipeline.second(&[]).await;
    }
    assert_eq!(pipeline.status("production").await, Status::Pending { reason: PendingReason::PreviousStage });
    assert_eq!(pipeline.percent("production").await, 0.0);
}

#[tokio::test]
async fn with_rollback_earlier_stages_a_production_rollback_takes_staging_back() {
    let pipeline = Pipeline::start(true).await;
    pipeline.run_until(120, &[("staging", HEALTHY)], "staging", completed).await;
    pipeline.run_until(5, &[], "production", started).await;
    pipeline.run_until(120, &[("production", FAILING)], "production", rolled_back).await;
    assert!(
        matches!(pipeline.status("staging").await, Status::RolledBack { reason: RollbackReason::LaterStage, .. }),
        "{:?}",
        pipeline.status("staging").await
    );
    assert_eq!(pipeline.percent("staging").await, 0.0);
}

#[tokio::test]
async fn without_it_a_production_rollback_leaves_staging_completed() {
    let pipeline = Pipeline::start(false).await;
    pipeline.run_until(120, &[("staging", HEALTHY)], "staging", completed).await;
    pipeline.run_until(5, &[], "production", started).await;
    pipeline.run_until(120, &[("production", FAILING)], "production", rolled_back).await;
    assert_eq!(pipeline.status("staging").await, Status::Completed);
}

#[tokio::test]
async fn a_stage_restarted_mid_pipeline_runs_again_and_the_next_stage_waits_for_it() {
    let pipeline = Pipeline::start(false).await;
    pipeline.run_until(120, &[("staging", FAILING)], "staging", rolled_back).await;
    let restarted = pipeline
        .controller
        .command("staging", RELEASE, Command::Restart { by: "ana".into(), run_id: String::new() })
        .await
        .expect("restart");
    assert!(!restarted.run.status.is_terminal(), "{:?}", restarted.run.status);
    assert!(!started(&pipeline.status("production").await));
    pipeline.run_until(120, &[("staging", HEALTHY)], "staging", completed).await;
    pipeline.run_until(5, &[], "production", started).await;
}
