//! Environments and flags: list, get, create or replace, kill switch, delete.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rampart_engine::FlagState;
use serde_json::Value;

use super::views::{self, EnvironmentList, EnvironmentView, FlagList, StateChange};
use super::{check_key, environment, if_match, json_body};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::limits::Rejection;
use crate::snapshot::Snapshot;
use crate::writes::{Definition, version_tag};

#[utoipa::path(get, path = "/admin/v1/environments", tag = "environments",
    responses((status = 200, body = EnvironmentList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_environments(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let environments = state
        .environments
        .iter()
        .map(|environment| {
            let snapshot = environment.snapshot();
            EnvironmentView {
                name: environment.name.clone(),
                version: snapshot.version,
                flags: snapshot.flags.len(),
                api_flags: snapshot.api.len(),
                files: snapshot.files.clone(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(EnvironmentList { environments }))
}

#[utoipa::path(get, path = "/admin/v1/environments/{environment}/flags", tag = "flags",
    params(("environment" = String, Path)),
    responses((status = 200, body = FlagList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_flags(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let snapshot = environment(&state, &path)?.snapshot();
    let flags = snapshot.flags.iter().filter_map(|flag| views::summary(&snapshot, flag.key())).collect();
    Ok(HttpResponse::Ok().json(FlagList { flags }))
}

#[utoipa::path(get, path = "/admin/v1/environments/{environment}/flags/{key}", tag = "flags",
    params(("environment" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = views::FlagView, headers(("ETag" = String))),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_flag(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let (name, key) = path.into_inner();
    let snapshot = environment(&state, &name)?.snapshot();
    flag_response(StatusCode::OK, &snapshot, &name, &key)
}

#[utoipa::path(put, path = "/admin/v1/environments/{environment}/flags/{key}", tag = "flags",
    description = "Creates or replaces an API-owned flag. `If-Match` with the flag's ETag makes the write \
                   conditional (412 when someone changed it first). Flags defined in files cannot be \
                   replaced (409).",
    params(("environment" = String, Path),
           ("key" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$"),
           ("If-Match" = Option<String>, Header)),
    request_body = views::FlagDefinition,
    responses((status = 200, body = views::FlagView, headers(("ETag" = String))),
              (status = 201, body = views::FlagView, headers(("ETag" = String))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_flag(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::WriteFlag)?;
    let (name, key) = path.into_inner();
    check_key(&key)?;
    let environment = environment(&state, &name)?;
    let mut definition = definition_body(&state, payload).await?;
    let Some(fields) = definition.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a flag definition object (state, variants, …)"));
    };
    match fields.remove("key") {
        None => {}
        Some(Value::String(body_key)) if body_key == key => {}
        Some(Value::String(body_key)) => {
            return Err(ApiError::unprocessable(
                "KEY_MISMATCH",
                format!("the body's key '{body_key}' is not the path's key '{key}'"),
            ));
        }
        Some(other) => {
            return Err(ApiError::unprocessable(
                "KEY_MISMATCH",
                format!("the body's key must be the flag key '{key}' as a string, not {other}"),
            ));
        }
    }
    // The flag on its own first, so a bad body is a 422 whatever else is wrong.
    let definition = Definition::compile(&key, definition)?;
    let expected = if_match(request.headers())?;
    let written =
        state.writes.put(environment, caller.name.as_str().into(), &key, expected.as_deref(), definition).await?;
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    flag_response(status, &written.snapshot, &name, &key)
}

#[utoipa::path(patch, path = "/admin/v1/environments/{environment}/flags/{key}", tag = "flags",
    description = "The kill switch: sets a flag's state. For a flag defined in a file this stores an \
                   override, which survives restarts and file reloads; setting the file's own state \
                   removes the override.",
    params(("environment" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = StateChange,
    responses((status = 200, body = views::FlagView, headers(("ETag" = String))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn patch_flag(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::SwitchFlag)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let change: StateChange = json_body(&state, payload).await?;
    let Some(wanted) = FlagState::parse(&change.state) else {
        return Err(ApiError::bad_request(format!(
            "state must be \"ENABLED\" or \"DISABLED\", not \"{}\"",
            change.state
        )));
    };
    let expected = if_match(request.headers())?;
    let written =
        state.writes.set_state(environment, caller.name.as_str().into(), &key, expected.as_deref(), wanted).await?;
    flag_response(StatusCode::OK, &written.snapshot, &name, &key)
}

#[utoipa::path(delete, path = "/admin/v1/environments/{environment}/flags/{key}", tag = "flags",
    params(("environment" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub(crate) async fn delete_flag(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::DeleteFlag)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let expected = if_match(request.headers())?;
    state.writes.delete(environment, caller.name.as_str().into(), &key, expected.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reads a flag definition: within `limits.flagDefinitionBytes`, parsed by
/// the engine's bounded parser (so a key given twice is refused, as it is
/// in YAML files, and nesting has the documented limit).
async fn definition_body(state: &AppState, payload: web::Payload) -> Result<Value, ApiError> {
    let limit = state.limits.definition_bytes;
    let bytes = crate::http::read_body(state, payload, state.max_body_bytes).await?;
    if bytes.len() > limit {
        state.metrics.rejected(Rejection::DefinitionBytes);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "DEFINITION_TOO_LARGE",
            format!(
                "the flag definition is {} bytes; at most {limit} are allowed (limits.flagDefinitionBytes)",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    let limits = rampart_engine::InputLimits { max_bytes: limit, max_nodes: limit };
    rampart_engine::Source::json("<request body>", text).parse_value(&limits).map_err(|error| {
        if let Some(limit) = error.limit {
            state.metrics.rejected(Rejection::Engine(limit));
        }
        let details = serde_json::json!({"line": error.line, "message": error.message});
        if error.malformed {
            ApiError::bad_request(format!("the request body is not valid: {}", error.message)).with_details(details)
        } else {
            ApiError::unprocessable("INVALID_FLAG", error.message).with_details(details)
        }
    })
}

pub(crate) fn flag_response(
    status: StatusCode,
    snapshot: &Snapshot,
    environment: &str,
    key: &str,
) -> Result<HttpResponse, ApiError> {
    let view = views::view(snapshot, environment, key).ok_or_else(|| ApiError::flag_not_found(environment, key))?;
    let mut response = HttpResponse::build(status);
    if let Some(etag) = version_tag(snapshot, key) {
        response.insert_header((header::ETAG, etag));
    }
    Ok(response.json(view))
}
