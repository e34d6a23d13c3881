//! The sync listener (`--sync-addr`), served on `h2` directly.
//!
//! Every connected SDK, provider and relay holds a stream here, and every
//! change is written to all of them at once, so this listener's cost per
//! stream and message bounds how many clients one core keeps up to date
//! (docs/benchmarks-streams.md). `rampart.v1 Subscribe` is written by
//! `subscribe` from its connection's own task: one wake-up per message,
//! where hyper's per-stream task and tonic's body layers took several. Every
//! other call (flagd's sync, outcome, track and usage reports) goes to the
//! tonic services as before, its response written by `h2_stream::pipe`.
//!
//! What hyper did for these connections is done here: at most
//! `SYNC_STREAMS` streams per connection, keep-alive pings (a peer that
//! stops answering is disconnected and its buffers freed), and at shutdown
//! a GOAWAY, after which open streams end (a subscription sends
//! `Reconnect`) and the connection closes; `grpc::spawn` drops whatever is
//! still open after its drain time. The client's `grpc-timeout` is
//! honoured as tonic's server honoured it: a call to the tonic services
//! not answered in time ends, here with `DEADLINE_EXCEEDED` (tonic said
//! `CANCELLED`).

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use h2::server::SendResponse;
use h2::{Ping, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::connections::Guarded;
use super::h2_stream::{self, RequestBody};
use super::rampart_sync::RampartSync;
use super::subscribe;

/// How often a connection is pinged, idle or not, and how long the peer
/// has to answer.
#[derive(Debug, Clone, Copy)]
struct Keepalive {
    interval: Duration,
    timeout: Duration,
}

/// As the other gRPC listeners.
const KEEPALIVE: Keepalive = Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(20) };

/// Calls one connection may hold at once, including ones its client
/// cancelled that have not noticed yet: as many as it may open.
const CALLS: usize = super::SYNC_STREAMS as usize;

/// What the sync listener serves.
#[derive(Clone)]
pub(crate) struct SyncServices {
    /// flagd's sync and Rampart's report calls, by path.
    pub(crate) routes: tonic::service::Routes,
    /// Rampart's sync, whose `Subscribe` is served here.
    pub(crate) rampart: RampartSync,
}

/// Serves connections until `shutdown`, then waits for them to close.
pub(crate) async fn serve(
    incoming: impl Stream<Item = std::io::Result<Guarded>>,
    services: SyncServices,
    shutdown: CancellationToken,
) {
    let mut incoming = Box::pin(incoming);
    let mut stopping = pin!(shutdown.clone().cancelled_owned());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut stopping => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = incoming.next() => match accepted {
                Some(Ok(io)) => {
                    connections.spawn(connection(io, services.clone(), shutdown.clone()));
                }
                Some(Err(_)) => {}
                None => break,
            },
        }
    }
    // No new connections: the listener closes with `incoming`.
    drop(incoming);
    while connections.join_next().await.is_some() {}
}

/// The HTTP/2 settings of a sync connection: hyper's defaults (which the
/// listener had before), with `SYNC_STREAMS` streams at most.
fn settings() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(super::SYNC_STREAMS)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_frame_size(16 << 10)
        .max_header_list_size(16 << 10)
        .max_local_error_reset_streams(Some(1024))
        .max_send_buffer_size(400 << 10);
    builder
}

/// One connection, its calls dispatched by path.
async fn connection(io: Guarded, services: SyncServices, shutdown: CancellationToken) {
    let peer = io.connect_info();
    let metrics = services.rampart.state.metrics.clone();
    let dispatch = |request, respond| call(request, respond, services.clone(), peer.clone());
    drive(io, shutdown, KEEPALIVE, dispatch, || metrics.rejected(crate::limits::Rejection::StreamCalls)).await;
}

