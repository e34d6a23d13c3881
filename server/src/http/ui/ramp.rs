//! `GET /ui/ramps/{environment}/{name}`: one ramp — the step ladder, the
//! charts of its run, the guards' verdicts, what is missing to advance, the
//! decision timeline, and the operator's controls.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Section, csrf_field, frame};
use super::{Csrf, Viewer, flag_path, html, ramp_path, reason, submitted, viewer, words};
use crate::http::AppState;
use crate::http::policy::{Action, RampCommand};
use crate::model::Status;
use crate::ramp::controller::checks::CheckPoint;
use crate::ramp::controller::{CommandError, RampView};
use crate::store::RampDecisionRecord;

/// Decisions shown in the timeline (the newest).
const TIMELINE: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct CommandForm {
    csrf: Option<String>,
    reason: Option<String>,
    /// The ramp's name, typed (production environments).
    typed: Option<String>,
}

/// What the page shows beside the ramp itself.
#[derive(Debug, Default)]
pub(crate) struct Surroundings {
    /// The server's Prometheus URL.
    pub(crate) prometheus: Option<String>,
    /// The environment is production (`protected: true`).
    pub(crate) protected: bool,
    /// The other stages of its release pipeline.
    pub(crate) stages: Vec<RampView>,
}

impl Csrf for CommandForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub(crate) async fn page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let (environment, name) = path.into_inner();
    let Some(entry) = state.ramps.entry(&environment, &name) else {
        return Ok(super::layout::message_page(
            StatusCode::NOT_FOUND,
            "No such ramp",
            &format!("There is no ramp '{name}' in environment '{environment}'."),
        ));
    };
    let view = state.ramps.view(&entry).await;
    let checks = entry.checks(&view.run.run_id);
    let history = state.store.ramp_history(&environment, &name, TIMELINE).await;
    let mut around = Surroundings {
        prometheus: state.ramps.prometheus_url().map(str::to_owned),
        protected: state.environments.get(&environment).is_some_and(|e| e.protected),
        stages: Vec::new(),
    };
    if view.spec.stage.is_some() {
        for other in state.ramps.entries() {
            let other = state.ramps.glance(&other).await;
            if super::ramp_settings::same_release(&view.spec, &other.spec) {
                around.stages.push(other);
            }
        }
    }
    let content = render(&view, &checks, history.as_deref().map_err(ToString::to_string), &viewer, &around);
    Ok(html(StatusCode::OK, frame(&format!("Ramp {name}"), Some(&viewer), Section::Ramps, content)))
}

