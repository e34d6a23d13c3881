//! Rampart's own sync (`rampart.v1.FlagSync`), for the Rust SDK: a full
//! snapshot on connect, then deltas with only the flags that changed; a
//! client that reconnects with its epoch and last version receives only
//! what it missed; heartbeats in between; a `Reconnect` before the server
//! goes away or when the client fell too far behind.

use std::pin::Pin;
use std::sync::Arc;

use rampart_proto::rampart::v1::flag_sync_server::FlagSync;
use rampart_proto::rampart::v1::{Delta, Heartbeat, Reconnect, Snapshot, SubscribeRequest, SyncEvent, sync_event};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::GrpcState;
use crate::changes::ChangeEvent;

#[derive(Debug, Clone)]
pub(crate) struct RampartSync {
    pub(crate) state: GrpcState,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SyncEvent, Status>> + Send + 'static>>;

fn event(event: sync_event::Event) -> Result<SyncEvent, Status> {
    Ok(SyncEvent { event: Some(event) })
}

fn delta(epoch: &str, change: &ChangeEvent) -> Result<SyncEvent, Status> {
    event(sync_event::Event::Delta(Delta {
        epoch: epoch.to_owned(),
        from_version: change.from_version,
        version: change.version(),
        upserts_json: change.upserts_json().to_owned(),
        removed: change.removed().map(str::to_owned).collect(),
    }))
}

#[tonic::async_trait]
impl FlagSync for RampartSync {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let (metadata, _, body) = request.into_parts();
        let environment = self.state.environment(&metadata, None)?;
        let epoch = self.state.environments.epoch.clone();
        let mut changes = environment.changes.subscribe();
        let current = environment.snapshot();
        // Resume with deltas when the client's position is still known.
        let missed: Option<Vec<Arc<ChangeEvent>>> =
            (body.epoch == epoch && body.version > 0 && body.version <= current.version)
                .then(|| environment.changes.since(body.version))
                .flatten();
        let (sender, receiver) = mpsc::channel(8);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut sent = match missed {
                Some(missed) => {
                    let mut sent = body.version;
                    for change in missed.iter().filter(|c| c.version() <= current.version) {
                        if sender.send(delta(&epoch, change)).await.is_err() {
                            return;
                        }
                        sent = change.version();
                    }
                    sent
                }
                None => {
                    let snapshot = Snapshot {
                        epoch: epoch.clone(),
                        version: current.version,
                        environment: environment.name.clone(),
                        flags_json: current.document_json().to_owned(),
                    };
                    if sender.send(event(sync_event::Event::Snapshot(snapshot))).await.is_err() {
                        return;
                    }
                    current.version
                }
            };
            let mut heartbeat = tokio::time::interval(state.heartbeat);
            heartbeat.tick().await;
            loop {
                let (next, last) = tokio::select! {
                    _ = state.shutdown.cancelled() => {
                        (event(sync_event::Event::Reconnect(Reconnect { reason: "the server is shutting down".into() })), true)
                    }
                    _ = heartbeat.tick() => (event(sync_event::Event::Heartbeat(Heartbeat { version: sent })), false),
                    change = changes.recv() => match change {
                        Ok(change) if change.version() <= sent => continue,
                        Ok(change) => {
                            sent = change.version();
                            (delta(&epoch, &change), false)
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            (event(sync_event::Event::Reconnect(Reconnect { reason: "fell too far behind".into() })), true)
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                if sender.send(next).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
