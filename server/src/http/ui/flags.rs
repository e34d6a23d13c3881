//! `GET /ui/environments/{environment}/flags`: the flags of one
//! environment, searchable and filterable, with the kill switch.

use std::collections::BTreeMap;

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
    /// Part of the key, description, owner or a tag.
    q: Option<String>,
    /// `ENABLED` or `DISABLED`.
    state: Option<String>,
    /// `file` or `api`.
    source: Option<String>,
    /// One tag (flag metadata `tags`).
    tag: Option<String>,
    /// The column to sort by.
    sort: Option<String>,
}

/// What the list knows beside the snapshot: the ramps of the environment
/// (by flag) and whether it is production.
#[derive(Debug, Default)]
pub(crate) struct Context {
    pub(crate) protected: bool,
    /// Flag key → (ramp name, exposure in percent) of active ramps.
    pub(crate) ramps: BTreeMap<String, (String, f64)>,
}

/// What people write about a flag in its metadata (flagd's `metadata`:
/// `owner`, `description`, `tags` as a list or a comma-separated text).
pub(crate) struct About {
    pub(crate) owner: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
}

impl About {
    pub(crate) fn of(flag: &rampart_engine::Flag) -> About {
        let metadata = flag.metadata();
        let text = |name: &str| metadata.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let tags = match metadata.get("tags") {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|t| t.as_str()).map(str::to_owned).collect()
            }
            Some(serde_json::Value::String(list)) => {
                list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        About { owner: text("owner"), description: text("description"), tags }
    }

    fn matches(&self, key: &str, needle: &str) -> bool {
        needle.is_empty()
            || key.to_lowercase().contains(needle)
            || self.owner.as_deref().is_some_and(|o| o.to_lowercase().contains(needle))
            || self.description.as_deref().is_some_and(|d| d.to_lowercase().contains(needle))
            || self.tags.iter().any(|t| t.to_lowercase() == needle)
    }
}

/// The columns the list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Key,
    Owner,
    State,
    Changed,
}

impl Sort {
    fn parse(text: Option<&str>) -> Sort {
        match text {
            Some("owner") => Sort::Owner,
            Some("state") => Sort::State,
            Some("changed") => Sort::Changed,
            _ => Sort::Key,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Sort::Key => "key",
            Sort::Owner => "owner",
            Sort::State => "state",
            Sort::Changed => "changed",
        }
    }
}

/// Most distinct tags offered in the filter.
const TAGS_OFFERED: usize = 200;

/// `GET /ui/flags`: the flags of the first environment (the navigation's
/// "Flags"; that page links the others).
pub(crate) async fn first_environment(state: web::Data<AppState>, request: HttpRequest) -> super::Page {
    viewer(&state, &request)?;
    Ok(match state.environments.iter().next() {
        Some(first) => super::see_other(&format!("/ui/environments/{}/flags", super::encode_query(&first.name))),
        None => super::layout::message_page(StatusCode::NOT_FOUND, "No environments", "No environment is configured."),
    })
}

pub(crate) async fn page(state: web::Data<AppState>, request: HttpRequest, path: web::Path<String>) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let environment = environment(&state, &path)?;
    let filters = web::Query::<Filters>::from_query(request.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let names: Vec<&str> = state.environments.iter().map(|e| e.name.as_str()).collect();
    let snapshot = environment.snapshot();
    let mut context = Context { protected: environment.protected, ramps: BTreeMap::new() };
    for entry in state.ramps.entries().into_iter().filter(|e| e.environment == environment.name) {
        let view = state.ramps.glance(&entry).await;
        if view.run.is_active() {
            context.ramps.insert(view.run.flag.clone(), (view.name.clone(), view.run.percent()));
        }
    }
    let markup = render(&names, &environment.name, &snapshot, &filters, &viewer, state.clock.now_millis(), &context);
    Ok(html(StatusCode::OK, markup))
}

/// The last change of a flag through the API or the kill switch.
fn changed<'s>(snapshot: &'s Snapshot, key: &str) -> Option<(u64, &'s str)> {
    let state_override = snapshot.file_states.contains_key(key).then(|| snapshot.overrides.get(key)).flatten();
    snapshot.api.get(key).map(|r| (r.at, r.by.as_str())).or_else(|| state_override.map(|o| (o.at, o.by.as_str())))
}

