//! flagd's sync service: the full flag configuration on subscribe and
//! again after every change, for flagd providers evaluating in-process.

use std::pin::Pin;

use rampart_proto::flagd::sync::v1::flag_sync_service_server::FlagSyncService;
use rampart_proto::flagd::sync::v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse, SyncFlagsRequest,
    SyncFlagsResponse,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::GrpcState;
use super::convert::to_struct;

#[derive(Debug, Clone)]
pub(crate) struct FlagdSync {
    pub(crate) state: GrpcState,
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncFlagsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlagSyncService for FlagdSync {
    type SyncFlagsStream = SyncStream;

    async fn sync_flags(&self, request: Request<SyncFlagsRequest>) -> Result<Response<SyncStream>, Status> {
        let (metadata, _, body) = request.into_parts();
        let environment = self.state.environment(&metadata, Some(&body.selector))?;
        // Subscribe before reading the snapshot, so no change falls between.
        let mut changes = environment.changes.subscribe();
        let first = environment.snapshot();
        let (sender, receiver) = mpsc::channel(4);
        let shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            let message =
                |json: &str| Ok(SyncFlagsResponse { flag_configuration: json.to_owned(), sync_context: None });
            if sender.send(message(first.flagd_json())).await.is_err() {
                return;
            }
            let mut sent = first.version;
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    event = changes.recv() => match event {
                        Ok(event) if event.version() <= sent => continue,
                        Ok(event) => {
                            sent = event.version();
                            message(event.snapshot.flagd_json())
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            Err(Status::unavailable("this stream fell behind; reconnect to resynchronise"))
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                let failed = next.is_err();
                if sender.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let environment = self.state.environment(&metadata, Some(&body.selector))?;
        Ok(Response::new(FetchAllFlagsResponse { flag_configuration: environment.snapshot().flagd_json().to_owned() }))
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
