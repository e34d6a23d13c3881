//! `GET /ui/ramps`: every ramp with its state and progress.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};

use super::layout::{Section, frame};
use super::{flag_path, html, ramp_path, viewer, words};
use crate::http::AppState;

pub(crate) async fn page(state: web::Data<AppState>, request: HttpRequest) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let mut ramps = Vec::new();
    for entry in state.ramps.entries() {
        ramps.push(state.ramps.glance(&entry).await);
    }
    let content = html! {
        h1 { "Ramps" }
        div #ramp-list data-live="ramp:*" {
            @if ramps.is_empty() {
                p { "No ramps. Add a ramp file (kind: Ramp) to an environment's ramps in rampart.yaml." }
            } @else {
                table.ramps {
                    caption.visually-hidden { "Ramps" }
                    thead { tr {
                        th scope="col" { "Ramp" } th scope="col" { "Flag" } th scope="col" { "State" }
                        th scope="col" { "Step" } th scope="col" { "Exposure" }
                    } }
                    tbody {
                        @for ramp in &ramps {
                            tr {
                                th scope="row" {
                                    a href=(ramp_path(&ramp.environment, &ramp.name)) { (ramp.environment) " / " (ramp.name) }
                                    @if let Some(environment) = state.environments.get(&ramp.environment) {
                                        (super::protected::badge(environment))
                                    }
                                }
                                td data-label="Flag" { a href=(flag_path(&ramp.environment, &ramp.run.flag)) { (ramp.run.flag) } }
                                td data-label="State" { (state_badge(ramp.run.status.name(), ramp.run.status.reason())) }
                                td data-label="Step" { (step_text(ramp)) }
                                td data-label="Exposure" { (progress(if ramp.flag_enabled { ramp.run.percent() } else { 0.0 })) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, frame("Ramps", Some(&viewer), Section::Ramps, content)))
}

pub(crate) fn step_text(ramp: &crate::ramp::controller::RampView) -> String {
    let steps = ramp.spec.steps.len();
    match ramp.run.status {
        crate::model::Status::Pending { .. } => format!("not started (of {steps})"),
        _ => format!("{} of {steps}", ramp.run.step + 1),
    }
}

/// A ramp's state as a badge: words always, colour for meaning.
pub(crate) fn state_badge(state: &str, reason: Option<&str>) -> Markup {
    let class = match (state, reason) {
        ("RolledBack", _) => "badge bad",
        ("Completed", _) => "badge good",
        ("Ramping", _) => "badge good",
        ("Paused" | "Holding", Some("Regression" | "SampleRatioMismatch")) => "badge bad",
        ("Paused" | "Holding", _) => "badge warn",
        _ => "badge",
    };
    html! { span class=(class) title=(words::ramp_reason(state, reason)) { (words::ramp_reason(state, reason)) } }
}

/// Exposure as a meter with its number.
pub(crate) fn progress(percent: f64) -> Markup {
    html! {
        span.progress {
            meter min="0" max="100" value=(percent) aria-label="Exposure" { (words::percent(percent)) }
            " " (words::percent(percent))
        }
    }
}
