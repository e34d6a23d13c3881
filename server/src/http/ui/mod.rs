//! The dashboard, `/ui/…` on the operator listener: server-rendered HTML
//! (maud) over the same services the admin API uses, with one small script
//! of our own for confirmations and live updates.
//!
//! Who may do what is decided exactly as in the admin API: the admin token
//! signed in with names the actor and carries the role; `--admin-insecure-local`
//! opens it without sign-in. Every state-changing form carries the
//! session's CSRF token, and every response carries a strict
//! Content-Security-Policy (scripts and styles only from `/ui/assets/`).

mod audit;
pub mod bench;
mod charts;
mod diff;
mod events;
mod flag;
mod flag_forms;
mod flags;
mod layout;
mod notice;
mod overview;
mod protected;
mod ramp;
mod ramp_charts;
mod ramp_settings;
mod ramps;
pub(crate) mod session;
mod sign_in;
mod sign_in_limit;
mod targeting;
mod usage;
mod words;

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::Markup;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::{AdminAccess, Caller};
use crate::config::Role;
use crate::http::policy::Action;
use session::Sessions;

/// The session cookie's name.
const COOKIE: &str = "rampart_session";
/// Largest form body (a flag definition form is the biggest).
const MAX_FORM_BYTES: usize = 2 << 20;

/// What the dashboard keeps beside the shared state.
#[derive(Debug)]
pub(crate) struct Dashboard {
    pub(crate) sessions: Sessions,
    /// Failed sign-ins, limited per client address and overall.
    pub(crate) sign_in_limit: sign_in_limit::SignInLimit,
    /// Set the cookie's `Secure` attribute (the dashboard is reached over HTTPS).
    secure_cookie: bool,
    /// The CSRF token of forms when no sign-in is needed (`--admin-insecure-local`).
    local_csrf: String,
}

impl Dashboard {
    /// `None` when the system's random source fails: the server must not
    /// start with a guessable CSRF token (it used to fall back to a fixed one).
    pub(crate) fn new(clock: crate::time::Clock, secure_cookie: bool) -> Option<Dashboard> {
        Some(Dashboard {
            sessions: Sessions::new(clock),
            sign_in_limit: sign_in_limit::SignInLimit::default(),
            secure_cookie,
            local_csrf: session::random_token()?,
        })
    }
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let headers = DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    config.route("/ui", web::get().to(|| async { see_other("/ui/") })).service(
        web::scope("/ui")
            .wrap(headers)
            .wrap(actix_web::middleware::from_fn(clear_notice))
            .route("/", web::get().to(overview::page))
            .route("/assets/{name}", web::get().to(layout::asset))
            .route("/sign-in", web::get().to(sign_in::form))
            .route("/sign-in", web::post().to(sign_in::submit))
            .route("/sign-out", web::post().to(sign_in::sign_out))
            .route("/events", web::get().to(events::stream))
            .route("/audit", web::get().to(audit::page))
            .route("/ramps", web::get().to(ramps::page))
            .route("/flags", web::get().to(flags::first_environment))
            .route("/ramps/{environment}/{name}", web::get().to(ramp::page))
            .route("/ramps/{environment}/{name}/{action}", web::post().to(ramp::command))
            .route("/environments/{environment}/flags", web::get().to(flags::page))
            .route("/environments/{environment}/ready-to-remove", web::get().to(usage::ready_to_remove))
            .route("/environments/{environment}/new-flag", web::get().to(flag_forms::create_form))
            .route("/environments/{environment}/new-flag", web::post().to(flag_forms::create))
            .route("/environments/{environment}/flags/{key}", web::get().to(flag::page))
            .route("/environments/{environment}/flags/{key}/edit", web::get().to(flag_forms::edit_form))
            .route("/environments/{environment}/flags/{key}/edit", web::post().to(flag_forms::edit))
            .route("/environments/{environment}/flags/{key}/state", web::post().to(flag_forms::set_state))
            .route("/environments/{environment}/flags/{key}/revert", web::post().to(flag_forms::revert))
            .route("/environments/{environment}/flags/{key}/promote", web::post().to(flag_forms::promote))
            .default_service(web::to(not_found)),
    );
}

/// Clears a "done" message once a page showed it ([`notice`]).
async fn clear_notice(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let shows = notice::shows(&request);
    let response = next.call(request).await?;
    Ok(notice::clear_shown(shows, response))
}

/// Why a page is not shown, and what is shown instead.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No session: the sign-in form, then back to `next`.
    SignIn { next: String },
    /// A page that says why.
    Page { status: StatusCode, title: String, message: String },
}

impl Refusal {
    pub(crate) fn page(status: StatusCode, title: &str, message: impl Into<String>) -> Refusal {
        Refusal::Page { status, title: title.to_owned(), message: message.into() }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::SignIn { .. } => f.write_str("sign-in needed"),
            Refusal::Page { title, message, .. } => write!(f, "{title}: {message}"),
        }
    }
}

/// Handlers answer [`Page`]; a refusal renders as its page.
impl actix_web::ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::SignIn { .. } => StatusCode::SEE_OTHER,
            Refusal::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Refusal::SignIn { next } => see_other(&format!("/ui/sign-in?next={}", encode_query(next))),
            Refusal::Page { status, title, message } => layout::message_page(*status, title, message),
        }
    }
}

/// What a page handler answers: the page, or why not.
pub(crate) type Page = Result<HttpResponse, Refusal>;

