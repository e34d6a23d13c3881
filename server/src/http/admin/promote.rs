//! Promotion between environments, and drift from the files.

use actix_web::{HttpRequest, HttpResponse, web};

use super::views::{
    ApiFlagDrift, DriftReport, EnvironmentDrift, OverrideDrift, PromoteRequest, PromoteResult, PromotionAction,
    PromotionItem,
};
use super::{environment, json_body};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::time::rfc3339;
use crate::writes;

#[utoipa::path(post, path = "/admin/v1/environments/{environment}/promote", tag = "promotion",
    description = "Copies API-owned flags of this environment into another one as one atomic, audited \
                   change. With `dryRun` nothing changes and the answer shows the difference.",
    params(("environment" = String, Path, description = "The environment to copy from")),
    request_body = PromoteRequest,
    responses((status = 200, body = PromoteResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 412, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn promote(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::PromoteFlag)?;
    let from_name = path.into_inner();
    let from = environment(&state, &from_name)?;
    let body: PromoteRequest = json_body(&state, payload).await?;
    let to = environment(&state, &body.to)?;
    if body.flags.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request("flags must name at least one flag"));
    }
    let promotion =
        state.writes.promote(from, to, caller.name.as_str().into(), body.flags.as_deref(), body.dry_run).await?;
    let changes = promotion
        .items
        .into_iter()
        .map(|item| PromotionItem {
            flag: item.flag,
            action: match item.action {
                writes::PromotionAction::Create => PromotionAction::Create,
                writes::PromotionAction::Update => PromotionAction::Update,
                writes::PromotionAction::Unchanged => PromotionAction::Unchanged,
            },
            changes: item.changes,
            version: item.version,
        })
        .collect();
    Ok(HttpResponse::Ok().json(PromoteResult {
        from: from_name,
        to: body.to,
        dry_run: body.dry_run,
        applied: promotion.applied,
        changes,
    }))
}

#[utoipa::path(get, path = "/admin/v1/drift", tag = "promotion",
    description = "Where the running state differs from the files: kill-switch overrides of file-owned \
                   flags (with who and when), overrides of flags that left the files, and flags that \
                   exist only through the admin API.",
    responses((status = 200, body = DriftReport), (status = 401, body = ErrorBody)))]
pub(crate) async fn drift(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let environments = state
        .environments
        .iter()
        .map(|environment| {
            let snapshot = environment.snapshot();
            let mut overrides = Vec::new();
            let mut stale_overrides = Vec::new();
            for (key, state_override) in snapshot.overrides.iter() {
                let file_state = snapshot.file_states.get(key);
                let drift = OverrideDrift {
                    flag: key.clone(),
                    file: snapshot.file_of(key).map(str::to_owned),
                    file_state: file_state.map(|s| s.as_str().to_owned()),
                    state: state_override.state.as_str().to_owned(),
                    by: state_override.by.clone(),
                    at: rfc3339(state_override.at),
                };
                if file_state.is_some() { overrides.push(drift) } else { stale_overrides.push(drift) }
            }
            let api_flags = snapshot
                .api
                .iter()
                .map(|(key, record)| ApiFlagDrift {
                    flag: key.clone(),
                    version: record.version,
                    by: record.by.clone(),
                    at: rfc3339(record.at),
                })
                .collect();
            EnvironmentDrift { name: environment.name.clone(), overrides, stale_overrides, api_flags }
        })
        .collect();
    Ok(HttpResponse::Ok().json(DriftReport { environments }))
}
