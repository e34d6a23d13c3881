//! Signing in with an admin token, and out.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use serde::Deserialize;

use super::layout::{Section, frame};
use super::{COOKIE, html, see_other};
use crate::config::KeyDigest;
use crate::http::AppState;
use crate::http::auth::AdminAccess;
use crate::http::policy::Action;

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    token: String,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignOutForm {
    csrf: Option<String>,
}

impl super::Csrf for SignOutForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// Only dashboard paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') && !has_controls(next) =>
        {
            next
        }
        _ => "/ui/",
    }
}

/// Control characters (CR, LF, DEL, …) have no place in a path and would
/// break the redirect's header.
fn has_controls(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `GET /ui/sign-in`.
pub(crate) async fn form(state: web::Data<AppState>, query: web::Query<NextQuery>) -> HttpResponse {
    if !matches!(*state.admin, AdminAccess::Tokens(_)) {
        return see_other("/ui/");
    }
    html(StatusCode::OK, sign_in_page(safe_next(query.next.as_deref()), None))
}

fn sign_in_page(next: &str, error: Option<&str>) -> maud::Markup {
    frame(
        "Sign in",
        None,
        Section::None,
        html! {
            section.sign-in {
                h1 { "Sign in" }
                p { "Use an admin token. A " em { "read" } " token sees everything and changes nothing." }
                @if let Some(error) = error {
                    p.error role="alert" #sign-in-error { (error) }
                }
                form method="post" action="/ui/sign-in" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" required autocomplete="current-password";
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `POST /ui/sign-in`: a valid token starts a session. The form needs no
/// CSRF token (there is no session yet); the cookie is `SameSite=Strict`.
pub(crate) async fn submit(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> super::Page {
    let AdminAccess::Tokens(tokens) = &*state.admin else { return Ok(see_other("/ui/")) };
    let client = request.peer_addr().map(|addr| addr.ip());
    let now = state.clock.now_millis();
    if let Err(wait) = state.dashboard.sign_in_limit.check(client, now) {
        state.metrics.rejected(crate::limits::Rejection::SignInAttempts);
        let mut page = html(
            StatusCode::TOO_MANY_REQUESTS,
            sign_in_page("/ui/", Some("Too many failed sign-ins; wait a little and try again.")),
        );
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            page.headers_mut().insert(actix_web::http::header::RETRY_AFTER, value);
        }
        return Ok(page);
    }
    let form: SignInForm = super::form(&state, payload).await?;
    if form.next.as_deref().is_some_and(has_controls) {
        return Err(super::Refusal::page(
            StatusCode::BAD_REQUEST,
            "This sign-in was not accepted",
            "Its 'next' address holds control characters. Nothing was changed; sign in from the dashboard's own page.",
        ));
    }
    let next = safe_next(form.next.as_deref()).to_owned();
    let Some(caller) = tokens.get(&KeyDigest::of(form.token.trim())) else {
        state.dashboard.sign_in_limit.failed(client, now);
        tracing::info!("dashboard sign-in refused: not a valid admin token");
        return Ok(html(StatusCode::UNAUTHORIZED, sign_in_page(&next, Some("That is not a valid admin token."))));
    };
    if !Action::SignIn.allows(caller.role) {
        tracing::info!(actor = %caller.name, role = caller.role.as_str(), "dashboard sign-in refused: the role may not sign in");
        let message =
            format!("Token '{}' has the role '{}', which cannot use the dashboard.", caller.name, caller.role.as_str());
        return Ok(html(StatusCode::FORBIDDEN, sign_in_page(&next, Some(&message))));
    }
    let Some(signed_in) = state.dashboard.sessions.start(caller.clone()) else {
        return Err(super::Refusal::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot sign in now",
            "The operating system gave no randomness for a session id.",
        ));
    };
    if signed_in.evicted {
        state.metrics.rejected(crate::limits::Rejection::DashboardSessions);
    }
    tracing::info!(actor = %caller.name, role = caller.role.as_str(), "dashboard sign-in");
    let cookie = Cookie::build(COOKIE, signed_in.id)
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.dashboard.secure_cookie)
        .max_age(actix_web::cookie::time::Duration::milliseconds(super::session::SESSION_LIFETIME_MS as i64))
        .finish();
    let mut answer = see_other(&next);
    let _ = answer.add_cookie(&cookie);
    Ok(answer)
}

/// `POST /ui/sign-out`: ends the session (CSRF-checked, so another site
/// cannot sign people out either).
pub(crate) async fn sign_out(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> super::Page {
    super::submitted::<SignOutForm>(&state, &request, payload, Action::SignOut).await?;
    if let Some(cookie) = request.cookie(COOKIE) {
        state.dashboard.sessions.end(cookie.value());
    }
    let mut answer = see_other("/ui/sign-in");
    let mut removal = Cookie::build(COOKIE, "").path("/ui").http_only(true).same_site(SameSite::Strict).finish();
    removal.make_removal();
    let _ = answer.add_cookie(&removal);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_dashboard_paths_are_followed_after_sign_in() {
        assert_eq!(super::safe_next(Some("/ui/ramps")), "/ui/ramps");
        for hostile in ["https://evil.example/", "//evil.example/ui/", "/ui\\..\\", "/admin/v1/audit"] {
            assert_eq!(super::safe_next(Some(hostile)), "/ui/", "{hostile}");
        }
        assert_eq!(super::safe_next(None), "/ui/");
    }
}
