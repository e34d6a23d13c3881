//! Flag usage in the admin API: evaluations per variant over the last day
//! and thirty days with the last evaluation, and the flags that look
//! ready to remove (`services::usage`).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::environment;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::services::usage::{self, Removable, Summary};

/// Evaluations per source (`evaluated`, `bulk`, `sdk`) and variant.
type BySource = BTreeMap<String, BTreeMap<String, u64>>;

/// One flag's usage.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageView {
    pub flag: String,
    /// RFC 3339; absent when no evaluation was ever counted.
    pub last_evaluated: Option<String>,
    /// `evaluated`: one flag evaluated by the server (OFREP, flagd gRPC);
    /// `bulk`: every flag answered at once (OFREP bulk, `ResolveAll`);
    /// `sdk`: reported by SDKs evaluating in process. `(no variant)`: a
    /// code default or an error.
    #[schema(value_type = Object)]
    pub last_24h: BySource,
    #[schema(value_type = Object)]
    pub last_30d: BySource,
}

impl From<Summary> for UsageView {
    fn from(summary: Summary) -> UsageView {
        let strings = |map: BTreeMap<&'static str, BTreeMap<String, u64>>| {
            map.into_iter().map(|(source, variants)| (source.to_owned(), variants)).collect()
        };
        UsageView {
            flag: summary.flag,
            last_evaluated: summary.last_evaluated,
            last_24h: strings(summary.last_24h),
            last_30d: strings(summary.last_30d),
        }
    }
}

#[utoipa::path(get, path = "/admin/v1/environments/{environment}/flags/{key}/usage", tag = "usage",
    description = "How often the flag was evaluated, per variant, over the last 24 hours and 30 days, and when \
                   it was last evaluated: counted by every replica (flushed once a minute; this replica's last \
                   minute included) and reported by SDKs that evaluate in process.",
    params(("environment" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = UsageView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn flag_usage(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let (name, key) = path.into_inner();
    let environment = environment(&state, &name)?;
    if environment.snapshot().flags.get(&key).is_none() {
        return Err(ApiError::flag_not_found(&name, &key));
    }
    let read = usage::read(&state, environment, Some(&key)).await?;
    let summary = Summary::of(&key, read.get(&key), state.clock.now_millis());
    Ok(HttpResponse::Ok().json(UsageView::from(summary)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemovableParams {
    days: Option<u64>,
}

/// A flag that looks ready to remove.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateView {
    pub flag: String,
    /// `singleVariant` (every evaluation answered `variant`), `notEvaluated`
    /// (none counted in the period; `lastEvaluated` if ever), or
    /// `rampCompleted` (its ramp `ramp` completed: make the treatment the
    /// default and remove the ramp file).
    pub reason: String,
    pub variant: Option<String>,
    pub last_evaluated: Option<String>,
    pub ramp: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemovableView {
    pub environment: String,
    pub days: u64,
    pub flags: Vec<CandidateView>,
}

#[utoipa::path(get, path = "/admin/v1/environments/{environment}/ready-to-remove", tag = "usage",
    description = "Flags that look ready to remove: serving one variant to everyone for `days` days, not \
                   evaluated for `days` days, or whose ramp completed while the flag still carries its split. \
                   A flag an active ramp drives is never listed.",
    params(("environment" = String, Path), ("days" = Option<u64>, Query, minimum = 1, maximum = 30)),
    responses((status = 200, body = RemovableView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn ready_to_remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let params = web::Query::<RemovableParams>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?
        .into_inner();
    let days = params.days.unwrap_or(usage::MAX_DAYS);
    if !(1..=usage::MAX_DAYS).contains(&days) {
        return Err(ApiError::bad_request(format!("days must be between 1 and {}", usage::MAX_DAYS)));
    }
    let environment = environment(&state, &path)?;
    let candidates = usage::ready_to_remove(&state, environment, days).await?;
    let flags = candidates
        .into_iter()
        .map(|candidate| {
            let mut view = CandidateView {
                flag: candidate.flag,
                reason: candidate.reason.name().to_owned(),
                variant: None,
                last_evaluated: None,
                ramp: None,
            };
            match candidate.reason {
                Removable::SingleVariant { variant } => view.variant = Some(variant),
                Removable::NotEvaluated { last } => view.last_evaluated = last.map(crate::time::rfc3339),
                Removable::RampCompleted { ramp } => view.ramp = Some(ramp),
            }
            view
        })
        .collect();
    Ok(HttpResponse::Ok().json(RemovableView { environment: environment.name.clone(), days, flags }))
}
