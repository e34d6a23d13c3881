//! flagd's sync service: the full flag configuration on subscribe and
//! again after every change, for flagd providers evaluating in-process.

use std::pin::Pin;
use std::sync::Arc;

use rampart_proto::flagd::sync::v1::flag_sync_service_server::FlagSyncService;
use rampart_proto::flagd::sync::v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse, SyncFlagsRequest,
    SyncFlagsResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::GrpcState;
use super::convert::to_struct;
use crate::environment::Environment;

#[derive(Debug, Clone)]
pub(crate) struct FlagdSync {
    pub(crate) state: GrpcState,
}

/// Where one `SyncFlags` subscriber is.
struct Follow {
    environment: Arc<Environment>,
    changes: crate::changes::Subscription,
    shutdown: tokio_util::sync::CancellationToken,
    /// The version last sent (`None` before the first message).
    sent: Option<u64>,
}

impl Follow {
    /// The next configuration to send: the current one, once it is newer
    /// than what was sent; `None` ends the stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            let current = self.environment.snapshot();
            if self.sent.is_none_or(|sent| current.version > sent) {
                self.sent = Some(current.version);
                return Some(String::from_utf8_lossy(&self.environment.changes.flagd_json(&current)).into_owned());
            }
            let sent = self.sent.unwrap_or_default();
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                // Missed versions are fine: the current configuration covers them.
                newer = self.changes.newer_than(sent) => if !newer { return None },
            }
        }
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncFlagsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlagSyncService for FlagdSync {
    type SyncFlagsStream = SyncStream;

    /// The configuration now, then again after every change. The stream is
    /// polled by the response itself (no task, no queue per client) and
    /// always sends the *latest* configuration: a client that is slow to
    /// read skips the versions it missed rather than queueing them, so it
    /// holds at most the one message its connection is sending.
    async fn sync_flags(&self, request: Request<SyncFlagsRequest>) -> Result<Response<SyncStream>, Status> {
        let (metadata, _, body) = request.into_parts();
        let environment = self.state.environment(&metadata, Some(&body.selector))?;
        // Subscribe before reading the snapshot, so no change falls between.
        let changes = environment.changes.subscribe();
        let follow = Follow { environment, changes, shutdown: self.state.shutdown.clone(), sent: None };
        // The environment's static context values, which in-process
        // providers add to every evaluation (flagd's `sync_context`).
        let values = follow.environment.context.values();
        let sync_context = (!values.is_empty()).then(|| to_struct(values));
        let stream = futures_util::stream::unfold(follow, move |mut follow| {
            let sync_context = sync_context.clone();
            async move {
                let configuration = follow.next().await?;
                Some((Ok(SyncFlagsResponse { flag_configuration: configuration, sync_context }), follow))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let environment = self.state.environment(&metadata, Some(&body.selector))?;
        let configuration = environment.changes.flagd_json(&environment.snapshot());
        Ok(Response::new(FetchAllFlagsResponse {
            flag_configuration: String::from_utf8_lossy(&configuration).into_owned(),
        }))
    }

    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let environment = self.state.environment(request.metadata(), None)?;
        let snapshot = environment.snapshot();
        Ok(Response::new(GetMetadataResponse { metadata: Some(to_struct(snapshot.flags.metadata())) }))
    }
}
