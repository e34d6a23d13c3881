//! OpenFeature Remote Evaluation Protocol (OFREP) v1.
//!
//! `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag;
//! `POST /ofrep/v1/evaluate/flags` evaluates all of them, with an `ETag` so
//! a polling client gets `304 Not Modified` while nothing changed. Shapes
//! and status codes follow the protocol, and flagd where it leaves room:
//! a flag error is a 400 (`PARSE_ERROR`, or `GENERAL` for anything else)
//! and a missing flag a 404; disabled flags and flags without a default
//! variant answer 200 with no value ("use your code default"), and carry
//! `"variant": null` because widely used clients read `variant` without
//! checking that it is there.

use crate::store::usage::UsageSource;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use rampart_engine::{Context, ErrorCode, Evaluation, Metadata, Reason};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::body;
use super::credentials::{evaluation_refused, sdk_key};
use crate::environment::{Environment, KeyRejection, Purpose};

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    // One static pattern per resource: a resource with several patterns
    // is matched with a regex set.
    for path in ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/"] {
        config.service(
            web::resource(path).route(web::post().to(bulk)).default_service(web::to(super::method_not_allowed)),
        );
    }
    config
        // `/ofrep/v1/evaluate/flags/{key}`, matched as a static prefix: a
        // dynamic segment would run the router's regex engine on every
        // request, which cost a fifth of the server's CPU under load.
        .service(web::scope(SINGLE_PREFIX).default_service(web::to(single_route)));
}

const SINGLE_PREFIX: &str = "/ofrep/v1/evaluate/flags";

/// The route label of single-flag evaluations in metrics.
pub(crate) const SINGLE_ROUTE: &str = "/ofrep/v1/evaluate/flags/{key}";

async fn single_route(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let Some(key) = request.path().strip_prefix(SINGLE_PREFIX).and_then(|rest| rest.strip_prefix('/')) else {
        return super::not_found().await;
    };
    if request.method() != actix_web::http::Method::POST {
        return super::method_not_allowed().await;
    }
    let key = percent_decode(key);
    single(state, request, key, payload).await
}

/// Decodes `%XX` escapes in a path segment (invalid escapes stay as written).
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[index], bytes.get(index + 1).copied().and_then(hex), bytes.get(index + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn single(state: web::Data<AppState>, request: HttpRequest, key: String, payload: web::Payload) -> HttpResponse {
    let environment = match authenticate(&state, request.headers()) {
        Ok(environment) => environment,
        Err(rejection) => return evaluation_refused(rejection),
    };
    let body = match body::read_body(&state, payload, state.max_body_bytes).await {
        Ok(body) => body,
        Err(error) => {
            let (status, details) = error.describe();
            let body = Failure { key: &key, error_code: "INVALID_CONTEXT", error_details: &details, metadata: None };
            return HttpResponse::build(status).json(body);
        }
    };
    let (status, body) = answer(&state, environment, &key, &body, Some(&request));
    HttpResponse::build(status).content_type("application/json").body(body)
}

/// One flag's OFREP answer (status and JSON body) to a request body: the
/// dashboard's evaluation console calls this too, so it answers exactly as
/// OFREP does (without a request, the context gets no header values).
pub(crate) fn answer(
    state: &AppState,
    environment: &Environment,
    key: &str,
    body: &[u8],
    request: Option<&HttpRequest>,
) -> (StatusCode, Vec<u8>) {
    let context = match parse_context(state, body) {
        Ok(context) => match request {
            Some(request) => enrich(environment, context, request),
            None => environment.context.apply(context, |_| None),
        },
        Err((status, details)) => {
            let body = Failure { key, error_code: "INVALID_CONTEXT", error_details: &details, metadata: None };
            return (status, serde_json::to_vec(&body).unwrap_or_default());
        }
    };
    let snapshot = environment.snapshot();
    let evaluation = snapshot.flags.evaluate(key, &context, state.clock.now_seconds());
    state.metrics.evaluated(&environment.name, evaluation.reason);
    if let Some(limit) = evaluation.limit {
        state.metrics.rejected(crate::limits::Rejection::Engine(limit));
    }
    if let Some(request) = request {
        // An application's evaluation (the dashboard's console is none).
        if evaluation.error_code != Some(rampart_engine::ErrorCode::FlagNotFound) {
            let now = state.clock.now_millis();
            environment.usage.count(UsageSource::Evaluated, key, evaluation.variant, 1, now);
        }
        trace(request, &environment.name, key, &evaluation, &context);
    }
    render(key, &evaluation)
}

/// When Rampart exports its traces: a span for a sample of evaluations,
/// and for every evaluation whose caller sent a sampled `traceparent` —
/// as a child of the caller's span, with OpenFeature's
/// `feature_flag.evaluation` event, so the caller's trace shows what the
/// server decided.
fn trace(
    request: &HttpRequest,
    environment: &str,
    key: &str,
    evaluation: &rampart_engine::Evaluation<'_>,
    context: &rampart_engine::Context,
) {
    use crate::telemetry::{self, TRACE_TARGET};
    if !telemetry::exporting() {
        return;
    }
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    if !telemetry::caller_sampled(traceparent) && !telemetry::sample_evaluation() {
        return;
    }
    let span = tracing::info_span!(target: TRACE_TARGET, "ofrep.evaluate", environment, feature_flag.key = key);
    telemetry::follow_caller(&span, traceparent);
    let _entered = span.enter();
    let (variant, context_id) = (evaluation.variant.unwrap_or_default(), context.targeting_key().unwrap_or_default());
    tracing::event!(
        target: TRACE_TARGET,
        tracing::Level::INFO,
        {
            feature_flag.key = key,
            feature_flag.result.variant = variant,
            feature_flag.result.reason = evaluation.reason.as_str(),
            feature_flag.context.id = context_id,
            feature_flag.provider.name = "rampart",
        },
        "feature_flag.evaluation"
    );
}

async fn bulk(state: web::Data<AppState>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let environment = match authenticate(&state, request.headers()) {
        Ok(environment) => environment,
        Err(rejection) => return evaluation_refused(rejection),
    };
    let context = match read_context(&state, payload).await {
        Ok(context) => enrich(environment, context, &request),
        Err((status, details)) => {
            return HttpResponse::build(status)
                .json(BulkFailure { error_code: "INVALID_CONTEXT", error_details: &details });
        }
    };
    let snapshot = environment.snapshot();
    let now = state.clock.now_seconds();
    let now_ms = state.clock.now_millis();
    let mut body = Vec::with_capacity(128 * snapshot.flags.len());
    body.extend_from_slice(b"{\"flags\":[");
    for (index, flag) in snapshot.flags.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        let evaluation = flag.evaluate(&context, now);
        state.metrics.evaluated(&environment.name, evaluation.reason);
        if let Some(limit) = evaluation.limit {
            state.metrics.rejected(crate::limits::Rejection::Engine(limit));
        }
        environment.usage.count(UsageSource::Bulk, flag.key(), evaluation.variant, 1, now_ms);
        body.extend_from_slice(&render(flag.key(), &evaluation).1);
    }
    body.extend_from_slice(b"],\"metadata\":");
    let _ = serde_json::to_writer(&mut body, snapshot.flags.metadata());
    // Change notification (OFREP event streams): refetch on change instead of polling.
    body.extend_from_slice(
        br#","eventStreams":[{"type":"sse","endpoint":{"requestUri":"/ofrep/v1/events"},"inactivityDelaySec":120}]"#,
    );
    body.push(b'}');

    // The ETag is a digest of the answer itself: it changes exactly when
    // what this client would see changes.
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let mut response = if if_none_match(request.headers(), &etag) {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().content_type("application/json").body(body)
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The request's context with what the environment adds to it.
fn enrich(environment: &Environment, context: Context, request: &HttpRequest) -> Context {
    environment.context.apply(context, |name| request.headers().get(name).and_then(|v| v.to_str().ok()))
}

/// The environment the request's SDK key selects.
fn authenticate<'s>(state: &'s AppState, headers: &HeaderMap) -> Result<&'s Environment, KeyRejection> {
    state.environments.authenticate(sdk_key(headers), Purpose::Evaluate).map(|environment| &**environment)
}

