//! gRPC services, on their own listeners beside the HTTP ones: flagd's
//! evaluation services v1 and v2 (`--grpc-addr`, default 8013) and flagd's
//! sync service plus Rampart's own sync (`--sync-addr`, default 8015).
//!
//! tonic runs on a dedicated thread with its own multi-threaded runtime
//! (actix-web runs one single-threaded runtime per worker). Every stream
//! ends when the server shuts down, so shutdown never waits on a client.

mod convert;
mod evaluation;
mod flagd_sync;
mod rampart_sync;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rampart_proto::flagd::evaluation::{v1, v2};
use rampart_proto::flagd::sync::v1::flag_sync_service_server::FlagSyncServiceServer;
use rampart_proto::rampart::v1::flag_sync_server::FlagSyncServer;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Code, Status};

use crate::environment::{Environment, Environments, KeyRejection};
use crate::metrics::Metrics;

/// What every gRPC service shares.
#[derive(Debug, Clone)]
pub(crate) struct GrpcState {
    pub(crate) environments: Arc<Environments>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<dyn crate::store::Store>,
    pub(crate) ramps: Arc<crate::ramp::controller::Controller>,
    pub(crate) shutdown: CancellationToken,
    /// How often streams send keep-alives (flagd: 20 s).
    pub(crate) heartbeat: Duration,
}

impl GrpcState {
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
        match self.environments.for_key(key) {
            Ok(environment) => Ok(environment.clone()),
            Err(KeyRejection::Missing) => Err(Status::unauthenticated(
                "an SDK key is required: send it as 'authorization: Bearer <key>', 'x-api-key', or the flagd selector",
            )),
            Err(KeyRejection::Unknown) => Err(Status::unauthenticated("the SDK key is not valid for any environment")),
        }
    }
}

/// Serves both gRPC listeners on a dedicated thread until `shutdown`.
pub(crate) fn spawn(
    state: GrpcState,
    evaluation: TcpListener,
    sync: TcpListener,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<()>>> {
    std::thread::Builder::new().name("grpc".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("grpc-worker")
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            evaluation.set_nonblocking(true)?;
            sync.set_nonblocking(true)?;
            let evaluation = tokio::net::TcpListener::from_std(evaluation)?;
            let sync = tokio::net::TcpListener::from_std(sync)?;
            let service = evaluation::Evaluation { state: state.clone() };
            let evaluation_server = Server::builder()
                .add_service(v1::service_server::ServiceServer::new(service.clone()))
                .add_service(v2::service_server::ServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(evaluation),
                    state.shutdown.clone().cancelled_owned(),
                );
            let sync_server = Server::builder()
                .add_service(FlagSyncServiceServer::new(flagd_sync::FlagdSync { state: state.clone() }))
                .add_service(FlagSyncServer::new(rampart_sync::RampartSync { state: state.clone() }))
                .serve_with_incoming_shutdown(TcpListenerStream::new(sync), state.shutdown.clone().cancelled_owned());
            let (a, b) = tokio::join!(evaluation_server, sync_server);
            a.and(b).map_err(std::io::Error::other)
        })
    })
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
