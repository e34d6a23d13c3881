//! Ramp files (`kind: Ramp`, docs/ramps.md): parsing, defaults and
//! validation, with file, line and reason for every problem.
//!
//! The file is parsed into raw serde structs (unknown fields rejected), then
//! checked and turned into a [`RampSpec`] with every default filled in, so
//! the controller never looks at an `Option` to learn a threshold.

use std::time::Duration;

use rampart_engine::LoadError;
use rampart_engine::ramp::FULL;
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod check;
pub mod guards;
mod raw;
pub mod spans;
mod syntax;

pub use crate::model::MetricRole;
use crate::model::{EventKind, Run, Target};
pub use crate::time::parse_duration;
use check::{Checker, error_line, line_of};
use raw::RawFile;
pub use syntax::{TEMPLATE_VARIABLES, check_template, render_template};

/// One validated ramp, every default applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RampSpec {
    pub name: String,
    /// `None`: the environment the file was found for.
    pub environment: Option<String>,
    pub flag: String,
    pub treatment: String,
    /// `None`: the flag's default variant, resolved when the ramp is bound to its flag.
    pub control: Option<String>,
    pub salt: String,
    pub revision: u64,
    /// Unix milliseconds.
    pub not_before: Option<u64>,
    #[serde(with = "millis")]
    pub interval: Duration,
    pub steps: Vec<Step>,
    pub guard: Guard,
    pub policy: Policy,
    /// Extra metrics (roles guard, gate, monitor).
    pub metrics: Vec<Metric>,
    /// The latency guard (`spec.latency`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<guards::LatencyGuard>,
    /// The conversion guard (`spec.conversion`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<guards::ConversionGuard>,
    /// When advancing is allowed; always when `None`.
    pub windows: Option<crate::ramp::windows::Windows>,
    /// Decide and record, never change exposure.
    pub dry_run: bool,
    pub notify: Vec<Notify>,
    /// The file it came from, and a digest of its text.
    pub file: String,
    #[serde(skip)]
    pub digest: [u8; 32],
    /// Lines of the keys that binding to a flag checks, for its messages.
    #[serde(skip)]
    pub lines: KeyLines,
    /// The release (`kind: Release`) this ramp is a stage of, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

/// A ramp that is one stage of a release pipeline (`ramp/release.rs`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The release's name (also the ramp's, in every stage's environment).
    pub release: String,
    /// 0-based position among the stages.
    pub index: usize,
    /// Every stage's environment, in order.
    pub environments: Vec<String>,
    /// When this stage rolls back, roll the earlier (completed) stages back
    /// too (`rollbackEarlierStages`).
    pub rollback_earlier: bool,
}

impl Stage {
    /// The stage that must have completed before this one starts.
    pub fn previous(&self) -> Option<(&str, &str)> {
        let index = self.index.checked_sub(1)?;
        self.environments.get(index).map(|environment| (environment.as_str(), self.release.as_str()))
    }

    /// The environments of the stages before this one.
    pub fn earlier(&self) -> &[String] {
        &self.environments[..self.index.min(self.environments.len())]
    }
}

/// Where `flag`, `treatment` and `control` are written in a ramp file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLines {
    pub flag: Option<usize>,
    pub treatment: Option<usize>,
    pub control: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Basis points, 1 % = 100.
    pub basis_points: u32,
    #[serde(with = "millis")]
    pub hold: Duration,
    /// Per variant, counted within this step.
    pub min_samples: u64,
    /// Wait for `POST …/approve` before leaving this step.
    pub approve: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Every reported outcome counts.
    Request,
    /// A targeting key counts once per bucket (errored if any of its outcomes did).
    Context,
}

/// Where a ramp's error counts come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "source")]
pub enum MetricSource {
    /// Outcome reports from SDKs (`POST /v1/outcomes`).
    Builtin,
    /// Templated PromQL against the Prometheus HTTP API.
    Prometheus(PrometheusGuard),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusGuard {
    /// Overrides the server's `--prometheus-url`.
    pub url: Option<String>,
    /// Errors and total requests of one variant over `{{window}}`.
    pub errors: String,
    pub total: String,
    /// How far behind now a window must end to count (≥ 2 scrape intervals).
    #[serde(with = "millis")]
    pub lag: Duration,
    /// An environment variable holding a bearer token.
    pub token_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
}

/// A metric beyond the error guard (latency, saturation …), compared
/// per time bucket with the paired sign test (docs/ramps.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    pub role: MetricRole,
    /// PromQL with `{{variant}}` and the other template variables: one
    /// value per variant per bucket.
    pub query: String,
    pub direction: Direction,
    pub tolerance: f64,
    /// For the regression decision.
    pub confidence: f64,
    /// For the "not worse" proof.
    pub advance_confidence: f64,
    /// Buckets with both values needed before the metric decides anything.
    pub min_buckets: u64,
    /// Evaluated and recorded, never acts.
    pub dry_run: bool,
}

