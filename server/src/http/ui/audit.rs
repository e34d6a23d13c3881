//! `GET /ui/audit`: every change, newest first, filtered and paged.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Section, frame};
use super::{encode_query, flag_path, html, viewer, words};
use crate::http::AppState;
use crate::store::{AuditEntry, AuditQuery};

/// Entries per page.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    environment: Option<String>,
    flag: Option<String>,
    actor: Option<String>,
    /// An action, or a family (`ramp.`).
    action: Option<String>,
    /// A ramp's name.
    ramp: Option<String>,
    /// A day (`YYYY-MM-DD`, UTC), from its start.
    since: Option<String>,
    /// A day (`YYYY-MM-DD`, UTC), to its end.
    until: Option<String>,
    /// Entries older than this sequence number (the next page).
    before: Option<u64>,
}

/// The actions offered in the filter (the log stores them as text).
const ACTIONS: [(&str, &str); 10] = [
    ("create", "Created"),
    ("update", "Updated"),
    ("delete", "Deleted"),
    ("disable", "Disabled (kill switch)"),
    ("enable", "Enabled"),
    ("promote", "Promoted"),
    ("ramp.", "Any ramp action"),
    ("ramp.rolled_back", "Ramp rolled back"),
    ("ramp.advanced", "Ramp advanced"),
    ("ramp.paused", "Ramp paused"),
];

/// A `YYYY-MM-DD` day's first millisecond (UTC).
fn day_start(text: &str) -> Option<u64> {
    crate::time::parse(&format!("{}T00:00:00Z", text.trim()))
}

fn given(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub(crate) async fn page(state: web::Data<AppState>, request: HttpRequest) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let filters = web::Query::<Filters>::from_query(request.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let query = AuditQuery {
        environment: given(&filters.environment),
        flag: given(&filters.flag),
        actor: given(&filters.actor),
        action: given(&filters.action),
        ramp: given(&filters.ramp),
        since: filters.since.as_deref().and_then(day_start),
        until: filters.until.as_deref().and_then(day_start).map(|day| day + 86_400_000),
        before: filters.before,
        newest_first: true,
        limit: PAGE,
        ..AuditQuery::default()
    };
    let result = state.store.audit(query.clone()).await;
    let now = state.clock.now_millis();
    let protected: Vec<&str> = state.environments.iter().filter(|e| e.protected).map(|e| e.name.as_str()).collect();
    let content = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/ui/audit" role="search" {
            div {
                label for="audit-environment" { "Environment" }
                select #audit-environment name="environment" {
                    option value="" { "All" }
                    @for environment in state.environments.iter() {
                        option value=(environment.name) selected[query.environment.as_deref() == Some(environment.name.as_str())] { (environment.name) }
                    }
                }
            }
            div {
                label for="audit-flag" { "Flag" }
                input #audit-flag type="text" name="flag" value=(query.flag.clone().unwrap_or_default());
            }
            div {
                label for="audit-actor" { "Actor" }
                input #audit-actor type="text" name="actor" value=(query.actor.clone().unwrap_or_default());
            }
            div {
                label for="audit-action" { "Action" }
                select #audit-action name="action" {
                    option value="" { "Any" }
                    @for (value, label) in ACTIONS {
                        option value=(value) selected[query.action.as_deref() == Some(value)] { (label) }
                    }
                }
            }
            div {
                label for="audit-ramp" { "Ramp" }
                input #audit-ramp type="text" name="ramp" value=(query.ramp.clone().unwrap_or_default());
            }
            div {
                label for="audit-since" { "From (UTC day)" }
                input #audit-since type="date" name="since" value=(filters.since.clone().unwrap_or_default());
            }
            div {
                label for="audit-until" { "To (UTC day)" }
                input #audit-until type="date" name="until" value=(filters.until.clone().unwrap_or_default());
            }
            button type="submit" { "Filter" }
        }
        div #audit-entries data-live="*" {
            @match &result {
                Ok(entries) if entries.is_empty() => p { "No entries." },
                Ok(entries) => {
                    (table(entries, now, &protected))
                    @if entries.len() == PAGE {
                        @if let Some(oldest) = entries.last() {
                            p { a rel="next" href=(next_page(&filters, oldest.seq)) { "Older entries" } }
                        }
                    }
                }
                Err(error) => p.alert.bad role="alert" { "The audit log cannot be read: " (error) },
            }
        }
    };
    Ok(html(StatusCode::OK, frame("Audit log", Some(&viewer), Section::Audit, content)))
}

fn next_page(filters: &Filters, before: u64) -> String {
    let mut link = format!("/ui/audit?before={before}");
    let fields = [
        ("environment", &filters.environment),
        ("flag", &filters.flag),
        ("actor", &filters.actor),
        ("action", &filters.action),
        ("ramp", &filters.ramp),
        ("since", &filters.since),
        ("until", &filters.until),
    ];
    for (name, value) in fields {
        if let Some(value) = given(value) {
            link.push_str(&format!("&{name}={}", encode_query(&value)));
        }
    }
    link
}

/// Audit entries as a table, each change in words.
pub(crate) fn table(entries: &[AuditEntry], now: u64, protected: &[&str]) -> Markup {
    html! {
        table.audit.stack {
            caption.visually-hidden { "Audit entries, newest first" }
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Environment" }
                th scope="col" { "Flag" } th scope="col" { "Action" } th scope="col" { "What changed" }
            } }
            tbody {
                @for entry in entries {
                    tr {
                        td data-label="When" {
                            time datetime=(crate::time::rfc3339(entry.at)) { (words::time(entry.at)) }
                            " " span.ago { "(" (words::ago(now, entry.at)) ")" }
                        }
                        td data-label="Who" { (entry.actor) }
                        td data-label="Environment" { (entry.environment) @if protected.contains(&entry.environment.as_str()) { " " span.badge.bad { "production" } } }
                        td data-label="Flag" { a href=(flag_path(&entry.environment, &entry.flag)) { (entry.flag) } }
                        td data-label="Action" { (entry.action) @if let Some(version) = entry.version { " (v" (version) ")" } }
                        td data-label="What changed" { (super::diff::changes(&entry.changes)) }
                    }
                }
            }
        }
    }
}
