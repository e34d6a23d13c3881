//! Promotion between environments, and drift from the files.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::views::{
    ApiFlagDrift, DriftReport, EnvironmentDrift, OverrideDrift, PromoteRequest, PromoteResult, PromotionAction,
    PromotionItem,
};
use super::{changes, environment, json_body};
use crate::config::Role;
use crate::environment::Inputs;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::{Change, ChangeKind, Commit, Expect, FlagRecord};
use crate::time::{now_millis, rfc3339};

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
    let caller = state.admin.authorize(&request, Role::Admin)?;
    let from_name = path.into_inner();
    let from = environment(&state, &from_name)?;
    let body: PromoteRequest = json_body(&state, payload).await?;
    let to = environment(&state, &body.to)?;
    if from.name == to.name {
        return Err(ApiError::bad_request("promotion needs two different environments"));
    }
    let source = from.snapshot();
    let keys: Vec<String> = match &body.flags {
        Some(keys) if keys.is_empty() => return Err(ApiError::bad_request("flags must name at least one flag")),
        Some(keys) => keys.clone(),
        None => source.api.keys().cloned().collect(),
    };
    let mut definitions: BTreeMap<String, (Value, u64)> = BTreeMap::new();
    for key in &keys {
        match (source.api.get(key).map(|r| &**r), source.file_of(key)) {
            (Some(FlagRecord { definition: Some(definition), version, .. }), _) => {
                definitions.insert(key.clone(), (definition.clone(), *version));
            }
            (_, Some(file)) => {
                return Err(ApiError::conflict(
                    "SOURCE_FILE_OWNED",
                    format!("flag '{key}' is defined in {file} in '{from_name}': promote it through the files"),
                ));
            }
            _ => {
                return Err(ApiError::not_found(
                    "FLAG_NOT_FOUND",
                    format!("no flag '{key}' in environment '{from_name}'"),
                ));
            }
        }
    }

    let (items, _) = to
        .change(async |inputs: &Inputs| {
            let target = to.snapshot();
            let mut items = Vec::with_capacity(definitions.len());
            for (key, (definition, _)) in &definitions {
                if let Some(file) = target.file_of(key) {
                    return Err(ApiError::conflict(
                        "FILE_OWNED",
                        format!("flag '{key}' is defined in {file} in '{}': it cannot be replaced by a promotion", to.name),
                    ));
                }
                let current = inputs.api.get(key).and_then(|r| r.definition.as_ref());
                let action = match current {
                    None => PromotionAction::Create,
                    Some(current) if current == definition => PromotionAction::Unchanged,
                    Some(_) => PromotionAction::Update,
                };
                items.push(PromotionItem {
                    flag: key.clone(),
                    action,
                    changes: changes::describe(current, Some(definition)),
                    version: None,
                });
            }
            let creates = items.iter().filter(|i| i.action == PromotionAction::Create).count();
            if inputs.api.len() + creates > state.max_api_flags {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "LIMIT_REACHED",
                    format!("'{}' would have more than {} API-owned flags", to.name, state.max_api_flags),
                ));
            }
            if body.dry_run || items.iter().all(|i| i.action == PromotionAction::Unchanged) {
                return Ok((None, items));
            }
            let at = now_millis();
            let mut next = inputs.clone();
            let mut batch = Vec::new();
            for item in items.iter().filter(|i| i.action != PromotionAction::Unchanged) {
                let (definition, source_version) = &definitions[&item.flag];
                let record = FlagRecord { version: 0, definition: Some(definition.clone()), at, by: caller.name.clone() };
                next.put_api(&item.flag, record).map_err(|errors| ApiError::invalid_flag(&errors))?;
                let mut lines = vec![format!("promoted from '{}' version {source_version}", from.name)];
                lines.extend(item.changes.iter().cloned());
                batch.push(Change {
                    environment: to.name.clone(),
                    flag: item.flag.clone(),
                    expect: inputs.api.get(&item.flag).map_or(Expect::Absent, |r| Expect::Version(r.version)),
                    kind: ChangeKind::Put(definition.clone()),
                    action: "promote".into(),
                    changes: lines,
                });
            }
            let built = next.compose().map_err(|errors| ApiError::invalid_flag(&errors))?;
            let committed = state.store.commit(Commit { actor: caller.name.clone(), at, changes: batch }).await?;
            next.committed(&to.name, &committed);
            for entry in committed.entries {
                if let Some(version) = entry.version {
                    next.set_api_version(&entry.flag, version);
                }
                if let Some(item) = items.iter_mut().find(|i| i.flag == entry.flag) {
                    item.version = entry.version;
                }
            }
            tracing::info!(from = %from.name, to = %to.name, flags = definitions.len(), actor = %caller.name, "promotion");
            Ok((Some((next, built)), items))
        })
        .await?;
    let applied = !body.dry_run && items.iter().any(|i| i.action != PromotionAction::Unchanged);
    Ok(HttpResponse::Ok().json(PromoteResult {
        from: from_name,
        to: body.to,
        dry_run: body.dry_run,
        applied,
        changes: items,
    }))
}

#[utoipa::path(get, path = "/admin/v1/drift", tag = "promotion",
    description = "Where the running state differs from the files: kill-switch overrides of file-owned \
                   flags (with who and when), overrides of flags that left the files, and flags that \
                   exist only through the admin API.",
    responses((status = 200, body = DriftReport), (status = 401, body = ErrorBody)))]
pub(crate) async fn drift(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Role::Read)?;
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
