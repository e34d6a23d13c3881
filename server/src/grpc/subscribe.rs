//! `rampart.v1.FlagSync/Subscribe`, written straight to its HTTP/2 stream:
//! a full snapshot on connect, then deltas with only the flags that
//! changed; a client that reconnects with its epoch and last version
//! receives only what it missed; heartbeats in between; a `Reconnect`
//! before the server goes away or when the client fell too far behind.
//!
//! A change reaches every subscriber at once, so what one message costs
//! per stream is what a fan-out costs (docs/benchmarks-streams.md). Served
//! through hyper and tonic, each message woke hyper's per-stream task,
//! passed tonic's body layers and was encoded once per subscriber. Here
//! the subscription is polled by its connection's task, and a delta is
//! encoded once for all subscribers (`ChangeEvent::grpc_delta`) and handed
//! to h2 as shared bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use prost::Message;
use rampart_proto::rampart::v1::{Delta, Heartbeat, Reconnect, Snapshot, SubscribeRequest, SyncEvent, sync_event};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::h2_stream::{self, Gone};
use super::rampart_sync::RampartSync;
use crate::changes::{ChangeEvent, Next};
use crate::environment::Environment;
use crate::limits::Rejection;

/// The path clients call.
pub(crate) const PATH: &str = "/rampart.v1.FlagSync/Subscribe";

/// Answers one `Subscribe` call until the subscription ends, the client
/// goes, or the server stops (the subscription then sends `Reconnect`).
///
/// A client that cancels the call but keeps its connection is noticed at
/// the next write (a change or a heartbeat): watching for the reset would
/// wake every subscription once more per message. `sync_listener` bounds
/// the calls a connection holds, cancelled or not.
pub(crate) async fn serve(sync: RampartSync, request: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
    let (parts, body) = request.into_parts();
    let (limit, patience) = (sync.state.max_body_bytes, sync.state.limits.body_read_timeout);
    let message = match tokio::time::timeout(patience, h2_stream::read_message::<SubscribeRequest>(body, limit)).await {
        Ok(Ok(message)) => message,
        Ok(Err(status)) => return h2_stream::refuse(respond, status),
        Err(_) => {
            sync.state.metrics.rejected(Rejection::BodyReadTimeout);
            let status = Status::deadline_exceeded("the subscribe request did not arrive in time");
            return h2_stream::refuse(respond, status);
        }
    };
    let subscription = match subscribe(&sync, &MetadataMap::from_headers(parts.headers), &message) {
        Ok(subscription) => subscription,
        Err(status) => return h2_stream::refuse(respond, status),
    };
    let _ = stream(respond, subscription).await;
}

/// Writes each message as it comes, then the status that ends the stream.
async fn stream(mut respond: SendResponse<Bytes>, mut subscription: Subscription) -> Result<(), Gone> {
    let mut stream: SendStream<Bytes> = respond.send_response(h2_stream::grpc_head(), false)?;
    while let Some(message) = subscription.next().await {
        h2_stream::send(&mut stream, message).await?;
    }
    stream.send_trailers(h2_stream::trailers(&Status::ok("")))?;
    Ok(())
}

/// Who subscribes, and from where: the first messages of the stream.
fn subscribe(sync: &RampartSync, metadata: &MetadataMap, request: &SubscribeRequest) -> Result<Subscription, Status> {
    let state = &sync.state;
    let (environment, credentials) = match sync.relay(metadata)? {
        Some((relay, environment)) => {
            state.metrics.relay_subscribed(&relay, &environment.name);
            tracing::info!(%relay, environment = %environment.name, "a relay subscribed");
            let credentials = state.environments.credentials(&environment.name);
            (environment, Some(credentials))
        }
        None => (state.environment(metadata, None)?, None),
    };
    let epoch = state.environments.epoch.clone();
    let changes = environment.changes.subscribe();
    let current = environment.snapshot();
    // Resume with deltas when the client's position is still known.
    let missed: Option<Vec<Arc<ChangeEvent>>> =
        (request.epoch == epoch && request.version > 0 && request.version <= current.version)
            .then(|| environment.changes.since(request.version))
            .flatten();
    let mut backlog = VecDeque::new();
    let sent = match missed {
        Some(missed) => {
            let mut sent = request.version;
            for change in missed.iter().filter(|c| c.version() <= current.version) {
                backlog.push_back(delta(&epoch, change));
                sent = change.version();
            }
            sent
        }
        None => {
            backlog.push_back(snapshot(&environment, &epoch, &current, credentials));
            current.version
        }
    };
    let mut heartbeat = tokio::time::interval(state.heartbeat);
    heartbeat.reset();
    Ok(Subscription {
        epoch,
        backlog,
        changes,
        heartbeat,
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        metrics: state.metrics.clone(),
        sent,
        finished: false,
    })
}

