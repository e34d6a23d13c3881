//! The parts of a ramp's page that explain it: its settings as the file
//! set them (every guard, windows with their time zone, approvals, the
//! file and run), when it will finish at the traffic actually seen, and
//! the release pipeline it is a stage of.

use std::time::Duration;

use maud::{Markup, html};
use serde::Serialize;

use super::{ramp_path, words};
use crate::model::Status;
use crate::ramp::controller::RampView;
use crate::ramp::plan::{self, Plan};
use crate::ramp::spec::guards::Threshold;
use crate::ramp::spec::{MetricSource, RampSpec};

/// A setting's name as written in the ramp file (its serde name).
fn written<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "—".into(),
    }
}

/// A fraction as a percentage with what precision it needs.
fn share(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if (percent - percent.round()).abs() < 1e-9 { format!("{percent:.0} %") } else { format!("{percent:.2} %") }
}

/// Everything the ramp file decided, on one screen.
pub(crate) fn settings(view: &RampView, prometheus_default: Option<&str>) -> Markup {
    let spec = &view.spec;
    let guard = &spec.guard;
    let run = &view.run;
    html! {
        dl.settings #ramp-settings {
            dt { "Source of evidence" }
            dd {
                @match &guard.source {
                    MetricSource::Builtin => {
                        "outcome reports, OTLP spans (" (written(&guard.spans.kind)) " spans"
                        @if let Some(service) = &guard.spans.service { " of " code { (service) } }
                        @if guard.spans.http_server_errors { ", 5xx count as errors" }
                        @if let Some(slow) = guard.spans.slower_than { ", slower than " (plan::words(slow)) " count as errors" }
                        ") and OTLP metric " code { (guard.otlp_metric) } " — counted per " (written(&guard.unit))
                    }
                    MetricSource::Prometheus(prometheus) => {
                        @let url = prometheus.url.as_deref().or(prometheus_default);
                        "Prometheus at " code.path { (url.unwrap_or("— (no URL: set prometheusUrl)")) }
                        ", errors " code.path { (prometheus.errors) } " over " code.path { (prometheus.total) }
                        ", " (plan::words(prometheus.lag)) " behind now"
                        @if run.failed_checks > 0 {
                            " — " span.badge.bad { "not answering: " (run.failed_checks) " checks in a row without data" }
                        }
                    }
                }
            }
            dt { "Error guard" }
            dd {
                @match guard.max_error_rate {
                    Some(ceiling) => { "maxErrorRate " (share(ceiling)) " (confidence " (share(guard.absolute_confidence)) "); " }
                    None => "no ceiling; ",
                }
                "treatment worse than control by more than ×" (format!("{:.2}", 1.0 + guard.tolerance))
                " rolls back (confidence " (share(guard.relative_confidence)) "); advances once not worse: ratio ≤ "
                (guard.advance_max_ratio) " or difference ≤ " (share(guard.max_increase))
                " (confidence " (share(guard.advance_confidence)) ")"
                @if guard.critical { " · critical" }
            }
            @if let Some(latency) = &spec.latency {
                dt { "Latency guard" }
                dd {
                    "share slower than "
                    @match latency.threshold {
                        Threshold::Fixed { millis } => { (millis) " ms" }
                        Threshold::ControlP95 => "the control's p95",
                    }
                    ", tolerance ×" (format!("{:.2}", 1.0 + latency.tolerance)) " (confidence " (share(latency.confidence)) ")"
                    @if latency.prometheus.is_some() { " — from Prometheus histograms" }
                }
            }
            @if let Some(conversion) = &spec.conversion {
                dt { "Conversion guard" }
                dd {
                    "event " code { (conversion.event) } ": may drop at most " (share(conversion.max_drop))
                    " per exposed user (confidence " (share(conversion.confidence)) ", at least " (conversion.min_users) " users per arm)"
                }
            }
            @for metric in &spec.metrics {
                dt { "Metric " (metric.name) }
                dd {
                    (written(&metric.role)) ", " (written(&metric.direction)) ", tolerance " (share(metric.tolerance))
                    ", at least " (metric.min_buckets) " buckets"
                    @if metric.dry_run { " · dry run" }
                    " — " code.path { (metric.query) }
                }
            }
            dt { "Checks" }
            dd { "every " (plan::words(spec.interval)) }
            dt { "Steps" }
            dd {
                @for (index, step) in spec.steps.iter().enumerate() {
                    @if index > 0 { " → " }
                    (words::percent(f64::from(step.basis_points) / 100.0))
                    " (hold " (plan::words(step.hold)) ", " (step.min_samples) " samples"
                    @if step.approve { ", approval" } ")"
                }
            }
            dt { "On trouble" }
            dd {
                "regression: " (written(&spec.policy.on_regression))
                "; missing data: " (written(&spec.policy.on_missing_data)) " after " (spec.policy.pause_after_failed_checks) " checks"
                "; step timeout " (plan::words(spec.policy.step_timeout)) ": " (written(&spec.policy.on_step_timeout))
                "; alerts: " (written(&spec.policy.on_alert))
            }
            dt { "Approvals" }
            dd {
                @let approvals = spec.steps.iter().filter(|s| s.approve).count();
                @if approvals == 0 { "none" } @else {
                    (approvals) " of " (spec.steps.len()) " steps; unanswered after "
                    (plan::words(spec.policy.approval_timeout)) ": " (written(&spec.policy.on_approval_timeout))
                }
            }
            dt { "Change windows" }
            dd #ramp-windows {
                @match &spec.windows {
                    None => "any time",
                    Some(windows) => {
                        "only " (windows.rules.join(", ")) " (" (windows.timezone) ")"
                        @if windows.is_open(view.at) { " — " span.badge.good { "open now" } }
                        @else { " — " span.badge.warn { "closed now: the ramp waits" } }
                    }
                }
            }
            dt { "File" }
            dd { code.path { (spec.file) } ", revision " (spec.revision) }
            dt { "Run" }
            dd { code { (run.run_id) } @if run.dry_run { " · dry run" } }
        }
    }
}