/// The request's `context`. An empty body, `{}`, or a body without
/// `context` is an empty context (OpenFeature providers send those).
async fn read_context(state: &AppState, payload: web::Payload) -> Result<Context, (StatusCode, String)> {
    let body = body::read_body(state, payload, state.max_body_bytes).await.map_err(|error| error.describe())?;
    parse_context(state, &body)
}

fn parse_context(state: &AppState, body: &[u8]) -> Result<Context, (StatusCode, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let context = serde_json::from_slice::<Request>(body)
        .map(|request| request.context.unwrap_or_default())
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("the request body must be {{\"context\": {{…}}}}: {e}")))?;
    if context.len() > MAX_CONTEXT_FIELDS {
        state.metrics.rejected(crate::limits::Rejection::ContextFields);
        return Err((
            StatusCode::BAD_REQUEST,
            format!("the context has {} fields; at most {MAX_CONTEXT_FIELDS} are accepted", context.len()),
        ));
    }
    Ok(context)
}

use crate::limits::MAX_CONTEXT_FIELDS;

/// An OFREP request body; other members are ignored.
#[derive(serde::Deserialize)]
struct Request {
    #[serde(default)]
    context: Option<Context>,
}

#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    variant: Option<&'a str>,
    reason: &'static str,
    metadata: &'a Metadata,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure<'a> {
    key: &'a str,
    error_code: &'static str,
    error_details: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Metadata>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkFailure<'a> {
    error_code: &'static str,
    error_details: &'a str,
}

/// Status and JSON body for one evaluation.
fn render(key: &str, evaluation: &Evaluation<'_>) -> (StatusCode, Vec<u8>) {
    let (status, body) = match evaluation.error_code {
        None => (
            StatusCode::OK,
            serde_json::to_vec(&Success {
                key,
                value: evaluation.value,
                variant: evaluation.variant,
                reason: evaluation.reason.as_str(),
                metadata: evaluation.metadata,
            }),
        ),
        Some(code) => {
            let (status, error_code) = match code {
                ErrorCode::FlagNotFound => (StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
                ErrorCode::ParseError => (StatusCode::BAD_REQUEST, "PARSE_ERROR"),
                ErrorCode::InvalidContext => (StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
                ErrorCode::TargetingKeyMissing => (StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
                ErrorCode::TypeMismatch | ErrorCode::General => (StatusCode::BAD_REQUEST, "GENERAL"),
            };
            let body = Failure {
                key,
                error_code,
                error_details: evaluation.error_message.as_deref().unwrap_or(code.as_str()),
                metadata: Some(evaluation.metadata),
            };
            (status, serde_json::to_vec(&body))
        }
    };
    debug_assert!(evaluation.reason != Reason::Error || status != StatusCode::OK);
    (status, body.unwrap_or_default())
}

/// `If-None-Match` holds `etag` (or `*`); weak validators compare equal.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(if_none_match(&headers, "\"a\""));
        assert!(if_none_match(&headers, "\"b\""));
        assert!(!if_none_match(&headers, "\"c\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"a\""));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain-key"), "plain-key");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