/// The page's content (also what the render benchmark measures).
pub(crate) fn render(
    view: &RampView,
    checks: &[CheckPoint],
    history: Result<&[RampDecisionRecord], String>,
    viewer: &Viewer,
    around: &Surroundings,
) -> Markup {
    let run = &view.run;
    let rolled_back = matches!(run.status, Status::RolledBack { .. });
    let evidence = view.evidence.clone().unwrap_or_default();
    let hold = view.spec.steps.get(run.step).map_or(0, |s| s.hold.as_millis() as u64);
    let hold_left = if run.is_active() { (run.step_started_at + hold).saturating_sub(view.at) / 1000 } else { 0 };
    let min_samples = view.spec.steps.get(run.step).map_or(0, |s| s.min_samples);
    html! {
        p.crumbs { a href="/ui/ramps" { "Ramps" } }
        (super::protected::banner_if(around.protected, &view.environment))
        h1 { "Ramp " (view.name) " in " (view.environment) }
        div #ramp-status data-live=(super::scope_of_ramp(&view.environment, &view.name)) {
            @if rolled_back {
                div.alert.bad.rollback role="alert" {
                    p.big { "Rolled back to 0 %" }
                    p #ramp-state { (words::ramp_reason(run.status.name(), run.status.reason()))
                        @if let Some(by) = run.status.by().filter(|by| *by != "controller") { " — by " (by) } }
                }
            } @else {
                p.state-line { "State: " span #ramp-state { (super::ramps::state_badge(run.status.name(), run.status.reason())) } }
            }
            p.facts {
                "flag " a href=(flag_path(&view.environment, &run.flag)) { (run.flag) }
                " · treatment " code { (run.treatment) } " against " code { (run.control) }
                @if run.dry_run { " · " span.badge.warn { "dry run: decides, never exposes" } }
                @if view.frozen { " · " span.badge.warn { "frozen" } }
            }
            (ladder(view))
            p {
                @if view.flag_enabled {
                    "Exposure " strong #ramp-percent { (words::percent(run.percent())) }
                } @else {
                    "Exposure " strong #ramp-percent { (words::percent(0.0)) }
                    " — the flag is off (kill switch); " (words::percent(run.percent())) " again once it is on and the ramp resumed"
                }
                @if run.is_active() && hold_left > 0 {
                    " · " (crate::ramp::plan::words(std::time::Duration::from_secs(hold_left))) " of hold left at this step"
                }
                " · checks every " (crate::ramp::plan::words(view.spec.interval))
            }
            (super::ramp_settings::estimate(view))
            @for warning in &view.warnings { p.alert.warn { (warning) } }
            @for error in &view.file_errors { p.alert.bad { "The ramp file was rejected: " (error) } }
            @if let Some(refused) = &view.refused_change { p.alert.warn { "A change of the ramp file was refused: " (refused) } }
            @if !evidence.missing_to_advance.is_empty() && run.is_active() {
                section aria-labelledby="missing-heading" {
                    h2 #missing-heading { "What is missing to advance" }
                    ul #missing { @for missing in &evidence.missing_to_advance { li { (missing) } } }
                }
            }
            (controls(view, viewer, around.protected))
        }
        (super::ramp_settings::pipeline(view, &around.stages))
        section aria-labelledby="charts-heading" {
            h2 #charts-heading { "The run" }
            div #ramp-charts.charts data-live=(super::scope_of_ramp(&view.environment, &view.name)) {
                (super::ramp_charts::render(checks, min_samples, view.spec.guard.max_error_rate))
            }
        }
        section aria-labelledby="guards-heading" {
            h2 #guards-heading { "Evidence now" }
            div #ramp-evidence data-live=(super::scope_of_ramp(&view.environment, &view.name)) { (evidence_now(view, history.as_deref().ok())) }
        }
        section aria-labelledby="settings-heading" {
            h2 #settings-heading { "Settings" }
            (super::ramp_settings::settings(view, around.prometheus.as_deref()))
        }
        section aria-labelledby="timeline-heading" {
            h2 #timeline-heading { "Decisions" }
            div #ramp-timeline data-live=(super::scope_of_ramp(&view.environment, &view.name)) {
                @match history {
                    Ok(records) if records.is_empty() => p { "No decisions yet." },
                    Ok(records) => (timeline(records)),
                    Err(error) => p.alert.bad role="alert" { "The decision log cannot be read: " (error) },
                }
            }
        }
    }
}

/// The steps, with where the run is.
fn ladder(view: &RampView) -> Markup {
    let run = &view.run;
    let started = !matches!(run.status, Status::Pending { .. });
    html! {
        ol.ladder aria-label="Steps" {
            @for (index, step) in view.spec.steps.iter().enumerate() {
                @let percent = f64::from(step.basis_points) / 100.0;
                @let class = if !started || index > run.step {
                    "todo"
                } else if index < run.step || matches!(run.status, Status::Completed) {
                    "done"
                } else if matches!(run.status, Status::RolledBack { .. }) {
                    "failed" // the step the run was rolled back from
                } else {
                    "current"
                };
                @if class == "current" {
                    li class=(class) aria-current="step" { (words::percent(percent)) @if step.approve { " (approval)" } }
                } @else if class == "failed" {
                    li class=(class) { (words::percent(percent)) " — rolled back" }
                } @else {
                    li class=(class) { (words::percent(percent)) @if step.approve { " (approval)" } }
                }
            }
        }
    }
}