/// The traffic a step has seen: outcomes per second and the error rate.
fn seen(view: &RampView) -> Option<(f64, f64)> {
    let evidence = view.evidence.as_ref()?;
    let seconds = view.at.saturating_sub(view.run.step_started_at) as f64 / 1000.0;
    let exposures = evidence.treatment.exposures + evidence.control.exposures;
    if exposures == 0 || seconds < 1.0 {
        return None;
    }
    let errors = evidence.treatment.errors + evidence.control.errors;
    Some((exposures as f64 / seconds, errors as f64 / exposures as f64))
}

/// How long until the current step may advance and the ramp completes,
/// from the model of `rampart ramp plan` at the traffic seen at this step.
pub(crate) fn estimate(view: &RampView) -> Markup {
    let run = &view.run;
    html! {
        p #ramp-times {
            @if !matches!(run.status, Status::Pending { .. }) {
                "Started " time datetime=(crate::time::rfc3339(run.started_at)) { (words::time(run.started_at)) }
                @if run.is_active() {
                    " · step " (run.step + 1) " of " (view.spec.steps.len()) " since "
                    time datetime=(crate::time::rfc3339(run.step_started_at)) { (words::time(run.step_started_at)) }
                }
            }
        }
        @if run.is_active() {
            div #ramp-estimate {
                @match seen(view) {
                    None => p { "No estimate yet: no traffic seen at this step." },
                    Some((per_second, errors)) => (estimate_at(view, &plan::plan(&view.spec, per_second, errors), per_second, errors)),
                }
            }
        }
    }
}

fn estimate_at(view: &RampView, plan: &Plan, per_second: f64, errors: f64) -> Markup {
    let run = &view.run;
    let elapsed = Duration::from_millis(view.at.saturating_sub(run.step_started_at));
    let this_step = plan.steps.get(run.step).and_then(|s| s.advances_after).map(|after| after.saturating_sub(elapsed));
    let later: Option<Duration> = plan.steps.iter().skip(run.step + 1).map(|s| s.advances_after).sum();
    let total = this_step.zip(later).map(|(now, rest)| now + rest);
    let waits = view.spec.steps.iter().skip(run.step).any(|s| s.approve) || view.spec.windows.is_some();
    html! {
        p {
            @match this_step {
                Some(left) if left.is_zero() => "This step can advance at the next check",
                Some(left) => { "This step can advance in about " strong { (plan::words(left)) } }
                None => "This step would not advance within 30 days",
            }
            @match total {
                Some(total) => {
                    "; the ramp can complete in about " strong { (plan::words(total)) }
                    " (by " (words::time(view.at + total.as_millis() as u64)) ")"
                }
                None => "; the ramp would not complete within 30 days at this traffic",
            }
            " — at the " (format!("{per_second:.1}")) " outcomes/s and " (share(errors))
            " errors seen at this step, if the treatment is as good as the control (the model of "
            code { "rampart ramp plan" } ")"
            @if waits { ", plus the time approvals and change windows take" } "."
        }
        table.estimate {
            caption.visually-hidden { "Time each step needs at this traffic" }
            thead { tr { th scope="col" { "Step" } th scope="col" { "Hold" } th scope="col" { "Can advance after" } } }
            tbody {
                @for (index, step) in plan.steps.iter().enumerate() {
                    tr {
                        th scope="row" { (index + 1) ": " (words::percent(step.percent)) }
                        td data-label="Hold" { (plan::words(step.hold)) }
                        td data-label="Can advance after" {
                            @match step.advances_after { Some(after) => (plan::words(after)), None => "more than 30 days" }
                            @if index == run.step { " (" (plan::words(elapsed)) " so far)" }
                        }
                    }
                }
            }
        }
    }
}

/// The release pipeline this ramp is a stage of, as a row of stages, each
/// linked, with its state.
pub(crate) fn pipeline(view: &RampView, stages: &[RampView]) -> Markup {
    let Some(stage) = &view.spec.stage else { return html! {} };
    html! {
        section aria-labelledby="pipeline-heading" {
            h2 #pipeline-heading { "Release " (stage.release) }
            ol.pipeline aria-label={ "Stages of release " (stage.release) } {
                @for (index, environment) in stage.environments.iter().enumerate() {
                    @let found = stages.iter().find(|s| &s.environment == environment);
                    @let here = index == stage.index;
                    li class=(if here { "here" } else { "" }) {
                        @match found {
                            Some(other) => {
                                @if here { span aria-current="step" { (environment) } } @else {
                                    a href=(ramp_path(&other.environment, &other.name)) { (environment) }
                                }
                                " " (super::ramps::state_badge(other.run.status.name(), other.run.status.reason()))
                                " " (words::percent(other.run.percent()))
                            }
                            None => { (environment) " " span.badge { "not loaded" } }
                        }
                    }
                }
            }
        }
    }
}

/// Whether `other` is a stage of the same release as `spec`.
pub(crate) fn same_release(spec: &RampSpec, other: &RampSpec) -> bool {
    matches!((&spec.stage, &other.stage), (Some(a), Some(b)) if a.release == b.release)
}