/// Drives one connection to its end: its calls are polled by this task,
/// with the connection itself (which reads frames and writes what the
/// calls queued).
///
/// A change wakes every connection at once, so one wake-up and one pass
/// per message is what this loop is built for: the calls are polled
/// first and the connection right after, which writes what they queued;
/// h2's own wake-ups from those writes are not passed on
/// (`ConnectionWaker`); pings and the shutdown wait sit in
/// `housekeeping`, polled only when one of them is due.
async fn drive<Io, Call>(
    io: Io,
    shutdown: CancellationToken,
    keepalive: Keepalive,
    mut dispatch: impl FnMut(http::Request<RecvStream>, SendResponse<Bytes>) -> Call,
    refused: impl Fn(),
) where
    Io: AsyncRead + AsyncWrite + Unpin,
    Call: Future<Output = ()>,
{
    // The preface's deadline is the socket's (`Guarded`).
    let mut connection = match settings().handshake::<_, Bytes>(io).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(%error, "a gRPC sync connection failed its handshake");
            return;
        }
    };
    let Some(pings) = connection.ping_pong() else { return };
    let mut housekeeping: FuturesUnordered<Pin<Box<dyn Future<Output = Housekeeping> + Send>>> =
        FuturesUnordered::new();
    housekeeping.push(Box::pin(async move {
        shutdown.cancelled_owned().await;
        Housekeeping::Stop
    }));
    housekeeping.push(Box::pin(ping(pings, keepalive)));
    let waker = Arc::new(ConnectionWaker::default());
    let connection_waker = Waker::from(waker.clone());
    let mut calls: Vec<Pin<Box<Call>>> = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = poll_fn(|cx| waker.quiet_while(|| poll_calls(&mut calls, cx))) => {}
            accepted = poll_fn(|cx| {
                waker.wakes(cx.waker());
                connection.poll_accept(&mut Context::from_waker(&connection_waker))
            }) => match accepted {
                Some(Ok((request, mut respond))) => {
                    // h2 counts a stream the client cancelled as closed at
                    // once; its call ends at its next write. Counted here
                    // until then, so cancelling and calling again cannot
                    // pile up calls.
                    if calls.len() >= CALLS {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        refused();
                    } else {
                        calls.push(Box::pin(dispatch(request, respond)));
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "a gRPC sync connection ended");
                    break;
                }
                None => break,
            },
            Some(due) = housekeeping.next() => match due {
                Housekeeping::Stop => connection.graceful_shutdown(),
                Housekeeping::Unanswered => {
                    tracing::debug!("a gRPC sync connection did not answer a keep-alive ping: closed");
                    break;
                }
                Housekeeping::Gone => break,
            },
        }
    }
}

/// Polls every call of a connection (at most `CALLS`, usually one
/// subscription) and drops those that ended; never ready. Not a
/// `FuturesUnordered`: after polling all of its futures it wakes its task
/// again (to be fair to other tasks), which for one subscription is a
/// second pass over the connection for every message.
fn poll_calls<Call: Future<Output = ()>>(calls: &mut Vec<Pin<Box<Call>>>, cx: &mut Context<'_>) -> Poll<()> {
    calls.retain_mut(|call| call.as_mut().poll(cx).is_pending());
    Poll::Pending
}

/// What a connection's housekeeping found due.
enum Housekeeping {
    /// The server is stopping: say GOAWAY, let the streams end.
    Stop,
    /// A ping went unanswered for the keep-alive timeout.
    Unanswered,
    /// The connection can no longer send pings.
    Gone,
}

/// Pings the peer every `interval`; ends when an answer does not come
/// within `timeout`.
async fn ping(mut pings: h2::PingPong, keepalive: Keepalive) -> Housekeeping {
    loop {
        tokio::time::sleep(keepalive.interval).await;
        if pings.send_ping(Ping::opaque()).is_err() {
            return Housekeeping::Gone;
        }
        match tokio::time::timeout(keepalive.timeout, poll_fn(|cx| pings.poll_pong(cx))).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Housekeeping::Gone,
            Err(_) => return Housekeeping::Unanswered,
        }
    }
}

/// The waker h2 keeps for the connection. Writing to a stream wakes the
/// connection so that it sends what was written; the calls write while
/// the connection's task polls them and the connection is polled right
/// after, so those wake-ups would only poll everything a second time.
/// They are dropped while the calls are polled; any other (the socket
/// became readable, a window opened) wakes the task.
#[derive(Default)]
struct ConnectionWaker {
    task: Mutex<Option<Waker>>,
    quiet: AtomicBool,
}

impl ConnectionWaker {
    /// The task to wake.
    fn wakes(&self, task: &Waker) {
        let mut current = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !current.as_ref().is_some_and(|current| current.will_wake(task)) {
            *current = Some(task.clone());
        }
    }

