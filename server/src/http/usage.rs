//! `POST /v1/usage`: SDKs that evaluate in process report how often they
//! evaluated each flag (`{"evaluations": [{"flag", "variant"?, "count"}]}`,
//! at most 1,000 entries), with an SDK key; `202 {"accepted", "ignored"}`.
//! Only flags and variants the environment has are counted, apart from
//! the server's own counts (`services::usage`).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::body;
use super::error::ApiError;
use super::outcomes::Accepted;
use crate::environment::Purpose;
use crate::services::usage::{self, Reported};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    evaluations: Vec<Reported>,
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/v1/usage").route(web::post().to(record)).default_service(web::to(super::outcomes::use_post)),
    );
}

async fn record(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = super::credentials::sdk_key(request.headers());
    let environment = state.environments.authenticate(key, Purpose::Evaluate)?;
    let bytes = body::read_body(&state, payload, state.max_body_bytes).await?;
    let report: Report = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid usage report: {e}")))?;
    let result = usage::report(&state.metrics, environment, &report.evaluations, state.clock.now_millis())
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    Ok(HttpResponse::Accepted().json(Accepted { accepted: result.accepted, ignored: result.ignored }))
}
