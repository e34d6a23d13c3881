//! Checks a raw ramp file and fills in every default, collecting each
//! problem with its line rather than stopping at the first.

use std::time::Duration;

use rampart_engine::LoadError;

use super::raw::*;
use super::syntax::check_template;
use super::*;
use crate::model::EventKind;
use crate::time::parse_duration;

pub(super) struct Checker<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) name: String,
    pub(super) errors: Vec<LoadError>,
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

    pub(super) fn spec(&mut self, raw: RawFile) -> RampSpec {
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
        let spans = spec.guard.spans.resolve().unwrap_or_else(|message| {
            self.error("spans", 0, message);
            super::spans::SpanSelection::default()
        });
        let windows = spec.windows.as_ref().and_then(|raw| match crate::ramp::windows::Windows::parse(raw) {
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
                match EventKind::parse(event).filter(|kind| kind.is_subscribable()) {
                    Some(kind) => events.push(kind),
                    None => {
                        let known: Vec<&str> =
                            EventKind::ALL.iter().filter(|k| k.is_subscribable()).map(|k| k.as_str()).collect();
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
        let latency = spec
            .latency
            .as_ref()
            .and_then(|raw| raw.resolve().map_err(|message| self.error("slowerThan", 0, message)).ok());
        let conversion = spec
            .conversion
            .as_ref()
            .and_then(|raw| raw.resolve().map_err(|message| self.error("conversion", 0, message)).ok());
        let digest: [u8; 32] = Sha256::digest(self.text.as_bytes()).into();
        let spec = RampSpec {
            stage: None,
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
                spans,
                otlp_metric: spec
                    .guard
                    .otlp_metric
                    .clone()
                    .filter(|name| !name.trim().is_empty())
                    .unwrap_or_else(|| super::spans::DEFAULT_OTLP_METRIC.to_owned()),
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
                on_alert: spec.alerts.as_ref().and_then(|alerts| alerts.on_firing).unwrap_or(Action::Pause),
            },
            metrics,
            latency,
            conversion,
            windows,
            dry_run: spec.dry_run.unwrap_or(false),
            notify,
            file: self.file.to_owned(),
            digest,
            lines: KeyLines::default(),
        };
        one_false_alarm_budget(spec)
    }
}

/// One false-alarm budget for the whole ramp: with `k` guards that can
/// roll it back (the error guard, the latency and conversion guards, and
/// each `role: guard` metric that is not a dry run), each decides at
/// `α / k` (Bonferroni), so the chance that
/// *any* of them rolls back a treatment that is not worse stays at most
/// the α the file wrote (`1 − confidence`). Gates and monitors never roll
/// back and keep their own confidence; so do the proofs that allow
/// advancing.
fn one_false_alarm_budget(mut spec: RampSpec) -> RampSpec {
    let guards = 1
        + usize::from(spec.latency.is_some())
        + usize::from(spec.conversion.is_some())
        + spec.metrics.iter().filter(|m| m.role == super::MetricRole::Guard && !m.dry_run).count();
    if guards > 1 {
        let split = |confidence: f64| 1.0 - (1.0 - confidence) / guards as f64;
        spec.guard.relative_confidence = split(spec.guard.relative_confidence);
        spec.guard.absolute_confidence = split(spec.guard.absolute_confidence);
        if let Some(latency) = &mut spec.latency {
            latency.confidence = split(latency.confidence);
        }
        if let Some(conversion) = &mut spec.conversion {
            conversion.confidence = split(conversion.confidence);
        }
        for metric in spec.metrics.iter_mut().filter(|m| m.role == super::MetricRole::Guard && !m.dry_run) {
            metric.confidence = split(metric.confidence);
        }
    }
    spec
}

pub(super) fn p_exact(number: &Number) -> f64 {
    number.percent().unwrap_or(0.0)
}

/// The line (from 1) of the `occurrence`-th line that has `key:` as a key.
pub(super) fn line_of(text: &str, key: &str, occurrence: usize) -> Option<usize> {
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

pub(super) fn error_line(message: &str) -> Option<usize> {
    let index = message.find("line ")?;
    message[index + 5..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}