/// Who is looking, and the token their forms must carry.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) caller: Caller,
    pub(crate) csrf: String,
    /// Signed in with a token (so there is a sign-out).
    pub(crate) signed_in: bool,
    /// What the last action did, said once on the page it led to.
    pub(crate) notice: Option<String>,
}

impl Viewer {
    pub(crate) fn may(&self, action: Action) -> bool {
        action.allows(self.caller.role)
    }
}

/// The viewer of a page, or the answer instead of the page: the sign-in
/// form for a visitor without a session, an explanation when the admin
/// API is off.
pub(crate) fn viewer(state: &AppState, request: &HttpRequest) -> Result<Viewer, Refusal> {
    let dashboard = &state.dashboard;
    match &*state.admin {
        AdminAccess::Disabled => Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "The dashboard is off",
            "The admin API has no tokens configured. Add admin tokens (adminTokens in rampart.yaml or \
             --admin-tokens), or run with --admin-insecure-local on a loopback address for local development.",
        )),
        AdminAccess::InsecureLocal => Ok(Viewer {
            caller: Caller { name: "local".into(), role: Role::Admin },
            csrf: dashboard.local_csrf.clone(),
            signed_in: false,
            notice: notice::waiting(request),
        }),
        AdminAccess::Tokens(_) => {
            let session = request.cookie(COOKIE).and_then(|cookie| dashboard.sessions.get(cookie.value()));
            match session {
                Some(session) => Ok(Viewer {
                    caller: session.caller,
                    csrf: session.csrf,
                    signed_in: true,
                    notice: notice::waiting(request),
                }),
                None => {
                    let next = request.uri().path_and_query().map_or("/ui/", |p| p.as_str()).to_owned();
                    Err(Refusal::SignIn { next })
                }
            }
        }
    }
}

/// A form that changes state: it carries the session's CSRF token.
pub(crate) trait Csrf {
    fn csrf(&self) -> Option<&str>;
}

/// A state-changing form and who sent it: read within [`MAX_FORM_BYTES`],
/// then its CSRF token and the sender's role checked, before anything else.
pub(crate) async fn submitted<T: DeserializeOwned + Csrf>(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
    action: Action,
) -> Result<(T, Viewer), Refusal> {
    let form: T = form(state, payload).await?;
    let viewer = changer(state, request, form.csrf(), action)?;
    Ok((form, viewer))
}

/// The viewer of a state-changing form: signed in, with the session's CSRF
/// token in the form, and a role of at least `needed`.
fn changer(state: &AppState, request: &HttpRequest, csrf: Option<&str>, action: Action) -> Result<Viewer, Refusal> {
    let needed = action.required();
    let viewer = viewer(state, request)?;
    if !session::csrf_matches(&viewer.csrf, csrf) {
        return Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "This form was not accepted",
            "It did not carry this session's form token: it is out of date (after signing in again) or it was \
             not sent from this dashboard. Nothing was changed; reload the page and try again.",
        ));
    }
    if !viewer.may(action) {
        return Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!(
                "Token '{}' has the role '{}'; this needs '{}'. Nothing was changed.",
                viewer.caller.name,
                viewer.caller.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(viewer)
}

/// Reads a form body (URL-encoded) within [`MAX_FORM_BYTES`].
async fn form<T: DeserializeOwned>(state: &AppState, payload: web::Payload) -> Result<T, Refusal> {
    let bytes = super::read_body(state, payload, MAX_FORM_BYTES).await.map_err(|error| {
        let (status, message) = error.describe();
        Refusal::page(status, "The form could not be read", message)
    })?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|error| Refusal::page(StatusCode::BAD_REQUEST, "The form could not be read", error.to_string()))
}

/// An HTML page with its status; every page is personal, so none is cached.
pub(crate) fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

/// `303 See Other`: where a form's browser goes next.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).finish()
}

/// A path segment or query value, percent-encoded.
pub(crate) fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The dashboard path of a flag.
pub(crate) fn flag_path(environment: &str, key: &str) -> String {
    format!("/ui/environments/{}/flags/{}", encode_query(environment), encode_query(key))
}

/// The dashboard path of a ramp.
pub(crate) fn ramp_path(environment: &str, name: &str) -> String {
    format!("/ui/ramps/{}/{}", encode_query(environment), encode_query(name))
}

/// The live-update scope of an environment's flags (see `events.rs`).
pub(crate) fn scope_of_environment(environment: &str) -> String {
    format!("env:{environment}")
}

/// The live-update scope of one ramp.
pub(crate) fn scope_of_ramp(environment: &str, name: &str) -> String {
    format!("ramp:{environment}/{name}")
}

/// An optional reason from a form: trimmed, empty is none, at most 500 characters.
pub(crate) fn reason(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(|t| t.chars().take(500).collect())
}

async fn not_found(state: web::Data<AppState>, request: HttpRequest) -> Page {
    viewer(&state, &request)?;
    Ok(layout::message_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no page {}.", request.path())))
}

/// An environment by name, or the page saying there is none.
pub(crate) fn environment<'s>(
    state: &'s AppState,
    name: &str,
) -> Result<&'s Arc<crate::environment::Environment>, Refusal> {
    state.environments.get(name).ok_or_else(|| {
        Refusal::page(StatusCode::NOT_FOUND, "No such environment", format!("There is no environment '{name}'."))
    })
}
