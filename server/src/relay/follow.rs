//! Following one environment on the upstream: subscribe, apply the
//! snapshot and the deltas, keep them in the cache, reconnect (resuming
//! from the position held) with capped backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rampart_engine::{FlagSet, LoadError, Source};
use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{Delta, Snapshot, SubscribeRequest, sync_event};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Endpoint;

use super::{Relay, cache};
use crate::config::KeyDigest;
use crate::environment::{Credentials, Environments};
use crate::metrics::Metrics;

/// The metadata naming the environment a relay follows.
pub const ENVIRONMENT_HEADER: &str = "x-rampart-environment";

/// Flags changed since the last rebuild kept on top of the shared set;
/// beyond this, the set is rebuilt (lookups check the top first).
const MAX_TOP: usize = 1024;

/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream silent for this long (heartbeats included) is taken as dead.
const IDLE: Duration = Duration::from_secs(90);

pub(super) struct Follower {
    pub(super) relay: Arc<Relay>,
    pub(super) environments: Arc<Environments>,
    pub(super) name: String,
    /// To the environment's cache writer ([`write_cache`]).
    pub(super) cache: tokio::sync::watch::Sender<Option<Arc<Served>>>,
}

/// How a session ended.
enum Ended {
    /// Asked to, or out of step: reconnect soon. `fresh`: the session
    /// applied something first (a healthy upstream's routine reconnect).
    Reconnect {
        fresh: bool,
    },
    Failed(String),
}

/// Consecutive reconnects without progress back off from this, doubling.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);

/// The upstream's position this relay holds.
#[derive(Debug, Clone, Default)]
pub(super) struct Position {
    epoch: String,
    version: u64,
}

/// A flag document as flags, keeping those that do not compile as problems
/// (they answer `PARSE_ERROR` here as they do upstream).
/// A document that cannot be read at all (invalid JSON, a damaged cache
/// entry) is an error: the relay keeps what it serves, as a flag file's
/// last good configuration is kept, rather than serving nothing as healthy.
pub(super) fn compile(json: &str) -> Result<(FlagSet, Vec<LoadError>), rampart_engine::LoadErrors> {
    let compiled = FlagSet::load_lenient(&[Source::json(super::super::environment::UPSTREAM_SOURCE, json)]);
    let (whole, per_flag): (Vec<LoadError>, Vec<LoadError>) =
        compiled.errors.0.into_iter().partition(|error| error.flag.is_none());
    if !whole.is_empty() {
        return Err(rampart_engine::LoadErrors(whole));
    }
    Ok((compiled.flags, per_flag))
}

fn credentials(snapshot: &Snapshot) -> Credentials {
    let digests = |list: &[Vec<u8>]| -> Vec<KeyDigest> {
        list.iter().filter_map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok().map(KeyDigest)).collect()
    };
    let sent = snapshot.credentials.clone().unwrap_or_default();
    Credentials {
        open: sent.open,
        sdk_keys: digests(&sent.sdk_keys),
        reporter_keys: digests(&sent.reporter_keys),
        relay_tokens: digests(&sent.relay_tokens),
        sdk_key_outcomes: sent.sdk_key_outcomes,
    }
}

