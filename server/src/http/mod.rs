//! The two HTTP listeners.
//!
//! The application listener (default `127.0.0.1:8016`) serves OFREP; the
//! operator listener (default `127.0.0.1:8014`) serves health, readiness and
//! metrics and the admin API. Two listeners let the operator side
//! stay on a private interface while applications reach the other.

mod admin;
pub(crate) mod auth;
mod body;
mod credentials;
mod error;
pub(crate) mod listener;
mod ofrep;
mod ops;
mod otlp;
mod outcomes;
pub(crate) mod policy;
pub(crate) mod refusals;
mod sse;
mod track;
pub(crate) mod ui;
mod usage;

pub(crate) use auth::AdminAccess;
pub(crate) use body::read_body;
pub(crate) use ui::Dashboard;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::services::Services;

/// State shared by every handler of both listeners: the [`Services`]
/// every transport has, and what only the HTTP listeners need. Built once,
/// outside the per-worker app factory, and cloned cheaply into each worker.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) services: Services,
    pub(crate) admin: Arc<AdminAccess>,
    /// Every change of flags goes through here.
    pub(crate) writes: crate::writes::Writes,
    /// The dashboard's sessions.
    pub(crate) dashboard: Arc<ui::Dashboard>,
}

/// Handlers read the shared services as fields of the state.
impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// Routes of the application listener.
pub(crate) fn configure_http(config: &mut web::ServiceConfig) {
    ofrep::configure(config);
    sse::configure(config);
    outcomes::configure(config);
    track::configure(config);
    usage::configure(config);
}

/// Routes of the OTLP/HTTP listener (`otlpHttpAddr`).
pub(crate) fn configure_otlp(config: &mut web::ServiceConfig) {
    otlp::configure(config);
}

/// Routes of the operator listener.
pub(crate) fn configure_admin(config: &mut web::ServiceConfig) {
    ops::configure(config);
    admin::configure(config);
    ui::configure(config);
}

/// The admin API's OpenAPI document.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    admin::ApiDoc::openapi()
}

/// Unknown paths and methods get a JSON answer like every other error.
pub(crate) async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({"errorDetails": "no such endpoint"}))
}

pub(crate) async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(serde_json::json!({"errorDetails": "method not allowed on this endpoint"}))
}

/// The caller's `X-Request-Id` when it is a sane token, else a new one:
/// logs of the request carry it, and the response echoes it.
fn request_id(headers: &actix_web::http::header::HeaderMap) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|id| {
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    match given {
        Some(id) => id.to_owned(),
        None => format!("{}-{:x}", PREFIX.get_or_init(process_prefix), NEXT.fetch_add(1, Ordering::Relaxed)),
    }
}

/// 64 random bits, drawn once per process: what keeps generated request ids
/// apart between replicas (in containers every replica is PID 1).
fn process_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Records every request's latency by listener, route pattern (never the
/// raw path, which would carry flag keys) and status.
/// On a relay, the operator listener is read-only: every change is made
/// upstream (and reaches the relay through its stream). Writes to the admin
/// API and the dashboard's forms are refused with `409 RELAY_READ_ONLY`,
/// naming the upstream; reading, signing in and out still work.
pub(crate) async fn relay_read_only(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::http::Method;
    let upstream = request.app_data::<web::Data<AppState>>().and_then(|state| state.relay.clone());
    let path = request.path();
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && (path.starts_with("/admin/") || (path.starts_with("/ui/") && !path.starts_with("/ui/sign-")));
    match upstream {
        Some(relay) if writes => {
            let body = serde_json::json!({"error": {
                "code": "RELAY_READ_ONLY",
                "message": format!("this server is a relay of {}: make changes on the upstream, they reach the relay through its stream", relay.upstream()),
                "details": {"upstream": relay.upstream()},
            }});
            let response = HttpResponse::Conflict().json(body);
            Ok(request.into_response(response).map_into_right_body())
        }
        _ => next.call(request).await.map(ServiceResponse::map_into_left_body),
    }
}

pub(crate) async fn observe(
    listener: &'static str,
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let started = Instant::now();
    let metrics = request.app_data::<web::Data<AppState>>().map(|state| state.metrics.clone());
    let request_id = request_id(request.headers());
    let span = tracing::info_span!("request", request_id = %request_id);
    // An exported span per admin write (a change through the API or the
    // dashboard) while Rampart exports its traces; reads are not traced,
    // and the evaluation path pays one atomic load.
    let mut response = if crate::telemetry::exporting() && listener == "admin" && !request.method().is_safe() {
        let trace = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "admin.write",
            http.request.method = %request.method(),
            url.path = %request.path(),
            http.response.status_code = tracing::field::Empty,
            request_id = %request_id,
        );
        let response = next.call(request).instrument(span).instrument(trace.clone()).await?;
        trace.record("http.response.status_code", i64::from(response.status().as_u16()));
        response
    } else {
        next.call(request).instrument(span).await?
    };
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), value);
    }
    if let Some(metrics) = metrics {
        let path = response.request().path();
        // Single-flag evaluations are the hot path: name their route without allocating.
        let route: std::borrow::Cow<'static, str> =
            if path.starts_with("/ofrep/v1/evaluate/flags/") && path.len() > "/ofrep/v1/evaluate/flags/".len() {
                std::borrow::Cow::Borrowed(ofrep::SINGLE_ROUTE)
            } else {
                std::borrow::Cow::Owned(response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned()))
            };
        let status = response.status();
        metrics
            .http_duration
            .with_label_values(&[listener, &route, status.as_str()])
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(listener, %route, status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, %request_id, "request");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_request_ids_do_not_depend_on_the_process_id() {
        let (a, b) = (super::process_prefix(), super::process_prefix());
        assert_ne!(a, b, "two draws must differ");
        assert_eq!(a.len(), 16);
        assert_ne!(a.trim_start_matches('0'), format!("{:x}", std::process::id()));
    }
}
