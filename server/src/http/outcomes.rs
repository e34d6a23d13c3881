//! `POST /v1/outcomes` (SDK key): outcome reports for ramps, as
//! `{"outcomes": [{"flag", "variant", "ok", "error", "targetingKey"?}]}`.
//! See `ramp::outcomes` for how they are counted.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body;
use super::error::ApiError;
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{self, Origin, Part, RecordError, Report};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    outcomes: Vec<Report>,
}

/// What a report or a track batch became: entries counted, and entries
/// acknowledged but dropped.
#[derive(Debug, Serialize)]
pub(super) struct Accepted {
    pub(super) accepted: usize,
    pub(super) ignored: usize,
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/v1/outcomes").route(web::post().to(record)).default_service(web::to(use_post)));
}

/// The answer to any other method on a POST-only resource.
pub(super) async fn use_post() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(actix_web::http::StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "use POST")
        .with_allow("POST"))
}

async fn record(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = super::credentials::sdk_key(request.headers());
    let (environment, trust) = state.environments.reporter(key).inspect_err(|rejection| {
        if *rejection == crate::environment::KeyRejection::NotAReporter {
            state.metrics.refused_outcome(crate::limits::OutcomeRefusal::SdkKey, None);
        }
    })?;
    let origin = Origin::of(trust, key, request.peer_addr().map(|addr| addr.ip()));
    state
        .outcomes
        .admit(&environment.name, &origin.source, state.clock.now_millis())
        .map_err(|refused| refusal(&state, refused))?;
    let bytes = body::read_body(&state, payload, state.max_body_bytes).await?;
    let batch: Batch = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid outcome batch: {e}")))?;
    outcomes::check(&batch.outcomes).map_err(|error| ApiError::bad_request(error.to_string()))?;
    state.outcomes.check_counts(trust, &batch.outcomes).map_err(|refused| refusal(&state, refused))?;
    let parts = [Part { second: state.clock.now_millis() / 1000, reports: &batch.outcomes }];
    let (accepted, ignored) =
        crate::services::outcomes::take(&state, &environment.name, &origin, &parts).await.map_err(|error| {
            match error {
                // Counted where it was refused.
                RecordError::Refused(refused) => answer(refused),
                RecordError::Store(error) => error.into(),
            }
        })?;
    Ok(HttpResponse::Ok().json(Accepted { accepted, ignored }))
}

/// A refused report as an HTTP error, counted.
fn refusal(state: &AppState, refused: Refused) -> ApiError {
    refused.count(&state.metrics);
    answer(refused)
}

/// A refused report as an HTTP error (`Retry-After` where waiting helps).
pub(super) fn answer(refused: Refused) -> ApiError {
    let message = refused.to_string();
    let retry_after = refused.retry_after();
    let error = match refused {
        Refused::EntryCount { .. }
        | Refused::RequestCount { .. }
        | Refused::PublicCounts { .. }
        | Refused::PublicWithoutKey { .. } => ApiError::bad_request(message),
        Refused::Rate { .. } | Refused::Excess { excess: crate::ramp::contribution::Excess::Client { .. }, .. } => {
            ApiError::new(actix_web::http::StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
        Refused::Excess { .. } => ApiError::unprocessable("OUTCOMES_IMPLAUSIBLE", message),
    };
    match retry_after {
        Some(retry_after) => error.with_retry_after(retry_after),
        None => error,
    }
}
