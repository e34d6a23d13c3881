//! Environments and flags: list, get, create or replace, kill switch, delete.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rampart_engine::FlagState;
use serde_json::Value;

use super::views::{self, EnvironmentList, EnvironmentView, FlagList, StateChange};
use super::{changes, check_key, environment, if_match, json_body};
use crate::config::Role;
use crate::environment::{Built, Environment, Inputs, compile_api_flag};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::limits::Rejection;
use crate::snapshot::Snapshot;
use crate::store::{Change, ChangeKind, Commit, Expect, FlagRecord, StateOverride};
use crate::time::now_millis;

#[utoipa::path(get, path = "/admin/v1/environments", tag = "environments",
    responses((status = 200, body = EnvironmentList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_environments(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Role::Read)?;
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
    state.admin.authorize(&request, Role::Read)?;
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
    state.admin.authorize(&request, Role::Read)?;
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
    let caller = state.admin.authorize(&request, Role::Write)?;
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
    compile_api_flag(&key, &definition).map_err(|errors| ApiError::invalid_flag(&errors))?;
    let expected = if_match(request.headers())?;
    let outcome = write_api_flag(&state, environment, &caller, &key, expected, Edit::Replace(definition), None).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    flag_response(status, &outcome.snapshot, &name, &key)
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
    let caller = state.admin.authorize(&request, Role::Write)?;
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
    let snapshot = if environment.snapshot().api.contains_key(&key) {
        let action = if wanted == FlagState::Disabled { "disable" } else { "enable" };
        write_api_flag(&state, environment, &caller, &key, expected, Edit::SetState(wanted), Some(action))
            .await?
            .snapshot
    } else {
        set_override(&state, environment, &caller, &key, expected, wanted).await?
    };
    flag_response(StatusCode::OK, &snapshot, &name, &key)
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
    let caller = state.admin.authorize(&request, Role::Write)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let expected = if_match(request.headers())?;
    write_api_flag(&state, environment, &caller, &key, expected, Edit::Delete, None).await?;
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
    let view = views::view(snapshot, environment, key).ok_or_else(|| {
        ApiError::not_found("FLAG_NOT_FOUND", format!("no flag '{key}' in environment '{environment}'"))
    })?;
    let mut response = HttpResponse::build(status);
    if let Some(etag) = views::etag(snapshot, key) {
        response.insert_header((header::ETAG, etag));
    }
    Ok(response.json(view))
}

/// The result of a write.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) created: bool,
    /// The snapshot this write published: what the answer describes.
    pub(crate) snapshot: Arc<Snapshot>,
}

fn file_owned(snapshot: &Snapshot, key: &str) -> Result<(), ApiError> {
    match snapshot.file_of(key) {
        Some(file) => Err(ApiError::conflict(
            "FILE_OWNED",
            format!(
                "flag '{key}' is defined in {file}: change its rules there (the admin API can disable and enable it)"
            ),
        )
        .with_details(serde_json::json!({"file": file}))),
        None => Ok(()),
    }
}

fn check_precondition(snapshot: &Snapshot, key: &str, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else { return Ok(()) };
    match views::etag(snapshot, key) {
        Some(current) if current == expected => Ok(()),
        Some(current) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "PRECONDITION_FAILED",
            format!("flag '{key}' changed: If-Match is {expected}, the flag is now {current}"),
        )),
        None => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "PRECONDITION_FAILED",
            format!("flag '{key}' does not exist, so If-Match {expected} cannot match"),
        )),
    }
}

/// A change to an API-owned flag, applied to its current definition under
/// the environment's lock (so a concurrent write is never lost).
#[derive(Debug)]
pub(crate) enum Edit {
    Replace(Value),
    SetState(FlagState),
    Delete,
}