    /// Runs `poll` (the calls) with wake-ups of the connection dropped.
    fn quiet_while<T>(&self, poll: impl FnOnce() -> T) -> T {
        self.quiet.store(true, Ordering::Release);
        let result = poll();
        self.quiet.store(false, Ordering::Release);
        result
    }
}

impl Wake for ConnectionWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.quiet.load(Ordering::Acquire) {
            return;
        }
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// One call on the connection, answered to its end.
async fn call(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    services: SyncServices,
    peer: TcpConnectInfo,
) {
    if request.uri().path() == subscribe::PATH {
        return subscribe::serve(services.rampart, request, respond).await;
    }
    // Boxed: every call on the connection is as large as its largest
    // kind, and most of them are subscriptions.
    Box::pin(tonic_call(request, respond, services.routes, peer)).await;
}

/// A call for the tonic services, answered `DEADLINE_EXCEEDED` when the
/// client's `grpc-timeout` passes before the response begins. Tonic's own
/// server bounds the same span but answers `CANCELLED`; gRPC's code for a
/// passed deadline is the one used here. A streamed response then runs
/// until the client cancels it, and a report already taken when the
/// deadline passes stays taken, as when the client gives up at that same
/// moment. `Subscribe` needs no such bound: its response begins as soon as
/// its request is read, which `bodyReadTimeoutSeconds` bounds.
async fn tonic_call(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    mut routes: tonic::service::Routes,
    peer: TcpConnectInfo,
) {
    let timeout = h2_stream::grpc_timeout(request.headers());
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(peer);
    let response = tower_service::Service::call(&mut routes, http::Request::from_parts(parts, RequestBody(body)));
    let response = match timeout {
        Some(timeout) => match tokio::time::timeout(timeout, response).await {
            Ok(Ok(response)) => response,
            Err(_) => {
                let status = tonic::Status::deadline_exceeded("the call's grpc-timeout passed before it was answered");
                return h2_stream::refuse(respond, status);
            }
        },
        None => {
            let Ok(response) = response.await;
            response
        }
    };
    h2_stream::pipe(respond, response).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::AsyncWriteExt;

    /// Short, so the tests run in real time; the answer's time is long
    /// enough for a loaded machine's scheduler.
    const PINGS: Keepalive = Keepalive { interval: Duration::from_millis(100), timeout: Duration::from_secs(2) };

    /// Answers every call with an empty `200`.
    async fn ok(_: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
        let _ = respond.send_response(http::Response::new(()), true);
    }

    #[tokio::test]
    async fn a_peer_that_stops_answering_pings_is_disconnected() {
        let (server, mut peer) = tokio::io::duplex(1 << 16);
        let started = Instant::now();
        let connection = tokio::spawn(drive(server, CancellationToken::new(), PINGS, ok, || {}));
        // A client preface and empty SETTINGS, then nothing: not even the
        // answer to a ping.
        peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
        peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("settings");
        tokio::time::timeout(Duration::from_secs(30), connection).await.expect("closed").expect("joined");
        let waited = started.elapsed();
        assert!(waited >= PINGS.interval + PINGS.timeout, "closed before the ping's answer was due: {waited:?}");
    }

    #[tokio::test]
    async fn a_peer_that_answers_pings_stays_connected() {
        let (server, peer) = tokio::io::duplex(1 << 16);
        let connection = tokio::spawn(drive(server, CancellationToken::new(), PINGS, ok, || {}));
        let (mut client, peer_connection) = h2::client::handshake(peer).await.expect("handshake");
        // The client's connection task answers pings.
        tokio::spawn(peer_connection);
        // Through more pings than one ping's time to answer: a connection
        // closed for a missing answer would be closed by then.
        let through = Instant::now() + PINGS.timeout + PINGS.interval * 5;
        while Instant::now() < through {
            assert!(!connection.is_finished(), "closed although every ping was answered");
            tokio::time::sleep(PINGS.interval).await;
        }
        let request = http::Request::post("http://sync/any").body(()).expect("request");
        let (response, _) = client.send_request(request, true).expect("sent");
        assert_eq!(response.await.expect("answered").status(), http::StatusCode::OK);
        assert!(!connection.is_finished());
    }

    #[tokio::test]
    async fn calls_the_client_cancelled_count_until_they_end() {
        let (server, peer) = tokio::io::duplex(1 << 16);
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = refused.clone();
        // Calls that never end by themselves, as a subscription between
        // two messages.
        let endless = |_: http::Request<RecvStream>, respond: SendResponse<Bytes>| async move {
            let _respond = respond;
            std::future::pending::<()>().await
        };
        let count = move || {
            counted.fetch_add(1, Ordering::Relaxed);
        };
        tokio::spawn(drive(server, CancellationToken::new(), PINGS, endless, count));
        let (client, peer_connection) = h2::client::handshake(peer).await.expect("handshake");
        tokio::spawn(peer_connection);
        let mut client = client.ready().await.expect("ready");
        let request = || http::Request::post("http://sync/any").body(()).expect("request");
        // Opened and cancelled at once: h2 lets the client open more.
        for _ in 0..CALLS {
            let (_, mut stream) = client.send_request(request(), false).expect("sent");
            stream.send_reset(h2::Reason::CANCEL);
            client = client.ready().await.expect("ready");
        }
        let (response, _stream) = client.send_request(request(), false).expect("sent");
        let answer = tokio::time::timeout(Duration::from_secs(30), response).await.expect("answered in time");
        let refusal = answer.expect_err("refused");
        assert_eq!(refusal.reason(), Some(h2::Reason::REFUSED_STREAM), "{refusal}");
        assert_eq!(refused.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn shutdown_sends_goaway_and_the_connection_closes() {
        let (server, peer) = tokio::io::duplex(1 << 16);
        let shutdown = CancellationToken::new();
        let connection = tokio::spawn(drive(server, shutdown.clone(), PINGS, ok, || {}));
        let (client, peer_connection) = h2::client::handshake(peer).await.expect("handshake");
        let peer_connection = tokio::spawn(peer_connection);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), connection).await.expect("closed").expect("joined");
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(30), peer_connection).await.expect("peer saw the end");
        assert!(ended.expect("joined").is_ok(), "GOAWAY is a graceful end for the peer");
    }

    /// A tonic service whose `Never` call is never answered and whose
    /// other calls are answered at once with `grpc-status: 0`.
    #[derive(Clone)]
    struct Slow;

    impl tonic::server::NamedService for Slow {
        const NAME: &'static str = "test.Slow";
    }

    impl tower_service::Service<http::Request<tonic::body::Body>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let never = request.uri().path().ends_with("/Never");
            Box::pin(async move {
                if never {
                    std::future::pending::<()>().await;
                }
                Ok(tonic::Status::ok("").into_http())
            })
        }
    }

    #[tokio::test]
    async fn a_call_past_its_grpc_timeout_is_answered_deadline_exceeded() {
        let (server, peer) = tokio::io::duplex(1 << 16);
        let routes = tonic::service::Routes::new(Slow);
        let peer_info = TcpConnectInfo { local_addr: None, remote_addr: None };
        let dispatch = move |request, respond| tonic_call(request, respond, routes.clone(), peer_info.clone());
        tokio::spawn(drive(server, CancellationToken::new(), PINGS, dispatch, || {}));
        let (client, peer_connection) = h2::client::handshake(peer).await.expect("handshake");
        tokio::spawn(peer_connection);
        let mut client = client.ready().await.expect("ready");
        let call = |method: &str, timeout: &str| {
            http::Request::post(format!("http://sync/test.Slow/{method}"))
                .header("content-type", "application/grpc")
                .header("grpc-timeout", timeout)
                .body(())
                .expect("request")
        };
        let started = Instant::now();
        let (response, _) = client.send_request(call("Never", "100m"), true).expect("sent");
        let answer = tokio::time::timeout(Duration::from_secs(30), response).await.expect("answered").expect("ok");
        assert!(started.elapsed() >= Duration::from_millis(100), "answered before the deadline");
        assert_eq!(answer.headers().get("grpc-status").expect("a status"), "4", "DEADLINE_EXCEEDED");
        // A call answered within its deadline is passed through whole.
        let mut client = client.ready().await.expect("ready");
        let (response, _) = client.send_request(call("Now", "60S"), true).expect("sent");
        let answer = tokio::time::timeout(Duration::from_secs(30), response).await.expect("answered").expect("ok");
        assert_eq!(answer.headers().get("grpc-status").expect("a status"), "0");
    }
}
