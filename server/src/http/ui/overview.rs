//! `GET /ui/`: environments with their state and last reload, active
//! ramps, the latest changes and the drift from the files.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};

use super::layout::{Section, frame};
use super::{encode_query, flag_path, html, ramp_path, viewer, words};
use crate::environment::ReloadResult;
use crate::http::AppState;
use crate::store::AuditQuery;

pub(crate) async fn page(state: web::Data<AppState>, request: HttpRequest) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let now = state.clock.now_millis();
    let audit = state.store.audit(AuditQuery { limit: 10, newest_first: true, ..AuditQuery::default() }).await;
    let mut ramps = Vec::new();
    for entry in state.ramps.entries() {
        ramps.push(state.ramps.glance(&entry).await);
    }
    let health = state.store.health();
    let protected: Vec<&str> = state.environments.iter().filter(|e| e.protected).map(|e| e.name.as_str()).collect();
    let content = html! {
        h1 { "Overview" }
        section aria-labelledby="environments-heading" {
            h2 #environments-heading { "Environments" }
            div #environments data-live="*" {
                table {
                    caption.visually-hidden { "Environments and what they serve" }
                    thead { tr {
                        th scope="col" { "Environment" } th scope="col" { "Flags" } th scope="col" { "Version" }
                        th scope="col" { "Store" } th scope="col" { "Last reload" }
                    } }
                    tbody {
                        @for environment in state.environments.iter() {
                            @let snapshot = environment.snapshot();
                            tr {
                                th scope="row" {
                                    a href={ "/ui/environments/" (encode_query(&environment.name)) "/flags" } { (environment.name) }
                                    (super::protected::badge(environment))
                                }
                                td data-label="Flags" { (snapshot.flags.len()) " (" (snapshot.api.len()) " from the API)" }
                                td data-label="Version" { (snapshot.version) }
                                td data-label="Store" {
                                    @if health.state == "ok" { span.badge.good { "ok" } } @else { span.badge.bad { (health.state) } }
                                    " " (health.kind)
                                }
                                td data-label="Last reload" { (reload_cell(environment.last_reload(), now)) }
                            }
                        }
                    }
                }
                @for environment in state.environments.iter() {
                    @if let Some(record) = environment.last_reload() {
                        @if let ReloadResult::Rejected(errors) = &record.result {
                            div.alert.bad role="alert" {
                                p { strong { "The last reload of " (environment.name) "'s files was rejected" }
                                    " (" (words::ago(now, record.at)) "); the last good version keeps serving:" }
                                ul.errors { @for error in errors { li { code { (error) } } } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="ramps-heading" {
            h2 #ramps-heading { "Ramps" }
            div #overview-ramps data-live="ramp:*" {
                @if ramps.is_empty() {
                    p { "No ramps. A ramp file in git moves a flag from 0 to 100 % while it proves not worse." }
                } @else {
                    ul.ramp-cards {
                        @for ramp in &ramps {
                            li {
                                a href=(ramp_path(&ramp.environment, &ramp.name)) { (ramp.environment) " / " (ramp.name) }
                                " "
                                (super::ramps::state_badge(ramp.run.status.name(), ramp.run.status.reason()))
                                " "
                                (super::ramps::progress(ramp.run.percent()))
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="audit-heading" {
            h2 #audit-heading { "Latest changes" }
            div #overview-audit data-live="*" {
                @match &audit {
                    Ok(entries) if entries.is_empty() => p { "Nothing has been changed through the API yet." },
                    Ok(entries) => (super::audit::table(entries, now, &protected)),
                    Err(error) => p.alert.bad role="alert" { "The audit log cannot be read: " (error) },
                }
                p { a href="/ui/audit" { "The whole audit log" } }
            }
        }
        section aria-labelledby="drift-heading" {
            h2 #drift-heading { "Drift from the files" }
            div #drift data-live="env:*" { (drift(&state)) }
        }
    };
    Ok(html(StatusCode::OK, frame("Overview", Some(&viewer), Section::Overview, content)))
}

fn reload_cell(record: Option<crate::environment::ReloadRecord>, now: u64) -> Markup {
    html! {
        @match record {
            None => "none since start-up",
            Some(record) => {
                @match record.result {
                    ReloadResult::Applied(version) => { span.badge.good { "applied" } " version " (version) }
                    ReloadResult::Unchanged => { span.badge { "unchanged" } }
                    ReloadResult::Rejected(errors) => { span.badge.bad { "rejected" } " " (errors.len()) " problem(s)" }
                }
                " · " (words::ago(now, record.at))
            }
        }
    }
}

/// Kill-switch overrides of file-owned flags, and flags only the API has.
fn drift(state: &AppState) -> Markup {
    let mut rows = Vec::new();
    for environment in state.environments.iter() {
        let snapshot = environment.snapshot();
        for (key, state_override) in snapshot.overrides.iter() {
            let described = match snapshot.file_states.get(key) {
                Some(file_state) => format!(
                    "{} here, {} in {}",
                    state_override.state.as_str(),
                    file_state.as_str(),
                    snapshot.file_of(key).unwrap_or("its file")
                ),
                None => format!("{} override of a flag no longer in the files", state_override.state.as_str()),
            };
            rows.push((environment.name.clone(), key.clone(), described, state_override.by.clone()));
        }
    }
    html! {
        @if rows.is_empty() {
            p { "No kill-switch overrides: every file-owned flag serves as its file says." }
        } @else {
            table {
                caption.visually-hidden { "Kill-switch overrides of file-owned flags" }
                thead { tr { th scope="col" { "Environment" } th scope="col" { "Flag" } th scope="col" { "Override" } th scope="col" { "By" } } }
                tbody {
                    @for (environment, key, described, by) in &rows {
                        tr {
                            td data-label="Environment" { (environment) }
                            td data-label="Flag" { a href=(flag_path(environment, key)) { (key) } }
                            td data-label="Override" { (described) }
                            td data-label="By" { (by) }
                        }
                    }
                }
            }
        }
    }
}
