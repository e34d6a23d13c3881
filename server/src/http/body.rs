//! Reading request bodies with a size limit and a deadline, so an
//! oversized body is a 413 and a body that trickles in (one byte a second,
//! holding a worker's connection) a 408, each with a JSON answer rather
//! than the framework's plain-text one or an endless wait.

use std::time::Duration;

use actix_web::web;
use futures_util::StreamExt;

use super::AppState;
use crate::limits::Rejection;

pub(crate) enum BodyError {
    TooLarge(usize),
    Timeout(Duration),
    Read(String),
}

async fn read(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, BodyError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the whole body within `limit` bytes and the configured deadline
/// (`limits.bodyReadTimeoutSeconds`), counting refusals.
pub(crate) async fn read_body(
    state: &AppState,
    payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, BodyError> {
    let deadline = state.limits.body_read_timeout;
    let result = match tokio::time::timeout(deadline, read(payload, limit)).await {
        Ok(result) => result,
        Err(_) => Err(BodyError::Timeout(deadline)),
    };
    match &result {
        Err(BodyError::TooLarge(_)) => state.metrics.rejected(Rejection::RequestBody),
        Err(BodyError::Timeout(_)) => state.metrics.rejected(Rejection::BodyReadTimeout),
        _ => {}
    }
    result
}

impl BodyError {
    /// Status and a sentence for the client.
    pub(crate) fn describe(&self) -> (actix_web::http::StatusCode, String) {
        use actix_web::http::StatusCode;
        match self {
            BodyError::TooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes"))
            }
            BodyError::Timeout(deadline) => (
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {:.1} s", deadline.as_secs_f64()),
            ),
            BodyError::Read(message) => (StatusCode::BAD_REQUEST, format!("cannot read the request body: {message}")),
        }
    }
}