/// pause / resume / promote / abort / approve / restart, by role.
fn controls(view: &RampView, viewer: &Viewer, protected: bool) -> Markup {
    let run = &view.run;
    let status = &run.status;
    let mut buttons: Vec<(RampCommand, &str)> = Vec::new();
    if run.is_active() {
        if matches!(status, Status::Paused { .. }) {
            buttons.push((RampCommand::Resume, "Resume"));
        } else {
            buttons.push((RampCommand::Pause, "Pause"));
        }
        if matches!(status, Status::AwaitingApproval) {
            buttons.push((RampCommand::Approve, "Approve the next step"));
        }
        buttons.push((RampCommand::Promote, "Promote to the next step now"));
        buttons.push((RampCommand::Abort, "Abort: roll back to 0 %"));
    } else if view.frozen {
        buttons.push((RampCommand::Abort, "Abort: roll back to 0 %"));
    }
    if status.is_terminal() {
        buttons.push((RampCommand::Restart, "Restart with a new run"));
    }
    let allowed: Vec<_> = buttons.into_iter().filter(|(command, _)| viewer.may(Action::Ramp(*command))).collect();
    html! {
        @if !allowed.is_empty() {
            div.actions #ramp-controls {
                @for (command, label) in allowed {
                    @let action = command.as_str();
                    form.inline method="post" action={ (ramp_path(&view.environment, &view.name)) "/" (action) }
                        data-confirm={ (label) " — ramp " (view.name) " in " (view.environment) "?" } {
                        (csrf_field(viewer))
                        input type="hidden" name="reason" value="";
                        @if matches!(command, RampCommand::Abort | RampCommand::Promote) {
                            (super::protected::typed_field(protected, &view.name))
                        }
                        button type="submit" class=(if command == RampCommand::Abort { "danger" } else { "" }) { (label) }
                    }
                }
            }
        }
    }
}

/// The live evidence; once the run has ended, the evidence of its last
/// decision (what an incident review needs after a rollback).
fn evidence_now(view: &RampView, history: Option<&[RampDecisionRecord]>) -> Markup {
    if let Some(evidence) = &view.evidence {
        return evidence_table(evidence);
    }
    let last = history.and_then(|records| records.iter().rev().find(|r| r.run_id == view.run.run_id));
    match last {
        Some(record) if view.run.status.is_terminal() => html! {
            p #final-evidence {
                "The run has ended. Its final evidence, at the decision of "
                time datetime=(crate::time::rfc3339(record.at)) { (words::time(record.at)) }
                " (" (words::ramp_reason(&record.to, record.reason.as_deref())) "):"
            }
            (evidence_table(&record.evidence))
        },
        _ => html! { p { "No evidence yet." } },
    }
}

fn evidence_table(evidence: &crate::model::Evidence) -> Markup {
    html! {
        table.evidence {
            caption.visually-hidden { "Counts and statistics at this check" }
            thead { tr { th scope="col" { span.visually-hidden { "Arm" } } th scope="col" { "Exposures" } th scope="col" { "Errors" } th scope="col" { "Error rate" } } }
            tbody {
                tr {
                    th scope="row" { "Treatment" } td data-label="Exposures" { (evidence.treatment.exposures) }
                    td data-label="Errors" { (evidence.treatment.errors) } td data-label="Error rate" { (words::rate(evidence.treatment_rate)) }
                }
                tr {
                    th scope="row" { "Control" } td data-label="Exposures" { (evidence.control.exposures) }
                    td data-label="Errors" { (evidence.control.errors) } td data-label="Error rate" { (words::rate(evidence.control_rate)) }
                }
            }
        }
        dl.statistics {
            dt { "Rate ratio (treatment / control)" } dd { (words::number(evidence.ratio_estimate)) ", upper bound " (words::number(evidence.ratio_upper)) }
            dt { "Evidence of a regression Λ" } dd { (words::number(evidence.lambda)) " (rolls back at " (words::number(evidence.lambda_threshold)) ")" }
            dt { "Smallest regression detectable by the end of the hold" } dd { (words::number(evidence.detectable_ratio)) "×" }
            @if let Some(z) = evidence.srm_z { dt { "Sample ratio z" } dd { (words::number(Some(z))) " (a mismatch beyond 3.29)" } }
            @for metric in &evidence.metrics {
                dt { "Metric " (metric.name) } dd { (format!("{:?}", metric.verdict).to_lowercase()) " after " (metric.buckets) " buckets" }
            }
            @for guard in &evidence.guards {
                @let name = match guard.guard { crate::model::GuardKind::Latency => "Latency guard", crate::model::GuardKind::Conversion => "Conversion guard" };
                dt { (name) }
                dd.guard {
                    (format!("{:?}", guard.verdict).to_lowercase()) " — " (guard.note)
                    " (treatment " (guard.treatment.hits) "/" (guard.treatment.samples)
                    ", control " (guard.control.hits) "/" (guard.control.samples) ")"
                }
            }
        }
    }
}

