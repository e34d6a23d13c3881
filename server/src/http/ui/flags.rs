//! `GET /ui/environments/{environment}/flags`: the flags of one
//! environment, searchable and filterable, with the kill switch.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use rampart_engine::FlagState;
use serde::Deserialize;

use super::layout::{Section, csrf_field, frame};
use super::{Viewer, encode_query, environment, flag_path, html, viewer, words};
use crate::http::AppState;
use crate::http::policy::Action;
use crate::snapshot::Snapshot;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// Part of the key.
    q: Option<String>,
    /// `ENABLED` or `DISABLED`.
    state: Option<String>,
    /// `file` or `api`.
    source: Option<String>,
}

pub(crate) async fn page(state: web::Data<AppState>, request: HttpRequest, path: web::Path<String>) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let environment = environment(&state, &path)?;
    let filters = web::Query::<Filters>::from_query(request.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let names: Vec<&str> = state.environments.iter().map(|e| e.name.as_str()).collect();
    let snapshot = environment.snapshot();
    let markup = render(&names, &environment.name, &snapshot, &filters, &viewer, state.clock.now_millis());
    Ok(html(StatusCode::OK, markup))
}

/// The whole page (also what the render benchmark measures).
pub(crate) fn render(
    environments: &[&str],
    name: &str,
    snapshot: &Snapshot,
    filters: &Filters,
    viewer: &Viewer,
    now: u64,
) -> maud::Markup {
    let needle = filters.q.as_deref().map(str::trim).unwrap_or("").to_lowercase();
    let wanted_state = filters.state.as_deref().and_then(FlagState::parse);
    let wanted_source = filters.source.as_deref().filter(|s| matches!(*s, "file" | "api"));
    let keys: Vec<&str> = snapshot
        .flags
        .iter()
        .map(|flag| flag.key())
        .filter(|key| needle.is_empty() || key.to_lowercase().contains(&needle))
        .filter(|key| wanted_state.is_none_or(|s| snapshot.flags.get(key).is_some_and(|f| f.state() == s)))
        .filter(|key| wanted_source.is_none_or(|s| (s == "api") == snapshot.api.contains_key(*key)))
        .collect();
    let content = html! {
        h1 { "Flags in " (name) }
        nav.environments aria-label="Environments" {
            ul {
                @for other in environments {
                    li {
                        @if *other == name {
                            a aria-current="page" href={ "/ui/environments/" (encode_query(other)) "/flags" } { (other) }
                        } @else {
                            a href={ "/ui/environments/" (encode_query(other)) "/flags" } { (other) }
                        }
                    }
                }
            }
        }
        form.filters method="get" role="search" {
            div {
                label for="flag-search" { "Key contains" }
                input #flag-search type="search" name="q" value=(filters.q.clone().unwrap_or_default());
            }
            div {
                label for="flag-state" { "State" }
                select #flag-state name="state" {
                    option value="" { "Any" }
                    option value="ENABLED" selected[wanted_state == Some(FlagState::Enabled)] { "Enabled" }
                    option value="DISABLED" selected[wanted_state == Some(FlagState::Disabled)] { "Disabled" }
                }
            }
            div {
                label for="flag-source" { "Source" }
                select #flag-source name="source" {
                    option value="" { "Any" }
                    option value="file" selected[wanted_source == Some("file")] { "File" }
                    option value="api" selected[wanted_source == Some("api")] { "API" }
                }
            }
            button type="submit" { "Filter" }
        }
        @if viewer.may(Action::WriteFlag) {
            p { a.button href={ "/ui/environments/" (encode_query(name)) "/new-flag" } { "New flag" } }
        }
        div #flag-table data-live=(super::scope_of_environment(name)) {
            p.count { (keys.len()) " of " (snapshot.flags.len()) " flags" }
            table.flags {
                caption.visually-hidden { "Flags in " (name) }
                thead { tr {
                    th scope="col" { "Key" } th scope="col" { "Type" } th scope="col" { "State" }
                    th scope="col" { "Source" } th scope="col" { "Default variant" } th scope="col" { "Last change" }
                    @if viewer.may(Action::WriteFlag) { th scope="col" { "Kill switch" } }
                } }
                tbody {
                    @for key in &keys { (row(snapshot, name, key, viewer, now)) }
                }
            }
        }
    };
    frame(&format!("Flags in {name}"), Some(viewer), Section::Flags, content)
}

fn row(snapshot: &Snapshot, environment: &str, key: &str, viewer: &Viewer, now: u64) -> Markup {
    let Some(flag) = snapshot.flags.get(key) else { return html! {} };
    let api = snapshot.api.get(key);
    let state_override = snapshot.file_states.contains_key(key).then(|| snapshot.overrides.get(key)).flatten();
    let changed = api.map(|r| (r.at, r.by.as_str())).or_else(|| state_override.map(|o| (o.at, o.by.as_str())));
    html! {
        tr {
            th scope="row" { a href=(flag_path(environment, key)) { (key) } }
            td { (flag.value_type().as_str()) }
            td {
                (state_badge(flag.state()))
                @if state_override.is_some() { " " span.badge.warn title="A kill-switch override differs from the file" { "override" } }
                @if let Some(problem) = flag.problem() { " " span.badge.bad title=(problem) { "invalid" } }
            }
            td {
                @match (api, snapshot.file_of(key)) {
                    (Some(record), _) => { "API v" (record.version) }
                    (None, Some(file)) => code.path { (file) },
                    (None, None) => "—",
                }
            }
            td { @match flag.default_variant() { Some(variant) => code { (variant) }, None => "code default" } }
            td { @match changed { Some((at, by)) => { (words::ago(now, at)) " by " (by) }, None => "—" } }
            @if viewer.may(Action::WriteFlag) {
                td { (kill_switch(viewer, environment, key, flag.state(), "list")) }
            }
        }
    }
}

/// A flag state with words and colour.
pub(crate) fn state_badge(state: FlagState) -> Markup {
    html! {
        @match state {
            FlagState::Enabled => span.badge.good { "enabled" },
            FlagState::Disabled => span.badge.off { "disabled" },
        }
    }
}

/// The kill switch: one button that flips the state, after confirmation
/// (and an optional reason) in the dashboard's dialog.
pub(crate) fn kill_switch(viewer: &Viewer, environment: &str, key: &str, current: FlagState, back: &str) -> Markup {
    let (wanted, label) = match current {
        FlagState::Enabled => ("DISABLED", "Disable"),
        FlagState::Disabled => ("ENABLED", "Enable"),
    };
    let question =
        format!("{label} '{key}' in {environment}? Every application evaluating it sees the change at once.");
    html! {
        form.inline method="post" action={ (flag_path(environment, key)) "/state" } data-confirm=(question) {
            (csrf_field(viewer))
            input type="hidden" name="state" value=(wanted);
            input type="hidden" name="back" value=(back);
            input type="hidden" name="reason" value="";
            button type="submit" class=(if wanted == "DISABLED" { "danger" } else { "" }) aria-label={ (label) " " (key) } { (label) }
        }
    }
}
