//! The background sync: subscribe to `rampart.v1.FlagSync`, apply the
//! snapshot and deltas, reconnect with capped exponential backoff and
//! jitter, resume from the last version seen.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rampart_engine::{FlagSet, Source};
use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{Delta, Snapshot, SubscribeRequest, sync_event};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::state::{State, Status, unix_now};

/// How a session with the server ended.
enum Ended {
    /// The server asked us to reconnect (shutdown, fell behind), or we saw
    /// a gap: reconnect at once.
    Reconnect,
    /// A network or server failure: back off, then retry.
    Failed(String),
    /// The server refuses our key: back off (long), then retry.
    Refused(String),
}

pub(crate) async fn run(state: Arc<State>, stop: CancellationToken) {
    tokio::spawn(clock(state.clone(), stop.clone()));
    let Some(endpoint) = state.config.endpoint.clone() else { return };
    let mut failures: u32 = 0;
    let mut backoff = rampart_proto::backoff::Backoff::new(state.config.backoff_initial, state.config.backoff_max);
    loop {
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = session(&state, &endpoint) => ended,
        };
        let delay = match ended {
            Ended::Reconnect => {
                failures = 0;
                Duration::from_millis(10)
            }
            Ended::Failed(reason) => {
                failures = failures.saturating_add(1);
                let has_flags = !state.flags.load().is_empty() || *state.status.borrow() == Status::Ready;
                state.set_status(if has_flags { Status::Stale } else { Status::NotReady });
                tracing::debug!(%reason, failures, "rampart sync disconnected");
                backoff.delay(failures)
            }
            Ended::Refused(reason) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%reason, "rampart refused the client");
                state.set_status(Status::Error(reason));
                state.config.backoff_max
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Keeps the coarse clock evaluations read.
async fn clock(state: Arc<State>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => state.now.store(unix_now(), std::sync::atomic::Ordering::Relaxed),
        }
    }
}

async fn session(state: &State, endpoint: &str) -> Ended {
    let endpoint = match Endpoint::from_shared(endpoint.to_owned()) {
        Ok(endpoint) => endpoint.connect_timeout(state.config.connect_timeout).tcp_nodelay(true),
        Err(error) => return Ended::Refused(format!("invalid endpoint: {error}")),
    };
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return Ended::Failed(format!("cannot connect: {error}")),
    };
    let (epoch, version) = state.position.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut request = tonic::Request::new(SubscribeRequest { epoch, version });
    if let Some(key) = &state.config.sdk_key
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    // A snapshot is the whole environment in one message: allow what a
    // flag document may be (gRPC's default of 4 MiB is ~45,000 flags).
    let mut client =
        FlagSyncClient::new(channel).max_decoding_message_size(rampart_engine::InputLimits::DEFAULT_MAX_BYTES);
    let mut stream = match client.subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
            return Ended::Refused(status.message().to_owned());
        }
        Err(status) => return Ended::Failed(status.message().to_owned()),
    };
    loop {
        let message = match tokio::time::timeout(state.config.idle_timeout, stream.message()).await {
            Err(_) => return Ended::Failed("no message (not even a heartbeat) within the idle timeout".into()),
            Ok(Err(status)) => return Ended::Failed(status.message().to_owned()),
            Ok(Ok(None)) => return Ended::Failed("the stream ended".into()),
            Ok(Ok(Some(message))) => message,
        };
        match message.event {
            Some(sync_event::Event::Snapshot(snapshot)) => apply_snapshot(state, snapshot),
            Some(sync_event::Event::Delta(delta)) => {
                if !apply_delta(state, delta) {
                    return Ended::Reconnect;
                }
            }
            Some(sync_event::Event::Heartbeat(_)) | None => {}
            Some(sync_event::Event::Reconnect(reconnect)) => {
                tracing::debug!(reason = %reconnect.reason, "rampart asked the client to reconnect");
                return Ended::Reconnect;
            }
        }
    }
}

fn compile(name: &str, json: &str) -> FlagSet {
    let compiled = FlagSet::load_lenient(&[Source::json(name, json)]);
    for error in compiled.errors.iter() {
        tracing::warn!(%error, "flag from the server not understood by this SDK");
    }
    compiled.flags
}

fn apply_snapshot(state: &State, snapshot: Snapshot) {
    let flags = compile("rampart snapshot", &snapshot.flags_json);
    let previous = state.flags.load_full();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for flag in flags.iter() {
        if previous.get(flag.key()).is_none_or(|old| old.definition_json() != flag.definition_json()) {
            changed.insert(flag.key().to_owned());
        }
    }
    changed.extend(previous.iter().filter(|f| flags.get(f.key()).is_none()).map(|f| f.key().to_owned()));
    *state.position.lock().unwrap_or_else(|e| e.into_inner()) = (snapshot.epoch, snapshot.version);
    let changed: Vec<String> = changed.into_iter().collect();
    state.replace(flags, &changed);
    state.set_status(Status::Ready);
}

/// Applies a delta on top of the current flags; false when it does not
/// follow from the version we have (then we start over with a snapshot).
fn apply_delta(state: &State, delta: Delta) -> bool {
    {
        let mut position = state.position.lock().unwrap_or_else(|e| e.into_inner());
        if position.0 != delta.epoch || position.1 != delta.from_version {
            *position = (String::new(), 0);
            return false;
        }
        *position = (delta.epoch.clone(), delta.version);
    }
    let upserts = compile("rampart delta", &delta.upserts_json);
    let current = state.flags.load_full();
    let replaced = |key: &str| upserts.get(key).is_some() || delta.removed.iter().any(|r| r == key);
    let kept = current.shared().filter(|flag| !replaced(flag.key())).cloned();
    let flags = match FlagSet::from_flags(kept.chain(upserts.shared().cloned()), upserts.metadata().clone()) {
        Ok(flags) => flags,
        Err(errors) => {
            tracing::warn!(%errors, "cannot apply a delta; resynchronising");
            state.position.lock().unwrap_or_else(|e| e.into_inner()).1 = 0;
            return false;
        }
    };
    let mut changed: Vec<String> = upserts.iter().map(|f| f.key().to_owned()).collect();
    changed.extend(delta.removed.iter().cloned());
    state.replace(flags, &changed);
    state.set_status(Status::Ready);
    true
}
