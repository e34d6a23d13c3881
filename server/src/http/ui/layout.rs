//! The frame every page shares — header, navigation, who is signed in —
//! and the dashboard's own stylesheet and script, compiled into the binary
//! (no CDN: deployments are often air-gapped).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use maud::{DOCTYPE, Markup, html};

use super::{Viewer, html};

const STYLE: &str = include_str!("assets/ui.css");
const SCRIPT: &str = include_str!("assets/ui.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// Which part of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Flags,
    Ramps,
    Audit,
    None,
}

/// `GET /ui/assets/{name}`: the stylesheet and the script.
pub(crate) async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, kind) = match name.as_str() {
        "ui.css" => (STYLE, "text/css; charset=utf-8"),
        "ui.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return HttpResponse::NotFound().content_type("text/plain").body("no such asset"),
    };
    HttpResponse::Ok().content_type(kind).insert_header((header::CACHE_CONTROL, "no-cache")).body(body)
}

/// A whole page: `title`, the viewer's navigation, and `content`.
pub(crate) fn frame(title: &str, viewer: Option<&Viewer>, section: Section, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Rampart" }
                link rel="icon" type="image/svg+xml" href="/ui/assets/favicon.svg";
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/ui.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Rampart" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                (nav_item("/ui/", "Overview", section == Section::Overview))
                                (nav_item("/ui/flags", "Flags", section == Section::Flags))
                                (nav_item("/ui/ramps", "Ramps", section == Section::Ramps))
                                (nav_item("/ui/audit", "Audit log", section == Section::Audit))
                            }
                        }
                        button.link #time-zone type="button" hidden aria-pressed="false" { "Times: UTC" }
                        div.who {
                            span { "Signed in as " strong { (viewer.caller.name) } " (" (viewer.caller.role.as_str()) ")" }
                            @if viewer.signed_in {
                                form method="post" action="/ui/sign-out" {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main data-section=(section_name(section)) {
                    @match viewer.and_then(|v| v.notice.as_deref()) {
                        Some(message) => p #notice .notice role="status" data-message=(message) { (message) },
                        None => p #notice .notice role="status" {},
                    }
                    (content)
                }
            }
        }
    }
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Overview => "overview",
        Section::Flags => "flags",
        Section::Ramps => "ramps",
        Section::Audit => "audit",
        Section::None => "none",
    }
}

fn nav_item(href: &str, label: &str, current: bool) -> Markup {
    html! {
        li {
            @if current { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
        }
    }
}

/// A page that only says something (errors, refusals).
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    html(
        status,
        frame(
            title,
            None,
            Section::None,
            html! {
                h1 { (title) }
                p.message role="alert" { (message) }
                p { a href="/ui/" { "Back to the overview" } }
            },
        ),
    )
}

/// The reason field every change asks for (kept in the audit entry).
pub(crate) fn reason_field(id: &str) -> Markup {
    reason_field_with(id, "")
}

/// The reason field with what the operator typed (a refused form keeps it).
pub(crate) fn reason_field_with(id: &str, value: &str) -> Markup {
    html! {
        label for=(id) { "Reason (optional, kept in the audit log)" }
        input id=(id) type="text" name="reason" maxlength="500" autocomplete="off" value=(value);
    }
}

/// A state-changing form's hidden CSRF token.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}
