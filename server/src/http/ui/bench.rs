//! What the dashboard's render budgets are measured on
//! (`benches/benches/dashboard.rs`): the flags page of an environment with
//! N flags and the ramp page of a run with N checks, rendered exactly as
//! the handlers render them, without HTTP around.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_engine::{FlagSet, Source};

use super::Viewer;
use super::flags::Filters;
use super::layout::{Section, frame};
use crate::config::Role;
use crate::http::auth::Caller;
use crate::model::{Arm, Event, EventKind, Evidence};
use crate::ramp::controller::RampView;
use crate::ramp::controller::checks::CheckPoint;
use crate::snapshot::Snapshot;
use crate::store::RampDecisionRecord;

fn viewer() -> Viewer {
    Viewer {
        caller: Caller { name: "bench".into(), role: Role::Admin },
        csrf: "0".repeat(64),
        signed_in: true,
        notice: None,
    }
}

/// The flags page of one environment.
#[derive(Debug)]
pub struct FlagsPage {
    snapshot: Snapshot,
}

impl FlagsPage {
    /// An environment of `flags` flags in three shapes: a static boolean,
    /// three targeting clauses with a split, a `sem_ver` rule.
    pub fn new(flags: usize) -> FlagsPage {
        let mut text = String::from("{\"flags\":{");
        for index in 0..flags {
            if index > 0 {
                text.push(',');
            }
            let targeting = match index % 3 {
                0 => "{}".to_owned(),
                1 => r#"{"if":[{"in":[{"var":"country"},["de","fr"]]},"on",{"starts_with":[{"var":"email"},"ops@"]},"on",{"fractional":[["on",10],["off",90]]}]}"#.to_owned(),
                _ => r#"{"if":[{"sem_ver":[{"var":"version"},">=","2.0.0"]},"on","off"]}"#.to_owned(),
            };
            text.push_str(&format!(
                "\"flag-{index:05}\":{{\"state\":\"ENABLED\",\"variants\":{{\"on\":true,\"off\":false}},\"defaultVariant\":\"off\",\"targeting\":{targeting}}}"
            ));
        }
        text.push_str("}}");
        let flags = FlagSet::load(&[Source::json("bench.json", &text)]).expect("bench flags compile");
        let snapshot = Snapshot {
            version: 1,
            flags,
            files_digest: [0; 32],
            files: vec!["bench.json".into()],
            api: Arc::new(BTreeMap::new()),
            overrides: Arc::new(BTreeMap::new()),
            file_states: BTreeMap::new(),
            problems: Arc::new(Vec::new()),
            loaded_at: 0,
        };
        FlagsPage { snapshot }
    }

    pub fn render(&self) -> String {
        let environments = ["staging", "production"];
        let context = super::flags::Context::default();
        super::flags::render(&environments, "production", &self.snapshot, &Filters::default(), &viewer(), 0, &context)
            .into_string()
    }
}

/// The ramp page of one run.
#[derive(Debug)]
pub struct RampPage {
    view: RampView,
    checks: Vec<CheckPoint>,
    history: Vec<RampDecisionRecord>,
}

impl RampPage {
    /// A run with `checks` one-minute checks over four steps, and a decision per step.
    pub fn new(checks: usize) -> RampPage {
        RampPage::spaced(checks, 1)
    }

    /// A run with `checks` checks `minutes` apart: a week of one-minute
    /// checks is 1,440 points seven minutes apart, as the controller keeps
    /// it (it thins a run's points to 1,440).
    pub fn spaced(checks: usize, minutes: u64) -> RampPage {
        let spec = crate::ramp::spec::parse(
            "bench.yaml",
            "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: bench\nspec:\n  flag: checkout\n  treatment: \"on\"\n  interval: 1m\n  steps:\n    - {percent: 5, hold: 3h}\n    - {percent: 25, hold: 3h}\n    - {percent: 50, hold: 3h}\n    - {percent: 100, hold: 3h}\n",
        )
        .expect("bench ramp spec");
        let start = 1_700_000_000_000u64;
        let mut run = spec.new_run("off", "bench-run".into(), start);
        run.status = crate::model::Status::Ramping;
        run.step = 2;
        run.basis_points = 5000;
        let evidence = Evidence {
            treatment: Arm { exposures: 120_000, errors: 130 },
            control: Arm { exposures: 118_000, errors: 125 },
            buckets: 60,
            treatment_rate: Some(130.0 / 120_000.0),
            control_rate: Some(125.0 / 118_000.0),
            lambda: Some(0.4),
            lambda_threshold: Some(100.0),
            ratio_estimate: Some(1.02),
            ratio_upper: Some(1.2),
            missing_to_advance: vec!["2 h 10 min of hold".into()],
            ..Evidence::default()
        };
        let points: Vec<CheckPoint> = (0..checks as u64)
            .map(|i| CheckPoint {
                at: start + i * minutes * 60_000,
                percent: [5.0, 25.0, 50.0][((i * 3) / checks.max(1) as u64).min(2) as usize],
                step: ((i * 3) / checks.max(1) as u64).min(2) as usize,
                treatment_exposures: 200 * (i % 180 + 1),
                treatment_errors: (i % 180) / 4,
                control_exposures: 1800 * (i % 180 + 1),
                control_errors: (i % 180) / 3,
                lambda: Some(1.0 + (i % 50) as f64 / 10.0),
                lambda_threshold: Some(100.0),
                rolled_back: false,
            })
            .collect();
        let history = (0..3)
            .map(|step| RampDecisionRecord {
                at: start + step * 3 * 3600 * 1000,
                run_id: "bench-run".into(),
                seq: step + 1,
                from: "Ramping".into(),
                to: "Ramping".into(),
                reason: Some("Baking".into()),
                step: step as usize,
                percent: [5.0, 25.0, 50.0][step as usize],
                events: vec![Event::new(EventKind::Advanced, None, "controller")],
                evidence: evidence.clone(),
                config: String::new(),
                by: "controller".into(),
            })
            .collect();
        let view = RampView {
            environment: "production".into(),
            name: "bench".into(),
            spec: Arc::new(spec),
            run,
            frozen: false,
            file_missing: false,
            refused_change: None,
            file_errors: Vec::new(),
            warnings: Vec::new(),
            evidence: Some(evidence),
            at: start + checks as u64 * minutes * 60_000,
            flag_enabled: true,
        };
        RampPage { view, checks: points, history }
    }

    pub fn render(&self) -> String {
        let viewer = viewer();
        let content = super::ramp::render(&self.view, &self.checks, Ok(&self.history), &viewer, &Default::default());
        frame("Ramp bench", Some(&viewer), Section::Ramps, content).into_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmarked_pages_render_what_they_should() {
        let flags = super::FlagsPage::new(30).render();
        assert_eq!(flags.matches("<tr>").count(), 31, "a row per flag and the header");
        let ramp = super::RampPage::new(720).render();
        assert_eq!(ramp.matches("<figure").count(), 4);
        assert!(ramp.contains("aria-current=\"step\""));
    }
}
