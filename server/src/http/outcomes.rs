//! `POST /v1/outcomes` (SDK key): outcome reports for ramps, as
//! `{"outcomes": [{"flag", "variant", "ok", "error", "targetingKey"?}]}`.
//! See `ramp::outcomes` for how they are counted.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body;
use super::error::ApiError;
use crate::environment::Purpose;
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{self, RecordError, Report};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    outcomes: Vec<Report>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
    ignored: usize,
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/v1/outcomes").route(web::post().to(record)).default_service(web::to(|| async {
        Err::<HttpResponse, _>(
            ApiError::new(actix_web::http::StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "use POST")
                .with_allow("POST"),
        )
    })));
}

async fn record(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = super::credentials::sdk_key(request.headers());
    let environment = state.environments.authenticate(key, Purpose::Report)?;
    state
        .outcomes
        .admit(&environment.name, key, state.clock.now_millis())
        .map_err(|refused| refusal(&state, refused))?;
    let bytes = body::read_body(&state, payload, state.max_body_bytes).await?;
    let batch: Batch = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid outcome batch: {e}")))?;
    outcomes::check(&batch.outcomes).map_err(|error| ApiError::bad_request(error.to_string()))?;
    state.outcomes.check_counts(&batch.outcomes).map_err(|refused| refusal(&state, refused))?;
    let (accepted, ignored) =
        outcomes::take(&state, &environment.name, &batch.outcomes).await.map_err(|error| match error {
            RecordError::Refused(refused) => refusal(&state, refused),
            RecordError::Store(error) => error.into(),
        })?;
    Ok(HttpResponse::Ok().json(Accepted { accepted, ignored }))
}

/// A refused report as an HTTP error (counted, with `Retry-After` for the rate).
fn refusal(state: &AppState, refused: Refused) -> ApiError {
    state.metrics.rejected(refused.rejection());
    let message = refused.to_string();
    match refused {
        Refused::EntryCount { .. } | Refused::RequestCount { .. } => ApiError::bad_request(message),
        Refused::Rate { retry_after } => {
            ApiError::new(actix_web::http::StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
                .with_retry_after(retry_after)
        }
        Refused::Implausible { .. } => ApiError::unprocessable("OUTCOMES_IMPLAUSIBLE", message),
    }
}