fn snapshot(
    environment: &Environment,
    epoch: &str,
    current: &crate::snapshot::Snapshot,
    credentials: Option<crate::environment::Credentials>,
) -> Bytes {
    framed(sync_event::Event::Snapshot(Snapshot {
        epoch: epoch.to_owned(),
        version: current.version,
        environment: environment.name.clone(),
        flags_json: String::from_utf8_lossy(&environment.changes.document_json(current)).into_owned(),
        credentials: credentials.map(|c| rampart_proto::rampart::v1::Credentials {
            open: c.open,
            sdk_keys: c.sdk_keys.iter().map(|d| d.0.to_vec()).collect(),
            reporter_keys: c.reporter_keys.iter().map(|d| d.0.to_vec()).collect(),
            relay_tokens: c.relay_tokens.iter().map(|d| d.0.to_vec()).collect(),
            sdk_key_outcomes: c.sdk_key_outcomes,
        }),
    }))
}

/// A change as a `Delta`, encoded once for every subscriber.
fn delta(epoch: &str, change: &ChangeEvent) -> Bytes {
    change.grpc_delta(|| {
        framed(sync_event::Event::Delta(Delta {
            epoch: epoch.to_owned(),
            from_version: change.from_version,
            version: change.version(),
            upserts_json: change.upserts_json().to_owned(),
            removed: change.removed().map(str::to_owned).collect(),
        }))
    })
}

/// One message as gRPC frames it: not compressed, its length, protobuf.
fn framed(event: sync_event::Event) -> Bytes {
    let event = SyncEvent { event: Some(event) };
    let length = event.encoded_len();
    let mut buffer = BytesMut::with_capacity(5 + length);
    buffer.put_u8(0);
    buffer.put_u32(length as u32);
    event.encode_raw(&mut buffer);
    buffer.freeze()
}

/// Where a subscription's stream is.
struct Subscription {
    epoch: String,
    /// What is still to send before following live changes, encoded.
    backlog: VecDeque<Bytes>,
    changes: crate::changes::Subscription,
    heartbeat: tokio::time::Interval,
    /// Registered once for the stream's life: making a new wait for every
    /// message would enter and leave a list shared by every subscriber.
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    metrics: Arc<crate::metrics::Metrics>,
    sent: u64,
    finished: bool,
}

impl Subscription {
    /// The next message, encoded; `None` ends the stream. Polled directly
    /// by the stream (no task, no channel per client: an idle subscriber
    /// costs its connection and this struct).
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(message) = self.backlog.pop_front() {
            return Some(message);
        }
        if self.finished {
            return None;
        }
        loop {
            let (message, last) = tokio::select! {
                _ = self.shutdown.as_mut() => {
                    (framed(sync_event::Event::Reconnect(Reconnect { reason: "the server is shutting down".into() })), true)
                }
                _ = self.heartbeat.tick() => (framed(sync_event::Event::Heartbeat(Heartbeat { version: self.sent })), false),
                next = self.changes.after(self.sent) => match next {
                    Next::Changes(changes) => {
                        self.sent = changes.last().map_or(self.sent, |c| c.version());
                        self.backlog.extend(changes.iter().map(|change| delta(&self.epoch, change)));
                        match self.backlog.pop_front() {
                            Some(message) => return Some(message),
                            None => continue,
                        }
                    }
                    Next::Behind => {
                        self.metrics.rejected(Rejection::StreamBacklog);
                        (framed(sync_event::Event::Reconnect(Reconnect { reason: "fell too far behind".into() })), true)
                    }
                    Next::Closed => return None,
                },
            };
            self.finished = last;
            return Some(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_framed_as_grpc_frames_it() {
        let event = sync_event::Event::Heartbeat(Heartbeat { version: 300 });
        let body = SyncEvent { event: Some(event.clone()) }.encode_to_vec();
        let framed = framed(event);
        assert_eq!(framed[0], 0, "not compressed");
        assert_eq!(u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize, body.len());
        assert_eq!(&framed[5..], &body[..]);
    }
}
