//! `POST /ofrep/v1/track`: OpenFeature `track(trackingEventName, context,
//! details)` over HTTP, for the conversion guards of ramps
//! (`services::track`).
//!
//! OFREP defines no tracking endpoint yet (open-feature/protocol#71 is
//! open, without a settled schema), so the shape follows the OpenFeature
//! specification's names (§6): `{"events": [{"trackingEventName",
//! "context", "trackingEventDetails"?}]}` — a batch, as the discussion
//! there leans towards. Authenticated like evaluation (an SDK key; a
//! reporter key is trusted further, as for outcomes); answers `202` with
//! `{"accepted", "ignored"}` once the conversions are stored.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::body;
use super::error::ApiError;
use super::outcomes::Accepted;
use crate::ramp::outcomes::{Origin, RecordError};
use crate::services::track::{self, TrackEvent};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    tracking_event_name: String,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
    /// Accepted as OpenFeature sends it; a conversion guard counts events,
    /// not their values.
    #[serde(default)]
    #[allow(dead_code)]
    tracking_event_details: Option<serde_json::Value>,
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/ofrep/v1/track")
            .route(web::post().to(record))
            .default_service(web::to(super::outcomes::use_post)),
    );
}

async fn record(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = super::credentials::sdk_key(request.headers());
    let (environment, trust) = state.environments.tracker(key)?;
    let origin = Origin::of(trust, key, request.peer_addr().map(|addr| addr.ip()));
    state.outcomes.admit(&environment.name, &origin.source, state.clock.now_millis()).map_err(|refused| {
        refused.count(&state.metrics);
        super::outcomes::answer(refused)
    })?;
    let bytes = body::read_body(&state, payload, state.max_body_bytes).await?;
    let batch: Batch = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid track batch: {e}")))?;
    let events: Vec<TrackEvent> = batch
        .events
        .into_iter()
        .map(|event| TrackEvent {
            name: event.tracking_event_name,
            targeting_key: event.context.get("targetingKey").and_then(|k| k.as_str()).map(str::to_owned),
        })
        .collect();
    track::check_counted(&state, &events).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let (accepted, ignored) =
        track::take(&state, &environment.name, &origin, &events).await.map_err(|error| match error {
            RecordError::Refused(refused) => super::outcomes::answer(refused),
            RecordError::Store(error) => error.into(),
        })?;
    Ok(HttpResponse::Accepted().json(Accepted { accepted, ignored }))
}
