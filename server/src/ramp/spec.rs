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

pub use crate::model::MetricRole;
use crate::model::{EventKind, Run, Target};

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
    /// When advancing is allowed; always when `None`.
    pub windows: Option<super::windows::Windows>,
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
/// per time bucket with the paired sign test (RAMPS.md §5.4).
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
            },
            metrics: Vec::new(),
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

// ---- raw file format ------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    api_version: String,
    kind: String,
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    environment: Option<String>,
    flag: String,
    treatment: String,
    control: Option<String>,
    salt: Option<String>,
    revision: Option<u64>,
    start: Option<RawStart>,
    interval: Option<String>,
    steps: Vec<RawStep>,
    #[serde(default)]
    guard: RawGuard,
    #[serde(default)]
    policy: RawPolicy,
    windows: Option<super::windows::RawWindows>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
    #[serde(default)]
    notify: Vec<RawNotify>,
    dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetric {
    name: String,
    role: MetricRole,
    source: Option<String>,
    query: String,
    direction: Option<Direction>,
    #[serde(default)]
    relative: RawRelative,
    min_buckets: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotify {
    webhook: String,
    secret_ref: Option<String>,
    #[serde(default)]
    events: Vec<String>,
    min_severity: Option<Severity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPrometheus {
    url: Option<String>,
    errors: String,
    total: String,
    lag: Option<String>,
    token_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStart {
    not_before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStep {
    percent: Number,
    hold: Option<String>,
    min_samples: Option<u64>,
    approve: Option<bool>,
}

/// A number, or a string like `"2%"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(String),
}

impl Number {
    /// The value in percent units: `2`, `2.0` and `"2%"` are all 2 %.
    fn percent(&self) -> Option<f64> {
        match self {
            Number::Float(v) => Some(*v),
            Number::Text(text) => text.trim().trim_end_matches('%').trim().parse().ok(),
        }
        .filter(|v: &f64| v.is_finite())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGuard {
    source: Option<String>,
    prometheus: Option<RawPrometheus>,
    min_samples: Option<u64>,
    unit: Option<Unit>,
    #[serde(default)]
    absolute: RawAbsolute,
    #[serde(default)]
    relative: RawRelative,
    critical: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAbsolute {
    max_error_rate: Option<Number>,
    confidence: Option<Number>,
    max_increase: Option<Number>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRelative {
    tolerance: Option<Number>,
    confidence: Option<Number>,
    advance_max_ratio: Option<f64>,
    advance_confidence: Option<Number>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    on_regression: Option<Action>,
    on_missing_data: Option<RawMissingData>,
    on_step_timeout: Option<RawTimeout>,
    on_sample_ratio_mismatch: Option<SrmAction>,
    approval_timeout: Option<RawTimeout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMissingData {
    pause_after_failed_checks: Option<u32>,
    then: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTimeout {
    after: String,
    then: Option<Action>,
}

// ---- defaults (RAMPS.md §5.6) ---------------------------------------------

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
/// Variables a PromQL template may use.
pub const TEMPLATE_VARIABLES: [&str; 5] = ["flag", "variant", "environment", "window", "ramp"];

/// Checks that a template only uses known `{{variables}}`.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("an unclosed {{")?;
        let name = after[..end].trim();
        if !TEMPLATE_VARIABLES.contains(&name) {
            return Err(format!(
                "unknown template variable '{{{{{name}}}}}' (known: {})",
                TEMPLATE_VARIABLES.join(", ")
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Fills a template's `{{variables}}`.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}", name = name), value);
        out = out.replace(&format!("{{{{ {name} }}}}", name = name), value);
    }
    out
}

/// Parses a duration like `90s`, `1m`, `1h30m`, `500ms` or `2d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::try_from_secs_f64(value * seconds).ok()?;
    }
    Some(total)
}

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
            let mut error = LoadError::new(file, first_line(&message));
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

/// Warnings about a valid spec (RAMPS.md §5.2): what weakens its guard.
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

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    name: String,
    errors: Vec<LoadError>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, occurrence: usize, message: impl Into<String>) {
        let mut error = LoadError::new(self.file, message).in_ramp(self.name.clone());
        if let Some(line) = line_of(self.text, key, occurrence) {
            error = error.at_line(line);
        }
        self.errors.push(error);
    }

    fn fraction(&mut self, key: &str, value: Option<&Number>, default: f64) -> f64 {
        match value {
            None => default,
            Some(number) => match number.percent() {
                Some(percent) => percent / 100.0,
                None => {
                    self.error(key, 0, format!("{key}: expected a percentage like 2% or 0.5%"));
                    default
                }
            },
        }
    }

    fn confidence(&mut self, key: &str, occurrence: usize, value: Option<&Number>, default: f64) -> f64 {
        let confidence = self.fraction(key, value, default);
        if !(confidence > 0.5 && confidence <= 0.9999) {
            self.error(key, occurrence, format!("{key}: must be above 50% and at most 99.99%"));
            return default;
        }
        confidence
    }

    fn duration(&mut self, key: &str, occurrence: usize, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.error(key, occurrence, format!("{key}: '{text}' is not a duration like 30s, 5m, 1h30m or 1d"));
                None
            }
        }
    }

    fn spec(&mut self, raw: RawFile) -> RampSpec {
        if raw.api_version != "rampart.dev/v1" {
            self.error("apiVersion", 0, format!("apiVersion: expected rampart.dev/v1, found '{}'", raw.api_version));
        }
        if raw.kind != "Ramp" {
            self.error("kind", 0, format!("kind: expected Ramp, found '{}'", raw.kind));
        }
        let name = raw.metadata.name.clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            self.error("name", 0, format!("metadata.name '{name}': use letters, digits, '-', '_' and '.'"));
        }
        let spec = raw.spec;
        let mut metrics = Vec::new();
        for (index, metric) in spec.metrics.iter().enumerate() {
            if metric.source.as_deref().is_some_and(|s| s != "prometheus") {
                self.error("source", index, format!("metrics[{index}]: only prometheus metrics are supported"));
            }
            if let Err(message) = check_template(&metric.query) {
                self.error("query", index, format!("metrics[{index}].query: {message}"));
            }
            if !metric.query.contains("{{variant}}") && !metric.query.contains("{{ variant }}") {
                self.error(
                    "query",
                    index,
                    format!("metrics[{index}].query: needs {{{{variant}}}} to compare the arms"),
                );
            }
            let tolerance = self.fraction("tolerance", metric.relative.tolerance.as_ref(), DEFAULT_TOLERANCE);
            let confidence =
                self.confidence("confidence", 0, metric.relative.confidence.as_ref(), DEFAULT_RELATIVE_CONFIDENCE);
            let advance_confidence = self.confidence(
                "advanceConfidence",
                0,
                metric.relative.advance_confidence.as_ref(),
                DEFAULT_ADVANCE_CONFIDENCE,
            );
            metrics.push(Metric {
                name: metric.name.clone(),
                role: metric.role,
                query: metric.query.clone(),
                direction: metric.direction.unwrap_or(Direction::LowerIsBetter),
                tolerance: tolerance.max(0.0),
                confidence,
                advance_confidence,
                min_buckets: metric.min_buckets.unwrap_or(6).max(1),
                dry_run: metric.dry_run,
            });
        }
        let source = match (spec.guard.source.as_deref(), &spec.guard.prometheus) {
            (None | Some("builtin"), None) => MetricSource::Builtin,
            (None | Some("prometheus"), Some(prometheus)) => {
                for (key, query) in [("errors", &prometheus.errors), ("total", &prometheus.total)] {
                    if let Err(message) = check_template(query) {
                        self.error(key, 0, format!("guard.prometheus.{key}: {message}"));
                    }
                }
                let lag = match &prometheus.lag {
                    Some(text) => self.duration("lag", 0, text).unwrap_or(DEFAULT_PROMETHEUS_LAG),
                    None => DEFAULT_PROMETHEUS_LAG,
                };
                MetricSource::Prometheus(PrometheusGuard {
                    url: prometheus.url.clone(),
                    errors: prometheus.errors.clone(),
                    total: prometheus.total.clone(),
                    lag,
                    token_ref: prometheus.token_ref.clone(),
                })
            }
            (Some("prometheus"), None) => {
                self.error("source", 0, "guard.source is prometheus but guard.prometheus (errors, total) is missing");
                MetricSource::Builtin
            }
            (Some(other), _) => {
                self.error("source", 0, format!("guard.source '{other}': use builtin or prometheus"));
                MetricSource::Builtin
            }
        };
        let windows = spec.windows.as_ref().and_then(|raw| match super::windows::Windows::parse(raw) {
            Ok(windows) => Some(windows),
            Err(message) => {
                self.error("windows", 0, format!("windows: {message}"));
                None
            }
        });
        let mut notify = Vec::new();
        for (index, target) in spec.notify.iter().enumerate() {
            if !(target.webhook.starts_with("http://") || target.webhook.starts_with("https://")) {
                self.error("webhook", index, format!("notify[{index}].webhook: an http(s) URL is needed"));
            }
            let mut events = Vec::new();
            for event in &target.events {
                match EventKind::parse(event).filter(|kind| EventKind::SUBSCRIBABLE.contains(kind)) {
                    Some(kind) => events.push(kind),
                    None => {
                        let known: Vec<&str> = EventKind::SUBSCRIBABLE.iter().map(|k| k.as_str()).collect();
                        self.error(
                            "events",
                            index,
                            format!("notify[{index}]: unknown event '{event}' (known: {})", known.join(", ")),
                        );
                    }
                }
            }
            notify.push(Notify {
                webhook: target.webhook.clone(),
                secret_ref: target.secret_ref.clone(),
                events,
                min_severity: target.min_severity.unwrap_or(Severity::Info),
            });
        }
        if spec.treatment.is_empty() {
            self.error("treatment", 0, "treatment: must name a variant");
        }
        if spec.control.as_deref() == Some(spec.treatment.as_str()) {
            self.error("control", 0, "treatment and control must be different variants");
        }
        let not_before = spec.start.and_then(|s| s.not_before).and_then(|text| match crate::time::parse(&text) {
            Some(at) => Some(at),
            None => {
                self.error("notBefore", 0, format!("notBefore: '{text}' is not an RFC 3339 time"));
                None
            }
        });
        let interval = match &spec.interval {
            Some(text) => self.duration("interval", 0, text).unwrap_or(DEFAULT_INTERVAL),
            None => DEFAULT_INTERVAL,
        };
        let min_samples = spec.guard.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
        if spec.steps.is_empty() {
            self.error("steps", 0, "steps: at least one step is needed");
        }
        let mut steps = Vec::with_capacity(spec.steps.len());
        let mut previous = 0;
        for (index, step) in spec.steps.iter().enumerate() {
            let basis_points = match step.percent.percent() {
                Some(p) if p > 0.0 && p <= 100.0 => (p * 100.0).round() as u32,
                found => {
                    let found = found.map_or_else(|| "not a number".to_owned(), |p| p.to_string());
                    self.error(
                        "percent",
                        index,
                        format!("step {}: percent must be in (0, 100], found {found}", index + 1),
                    );
                    continue;
                }
            };
            if basis_points == 0 || (p_exact(&step.percent) * 100.0 - f64::from(basis_points)).abs() > 1e-6 {
                self.error("percent", index, format!("step {}: percent has more than two decimals", index + 1));
            }
            if basis_points <= previous {
                self.error("percent", index, format!("step {}: percents must be strictly increasing", index + 1));
            }
            previous = basis_points;
            let Some(hold_text) = &step.hold else {
                self.error("percent", index, format!("step {}: hold is required", index + 1));
                continue;
            };
            let Some(hold) = self.duration("hold", index, hold_text) else { continue };
            steps.push(Step {
                basis_points,
                hold,
                min_samples: step.min_samples.unwrap_or(min_samples),
                approve: step.approve.unwrap_or(false),
            });
        }
        let absolute = &spec.guard.absolute;
        let max_error_rate = absolute.max_error_rate.as_ref().map(|v| self.fraction("maxErrorRate", Some(v), 0.0));
        if let Some(rate) = max_error_rate
            && !(rate > 0.0 && rate < 1.0)
        {
            self.error("maxErrorRate", 0, "maxErrorRate: must be above 0% and below 100%");
        }
        let absolute_confidence =
            self.confidence("confidence", 0, absolute.confidence.as_ref(), DEFAULT_ABSOLUTE_CONFIDENCE);
        let max_increase = self.fraction("maxIncrease", absolute.max_increase.as_ref(), DEFAULT_MAX_INCREASE);
        if !(max_increase > 0.0 && max_increase < 1.0) {
            self.error("maxIncrease", 0, "maxIncrease: must be above 0% and below 100%");
        }
        let relative = &spec.guard.relative;
        let tolerance = self.fraction("tolerance", relative.tolerance.as_ref(), DEFAULT_TOLERANCE);
        if tolerance < 0.0 {
            self.error("tolerance", 0, "tolerance: must not be negative");
        }
        let occurrence = usize::from(absolute.confidence.is_some());
        let relative_confidence =
            self.confidence("confidence", occurrence, relative.confidence.as_ref(), DEFAULT_RELATIVE_CONFIDENCE);
        let advance_confidence =
            self.confidence("advanceConfidence", 0, relative.advance_confidence.as_ref(), DEFAULT_ADVANCE_CONFIDENCE);
        let advance_max_ratio = relative.advance_max_ratio.unwrap_or(1.0 + 2.0 * tolerance.max(0.0));
        if advance_max_ratio <= 1.0 || !advance_max_ratio.is_finite() {
            self.error("advanceMaxRatio", 0, "advanceMaxRatio: must be above 1");
        }
        let missing = spec.policy.on_missing_data.as_ref();
        let pause_after_failed_checks =
            missing.and_then(|m| m.pause_after_failed_checks).unwrap_or(DEFAULT_FAILED_CHECKS);
        if pause_after_failed_checks == 0 {
            self.error("pauseAfterFailedChecks", 0, "pauseAfterFailedChecks: must be at least 1");
        }
        let (step_timeout, on_step_timeout) = match &spec.policy.on_step_timeout {
            Some(timeout) => (
                self.duration("after", 0, &timeout.after).unwrap_or(DEFAULT_STEP_TIMEOUT),
                timeout.then.unwrap_or(Action::Pause),
            ),
            None => (DEFAULT_STEP_TIMEOUT, Action::Pause),
        };
        let (approval_timeout, on_approval_timeout) = match &spec.policy.approval_timeout {
            Some(timeout) => (
                self.duration("after", usize::from(spec.policy.on_step_timeout.is_some()), &timeout.after)
                    .unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
                timeout.then.unwrap_or(Action::Pause),
            ),
            None => (DEFAULT_APPROVAL_TIMEOUT, Action::Pause),
        };
        let digest: [u8; 32] = Sha256::digest(self.text.as_bytes()).into();
        RampSpec {
            name,
            environment: spec.environment,
            flag: spec.flag,
            treatment: spec.treatment,
            control: spec.control,
            salt: spec.salt.unwrap_or_else(|| raw.metadata.name.clone()),
            revision: spec.revision.unwrap_or(1),
            not_before,
            interval,
            steps,
            guard: Guard {
                source,
                unit: spec.guard.unit.unwrap_or(Unit::Request),
                max_error_rate,
                absolute_confidence,
                max_increase,
                tolerance,
                relative_confidence,
                advance_max_ratio,
                advance_confidence,
                critical: spec.guard.critical.unwrap_or(true),
            },
            policy: Policy {
                on_regression: spec.policy.on_regression.unwrap_or(Action::Rollback),
                pause_after_failed_checks,
                on_missing_data: missing.and_then(|m| m.then).unwrap_or(Action::Pause),
                step_timeout,
                on_step_timeout,
                on_sample_ratio_mismatch: spec.policy.on_sample_ratio_mismatch.unwrap_or(SrmAction::Hold),
                approval_timeout,
                on_approval_timeout,
            },
            metrics,
            windows,
            dry_run: spec.dry_run.unwrap_or(false),
            notify,
            file: self.file.to_owned(),
            digest,
            lines: KeyLines::default(),
        }
    }
}

fn p_exact(number: &Number) -> f64 {
    number.percent().unwrap_or(0.0)
}

/// The line (from 1) of the `occurrence`-th line that has `key:` as a key.
fn line_of(text: &str, key: &str, occurrence: usize) -> Option<usize> {
    let pattern = format!("{key}:");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start_matches(['{', ' ']);
            trimmed.starts_with(&pattern)
                || line.contains(&format!(" {pattern}"))
                || line.contains(&format!("{{{pattern}"))
        })
        .nth(occurrence)
        .map(|(index, _)| index + 1)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_owned()
}

fn error_line(message: &str) -> Option<usize> {
    let index = message.find("line ")?;
    message[index + 5..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: rampart.dev/v1
kind: Ramp
metadata:
  name: checkout-v2
spec:
  environment: production
  flag: new-checkout
  treatment: \"on\"
  control: \"off\"
  revision: 2
  interval: 30s
  steps:
    - { percent: 5, hold: 1h, minSamples: 500 }
    - { percent: 25, hold: 2h }
    - { percent: 50, hold: 4h }
    - { percent: 100, hold: 12h }
  guard:
    minSamples: 2000
    unit: context
    absolute:
      maxErrorRate: 2%
      confidence: 99.9%
    relative:
      tolerance: 10%
  policy:
    onMissingData: { pauseAfterFailedChecks: 5, then: rollback }
    onStepTimeout: { after: 6h, then: rollback }
";

    #[test]
    fn a_full_file_parses_with_defaults() {
        let spec = parse("ramps/c.yaml", GOOD).unwrap();
        assert_eq!(spec.name, "checkout-v2");
        assert_eq!(spec.salt, "checkout-v2");
        assert_eq!(spec.revision, 2);
        assert_eq!(spec.interval, Duration::from_secs(30));
        let percents: Vec<u32> = spec.steps.iter().map(|s| s.basis_points).collect();
        assert_eq!(percents, [500, 2500, 5000, 10_000]);
        assert_eq!(spec.steps[0].min_samples, 500);
        assert_eq!(spec.steps[1].min_samples, 2000);
        assert_eq!(spec.guard.max_error_rate, Some(0.02));
        assert!((spec.guard.absolute_confidence - 0.999).abs() < 1e-12);
        assert!((spec.guard.advance_max_ratio - 1.2).abs() < 1e-12);
        assert_eq!(spec.guard.relative_confidence, DEFAULT_RELATIVE_CONFIDENCE);
        assert_eq!(spec.guard.unit, Unit::Context);
        assert_eq!(spec.policy.on_missing_data, Action::Rollback);
        assert_eq!(spec.policy.pause_after_failed_checks, 5);
        assert_eq!(spec.policy.step_timeout, Duration::from_secs(6 * 3600));
        assert!(warnings(&spec).is_empty(), "{:?}", warnings(&spec));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5y"), None);
    }

    #[test]
    fn invalid_files_name_the_line_and_the_reason() {
        let cases: &[(&str, &str, usize)] = &[
            ("    - { percent: 25, hold: 2h }", "    - { percent: 3, hold: 2h }", 14),
            ("    - { percent: 100, hold: 12h }", "    - { percent: 120, hold: 12h }", 16),
            ("    - { percent: 50, hold: 4h }", "    - { percent: 50 }", 15),
            ("  control: \"off\"", "  control: \"on\"", 9),
            ("      tolerance: 10%", "      tolerance: -5%", 24),
            ("      confidence: 99.9%", "      confidence: 40%", 22),
            ("  interval: 30s", "  interval: soon", 11),
            ("  interval: 30s", "  interval: 30s\n  metrics: [{ name: p99 }]", 12),
            ("  interval: 30s", "  interval: 30s\n  guard2: 1", 12),
            ("  revision: 2", "  revision: 2\n  colour: red", 11),
        ];
        for (from, to, line) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let errors = parse("r.yaml", &text).unwrap_err();
            let error = &errors[0];
            assert_eq!(error.file, "r.yaml");
            assert_eq!(error.line, Some(*line), "{to}: {errors:?}");
            assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn prometheus_guards_notify_targets_and_approvals() {
        let text = GOOD.replace(
            "    minSamples: 2000\n",
            "    minSamples: 2000\n    prometheus:\n      errors: 'sum(increase(errors_total{variant=\"{{variant}}\"}[{{window}}]))'\n      total: 'sum(increase(requests_total{variant=\"{{variant}}\"}[{{window}}]))'\n      lag: 45s\n",
        ).replace("  revision: 2\n", "  revision: 2\n  notify:\n    - { webhook: https://hooks.example.com/r, secretRef: HOOK_SECRET, minSeverity: warning }\n").replace("{ percent: 25, hold: 2h }", "{ percent: 25, hold: 2h, approve: true }");
        let spec = parse("r.yaml", &text).unwrap();
        let MetricSource::Prometheus(guard) = &spec.guard.source else { panic!("{:?}", spec.guard.source) };
        assert_eq!(guard.lag, Duration::from_secs(45));
        assert_eq!(spec.notify[0].min_severity, Severity::Warning);
        assert!(spec.steps[1].approve && !spec.steps[0].approve);
        let bad = text.replace("{{window}}]))'\n      total", "{{windw}}]))'\n      total");
        let errors = parse("r.yaml", &bad).unwrap_err();
        assert!(errors[0].message.contains("unknown template variable '{{windw}}'"), "{errors:?}");
        assert_eq!(errors[0].line, Some(22));
    }

    #[test]
    fn weak_schedules_are_warned_about() {
        let text =
            GOOD.replace("percent: 50, hold: 4h", "percent: 80, hold: 4h").replace("      maxErrorRate: 2%\n", "");
        let spec = parse("r.yaml", &text).unwrap();
        let warnings = warnings(&spec);
        assert!(warnings.iter().any(|w| w.contains("80%")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("maxErrorRate")), "{warnings:?}");
    }

    #[test]
    fn live_edits() {
        let running = parse("r.yaml", GOOD).unwrap();
        let more_steps = parse(
            "r.yaml",
            &GOOD.replace("    - { percent: 50", "    - { percent: 35, hold: 1h }\n    - { percent: 50"),
        )
        .unwrap();
        assert_eq!(more_steps.live_edit_refusal(&running, 2500), None);
        let salted = parse("r.yaml", &GOOD.replace("  revision: 2", "  revision: 2\n  salt: other")).unwrap();
        assert!(salted.live_edit_refusal(&running, 2500).unwrap().contains("salt"));
        let treatment = parse("r.yaml", &GOOD.replace("treatment: \"on\"", "treatment: \"blue\"")).unwrap();
        assert!(treatment.live_edit_refusal(&running, 2500).unwrap().contains("treatment"));
        let moved = parse("r.yaml", &GOOD.replace("percent: 25,", "percent: 30,")).unwrap();
        assert!(moved.live_edit_refusal(&running, 2500).unwrap().contains("25%"));
    }
}
