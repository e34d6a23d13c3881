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
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use super::AppState;
use super::credentials::{evaluation_refused, sdk_key};
use crate::changes::{ChangeEvent, Next, Subscription};
use crate::environment::{Environment, Purpose};

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
    state
        .environments
        .authenticate(key.as_deref(), Purpose::Evaluate)
        .cloned()
        .map_err(|rejection| Box::new(evaluation_refused(rejection)))
}

/// Events are sent in slices of this many bytes: the HTTP layer copies one
/// slice at a time into a client's write buffer, so a client that stops
/// reading holds a slice, not a copy of the configuration.
const SLICE: usize = 16 << 10;

fn sse_response(feed: Feed) -> HttpResponse {
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|bytes| (Ok::<_, actix_web::Error>(bytes), feed))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
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

/// What a stream sends for each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/v1/stream`: the delta.
    Deltas,
    /// `/ofrep/v1/events`: "refetch".
    Refetch,
}

/// One client's stream, polled by the response itself: no task and no
/// queue per client. Events are shared `Bytes`, sent in slices; a client
/// whose missed events are no longer kept is told to reconnect (and gets
/// the current configuration) instead of being waited for.
struct Feed {
    kind: Kind,
    epoch: String,
    changes: Subscription,
    /// Whole events still to send, then the rest of the one being sent.
    pending: std::collections::VecDeque<Bytes>,
    current: Bytes,
    keep_alive: tokio::time::Interval,
    shutdown: tokio_util::sync::CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
    /// The last version sent.
    sent: u64,
    finished: bool,
}

impl Feed {
    fn new(state: &AppState, kind: Kind, changes: Subscription, sent: u64) -> Feed {
        let mut keep_alive = tokio::time::interval(state.heartbeat);
        keep_alive.reset();
        Feed {
            kind,
            epoch: state.environments.epoch.clone(),
            changes,
            pending: std::collections::VecDeque::new(),
            current: Bytes::new(),
            keep_alive,
            shutdown: state.shutdown.clone(),
            metrics: state.metrics.clone(),
            sent,
            finished: false,
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.current.is_empty() {
                let size = self.current.len().min(SLICE);
                return Some(self.current.split_to(size));
            }
            if let Some(next) = self.pending.pop_front() {
                self.current = next;
                continue;
            }
            if self.finished {
                return None;
            }
            let (next, last) = tokio::select! {
                _ = self.shutdown.cancelled() => (match self.kind {
                    Kind::Deltas => event("reconnect", None, "{\"reason\":\"the server is shutting down\"}"),
                    Kind::Refetch => Bytes::new(),
                }, true),
                _ = self.keep_alive.tick() => (Bytes::from_static(b": keep-alive\n\n"), false),
                next = self.changes.after(self.sent) => match next {
                    Next::Changes(changes) => {
                        self.sent = changes.last().map_or(self.sent, |c| c.version());
                        match self.kind {
                            Kind::Deltas => {
                                self.pending.extend(changes.iter().map(|c| delta_event(&self.epoch, c)));
                                continue;
                            }
                            // One refetch covers them all.
                            Kind::Refetch => (self.render(changes.last().expect("not empty")), false),
                        }
                    }
                    Next::Behind => match self.kind {
                        Kind::Deltas => {
                            self.metrics.rejected(crate::limits::Rejection::StreamBacklog);
                            (event("reconnect", None, "{\"reason\":\"fell too far behind\"}"), true)
                        }
                        Kind::Refetch => (event("message", None, "{\"type\":\"refetchEvaluation\"}"), false),
                    },
                    Next::Closed => (Bytes::new(), true),
                },
            };
            self.finished = last;
            self.current = next;
        }
    }

    fn render(&self, change: &ChangeEvent) -> Bytes {
        match self.kind {
            Kind::Deltas => delta_event(&self.epoch, change),
            Kind::Refetch => {
                let modified = change.at / 1000;
                let data = format!("{{\"type\":\"refetchEvaluation\",\"lastModified\":{modified}}}");
                event("message", Some(&format!("{}:{}", self.epoch, change.version())), &data)
            }
        }
    }
}

async fn stream(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let environment = match environment(&state, &request) {
        Ok(environment) => environment,
        Err(response) => return *response,
    };
    let epoch = state.environments.epoch.clone();
    let changes = environment.changes.subscribe();
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
    let mut feed = Feed::new(&state, Kind::Deltas, changes, current.version);
    match missed {
        Some(missed) => {
            let mut sent = resume_from.unwrap_or_default();
            for change in missed.iter().filter(|c| c.version() <= current.version) {
                feed.pending.push_back(delta_event(&epoch, change));
                sent = change.version();
            }
            feed.sent = sent;
        }
        None => {
            let snapshot = environment.changes.sse_snapshot(current.version, || {
                let data = format!(
                    "{{\"version\":{},\"environment\":{},\"document\":{}}}",
                    current.version,
                    serde_json::to_string(&environment.name).unwrap_or_default(),
                    String::from_utf8_lossy(&environment.changes.document_json(&current))
                );
                event("snapshot", Some(&format!("{epoch}:{}", current.version)), &data)
            });
            feed.pending.push_back(snapshot);
        }
    }
    sse_response(feed)
}

/// OFREP change notification: a `refetchEvaluation` message after every
/// change of the environment.
async fn ofrep_events(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let environment = match environment(&state, &request) {
        Ok(environment) => environment,
        Err(response) => return *response,
    };
    let changes = environment.changes.subscribe();
    let mut feed = Feed::new(&state, Kind::Refetch, changes, environment.snapshot().version);
    feed.pending.push_back(Bytes::from_static(b": connected\n\n"));
    sse_response(feed)
}
