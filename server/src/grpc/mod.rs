//! gRPC services, on their own listeners beside the HTTP ones: flagd's
//! evaluation services v1 and v2 (`--grpc-addr`, default 8013) and flagd's
//! sync service plus Rampart's own sync (`--sync-addr`, default 8015).
//!
//! tonic runs on a dedicated thread with its own multi-threaded runtime of
//! as many workers as the HTTP listeners have (`--workers`, by default the
//! CPUs the process may use), so a stream fan-out uses every core it is
//! given (docs/benchmarks-streams.md); actix-web runs one single-threaded
//! runtime per worker. Every stream
//! ends when the server shuts down, so shutdown never waits on a client.

mod connections;
mod convert;
mod evaluation;
mod flagd_sync;
mod h2_stream;
mod otlp;
mod rampart_sync;
mod subscribe;
mod sync_listener;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rampart_proto::flagd::evaluation::{v1, v2};
use rampart_proto::flagd::sync::v1::flag_sync_service_server::FlagSyncServiceServer;
use rampart_proto::rampart::v1::flag_sync_server::FlagSyncServer;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Code, Status};

use crate::environment::{Environment, KeyRejection, Purpose, Trust};

/// The gRPC services share what every transport has.
pub(crate) use crate::services::Services as GrpcState;

/// Keys as gRPC calls carry them.
impl crate::services::Services {
    /// The environment the caller's SDK key selects: from `authorization:
    /// Bearer`, `x-api-key`, or `flagd-selector` (flagd providers can only
    /// send a selector). With open evaluation, the one environment.
    pub(crate) fn environment(
        &self,
        metadata: &MetadataMap,
        selector: Option<&str>,
    ) -> Result<Arc<Environment>, Status> {
        let header =
            |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
        let key = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| header("x-api-key"))
            .or_else(|| header("flagd-selector"))
            .or(selector.filter(|s| !s.is_empty()));
        self.environments.authenticate(key, Purpose::Evaluate).cloned().map_err(Status::from)
    }

    /// The environment an outcome report's key selects (a reporter key
    /// where the environment has them).
    pub(crate) fn reporter(&self, metadata: &MetadataMap) -> Result<(Arc<Environment>, Trust), Status> {
        let key = bearer_or_api_key(metadata);
        match self.environments.reporter(key.as_deref()) {
            Ok((environment, trust)) => Ok((environment.clone(), trust)),
            Err(rejection) => {
                if rejection == KeyRejection::NotAReporter {
                    self.metrics.refused_outcome(crate::limits::OutcomeRefusal::SdkKey, None);
                }
                Err(Status::from(rejection))
            }
        }
    }
}

/// A key from `authorization: Bearer …`, else `x-api-key`.
pub(crate) fn bearer_or_api_key(metadata: &MetadataMap) -> Option<String> {
    let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| header("x-api-key"))
        .map(str::to_owned)
}

impl From<KeyRejection> for Status {
    fn from(rejection: KeyRejection) -> Status {
        if rejection.is_temporary() {
            Status::unavailable(rejection.message())
        } else if rejection.is_forbidden() {
            Status::permission_denied(rejection.message())
        } else {
            Status::unauthenticated(rejection.message())
        }
    }
}

/// Concurrent streams per connection on the evaluation listener (unary
/// calls and event streams) and on the sync listener (a provider opens one
/// or two).
const EVALUATION_STREAMS: u32 = 256;
const SYNC_STREAMS: u32 = 16;

/// Concurrent streams per connection on the OTLP/gRPC listener (unary
/// exports; the Collector sends a few at once).
const OTLP_STREAMS: u32 = 64;