/// Each decision with the exposure it set, and the counts it was made on
/// labelled with the step they were gathered at (the step before the
/// decision's new percent).
fn timeline(records: &[RampDecisionRecord]) -> Markup {
    // The exposure each decision's evidence was gathered at: the percent
    // the previous decision of the same run set.
    let mut gathered_at = Vec::with_capacity(records.len());
    let mut previous: Option<(&str, f64)> = None;
    for record in records {
        gathered_at.push(previous.filter(|(run, _)| *run == record.run_id).map(|(_, percent)| percent));
        previous = Some((&record.run_id, record.percent));
    }
    html! {
        ol.timeline reversed {
            @for (record, at) in records.iter().zip(&gathered_at).rev() {
                @let bad = record.to == "RolledBack";
                li class=(if bad { "bad" } else { "" }) {
                    time datetime=(crate::time::rfc3339(record.at)) { (words::time(record.at)) }
                    " — "
                    @if record.events.is_empty() {
                        (words::ramp_reason(&record.to, record.reason.as_deref()))
                    } @else {
                        @for (index, event) in record.events.iter().enumerate() {
                            @if index > 0 { "; " }
                            (words::event(&event.name()))
                            @if let Some(reason) = &event.reason { " (" (words::reason(reason)) ")" }
                            @if event.by != "controller" { " by " (event.by) }
                            @if let Some(note) = &event.note { " — “" (note) "”" }
                        }
                    }
                    " → exposure " (words::percent(record.percent))
                    @let (treatment, control) = (&record.evidence.treatment, &record.evidence.control);
                    @if treatment.exposures + control.exposures > 0 {
                        " · errors at "
                        @match at { Some(percent) => (words::percent(*percent)), None => "the step" }
                        ": treatment " (treatment.errors) "/" (treatment.exposures)
                        ", control " (control.errors) "/" (control.exposures)
                    }
                }
            }
        }
    }
}

/// `POST /ui/ramps/{environment}/{name}/{action}`: an operator command,
/// with the roles of the admin API.
pub(crate) async fn command(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
) -> super::Page {
    let (environment, name, action) = path.into_inner();
    let Some(ramp_command) = RampCommand::parse(&action) else {
        return Ok(super::layout::message_page(StatusCode::NOT_FOUND, "No such command", &action));
    };
    let (submitted, viewer) = submitted::<CommandForm>(&state, &request, payload, Action::Ramp(ramp_command)).await?;
    let command = ramp_command.command(viewer.caller.name.clone(), None);
    if matches!(ramp_command, RampCommand::Abort | RampCommand::Promote)
        && let Some(protected) = state.environments.get(&environment)
    {
        super::protected::check(protected, &name, submitted.typed.as_deref())?;
    }
    let note = reason(submitted.reason.as_deref());
    Ok(match state.ramps.command_noted(&environment, &name, command, note).await {
        Ok(_) => super::notice::done(
            &ramp_path(&environment, &name),
            &format!("{} — ramp {name} in {environment}.", ramp_command.done()),
        ),
        Err(CommandError::NotFound(environment, name)) => super::layout::message_page(
            StatusCode::NOT_FOUND,
            "No such ramp",
            &format!("There is no ramp '{name}' in environment '{environment}'."),
        ),
        Err(CommandError::Rejected(message)) => {
            super::layout::message_page(StatusCode::CONFLICT, "The ramp did not take the command", &message.to_string())
        }
        Err(CommandError::Store(error)) => super::layout::message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The command could not be stored",
            &error.to_string(),
        ),
    })
}