/// How loud an event is, for webhook filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// A webhook target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    pub webhook: String,
    /// Environment variable holding the HMAC-SHA256 secret.
    pub secret_ref: Option<String>,
    /// Event kinds to send; all when empty.
    pub events: Vec<EventKind>,
    pub min_severity: Severity,
}

/// What a sample-ratio mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrmAction {
    Hold,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    #[serde(flatten)]
    pub source: MetricSource,
    pub unit: Unit,
    /// Fraction (0.02 = 2 %); no ceiling when `None`.
    pub max_error_rate: Option<f64>,
    pub absolute_confidence: f64,
    /// Tolerated treatment − control difference, as a fraction.
    pub max_increase: f64,
    pub tolerance: f64,
    pub relative_confidence: f64,
    pub advance_max_ratio: f64,
    pub advance_confidence: f64,
    pub critical: bool,
    /// Which spans count when outcomes arrive over OTLP.
    pub spans: spans::SpanSelection,
    /// The metric whose data points count when outcomes arrive as OTLP
    /// metrics (`guard.otlpMetric`).
    pub otlp_metric: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Rollback,
    Pause,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub on_regression: Action,
    pub pause_after_failed_checks: u32,
    pub on_missing_data: Action,
    #[serde(with = "millis")]
    pub step_timeout: Duration,
    pub on_step_timeout: Action,
    pub on_sample_ratio_mismatch: SrmAction,
    #[serde(with = "millis")]
    pub approval_timeout: Duration,
    pub on_approval_timeout: Action,
    /// What a firing alert that names the ramp or its flag does
    /// (`alerts.onFiring`; `POST /admin/v1/alerts`).
    pub on_alert: Action,
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

impl RampSpec {
    /// A new run of this spec, not started; `control` is the resolved
    /// control variant.
    pub fn new_run(&self, control: &str, run_id: String, now: u64) -> Run {
        let target = Target {
            revision: self.revision,
            flag: self.flag.clone(),
            treatment: self.treatment.clone(),
            control: control.to_owned(),
            salt: self.salt.clone(),
            dry_run: self.dry_run,
        };
        Run::new(target, run_id, now)
    }

    /// A spec standing in for a missing file: enough to show a frozen run.
    pub fn placeholder(name: &str, run: &Run) -> RampSpec {
        RampSpec {
            stage: None,
            name: name.to_owned(),
            environment: None,
            flag: run.flag.clone(),
            treatment: run.treatment.clone(),
            control: Some(run.control.clone()),
            salt: run.salt.clone(),
            revision: run.revision,
            not_before: None,
            interval: DEFAULT_INTERVAL,
            steps: Vec::new(),
            guard: Guard {
                source: MetricSource::Builtin,
                unit: Unit::Request,
                max_error_rate: None,
                absolute_confidence: DEFAULT_ABSOLUTE_CONFIDENCE,
                max_increase: DEFAULT_MAX_INCREASE,
                tolerance: DEFAULT_TOLERANCE,
                relative_confidence: DEFAULT_RELATIVE_CONFIDENCE,
                advance_max_ratio: 1.0 + 2.0 * DEFAULT_TOLERANCE,
                advance_confidence: DEFAULT_ADVANCE_CONFIDENCE,
                critical: true,
                spans: spans::SpanSelection::default(),
                otlp_metric: spans::DEFAULT_OTLP_METRIC.to_owned(),
            },
            policy: Policy {
                on_regression: Action::Rollback,
                pause_after_failed_checks: DEFAULT_FAILED_CHECKS,
                on_missing_data: Action::Pause,
                step_timeout: DEFAULT_STEP_TIMEOUT,
                on_step_timeout: Action::Pause,
                on_sample_ratio_mismatch: SrmAction::Hold,
                approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
                on_approval_timeout: Action::Pause,
                on_alert: Action::Pause,
            },
            metrics: Vec::new(),
            latency: None,
            conversion: None,
            windows: None,
            dry_run: false,
            notify: Vec::new(),
            file: "<missing>".into(),
            digest: [0; 32],
            lines: KeyLines::default(),
        }
    }