/// Serves the gRPC listeners on a dedicated thread until `shutdown`: the
/// evaluation and sync listeners, and the OTLP receiver when configured.
pub(crate) fn spawn(
    state: GrpcState,
    (evaluation, sync, otlp): (TcpListener, TcpListener, Option<TcpListener>),
    capacity: &crate::capacity::Capacity,
    workers: usize,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<()>>> {
    let shares = (capacity.share("grpc"), capacity.share("sync"), otlp.as_ref().map(|_| capacity.share("otlp_grpc")));
    std::thread::Builder::new().name("grpc".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("grpc-worker")
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            evaluation.set_nonblocking(true)?;
            sync.set_nonblocking(true)?;
            if let Some(otlp) = &otlp {
                otlp.set_nonblocking(true)?;
            }
            let incoming = |listener: TcpListener, share| -> std::io::Result<_> {
                Ok(connections::incoming(
                    tokio::net::TcpListener::from_std(listener)?,
                    share,
                    state.limits.handshake_timeout,
                    state.metrics.clone(),
                ))
            };
            let (evaluation_share, sync_share, otlp_share) = shares;
            let (evaluation, sync) = (incoming(evaluation, evaluation_share)?, incoming(sync, sync_share)?);
            let limit = state.max_body_bytes;
            let service = evaluation::Evaluation { state: state.clone() };
            let evaluation_server = builder(EVALUATION_STREAMS)
                .add_service(v1::service_server::ServiceServer::new(service.clone()).max_decoding_message_size(limit))
                .add_service(v2::service_server::ServiceServer::new(service).max_decoding_message_size(limit))
                .serve_with_incoming_shutdown(evaluation, state.shutdown.clone().cancelled_owned());
            let rampart = rampart_sync::RampartSync { state: state.clone(), applied: Arc::default() };
            let routes = tonic::service::Routes::new(
                FlagSyncServiceServer::new(flagd_sync::FlagdSync { state: state.clone() })
                    .max_decoding_message_size(limit),
            )
            .add_service(FlagSyncServer::new(rampart.clone()).max_decoding_message_size(limit))
            .prepare();
            let sync_server = async {
                let services = sync_listener::SyncServices { routes, rampart };
                sync_listener::serve(sync, services, state.shutdown.clone()).await;
                Ok::<(), tonic::transport::Error>(())
            };
            let otlp_server = async {
                let (Some(listener), Some(share)) = (otlp, otlp_share) else { return Ok(()) };
                use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
                use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
                let gzip = tonic::codec::CompressionEncoding::Gzip;
                builder(OTLP_STREAMS)
                    .add_service(
                        TraceServiceServer::new(otlp::OtlpTraces { state: state.clone() })
                            .accept_compressed(gzip)
                            .max_decoding_message_size(state.limits.otlp_body_bytes),
                    )
                    .add_service(
                        MetricsServiceServer::new(otlp::OtlpMetrics { state: state.clone() })
                            .accept_compressed(gzip)
                            .max_decoding_message_size(state.limits.otlp_body_bytes),
                    )
                    .serve_with_incoming_shutdown(incoming(listener, share)?, state.shutdown.clone().cancelled_owned())
                    .await
                    .map_err(std::io::Error::other)
            };
            let servers = async {
                let (a, b, c) = tokio::join!(evaluation_server, sync_server, otlp_server);
                a.and(b).map_err(std::io::Error::other).and(c)
            };
            // A graceful stop waits for each connection to acknowledge it; a
            // client that never reads (frozen, or cut off with its socket
            // still open) would hold the shutdown forever. After the drain
            // time the runtime is dropped, and every connection with it.
            let drained = async {
                state.shutdown.cancelled().await;
                tokio::time::sleep(DRAIN).await;
            };
            tokio::select! {
                result = servers => result,
                () = drained => {
                    tracing::warn!(seconds = DRAIN.as_secs(), "gRPC connections still open after the drain time at shutdown: closed");
                    Ok(())
                }
            }
        })
    })
}

/// How long a stopping server waits for gRPC connections to close.
const DRAIN: Duration = Duration::from_secs(5);

/// A server with keep-alive pings: a peer that stops answering them (gone,
/// or not reading at all) is disconnected, and its stream's buffers freed.
/// `streams` bounds the streams one connection may open at once, so the
/// connection cap also bounds the streams (each of which may hold one
/// message that its client has not read yet).
fn builder(streams: u32) -> Server {
    Server::builder()
        .max_concurrent_streams(Some(streams))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
}

/// A failed evaluation as a gRPC status, as flagd maps them.
pub(crate) fn status(code: rampart_engine::ErrorCode, message: &str) -> Status {
    use rampart_engine::ErrorCode::*;
    let code = match code {
        FlagNotFound => Code::NotFound,
        TypeMismatch => Code::InvalidArgument,
        ParseError => Code::DataLoss,
        InvalidContext | TargetingKeyMissing => Code::InvalidArgument,
        General => Code::Unknown,
    };
    Status::new(code, message.to_owned())
}