impl Follower {
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut position = match cache::load(&self.relay.config.cache_dir, &self.name) {
            Ok(Some(cached)) => Position { epoch: cached.epoch, version: cached.version },
            _ => Position::default(),
        };
        let mut failures: u32 = 0;
        let mut backoff = rampart_proto::backoff::Backoff::new(RECONNECT_FIRST, BACKOFF_MAX);
        loop {
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                ended = self.session(&mut position) => ended,
            };
            if let Some(link) = self.relay.links.get(&self.name) {
                link.connected.store(false, Ordering::Relaxed);
            }
            let delay = match ended {
                Ended::Reconnect { fresh: true } => {
                    failures = 0;
                    Duration::from_millis(10)
                }
                // An upstream that keeps asking to reconnect, or sends
                // deltas that do not follow, before anything was applied:
                // each such round costs it a full snapshot, so back off.
                Ended::Reconnect { fresh: false } => {
                    failures = failures.saturating_add(1);
                    backoff.delay(failures)
                }
                Ended::Failed(reason) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(environment = %self.name, upstream = %self.relay.config.url, %reason, "lost the upstream; serving the last configuration received");
                    }
                    // Spread out (jittered): every relay of an upstream that
                    // restarted would otherwise ask for its snapshot at once.
                    backoff.delay(failures)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&self, position: &mut Position) -> Ended {
        let endpoint = match Endpoint::from_shared(self.relay.config.url.clone()) {
            Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true),
            Err(error) => return Ended::Failed(format!("invalid upstream URL: {error}")),
        };
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => return Ended::Failed(format!("cannot connect: {error}")),
        };
        let mut request =
            tonic::Request::new(SubscribeRequest { epoch: position.epoch.clone(), version: position.version });
        let metadata = request.metadata_mut();
        if let (Ok(token), Ok(environment)) = (format!("Bearer {}", self.relay.config.token).parse(), self.name.parse())
        {
            metadata.insert("authorization", token);
            metadata.insert(ENVIRONMENT_HEADER, environment);
        }
        // A snapshot is the whole environment in one message: allow what a
        // flag document may be here (gRPC's default is 4 MiB).
        let mut client = FlagSyncClient::new(channel).max_decoding_message_size(self.relay.max_message_bytes);
        let mut stream = match client.subscribe(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                tracing::error!(environment = %self.name, reason = %status.message(), "the upstream refuses this relay");
                return Ended::Failed(status.message().to_owned());
            }
            Err(status) => return Ended::Failed(status.message().to_owned()),
        };
        let link = self.relay.links.get(&self.name);
        // Accepted: a resumed stream sends nothing until there is a change
        // or a heartbeat, and what this relay serves is current meanwhile.
        if let Some(link) = link
            && link.has_flags.load(Ordering::Relaxed)
            && !position.epoch.is_empty()
        {
            link.connected.store(true, Ordering::Relaxed);
            link.last_contact.store(self.relay.clock.now_millis(), Ordering::Relaxed);
        }
        // Whether this session applied anything yet.
        let mut applied = false;
        loop {
            let message = match tokio::time::timeout(IDLE, stream.message()).await {
                Err(_) => return Ended::Failed("no message (not even a heartbeat) within the idle timeout".into()),
                Ok(Err(status)) => return Ended::Failed(status.message().to_owned()),
                Ok(Ok(None)) => return Ended::Failed("the stream ended".into()),
                Ok(Ok(Some(message))) => message,
            };
            if let Some(link) = link {
                link.last_contact.store(self.relay.clock.now_millis(), Ordering::Relaxed);
            }
            match message.event {
                Some(sync_event::Event::Snapshot(snapshot)) => {
                    if !self.apply_snapshot(snapshot, position).await {
                        return Ended::Failed("the upstream's configuration does not load".into());
                    }
                    applied = true;
                    if let Some(link) = link {
                        link.connected.store(true, Ordering::Relaxed);
                        link.has_flags.store(true, Ordering::Relaxed);
                    }
                }
                Some(sync_event::Event::Delta(delta)) => {
                    if !self.apply_delta(delta, position).await {
                        return Ended::Reconnect { fresh: applied };
                    }
                    applied = true;
                    if let Some(link) = link {
                        link.connected.store(true, Ordering::Relaxed);
                    }
                }
                Some(sync_event::Event::Heartbeat(_)) | None => {
                    // A resumed stream starts with deltas or, with nothing
                    // missed, a heartbeat: either way this relay is current.
                    if let Some(link) = link
                        && link.has_flags.load(Ordering::Relaxed)
                    {
                        link.connected.store(true, Ordering::Relaxed);
                    }
                }
                Some(sync_event::Event::Reconnect(reconnect)) => {
                    tracing::debug!(environment = %self.name, reason = %reconnect.reason, "the upstream asked to reconnect");
                    return Ended::Reconnect { fresh: applied };
                }
            }
        }
    }

    async fn apply_snapshot(&self, snapshot: Snapshot, position: &mut Position) -> bool {
        let Some(environment) = self.environments.get(&self.name) else { return false };
        let credentials = credentials(&snapshot);
        let (flags, problems) = match compile(&snapshot.flags_json) {
            Ok(compiled) => compiled,
            Err(errors) => {
                tracing::error!(environment = %self.name, %errors, "the upstream sent a configuration that cannot be read; serving the last good one");
                return false;
            }
        };
        if let Err(errors) = environment.serve_upstream(flags, problems).await {
            tracing::error!(environment = %self.name, %errors, "cannot serve the upstream's configuration");
            return false;
        }
        self.environments.set_credentials(&self.name, credentials.clone());
        *position = Position { epoch: snapshot.epoch.clone(), version: snapshot.version };
        self.save(position, credentials);
        true
    }

    /// Applies a delta that follows from the position held; false when it
    /// does not (then the relay starts over with a snapshot).
    async fn apply_delta(&self, delta: Delta, position: &mut Position) -> bool {
        if delta.epoch != position.epoch || delta.from_version != position.version {
            *position = Position::default();
            return false;
        }
        let Some(environment) = self.environments.get(&self.name) else { return false };
        let current = environment.snapshot();
        let (upserts, mut problems) = match compile(&delta.upserts_json) {
            Ok(compiled) => compiled,
            Err(errors) => {
                tracing::error!(environment = %self.name, %errors, "the upstream sent a change that cannot be read; resynchronising");
                *position = Position::default();
                return false;
            }
        };
        let replaced = |key: &str| upserts.get(key).is_some() || delta.removed.iter().any(|r| r == key);
        problems
            .extend(current.problems.iter().filter(|p| p.flag.as_deref().is_none_or(|key| !replaced(key))).cloned());
        // Changed flags go on top of the current set, sharing the rest: a
        // change costs the changed flags, not the environment. Removals, new
        // metadata or a top grown large rebuild the set once.
        let layered = delta.removed.is_empty()
            && upserts.metadata() == current.flags.metadata()
            && current.flags.top_keys().count() + upserts.len() <= MAX_TOP;
        let built = if layered {
            FlagSet::on(&current.flags, upserts.shared().cloned())
        } else {
            let kept = current.flags.shared().filter(|flag| !replaced(flag.key())).cloned();
            FlagSet::from_flags(kept.chain(upserts.shared().cloned()), upserts.metadata().clone())
        };
        let flags = match built {
            Ok(flags) => flags,
            Err(errors) => {
                tracing::warn!(environment = %self.name, %errors, "cannot apply a delta; resynchronising");
                *position = Position::default();
                return false;
            }
        };
        if let Err(errors) = environment.serve_upstream(flags, problems).await {
            tracing::warn!(environment = %self.name, %errors, "cannot apply a delta; resynchronising");
            *position = Position::default();
            return false;
        }
        *position = Position { epoch: delta.epoch, version: delta.version };
        let credentials = self.environments.relayed_credentials(&self.name);
        self.save(position, credentials);
        true
    }

    /// Hands what is served now, with the position it reflects, to the
    /// cache writer (the latest replaces any not yet written).
    fn save(&self, position: &Position, credentials: Credentials) {
        let Some(environment) = self.environments.get(&self.name) else { return };
        let served = Served { position: position.clone(), credentials, snapshot: environment.snapshot() };
        self.cache.send_replace(Some(Arc::new(served)));
    }
}

