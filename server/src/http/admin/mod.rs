//! The admin API, `/admin/v1/…` on the operator listener.
//!
//! Operators change flags without a deploy: create and edit API-owned
//! flags, flip the kill switch on any flag (file-owned ones included, as a
//! stored override), read every version of a flag and revert to one, read
//! the audit log, promote flags between environments and see drift from
//! the files. Every change is validated by the engine exactly as file
//! flags are, written durably to the store, and live for evaluation when
//! the response is sent.

mod alerts;
mod flags;
mod history;
mod promote;
mod ramp_view;
mod ramps;
mod releases;
mod usage;
pub(crate) mod views;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::environment::Environment;
use crate::http::policy::Action;
pub(crate) use views::ApiDoc;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let resource = |path: &str, allow: &'static str| {
        web::resource(path).default_service(web::to(move |state: web::Data<AppState>, request: HttpRequest| {
            method_not_allowed(state, request, allow)
        }))
    };
    config.service(
        web::scope("/admin/v1")
            .service(resource("/environments", "GET").route(web::get().to(flags::list_environments)))
            .service(resource("/environments/{environment}/flags", "GET").route(web::get().to(flags::list_flags)))
            .service(
                resource("/environments/{environment}/flags/{key}", "GET, PUT, PATCH, DELETE")
                    .route(web::get().to(flags::get_flag))
                    .route(web::put().to(flags::put_flag))
                    .route(web::patch().to(flags::patch_flag))
                    .route(web::delete().to(flags::delete_flag)),
            )
            .service(
                resource("/environments/{environment}/flags/{key}/history", "GET")
                    .route(web::get().to(history::flag_history)),
            )
            .service(
                resource("/environments/{environment}/flags/{key}/usage", "GET")
                    .route(web::get().to(usage::flag_usage)),
            )
            .service(
                resource("/environments/{environment}/ready-to-remove", "GET")
                    .route(web::get().to(usage::ready_to_remove)),
            )
            .service(
                resource("/environments/{environment}/flags/{key}/revert", "POST")
                    .route(web::post().to(history::revert_flag)),
            )
            .service(resource("/environments/{environment}/promote", "POST").route(web::post().to(promote::promote)))
            .service(resource("/audit", "GET").route(web::get().to(history::audit)))
            .service(resource("/alerts", "POST").route(web::post().to(alerts::receive_alerts)))
            .service(resource("/drift", "GET").route(web::get().to(promote::drift)))
            .service(resource("/ramps", "GET").route(web::get().to(ramps::list_ramps)))
            .service(resource("/releases", "GET").route(web::get().to(releases::list_releases)))
            .service(resource("/releases/{name}", "GET").route(web::get().to(releases::get_release)))
            .service(resource("/releases/{name}/history", "GET").route(web::get().to(releases::release_history)))
            .service(resource("/ramps/{environment}/{name}", "GET").route(web::get().to(ramps::get_ramp)))
            .service(resource("/ramps/{environment}/{name}/history", "GET").route(web::get().to(ramps::ramp_history)))
            .service(resource("/ramps/{environment}/{name}/explain", "GET").route(web::get().to(ramps::explain_ramp)))
            .service(resource("/ramps/{environment}/{name}/verdict", "GET").route(web::get().to(ramps::ramp_verdict)))
            .service(
                resource("/ramps/{environment}/{name}/{action}", "POST").route(web::post().to(ramps::ramp_command)),
            )
            .default_service(web::to(not_found)),
    );
}

async fn method_not_allowed(
    state: web::Data<AppState>,
    request: HttpRequest,
    allow: &'static str,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let mut error = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}; use {allow}", request.method(), request.path()),
    );
    error.allow = Some(allow);
    Err(error)
}

async fn not_found(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    // Unknown admin paths still need a valid token, so they reveal nothing.
    state.admin.authorize(&request, Action::Read)?;
    Err(ApiError::not_found("NOT_FOUND", format!("no admin endpoint {} {}", request.method(), request.path())))
}

fn environment<'s>(state: &'s AppState, name: &str) -> Result<&'s Environment, ApiError> {
    state
        .environments
        .get(name)
        .map(|e| &**e)
        .ok_or_else(|| ApiError::not_found("ENVIRONMENT_NOT_FOUND", format!("no environment '{name}'")))
}

/// Reads a JSON body with the size limit and deadline, as `T`.
async fn json_body<T: DeserializeOwned>(state: &AppState, payload: web::Payload) -> Result<T, ApiError> {
    let bytes = super::read_body(state, payload, state.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid: {e}"))
            .with_details(serde_json::json!({"line": e.line(), "column": e.column()}))
    })
}

/// `If-Match`: `None` when absent or `*`.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::bad_request("If-Match is not valid text"))?.trim();
    match value {
        "" => Err(ApiError::bad_request("If-Match is empty: send the flag's ETag, e.g. \"v3\"")),
        "*" => Ok(None),
        tag => Ok(Some(tag.strip_prefix("W/").unwrap_or(tag).to_owned())),
    }
}

/// Flag keys created through the API: letters, digits, `.`, `_`, `-`, `:`;
/// at most 256 characters. (File flags may use any key flagd accepts.)
pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    let valid = !key.is_empty()
        && key.len() <= 256
        && key.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid flag key '{key}': use letters, digits, '.', '_', '-' and ':' (starting with a letter or digit), at most 256 characters"
        )))
    }
}
