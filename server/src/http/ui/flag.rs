//! `GET /ui/environments/{environment}/flags/{key}`: one flag — variants,
//! targeting in words and as JSON, the evaluation console, history with
//! revert, promotion, and the kill switch.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::flags::{kill_switch, state_badge};
use super::layout::{Section, csrf_field, frame};
use super::{Viewer, environment, flag_path, html, viewer, words};
use crate::environment::Environment;
use crate::http::AppState;
use crate::http::policy::Action;
use crate::store::{AuditQuery, FlagVersion};

/// Versions offered for revert, newest first.
const VERSIONS_SHOWN: u64 = 20;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConsoleQuery {
    /// The evaluation context, as JSON.
    context: Option<String>,
}

pub(crate) async fn page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let snapshot = environment.snapshot();
    let Some(flag) = snapshot.flags.get(&key) else {
        return Ok(super::layout::message_page(
            StatusCode::NOT_FOUND,
            "No such flag",
            &format!("There is no flag '{key}' in environment '{name}'."),
        ));
    };
    let query =
        web::Query::<ConsoleQuery>::from_query(request.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let console = query.context.as_deref().map(|context| console_answer(&state, environment, &key, context));
    let api = snapshot.api.get(&key).cloned();
    let versions = match &api {
        Some(record) => {
            state
                .store
                .history(&name, &key, record.version.saturating_sub(VERSIONS_SHOWN), VERSIONS_SHOWN as usize)
                .await
        }
        None => Ok(Vec::new()),
    };
    let changes = state
        .store
        .audit(AuditQuery {
            environment: Some(name.clone()),
            flag: Some(key.clone()),
            newest_first: true,
            limit: 20,
            ..AuditQuery::default()
        })
        .await;
    let now = state.clock.now_millis();
    let usage = crate::services::usage::read(&state, environment, Some(&key)).await;
    let definition = flag.definition();
    // The ramp that drives this flag's exposure, if one runs.
    let mut ramped_by = None;
    for entry in state.ramps.entries().into_iter().filter(|e| e.environment == name) {
        let view = state.ramps.glance(&entry).await;
        if view.run.flag == key && view.run.is_active() {
            ramped_by = Some(view);
        }
    }
    let content = html! {
        p.crumbs { a href={ "/ui/environments/" (super::encode_query(&name)) "/flags" } { "Flags in " (name) } }
        (super::protected::banner(environment))
        h1 { (key) }
        div #flag-state data-live=(super::scope_of_environment(&name)) {
            @let current = environment.snapshot();
            @if let Some(flag) = current.flags.get(&key) {
                p.facts {
                    (state_badge(flag.state()))
                    " · " (flag.value_type().as_str())
                    " · "
                    @match (current.api.get(&key), current.file_of(&key)) {
                        (Some(record), _) => { "created through the API, version " (record.version) " by " (record.by) }
                        (None, Some(file)) => { "defined in " code.path { (file) } " (read-only here: change its rules in the file)" }
                        (None, None) => "—",
                    }
                    @if current.file_states.contains_key(&key) {
                        " · " span.badge.warn { "kill-switch override" }
                    }
                }
                @if let Some(ramp) = &ramped_by {
                    p {
                        "Ramped by " a href={ "/ui/ramps/" (super::encode_query(&name)) "/" (super::encode_query(&ramp.name)) } { (ramp.name) }
                        " at " (super::words::percent(ramp.run.percent()))
                        @if flag.state() != rampart_engine::FlagState::Enabled {
                            " — paused while the flag is off (kill switch): nobody is exposed"
                        }
                    }
                }
                @if let Some(problem) = flag.problem() {
                    p.alert.bad role="alert" { "This flag cannot be evaluated (it answers PARSE_ERROR): " (problem) }
                }
                @if viewer.may(Action::WriteFlag) {
                    div.actions {
                        (kill_switch(&viewer, (&name, environment.protected), &key, flag.state(), "flag"))
                        @if current.api.contains_key(&key) {
                            a.button href={ (flag_path(&name, &key)) "/edit" } { "Edit" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="variants-heading" {
            h2 #variants-heading { "Variants" }
            table {
                caption.visually-hidden { "Variants of " (key) }
                thead { tr { th scope="col" { "Variant" } th scope="col" { "Value" } } }
                tbody {
                    @for (variant, value) in flag.variants() {
                        tr {
                            th scope="row" { code { (variant) }
                                @if flag.default_variant() == Some(variant) { " " span.badge { "default" } } }
                            td data-label="Value" { code { (value.to_string()) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="targeting-heading" {
            h2 #targeting-heading { "Targeting" }
            @match definition.get("targeting").filter(|t| !t.is_null() && t.as_object().is_none_or(|o| !o.is_empty())) {
                Some(rule) if ramped_by.is_some() => {
                    @if let Some(ramp) = &ramped_by {
                        p #ramped-targeting {
                            "Ramped by " a href=(super::ramp_path(&name, &ramp.name)) { (ramp.name) }
                            " at " (words::percent(ramp.run.percent())) ": that share of targeting keys get "
                            code { (ramp.run.treatment) } ", the others " code { (ramp.run.control) }
                            " (sticky per key). The ramp sets the split; its file says how it moves."
                        }
                    }
                    details {
                        summary { "The rule as compiled for the ramp" }
                        (super::targeting::readable(rule))
                        pre tabindex="0" { code { (serde_json::to_string_pretty(rule).unwrap_or_default()) } }
                    }
                }
                Some(rule) => {
                    (super::targeting::readable(rule))
                    details {
                        summary { "As JSON" }
                        pre tabindex="0" { code { (serde_json::to_string_pretty(rule).unwrap_or_default()) } }
                    }
                }
                None => p { "No targeting: everyone gets the default variant." },
            }
            details {
                summary { "The whole definition (flagd format)" }
                pre tabindex="0" { code { (serde_json::to_string_pretty(&definition).unwrap_or_default()) } }
            }
        }
        section aria-labelledby="usage-heading" {
            h2 #usage-heading { "Usage" }
            @match &usage {
                Ok(read) => (super::usage::section(&crate::services::usage::Summary::of(&key, read.get(&key), now))),
                Err(error) => p.alert.bad role="alert" { "Usage cannot be read: " (error) },
            }
        }
        section aria-labelledby="console-heading" {
            h2 #console-heading { "Evaluation console" }
            p { "Enter a context; the answer is exactly what OFREP answers an application for it." }
            form method="get" action=(flag_path(&name, &key)) {
                label for="console-context" { "Context (JSON object)" }
                textarea #console-context name="context" rows="5" spellcheck="false" {
                    (query.context.clone().unwrap_or_else(|| "{\"targetingKey\": \"user-1\"}".into()))
                }
                button type="submit" { "Evaluate" }
            }
            @if let Some(answer) = &console { (answer) }
        }
        section aria-labelledby="history-heading" {
            h2 #history-heading { "History" }
            div #flag-history data-live=(super::scope_of_environment(&name)) {
                @match &changes {
                    Ok(entries) if entries.is_empty() => p { "No changes through the API or the kill switch." },
                    Ok(entries) => (super::audit::table(entries, now, &[])),
                    Err(error) => p.alert.bad role="alert" { "The history cannot be read: " (error) },
                }
            }
            @if let (Some(record), Ok(versions)) = (&api, &versions) {
                @if versions.len() > 1 {
                    h3 { "Versions" }
                    (version_list(&viewer, (&name, environment.protected), &key, record.version, versions))
                }
            }
        }
        @if api.is_some() && viewer.may(Action::PromoteFlag) && state.environments.iter().count() > 1 {
            section aria-labelledby="promote-heading" {
                h2 #promote-heading { "Promote" }
                p { "Copy this flag into another environment. You see the difference first." }
                form method="post" action={ (flag_path(&name, &key)) "/promote" } {
                    (csrf_field(&viewer))
                    label for="promote-to" { "To environment" }
                    select #promote-to name="to" {
                        @for other in state.environments.iter().filter(|e| e.name != name) {
                            option value=(other.name) { (other.name) }
                        }
                    }
                    button type="submit" { "Show the difference" }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, frame(&key, Some(&viewer), Section::Flags, content)))
}

/// Each stored version, newest first, with what it changed (against the
/// version before) and, for earlier ones, what reverting to it changes.
fn version_list(
    viewer: &Viewer,
    (environment, protected): (&str, bool),
    key: &str,
    current: u64,
    versions: &[FlagVersion],
) -> Markup {
    let text = |version: &FlagVersion| super::diff::text(version.definition.as_ref());
    let current_text = versions.iter().find(|v| v.version == current).map(text).unwrap_or_default();
    html! {
        ul.versions {
            @for (index, version) in versions.iter().enumerate().rev() {
                li {
                    strong { "v" (version.version) } @if version.version == current { " (current)" }
                    " — " (version.action) " by " (version.by) ", "
                    time datetime=(crate::time::rfc3339(version.at)) { (words::time(version.at)) } ": "
                    (version.changes.join("; "))
                    @if let Some(before) = index.checked_sub(1).and_then(|i| versions.get(i)) {
                        details {
                            summary { "What v" (version.version) " changed" }
                            (super::diff::render(&format!("diff-v{}", version.version), &text(before), &text(version)))
                        }
                    }
                    @if version.version != current && version.definition.is_some() && viewer.may(Action::RevertFlag) {
                        details {
                            summary { "What reverting to v" (version.version) " changes" }
                            (super::diff::render(&format!("revert-diff-v{}", version.version), &current_text, &text(version)))
                        }
                        form.inline method="post" action={ (flag_path(environment, key)) "/revert" }
                            data-confirm={ "Revert '" (key) "' in " (environment) " to version " (version.version) "?" } {
                            (csrf_field(viewer))
                            input type="hidden" name="version" value=(version.version);
                            input type="hidden" name="reason" value="";
                            (super::protected::typed_field(protected, key))
                            button type="submit" { "Revert to v" (version.version) }
                        }
                    }
                }
            }
        }
    }
}

/// The console's answer: value, variant and reason, and OFREP's JSON.
fn console_answer(state: &AppState, environment: &Environment, key: &str, context: &str) -> Markup {
    let context: serde_json::Value = match serde_json::from_str(context) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(_) => return console_error("The context must be a JSON object, e.g. {\"targetingKey\": \"user-1\"}."),
        Err(error) => return console_error(&format!("The context is not valid JSON: {error}")),
    };
    let body = serde_json::json!({ "context": context }).to_string();
    let (status, answer) = crate::http::ofrep::answer(state, environment, key, body.as_bytes(), None);
    let parsed: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let text = |name: &str| parsed.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    html! {
        div #console-result role="status" {
            @if status.is_success() {
                dl.answer {
                    dt { "Value" } dd #console-value { code { (parsed.get("value").map(ToString::to_string).unwrap_or_default()) } }
                    dt { "Variant" } dd #console-variant { (text("variant").unwrap_or_else(|| "—".into())) }
                    dt { "Reason" } dd #console-reason { (text("reason").unwrap_or_default()) }
                }
            } @else {
                p.alert.bad { (text("errorCode").unwrap_or_default()) ": " (text("errorDetails").unwrap_or_default()) }
            }
            p { "OFREP answers " (status.as_u16()) ":" }
            pre tabindex="0" { code #console-json { (String::from_utf8_lossy(&answer)) } }
        }
    }
}

fn console_error(message: &str) -> Markup {
    html! { div #console-result role="status" { p.alert.bad { (message) } } }
}