    pub fn percent(&self, step: usize) -> f64 {
        self.steps.get(step).map_or(0.0, |s| f64::from(s.basis_points) / 100.0)
    }

    /// Whether `self` may replace `running` without a new run: treatment,
    /// control, flag and salt fixed, and no immediate rise in exposure.
    /// `Err` says what would change.
    pub fn live_edit_refusal(&self, running: &RampSpec, current_bp: u32) -> Option<String> {
        let mut changed = Vec::new();
        if self.flag != running.flag {
            changed.push("flag");
        }
        if self.treatment != running.treatment {
            changed.push("treatment");
        }
        if self.control != running.control {
            changed.push("control");
        }
        if self.salt != running.salt {
            changed.push("salt");
        }
        if self.environment != running.environment {
            changed.push("environment");
        }
        if self.dry_run != running.dry_run {
            changed.push("dryRun");
        }
        if !changed.is_empty() {
            return Some(format!(
                "{} cannot change while the ramp runs; bump `revision` to start a new run",
                changed.join(", ")
            ));
        }
        if current_bp > 0 && current_bp < FULL && !self.steps.iter().any(|s| s.basis_points == current_bp) {
            return Some(format!(
                "the current step ({}%) is no longer in the schedule; keep it, or bump `revision` to start a new run",
                f64::from(current_bp) / 100.0
            ));
        }
        None
    }
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_MIN_SAMPLES: u64 = 1000;
pub const DEFAULT_TOLERANCE: f64 = 0.20;
pub const DEFAULT_RELATIVE_CONFIDENCE: f64 = 0.99;
pub const DEFAULT_ABSOLUTE_CONFIDENCE: f64 = 0.99;
pub const DEFAULT_ADVANCE_CONFIDENCE: f64 = 0.95;
pub const DEFAULT_MAX_INCREASE: f64 = 0.001;
pub const DEFAULT_FAILED_CHECKS: u32 = 30;
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Two scrape intervals at Prometheus's default 15 s.
pub const DEFAULT_PROMETHEUS_LAG: Duration = Duration::from_secs(30);

/// A ramp file's problems, and its spec when there are none.
pub fn parse(file: &str, text: &str) -> Result<RampSpec, Vec<LoadError>> {
    match parse_all(file, text) {
        (Some(spec), errors) if errors.is_empty() => Ok(spec),
        (_, errors) => Err(errors),
    }
}

/// Every problem of a ramp file, and the spec as far as it could be read
/// (`None` only when the YAML itself cannot be read), so a tool can check
/// the rest of it too and report everything in one run.
pub fn parse_all(file: &str, text: &str) -> (Option<RampSpec>, Vec<LoadError>) {
    let raw: RawFile = match serde_saphyr::from_str_with_options(text, rampart_engine::source::yaml_options()) {
        Ok(raw) => raw,
        Err(e) => {
            let message = e.to_string();
            let mut error = LoadError::new(file, rampart_engine::source::yaml_message(&message));
            if let Some(line) = error_line(&message) {
                error = error.at_line(line);
            }
            return (None, vec![error]);
        }
    };
    let mut check = Checker { file, text, name: raw.metadata.name.clone(), errors: Vec::new() };
    let mut spec = check.spec(raw);
    spec.lines = KeyLines {
        flag: line_of(text, "flag", 0),
        treatment: line_of(text, "treatment", 0),
        control: line_of(text, "control", 0),
    };
    (Some(spec), check.errors)
}

/// Warnings about a valid spec: what weakens its guard.
pub fn warnings(spec: &RampSpec) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(last_relative) = spec.steps.iter().rev().find(|s| s.basis_points < FULL)
        && last_relative.basis_points > FULL / 2
    {
        warnings.push(format!(
            "the last step with a control group is at {}%: above 50% the control shrinks and the relative guard loses power",
            f64::from(last_relative.basis_points) / 100.0
        ));
    }
    if spec.guard.max_error_rate.is_none() {
        warnings
            .push("no absolute.maxErrorRate: only the relative guard protects the steps, and nothing at 100%".into());
    }
    warnings
}

#[cfg(test)]
mod tests;