/// Applies an [`Edit`] to an API-owned flag: checks ownership, the
/// precondition and limits, compiles the environment with the change,
/// writes it durably, then publishes it.
pub(crate) async fn write_api_flag(
    state: &AppState,
    environment: &Environment,
    caller: &Caller,
    key: &str,
    expected: Option<String>,
    edit: Edit,
    action: Option<&str>,
) -> Result<Outcome, ApiError> {
    environment
        .change(async |inputs: &Inputs| {
            let snapshot = environment.snapshot();
            file_owned(&snapshot, key)?;
            check_precondition(&snapshot, key, expected.as_deref())?;
            let current = inputs.api.get(key);
            let not_found = || ApiError::not_found("FLAG_NOT_FOUND", format!("no flag '{key}' in environment '{}'", environment.name));
            let definition = match edit {
                Edit::Replace(definition) => Some(definition),
                Edit::Delete => {
                    current.ok_or_else(not_found)?;
                    None
                }
                Edit::SetState(wanted) => {
                    let mut definition = current.and_then(|r| r.definition.clone()).ok_or_else(not_found)?;
                    if let Some(fields) = definition.as_object_mut() {
                        fields.insert("state".into(), Value::String(wanted.as_str().into()));
                    }
                    Some(definition)
                }
            };
            if definition.is_some() && current.is_none() && inputs.api.len() >= state.max_api_flags {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "LIMIT_REACHED",
                    format!("environment '{}' already has {} API-owned flags, the most allowed", environment.name, state.max_api_flags),
                ));
            }
            let old = current.and_then(|r| r.definition.as_ref());
            if definition.as_ref() == old {
                return Ok((None, false));
            }
            let at = now_millis();
            let mut next = inputs.clone();
            match &definition {
                Some(definition) => {
                    let placeholder = FlagRecord { version: 0, definition: Some(definition.clone()), at, by: caller.name.clone() };
                    next.put_api(key, placeholder).map_err(|errors| ApiError::invalid_flag(&errors))?;
                }
                None => {
                    next.remove_api(key);
                }
            }
            let built = next.compose().map_err(|errors| ApiError::invalid_flag(&errors))?;
            let action = action.unwrap_or(match (&definition, current) {
                (None, _) => "delete",
                (Some(_), None) => "create",
                (Some(_), Some(_)) => "update",
            });
            let change = Change {
                environment: environment.name.clone(),
                flag: key.to_owned(),
                expect: current.map_or(Expect::Absent, |r| Expect::Version(r.version)),
                kind: definition.clone().map_or(ChangeKind::Delete, ChangeKind::Put),
                action: action.to_owned(),
                changes: changes::describe(old, definition.as_ref()),
            };
            let committed = state.store.commit(Commit { actor: caller.name.clone(), at, changes: vec![change] }).await?;
            next.committed(&environment.name, &committed);
            let version = committed.entries.first().and_then(|e| e.version);
            if let Some(version) = version {
                next.set_api_version(key, version);
            }
            tracing::info!(environment = %environment.name, flag = key, action, version, actor = %caller.name, "flag changed");
            Ok((Some((next, built)), current.is_none() && definition.is_some()))
        })
        .await
        .map(|(created, snapshot)| Outcome { created, snapshot })
}

/// Sets or clears the state override of a file-owned flag.
async fn set_override(
    state: &AppState,
    environment: &Environment,
    caller: &Caller,
    key: &str,
    expected: Option<String>,
    wanted: FlagState,
) -> Result<Arc<Snapshot>, ApiError> {
    environment
        .change(async |inputs: &Inputs| {
            let snapshot = environment.snapshot();
            let Some(flag) = snapshot.flags.get(key) else {
                return Err(ApiError::not_found(
                    "FLAG_NOT_FOUND",
                    format!("no flag '{key}' in environment '{}'", environment.name),
                ));
            };
            check_precondition(&snapshot, key, expected.as_deref())?;
            let file_state = snapshot.file_states.get(key).copied().unwrap_or(flag.state());
            let served = flag.state();
            let new_override = (wanted != file_state).then_some(wanted);
            let current_override = inputs.overrides.get(key).map(|o| o.state);
            if new_override == current_override && served == wanted {
                return Ok((None, ()));
            }
            let at = now_millis();
            let mut next = inputs.clone();
            match &new_override {
                Some(state) => {
                    let record = StateOverride { state: *state, at, by: caller.name.clone() };
                    next.overrides_mut().insert(key.to_owned(), record);
                }
                None => {
                    next.overrides_mut().remove(key);
                }
            }
            let built: Built = next.compose().map_err(|errors| ApiError::invalid_flag(&errors))?;
            let action = if wanted == FlagState::Disabled { "disable" } else { "enable" };
            let mut lines = vec![format!("state: {} → {}", served.as_str(), wanted.as_str())];
            lines.push(match &new_override {
                Some(_) => format!("overrides the file's state ({})", file_state.as_str()),
                None => "override removed: the file's state applies".to_owned(),
            });
            let change = Change {
                environment: environment.name.clone(),
                flag: key.to_owned(),
                expect: Expect::Anything,
                kind: ChangeKind::Override(new_override),
                action: action.to_owned(),
                changes: lines,
            };
            let committed =
                state.store.commit(Commit { actor: caller.name.clone(), at, changes: vec![change] }).await?;
            next.committed(&environment.name, &committed);
            tracing::info!(environment = %environment.name, flag = key, action, actor = %caller.name, "kill switch");
            Ok((Some((next, built)), ()))
        })
        .await
        .map(|((), snapshot)| snapshot)
}
