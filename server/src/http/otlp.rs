//! OTLP/HTTP (`POST /v1/traces`, `POST /v1/metrics`) on its own listener (`otlpHttpAddr`,
//! conventionally port 4318): what an OpenTelemetry SDK's or Collector's
//! `otlphttp` exporter sends, unchanged — protobuf or JSON, gzip or not,
//! with a reporter key as `Authorization: Bearer …` or `x-api-key`.
//!
//! Answers follow the OTLP specification: `200` with an
//! `ExportTraceServiceResponse` (its `partialSuccess` names spans not
//! counted), and errors as a `google.rpc.Status` in the request's own
//! encoding — `400` malformed, `413` too large, `415` an unknown type,
//! `401`/`403` the key, `429`/`503` with `Retry-After` where sending again
//! later helps. Never a 500 for what a client sent.

use std::io::Read;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::AppState;
use crate::environment::KeyRejection;
use crate::otlp::ExportError;
use crate::ramp::outcomes::Origin;

/// `google.rpc.Status`, the body of an OTLP error (its `details` are
/// left out: OTLP gives them no meaning a receiver must send).
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The two encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// What an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let not_allowed =
        || web::to(|| async { HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "POST")).finish() });
    config.service(web::resource("/v1/traces").route(web::post().to(traces)).default_service(not_allowed()));
    config.service(web::resource("/v1/metrics").route(web::post().to(metrics)).default_service(not_allowed()));
}

async fn traces(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(state, request, payload, Signal::Traces).await
}

async fn metrics(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(state, request, payload, Signal::Metrics).await
}

async fn handle(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    signal: Signal,
) -> HttpResponse {
    let encoding = match encoding(request.headers()) {
        Ok(encoding) => encoding,
        Err(error) => return refused(&state, signal, Encoding::Protobuf, error),
    };
    match export(&state, &request, payload, encoding, signal).await {
        Ok(taken) => {
            let result = if taken.rejected > 0 || taken.message.is_some() { "partial" } else { "accepted" };
            state.metrics.otlp_exports.with_label_values(&[signal.as_str(), result]).inc();
            answer(signal, encoding, taken)
        }
        Err(Refusal::Key(rejection)) => {
            state.metrics.otlp_exports.with_label_values(&[signal.as_str(), "key"]).inc();
            let status = if rejection.is_temporary() {
                StatusCode::SERVICE_UNAVAILABLE
            } else if rejection.is_forbidden() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            let mut response = status_body(status, encoding, rejection.message());
            if rejection.is_temporary() {
                response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            response
        }
        Err(Refusal::Export(error)) => refused(&state, signal, encoding, error),
    }
}

/// The success answer: partial success where something was not counted.
fn answer(signal: Signal, encoding: Encoding, taken: crate::otlp::Taken) -> HttpResponse {
    let partial = taken.rejected > 0 || taken.message.is_some();
    let rejected = i64::try_from(taken.rejected).unwrap_or(i64::MAX);
    let message = taken.message.unwrap_or_default();
    let (body, json) = match signal {
        Signal::Traces => {
            let answer = ExportTraceServiceResponse {
                partial_success: partial
                    .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
            };
            (answer.encode_to_vec(), serde_json::to_value(&answer))
        }
        Signal::Metrics => {
            let answer = ExportMetricsServiceResponse {
                partial_success: partial
                    .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message: message }),
            };
            (answer.encode_to_vec(), serde_json::to_value(&answer))
        }
    };
    match encoding {
        Encoding::Protobuf => HttpResponse::Ok().content_type("application/x-protobuf").body(body),
        Encoding::Json => HttpResponse::Ok().json(json.unwrap_or_default()),
    }
}

enum Refusal {
    Key(KeyRejection),
    Export(ExportError),
}

impl From<ExportError> for Refusal {
    fn from(error: ExportError) -> Refusal {
        Refusal::Export(error)
    }
}

