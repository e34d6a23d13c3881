//! Server-sent events on the application listener, for clients that speak
//! only HTTP.
//!
//! - `GET /v1/stream`: the environment's configuration, then every change
//!   as a delta, with event ids (`<epoch>:<version>`) so a reconnecting
//!   client that sends `Last-Event-ID` receives only what it missed.
//! - `GET /ofrep/v1/events`: OFREP's change notification (`refetchEvaluation`
//!   events), advertised in bulk responses as `eventStreams`, so OFREP web
//!   providers refresh on change instead of polling.
//!
//! Both send a keep-alive comment between events and end with a
//! `reconnect` event when the server shuts down or the client falls too
//! far behind.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::ofrep::sdk_key;
use crate::changes::ChangeEvent;
use crate::environment::{Environment, KeyRejection};

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.route("/v1/stream", web::get().to(stream)).route("/ofrep/v1/events", web::get().to(ofrep_events));
}

/// The environment for a stream: SDK key from the headers or, for
/// `EventSource` clients that cannot set headers, the `key` query parameter.
fn environment(state: &AppState, request: &HttpRequest) -> Result<Arc<Environment>, Box<HttpResponse>> {
    let query_key = web::Query::<std::collections::HashMap<String, String>>::from_query(request.query_string())
        .ok()
        .and_then(|q| q.get("key").cloned());
    let key = sdk_key(request.headers()).map(str::to_owned).or(query_key);
    if key.as_deref().is_some_and(|k| state.admin.is_token(k)) {
        let body = json!({"errorDetails": "admin tokens cannot read flag streams: use an SDK key"});
        return Err(Box::new(HttpResponse::Forbidden().json(body)));
    }
    state.environments.for_key(key.as_deref()).cloned().map_err(|rejection| {
        let details = match rejection {
            KeyRejection::Missing => "an SDK key is required (Authorization: Bearer, X-API-Key, or ?key=)",
            KeyRejection::Unknown => "the SDK key is not valid for any environment",
        };
        Box::new(
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(json!({"errorDetails": details})),
        )
    })
}

fn sse_response(receiver: mpsc::Receiver<Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(ReceiverStream::new(receiver).map(Ok::<_, actix_web::Error>))
}

fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut text = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    text.push_str("event: ");
    text.push_str(name);
    text.push_str("\ndata: ");
    text.push_str(data);
    text.push_str("\n\n");
    Bytes::from(text)
}

/// A change as an SSE `delta` event, rendered once per change for all clients.
fn delta_event(epoch: &str, change: &ChangeEvent) -> Bytes {
    change.sse_delta(|| render_delta(epoch, change))
}

fn render_delta(epoch: &str, change: &ChangeEvent) -> Bytes {
    let removed: Vec<&str> = change.removed().collect();
    let data = format!(
        "{{\"from\":{},\"version\":{},\"upserts\":{},\"removed\":{}}}",
        change.from_version,
        change.version(),
        change.upserts_json(),
        serde_json::to_string(&removed).unwrap_or_else(|_| "[]".into())
    );
    event("delta", Some(&format!("{epoch}:{}", change.version())), &data)
}

async fn stream(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let environment = match environment(&state, &request) {
        Ok(environment) => environment,
        Err(response) => return *response,
    };
    let epoch = state.environments.epoch.clone();
    let mut changes = environment.changes.subscribe();
    let current = environment.snapshot();
    // Last-Event-ID: "<epoch>:<version>".
    let resume_from = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once(':'))
        .filter(|(id_epoch, _)| *id_epoch == epoch)
        .and_then(|(_, version)| version.parse::<u64>().ok())
        .filter(|version| *version <= current.version);
    let missed = resume_from.and_then(|version| environment.changes.since(version));
    let (sender, receiver) = mpsc::channel::<Bytes>(8);
    let shutdown = state.shutdown.clone();
    let heartbeat = state.heartbeat;
    actix_web::rt::spawn(async move {
        let mut sent = match missed {
            Some(missed) => {
                let mut sent = resume_from.unwrap_or_default();
                for change in missed.iter().filter(|c| c.version() <= current.version) {
                    if sender.send(delta_event(&epoch, change)).await.is_err() {
                        return;
                    }
                    sent = change.version();
                }
                sent
            }
            None => {
                let data = format!(
                    "{{\"version\":{},\"environment\":{},\"document\":{}}}",
                    current.version,
                    serde_json::to_string(&environment.name).unwrap_or_default(),
                    current.document_json()
                );
                if sender.send(event("snapshot", Some(&format!("{epoch}:{}", current.version)), &data)).await.is_err() {
                    return;
                }
                current.version
            }
        };
        let mut keep_alive = tokio::time::interval(heartbeat);
        keep_alive.tick().await;
        loop {
            let (next, last) = tokio::select! {
                _ = shutdown.cancelled() => (event("reconnect", None, "{\"reason\":\"the server is shutting down\"}"), true),
                _ = keep_alive.tick() => (Bytes::from_static(b": keep-alive\n\n"), false),
                change = changes.recv() => match change {
                    Ok(change) if change.version() <= sent => continue,
                    Ok(change) => {
                        sent = change.version();
                        (delta_event(&epoch, &change), false)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => (event("reconnect", None, "{\"reason\":\"fell too far behind\"}"), true),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if sender.send(next).await.is_err() || last {
                break;
            }
        }
    });
    sse_response(receiver)
}

/// OFREP change notification: a `refetchEvaluation` message after every
/// change of the environment.
async fn ofrep_events(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let environment = match environment(&state, &request) {
        Ok(environment) => environment,
        Err(response) => return *response,
    };
    let epoch = state.environments.epoch.clone();
    let mut changes = environment.changes.subscribe();
    let (sender, receiver) = mpsc::channel::<Bytes>(8);
    let shutdown = state.shutdown.clone();
    let heartbeat = state.heartbeat;
    actix_web::rt::spawn(async move {
        if sender.send(Bytes::from_static(b": connected\n\n")).await.is_err() {
            return;
        }
        let mut keep_alive = tokio::time::interval(heartbeat);
        keep_alive.tick().await;
        loop {
            let (next, last) = tokio::select! {
                _ = shutdown.cancelled() => (Bytes::new(), true),
                _ = keep_alive.tick() => (Bytes::from_static(b": keep-alive\n\n"), false),
                change = changes.recv() => match change {
                    Ok(change) => {
                        let modified = change.snapshot.loaded_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
                        let data = format!("{{\"type\":\"refetchEvaluation\",\"lastModified\":{modified}}}");
                        (event("message", Some(&format!("{epoch}:{}", change.version())), &data), false)
                    }
                    // Missed events: one refetch covers them all.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        (event("message", None, "{\"type\":\"refetchEvaluation\"}"), false)
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if (!next.is_empty() && sender.send(next).await.is_err()) || last {
                break;
            }
        }
    });
    sse_response(receiver)
}