/// What a relay serves for one environment, to be cached.
#[derive(Debug)]
pub(super) struct Served {
    position: Position,
    credentials: Credentials,
    snapshot: Arc<crate::snapshot::Snapshot>,
}

/// Fewest milliseconds between two cache writes of one environment: a
/// write renders the whole environment, so a burst of changes is written
/// once; a crash loses at most this much, which the upstream resends.
const CACHE_EVERY_MS: u64 = 1000;

/// Writes the latest [`Served`] to the cache, at most every
/// [`CACHE_EVERY_MS`], off the stream's path; the last one before shutdown.
pub(super) async fn write_cache(
    relay: Arc<Relay>,
    environments: Arc<Environments>,
    metrics: Arc<Metrics>,
    name: String,
    mut latest: tokio::sync::watch::Receiver<Option<Arc<Served>>>,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            changed = latest.changed() => changed.is_err(),
        };
        let served = latest.borrow_and_update().clone();
        if let (Some(served), Some(environment)) = (served, environments.get(&name)) {
            let flags_json = environment.changes.document_json(&served.snapshot);
            let entry = cache::Cached {
                epoch: served.position.epoch.clone(),
                version: served.position.version,
                saved_at: relay.clock.now_millis(),
                credentials: served.credentials.clone(),
                flags_json: String::from_utf8_lossy(&flags_json).into_owned(),
            };
            let (dir, file) = (relay.config.cache_dir.clone(), name.clone());
            let saved = tokio::task::spawn_blocking(move || cache::save(&dir, &file, &entry)).await;
            if let Ok(Err(error)) | Err(error) = saved.map_err(std::io::Error::other) {
                metrics.relay_cache_failure();
                tracing::error!(environment = %name, %error, "cannot write the relay cache");
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(CACHE_EVERY_MS)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compile;

    #[test]
    fn a_document_that_cannot_be_read_is_an_error_not_an_empty_set() {
        assert!(compile("{\"flags\": {").is_err(), "invalid JSON");
        assert!(compile("\u{fffd}garbage").is_err());
        let (flags, problems) = compile(r#"{"flags": {"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}, "b": {"state": "MAYBE"}}}"#)
            .expect("a document whose flags are read");
        assert_eq!(flags.len(), 2, "a broken flag is kept, answering PARSE_ERROR");
        assert!(!problems.is_empty() && problems.iter().all(|p| p.flag.as_deref() == Some("b")), "{problems:?}");
    }
}