/// The whole page (also what the render benchmark measures).
pub(crate) fn render(
    environments: &[&str],
    name: &str,
    snapshot: &Snapshot,
    filters: &Filters,
    viewer: &Viewer,
    now: u64,
    context: &Context,
) -> maud::Markup {
    let needle = filters.q.as_deref().map(str::trim).unwrap_or("").to_lowercase();
    let wanted_state = filters.state.as_deref().and_then(FlagState::parse);
    let wanted_source = filters.source.as_deref().filter(|s| matches!(*s, "file" | "api"));
    let wanted_tag = filters.tag.as_deref().filter(|t| !t.is_empty());
    let sort = Sort::parse(filters.sort.as_deref());
    let mut tags = std::collections::BTreeSet::new();
    let mut rows: Vec<(&rampart_engine::Flag, About)> = Vec::new();
    for flag in snapshot.flags.iter() {
        let about = About::of(flag);
        if tags.len() < TAGS_OFFERED {
            tags.extend(about.tags.iter().cloned());
        }
        let key = flag.key();
        let keep = about.matches(key, &needle)
            && wanted_state.is_none_or(|s| flag.state() == s)
            && wanted_source.is_none_or(|s| (s == "api") == snapshot.api.contains_key(key))
            && wanted_tag.is_none_or(|t| about.tags.iter().any(|tag| tag == t));
        if keep {
            rows.push((flag, about));
        }
    }
    match sort {
        Sort::Key => {}
        Sort::Owner => rows.sort_by(|a, b| (a.1.owner.is_none(), &a.1.owner).cmp(&(b.1.owner.is_none(), &b.1.owner))),
        Sort::State => rows.sort_by_key(|(flag, _)| flag.state() != FlagState::Disabled),
        Sort::Changed => rows.sort_by_key(|(flag, _)| std::cmp::Reverse(changed(snapshot, flag.key()).map(|c| c.0))),
    }
    let sorted_by = |column: Sort, label: &str| {
        let mut query = filters_query(filters);
        query.push(("sort", column.as_str().to_owned()));
        let href = format!("?{}", serde_urlencoded::to_string(&query).unwrap_or_default());
        html! {
            @if sort == column {
                th scope="col" aria-sort=(if column == Sort::Changed { "descending" } else { "ascending" }) { a href=(href) { (label) } }
            } @else {
                th scope="col" { a href=(href) { (label) } }
            }
        }
    };
    let content = html! {
        (super::protected::banner_if(context.protected, name))
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
                label for="flag-search" { "Key, description or owner" }
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
            @if !tags.is_empty() {
                div {
                    label for="flag-tag" { "Tag" }
                    select #flag-tag name="tag" {
                        option value="" { "Any" }
                        @for tag in &tags { option value=(tag) selected[wanted_tag == Some(tag.as_str())] { (tag) } }
                    }
                }
            }
            input type="hidden" name="sort" value=(sort.as_str());
            button type="submit" { "Filter" }
        }
        p.actions {
            @if viewer.may(Action::WriteFlag) {
                a.button href={ "/ui/environments/" (encode_query(name)) "/new-flag" } { "New flag" }
            }
            a href={ "/ui/environments/" (encode_query(name)) "/ready-to-remove" } { "Flags ready to remove" }
        }
        div #flag-table data-live=(super::scope_of_environment(name)) {
            p.count { (rows.len()) " of " (snapshot.flags.len()) " flags" }
            table.flags.stack {
                caption.visually-hidden { "Flags in " (name) }
                thead { tr {
                    (sorted_by(Sort::Key, "Key")) th scope="col" { "Description" } (sorted_by(Sort::Owner, "Owner"))
                    (sorted_by(Sort::State, "State")) th scope="col" { "Ramp" }
                    th scope="col" { "Source" } th scope="col" { "Default" } (sorted_by(Sort::Changed, "Last change"))
                    @if viewer.may(Action::WriteFlag) { th scope="col" { "Kill switch" } }
                } }
                tbody {
                    @for (flag, about) in &rows { (row(snapshot, name, flag, about, viewer, now, context)) }
                }
            }
        }
    };
    frame(&format!("Flags in {name}"), Some(viewer), Section::Flags, content)
}

/// The filters as query pairs (the sort links keep them).
fn filters_query(filters: &Filters) -> Vec<(&'static str, String)> {
    [("q", &filters.q), ("state", &filters.state), ("source", &filters.source), ("tag", &filters.tag)]
        .into_iter()
        .filter_map(|(name, value)| value.clone().filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect()
}

fn row(
    snapshot: &Snapshot,
    environment: &str,
    flag: &rampart_engine::Flag,
    about: &About,
    viewer: &Viewer,
    now: u64,
    context: &Context,
) -> Markup {
    let key = flag.key();
    let api = snapshot.api.get(key);
    let state_override = snapshot.file_states.contains_key(key).then(|| snapshot.overrides.get(key)).flatten();
    html! {
        tr {
            th scope="row" { a href=(flag_path(environment, key)) { (key) } " " span.type { (flag.value_type().as_str()) } }
            td data-label="Description" { (about.description.as_deref().unwrap_or("—"))
                @for tag in &about.tags { " " span.badge.tag { (tag) } } }
            td data-label="Owner" { (about.owner.as_deref().unwrap_or("—")) }
            td data-label="State" {
                (state_badge(flag.state()))
                @if state_override.is_some() { " " span.badge.warn title="A kill-switch override differs from the file" { "override" } }
                @if let Some(problem) = flag.problem() { " " span.badge.bad title=(problem) { "invalid" } }
            }
            td data-label="Ramp" {
                @match context.ramps.get(key) {
                    Some((ramp, percent)) => {
                        a href=(super::ramp_path(environment, ramp)) { (ramp) } " at " (words::percent(*percent))
                    }
                    None => "—",
                }
            }
            td data-label="Source" {
                @match (api, snapshot.file_of(key)) {
                    (Some(record), _) => { "API v" (record.version) }
                    (None, Some(file)) => code.path { (file) },
                    (None, None) => "—",
                }
            }
            td data-label="Default" { @match flag.default_variant() { Some(variant) => code { (variant) }, None => "code default" } }
            td data-label="Last change" { @match changed(snapshot, key) { Some((at, by)) => { (words::ago(now, at)) " by " (by) }, None => "—" } }
            @if viewer.may(Action::WriteFlag) {
                td data-label="Kill switch" { (kill_switch(viewer, (environment, context.protected), key, flag.state(), "list")) }
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
pub(crate) fn kill_switch(
    viewer: &Viewer,
    (environment, protected): (&str, bool),
    key: &str,
    current: FlagState,
    back: &str,
) -> Markup {
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
            (super::protected::typed_field(protected, key))
            button type="submit" class=(if wanted == "DISABLED" { "danger" } else { "" }) aria-label={ (label) " " (key) } { (label) }
        }
    }
}
