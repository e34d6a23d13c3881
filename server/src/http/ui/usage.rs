//! Flag usage on the dashboard: a flag's evaluations per variant over the
//! last day and thirty days, and the page of flags ready to remove
//! (`GET /ui/environments/{environment}/ready-to-remove`).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Section, frame};
use super::{environment, flag_path, html, ramp_path, viewer, words};
use crate::http::AppState;
use crate::services::usage::{self, Removable, Summary};

/// The usage section of a flag's page.
pub(crate) fn section(summary: &Summary) -> Markup {
    let sources = [("evaluated", "Evaluated by the server"), ("bulk", "Fetched in bulk"), ("sdk", "Reported by SDKs")];
    let mut variants: Vec<&String> =
        summary.last_30d.values().chain(summary.last_24h.values()).flat_map(BTreeMap::keys).collect();
    variants.sort();
    variants.dedup();
    html! {
        div #flag-usage {
            p {
                "Last evaluated: "
                @match &summary.last_evaluated {
                    Some(at) => time datetime=(at) { (crate::time::parse(at).map(words::time).unwrap_or_else(|| at.clone())) },
                    None => "never, since usage is counted",
                }
            }
            @if !variants.is_empty() {
                table.usage {
                    caption.visually-hidden { "Evaluations per variant" }
                    thead { tr {
                        th scope="col" { "Variant" } th scope="col" { "Source" }
                        th scope="col" { "Last 24 hours" } th scope="col" { "Last 30 days" }
                    } }
                    tbody {
                        @for variant in &variants {
                            @for (source, label) in sources {
                                @let day = summary.last_24h.get(source).and_then(|v| v.get(*variant)).copied().unwrap_or(0);
                                @let month = summary.last_30d.get(source).and_then(|v| v.get(*variant)).copied().unwrap_or(0);
                                @if day + month > 0 {
                                    tr {
                                        th scope="row" { code { (variant) } }
                                        td data-label="Source" { (label) }
                                        td data-label="Last 24 hours" data-usage=(format!("{source}:{variant}:24h")) { (day) }
                                        td data-label="Last 30 days" { (month) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.help { "Counted by every replica and flushed once a minute; SDKs that evaluate in process report theirs. Also "
                code { "GET /admin/v1/environments/…/flags/…/usage" } "." }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DaysQuery {
    days: Option<u64>,
}

/// `GET /ui/environments/{environment}/ready-to-remove`.
pub(crate) async fn ready_to_remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> super::Page {
    let viewer = viewer(&state, &request)?;
    let environment = environment(&state, &path)?;
    let days = web::Query::<DaysQuery>::from_query(request.query_string())
        .ok()
        .and_then(|q| q.days)
        .unwrap_or(usage::MAX_DAYS)
        .clamp(1, usage::MAX_DAYS);
    let candidates = usage::ready_to_remove(&state, environment, days).await;
    let name = &environment.name;
    let content = html! {
        p.crumbs { a href={ "/ui/environments/" (super::encode_query(name)) "/flags" } { "Flags in " (name) } }
        (super::protected::banner(environment))
        h1 { "Ready to remove in " (name) }
        form.filters method="get" {
            div {
                label for="removable-days" { "For at least" }
                select #removable-days name="days" {
                    @for choice in [7u64, 14, 30] { option value=(choice) selected[choice == days] { (choice) " days" } }
                }
            }
            button type="submit" { "Show" }
        }
        div #removable data-live=(super::scope_of_environment(name)) {
            @match &candidates {
                Err(error) => p.alert.bad role="alert" { "Usage cannot be read: " (error) },
                Ok(list) if list.is_empty() => p { "No flag looks ready to remove." },
                Ok(list) => {
                    p.count { (list.len()) " flags" }
                    ul.removable {
                        @for candidate in list {
                            li {
                                a href=(flag_path(name, &candidate.flag)) { (candidate.flag) } " — "
                                @match &candidate.reason {
                                    Removable::SingleVariant { variant } => {
                                        "served " code { (variant) } " to everyone for " (days) " days: make it the code's value and delete the flag"
                                    }
                                    Removable::NotEvaluated { last: Some(at) } => {
                                        "not evaluated for " (days) " days (last " time datetime=(crate::time::rfc3339(*at)) { (words::time(*at)) } ")"
                                    }
                                    Removable::NotEvaluated { last: None } => { "no evaluation counted yet" }
                                    Removable::RampCompleted { ramp } => {
                                        "its ramp " a href=(ramp_path(name, ramp)) { (ramp) }
                                        " completed: make the treatment the default variant and remove the ramp file"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, frame(&format!("Ready to remove in {name}"), Some(&viewer), Section::Flags, content)))
}
