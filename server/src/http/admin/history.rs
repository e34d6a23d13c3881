//! Flag history, revert, and the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::flags::flag_response;
use super::views::{AuditPage, History, RevertRequest, VersionView};
use super::{environment, if_match, json_body};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::store::AuditQuery;
use crate::time;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    after: Option<i64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/admin/v1/environments/{environment}/flags/{key}/history", tag = "history",
    description = "The versions of an API-owned flag, oldest first and paged, with who changed what and when. \
                   `after` is the `next` of the previous page. The newest `limits.historyVersionsPerFlag` \
                   versions are kept. Kill-switch changes of file-owned flags are in the audit log.",
    params(("environment" = String, Path), ("key" = String, Path),
           ("after" = Option<i64>, Query, minimum = 0), ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn flag_history(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let params = web::Query::<HistoryParams>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?
        .into_inner();
    let limit = page_limit(params.limit)?;
    let after = params
        .after
        .map(|after| u64::try_from(after).map_err(|_| ApiError::bad_request("after must not be negative")))
        .transpose()?
        .unwrap_or(0);
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let versions = state.store.history(&name, &key, after, limit).await?;
    if versions.is_empty() && after == 0 && environment.snapshot().flags.get(&key).is_none() {
        return Err(ApiError::flag_not_found(&name, &key));
    }
    let full = versions.len() == limit;
    let (versions, cut) = within_bytes(&state, versions.into_iter().map(VersionView::from));
    let next = (full || cut).then(|| versions.last().map(|v| v.version)).flatten();
    Ok(HttpResponse::Ok().json(History { key, environment: name, versions, next }))
}

/// A page's size: `limit`, 100 by default, at most [`MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    Ok(limit)
}

/// Takes items while the page stays within `limits.responseBytes` (always
/// at least one); `true` when some were left for the next page.
fn within_bytes<T: serde::Serialize>(state: &AppState, items: impl Iterator<Item = T>) -> (Vec<T>, bool) {
    let budget = state.limits.response_bytes;
    let mut used = 0usize;
    let mut page = Vec::new();
    for item in items {
        let size = serde_json::to_vec(&item).map_or(0, |bytes| bytes.len());
        if !page.is_empty() && used + size > budget {
            state.metrics.rejected(crate::limits::Rejection::ResponseBytes);
            return (page, true);
        }
        used += size;
        page.push(item);
    }
    (page, false)
}

#[utoipa::path(post, path = "/admin/v1/environments/{environment}/flags/{key}/revert", tag = "history",
    description = "Makes a new version whose content equals an earlier one.",
    params(("environment" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = RevertRequest,
    responses((status = 200, body = super::views::FlagView, headers(("ETag" = String))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn revert_flag(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::RevertFlag)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    let revert: RevertRequest = json_body(&state, payload).await?;
    let expected = if_match(request.headers())?;
    let outcome = state
        .writes
        .revert(environment, caller.name.as_str().into(), &key, expected.as_deref(), revert.version)
        .await?;
    flag_response(StatusCode::OK, &outcome.snapshot, &name, &key)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    environment: Option<String>,
    flag: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

const MAX_PAGE: usize = 1000;

#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit",
    description = "Every change, in order, filtered and paged. `since`/`until` are RFC 3339 times \
                   (UTC, `…Z`) or unix seconds; `after` is the `next` of the previous page.",
    params(("environment" = Option<String>, Query), ("flag" = Option<String>, Query), ("actor" = Option<String>, Query),
           ("since" = Option<String>, Query), ("until" = Option<String>, Query),
           ("after" = Option<i64>, Query, minimum = 0), ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn audit(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let params = web::Query::<AuditParams>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?
        .into_inner();
    let time = |name: &str, value: Option<String>| -> Result<Option<u64>, ApiError> {
        value
            .map(|text| {
                time::parse(&text).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name} '{text}' is not a time: use RFC 3339 in UTC (2026-01-31T12:00:00Z) or unix seconds"
                    ))
                })
            })
            .transpose()
    };
    let limit = page_limit(params.limit)?;
    let query = AuditQuery {
        environment: params.environment,
        flag: params.flag,
        actor: params.actor,
        since: time("since", params.since)?,
        until: time("until", params.until)?,
        after: params
            .after
            .map(|after| u64::try_from(after).map_err(|_| ApiError::bad_request("after must not be negative")))
            .transpose()?,
        limit,
        ..AuditQuery::default()
    };
    let entries = state.store.audit(query).await?;
    let full = entries.len() == limit;
    let (entries, cut) = within_bytes(&state, entries.into_iter().map(super::views::AuditView::from));
    let next = (full || cut).then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(HttpResponse::Ok().json(AuditPage { entries, next }))
}