async fn export(
    state: &AppState,
    request: &HttpRequest,
    payload: web::Payload,
    encoding: Encoding,
    signal: Signal,
) -> Result<crate::otlp::Taken, Refusal> {
    let key = super::credentials::sdk_key(request.headers());
    let (environment, trust) = state.environments.reporter(key).map_err(Refusal::Key)?;
    let origin = Origin::of(trust, key, request.peer_addr().map(|addr| addr.ip()));
    crate::services::otlp::admit(state, &environment.name, &origin)?;
    let limit = state.limits.otlp_body_bytes;
    let body = super::body::read_body(state, payload, limit).await.map_err(|error| match error {
        super::body::BodyError::TooLarge(limit) => ExportError::TooLarge { limit },
        other => ExportError::Malformed { format: "request body", message: other.describe().1 },
    })?;
    let body = decompressed(request.headers(), body.freeze(), limit)?;
    let environment = environment.name.as_str();
    Ok(match signal {
        Signal::Traces => {
            let export: ExportTraceServiceRequest = decode(&body, encoding)?;
            drop(body);
            crate::services::otlp::take_traces(state, environment, &origin, &export).await?
        }
        Signal::Metrics => {
            let export: ExportMetricsServiceRequest = decode(&body, encoding)?;
            drop(body);
            crate::services::otlp::take_metrics(state, environment, &origin, &export).await?
        }
    })
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
) -> Result<T, ExportError> {
    match encoding {
        Encoding::Protobuf => {
            T::decode(body).map_err(|e| ExportError::Malformed { format: "protobuf", message: e.to_string() })
        }
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| ExportError::Malformed { format: "OTLP/JSON", message: e.to_string() }),
    }
}

/// The request's encoding, from its content type.
fn encoding(headers: &HeaderMap) -> Result<Encoding, ExportError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(ExportError::ContentType(content_type.chars().take(100).collect())),
    }
}

/// The body with its `Content-Encoding` undone, within `limit` bytes after
/// decompression too (a small gzip body can expand a thousandfold).
fn decompressed(headers: &HeaderMap, body: web::Bytes, limit: usize) -> Result<web::Bytes, ExportError> {
    let coding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    match coding.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ExportError::Malformed { format: "gzip", message: e.to_string() })?;
            if out.len() > limit {
                return Err(ExportError::TooLarge { limit });
            }
            Ok(out.into())
        }
        other => Err(ExportError::Encoding(other.chars().take(100).collect())),
    }
}

/// An export refused as a whole, counted and answered as OTLP says.
fn refused(state: &AppState, signal: Signal, encoding: Encoding, error: ExportError) -> HttpResponse {
    state.metrics.otlp_exports.with_label_values(&[signal.as_str(), error.label()]).inc();
    if let ExportError::Store(store) = &error {
        tracing::warn!(error = %store, "an OTLP export could not be recorded");
    }
    let status = match &error {
        ExportError::Malformed { .. } => StatusCode::BAD_REQUEST,
        ExportError::TooManySpans { .. } | ExportError::TooManyPoints { .. } | ExportError::TooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ExportError::Encoding(_) | ExportError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ExportError::PublicKey => StatusCode::FORBIDDEN,
        ExportError::Refused(refused) => match refused.retry_after() {
            Some(_) => StatusCode::TOO_MANY_REQUESTS,
            None => StatusCode::BAD_REQUEST,
        },
        ExportError::DedupeFull { .. } | ExportError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = status_body(status, encoding, &error.to_string());
    if let Some(wait) = error.retry_after() {
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(value) = header::HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// A `google.rpc.Status` body with the gRPC code matching `status`.
fn status_body(status: StatusCode, encoding: Encoding, message: &str) -> HttpResponse {
    let code = match status {
        StatusCode::UNAUTHORIZED => 16,                                     // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,                                         // PERMISSION_DENIED
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8, // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                              // UNAVAILABLE
        _ => 3,                                                             // INVALID_ARGUMENT
    };
    let body = RpcStatus { code, message: message.to_owned() };
    match encoding {
        Encoding::Protobuf => {
            HttpResponse::build(status).content_type("application/x-protobuf").body(body.encode_to_vec())
        }
        Encoding::Json => HttpResponse::build(status).json(serde_json::json!({"code": code, "message": body.message})),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn content_types_name_the_encoding() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        assert_eq!(encoding(&headers).unwrap(), Encoding::Protobuf);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(encoding(&headers).unwrap(), Encoding::Json);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(encoding(&headers), Err(ExportError::ContentType(_))));
    }

    #[test]
    fn gzip_is_undone_within_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[0u8; 100_000]).unwrap();
        let small = web::Bytes::from(gz.finish().unwrap());
        assert!(small.len() < 1_000, "a small body that expands a hundredfold");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decompressed(&headers, small.clone(), 100_000).unwrap().len(), 100_000);
        assert!(matches!(decompressed(&headers, small, 99_999), Err(ExportError::TooLarge { limit: 99_999 })));
        assert!(matches!(
            decompressed(&headers, web::Bytes::from_static(b"not gzip"), 100),
            Err(ExportError::Malformed { format: "gzip", .. })
        ));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(decompressed(&headers, web::Bytes::new(), 10), Err(ExportError::Encoding(_))));
    }
}
