//! One HTTP listener: actix-web's app served over actix-server directly
//! (instead of `HttpServer`) so each connection's socket can be wrapped in
//! [`JsonRefusals`] — the only place the HTTP library's own refusals can be
//! given a JSON body. The settings are `HttpServer`'s defaults.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Protocol, Request};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response};

use super::refusals::{JsonRefusals, Listener};
use crate::metrics::Metrics;

/// How a listener is run.
pub(crate) struct Settings {
    pub(crate) listener: Listener,
    pub(crate) workers: usize,
    /// This listener's share of the descriptor budget: a connection that
    /// finds no place is answered `503` and closed at once.
    pub(crate) share: Arc<crate::capacity::Share>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

/// Keep-alive and head timeouts as actix-web's `HttpServer` has them.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection the listener has no place for: told `503` (with
/// `Retry-After`, in the listener's JSON error shape) in one short write,
/// then closed, rather than left to time out in the kernel's backlog.
async fn refuse(mut io: tokio::net::TcpStream, listener: Listener) {
    use tokio::io::AsyncWriteExt;
    let message = "this listener holds all the connections it may; retry shortly";
    let body = match listener {
        Listener::Application => serde_json::json!({"errorCode": "GENERAL", "errorDetails": message}),
        Listener::Operator => serde_json::json!({"error": {"code": "FULL", "message": message}}),
    }
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), io.write_all(answer.as_bytes())).await;
    let _ = io.shutdown().await;
}

/// Serves `app` on `socket`; the returned server runs when awaited.
pub(crate) fn serve<F, I, S, B>(settings: Settings, socket: TcpListener, app: F) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local = socket.local_addr()?;
    let Settings { listener, workers, share, shutdown_timeout, metrics } = settings;
    let name = format!("rampart-{listener:?}-{local}");
    Server::build()
        .workers(workers)
        // The share decides; this only keeps one worker from holding more.
        .max_concurrent_connections(share.cap.max(1))
        .shutdown_timeout(shutdown_timeout.as_secs())
        .disable_signals()
        .listen(name, socket, move || {
            let metrics = metrics.clone();
            let share = share.clone();
            let http = HttpService::build()
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(HEAD_TIMEOUT)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .local_addr(local)
                .finish(map_config(app().into_factory().map_err(|error| error.into().error_response()), |_| {
                    AppConfig::default()
                }));
            fn_service(move |io: tokio::net::TcpStream| {
                let metrics = metrics.clone();
                let place = share.take();
                async move {
                    let Some(place) = place else {
                        refuse(io, listener).await;
                        return Err(actix_http::error::DispatchError::Io(std::io::Error::other(
                            "the listener is full",
                        )));
                    };
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    Ok((JsonRefusals::new(io, listener, metrics, place), Protocol::Http1, peer))
                }
            })
            .and_then(http)
        })
        .map(|builder| builder.run())
}
