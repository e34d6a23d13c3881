//! Change notification: what every stream (gRPC sync, flagd event stream,
//! SSE) sends when an environment's flags change.
//!
//! Each change becomes one [`ChangeEvent`], kept in a short history and
//! announced to every subscriber of the environment (a `watch` of the
//! newest version: announcing never blocks and never queues per client).
//! A subscriber then takes the events after the version it sent from the
//! history. Their wire forms (a Rampart delta, the SSE event) are
//! serialised once, lazily, and shared by all clients, so a change costs
//! the same work with one client or ten thousand. The history is bounded by
//! count and by the size of the flags it holds, so it never keeps large
//! configurations alive: a client whose missed events are no longer kept is
//! told to reconnect (and gets the current configuration). A client that
//! reconnects after a short outage receives only what it missed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rampart_engine::{Flag, FlagSet, Metadata};

use tokio::sync::watch;

use crate::snapshot::Snapshot;

mod wire;

/// Recent events kept per environment for resuming clients.
const HISTORY: usize = 256;
/// Bytes of changed flags the kept events may hold together: a reload that
/// replaces a hundred thousand flags, or a megabyte flag changed twenty
/// times, must not stay in memory for the sake of the history.
const HISTORY_BYTES: u64 = 4 << 20;

/// How a flag changed, in flagd's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    /// Added.
    Write,
    Update,
    Delete,
}

impl FlagChange {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagChange::Write => "write",
            FlagChange::Update => "update",
            FlagChange::Delete => "delete",
        }
    }
}

/// One published change of an environment: what changed, not the whole
/// configuration (that is the current snapshot's), so keeping recent
/// events for resuming clients costs the changed flags only.
#[derive(Debug)]
pub struct ChangeEvent {
    pub from_version: u64,
    pub version: u64,
    /// When the change was published (unix ms).
    pub at: u64,
    pub changed: BTreeMap<String, FlagChange>,
    /// The changed and added flags, shared with the snapshot.
    upserts: Vec<Arc<Flag>>,
    metadata: Metadata,
    /// The size of the changed flags' definitions: what keeping this
    /// event costs.
    weight: u64,
    delta_json: OnceLock<String>,
    /// The SSE `delta` event, rendered once and shared by every SSE client.
    sse_delta: OnceLock<Bytes>,
    /// The `rampart.v1` `Delta` message as gRPC frames it, encoded once
    /// and shared by every subscriber.
    grpc_delta: OnceLock<Bytes>,
}

impl ChangeEvent {
    pub fn new(from_version: u64, snapshot: &Snapshot, changed: BTreeMap<String, FlagChange>) -> ChangeEvent {
        let upserts: Vec<Arc<Flag>> = changed
            .iter()
            .filter(|(_, change)| **change != FlagChange::Delete)
            .filter_map(|(key, _)| snapshot.flags.shared_flag(key).cloned())
            .collect();
        let weight =
            upserts.iter().map(|flag| flag.definition_json().len() as u64).sum::<u64>() + 64 * changed.len() as u64;
        ChangeEvent {
            weight,
            from_version,
            version: snapshot.version,
            at: snapshot.loaded_at,
            changed,
            upserts,
            metadata: snapshot.flags.metadata().clone(),
            delta_json: OnceLock::new(),
            sse_delta: OnceLock::new(),
            grpc_delta: OnceLock::new(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Changed and added flags as a flagd flag-set document (JSON),
    /// serialised once for all subscribers.
    pub fn upserts_json(&self) -> &str {
        self.delta_json.get_or_init(|| {
            let mut out = flags_object(self.upserts.iter().map(|flag| (flag.key(), flag.definition_json())));
            out.truncate(out.len() - 1);
            out.push_str(",\"metadata\":");
            out.push_str(&serde_json::to_string(&self.metadata).unwrap_or_else(|_| "{}".into()));
            out.push('}');
            out
        })
    }

    /// The SSE form of this change, rendered by `render` on first use; the
    /// returned `Bytes` share one buffer.
    pub fn sse_delta(&self, render: impl FnOnce() -> Bytes) -> Bytes {
        self.sse_delta.get_or_init(render).clone()
    }

    /// The gRPC form of this change, encoded by `render` on first use; the
    /// returned `Bytes` share one buffer.
    pub fn grpc_delta(&self, render: impl FnOnce() -> Bytes) -> Bytes {
        self.grpc_delta.get_or_init(render).clone()
    }

    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.changed.iter().filter(|(_, c)| **c == FlagChange::Delete).map(|(k, _)| k.as_str())
    }
}

/// `{"flags": {key: definition, …}}` from definitions already serialised:
/// copied, never parsed again.
pub(crate) fn flags_object<'a>(flags: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{\"flags\":{");
    for (index, (key, definition)) in flags.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(definition);
    }
    out.push_str("}}");
    out
}

/// The flags that differ between two sets. Flags are shared `Arc`s, so an
/// unchanged flag is usually the same pointer; otherwise definitions are
/// compared.
pub fn diff(before: &FlagSet, after: &FlagSet) -> BTreeMap<String, FlagChange> {
    if after.shares_base(before) {
        return diff_tops(before, after);
    }
    let mut changed = BTreeMap::new();
    let old: BTreeMap<&str, _> = before.shared().map(|f| (f.key(), f)).collect();
    for flag in after.shared() {
        match old.get(flag.key()) {
            None => {
                changed.insert(flag.key().to_owned(), FlagChange::Write);
            }
            Some(previous) if !Arc::ptr_eq(previous, flag) && previous.definition_json() != flag.definition_json() => {
                changed.insert(flag.key().to_owned(), FlagChange::Update);
            }
            Some(_) => {}
        }
    }
    for key in old.keys() {
        if after.get(key).is_none() {
            changed.insert((*key).to_owned(), FlagChange::Delete);
        }
    }
    changed
}

/// [`diff`] of two sets on the same base: only their tops can differ.
fn diff_tops(before: &FlagSet, after: &FlagSet) -> BTreeMap<String, FlagChange> {
    let keys: std::collections::BTreeSet<&str> = before.top_keys().chain(after.top_keys()).collect();
    let mut changed = BTreeMap::new();
    for key in keys {
        let change = match (before.shared_flag(key), after.shared_flag(key)) {
            (None, Some(_)) => FlagChange::Write,
            (Some(_), None) => FlagChange::Delete,
            (Some(old), Some(new)) if !Arc::ptr_eq(old, new) && old.definition_json() != new.definition_json() => {
                FlagChange::Update
            }
            _ => continue,
        };
        changed.insert(key.to_owned(), change);
    }
    changed
}

/// The announcing side of one environment.
#[derive(Debug)]
pub struct Changes {
    /// The newest published version.
    latest: watch::Sender<u64>,
    recent: Mutex<Recent>,
    /// The SSE `snapshot` event of the current version, rendered once for
    /// every client that connects to that version.
    sse_snapshot: Mutex<Option<(u64, Bytes)>>,
    /// The current version's full configuration for streams.
    wire: wire::WireCache,
}

#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<Arc<ChangeEvent>>,
    /// The kept events' weight.
    bytes: u64,
}

/// What a subscriber finds when it looks for changes.
#[derive(Debug)]
pub enum Next {
    /// The events after the version it asked about, oldest first.
    Changes(Vec<Arc<ChangeEvent>>),
    /// Some of them are no longer kept: it must start again from the
    /// current configuration.
    Behind,
    /// The environment is gone (shutdown).
    Closed,
}

/// One subscriber: a receiver of version announcements.
#[derive(Debug)]
pub struct Subscription {
    changes: Arc<Changes>,
    latest: watch::Receiver<u64>,
}

impl Subscription {
    /// Waits until there is a version after `version`, then returns the
    /// events after it.
    pub async fn after(&mut self, version: u64) -> Next {
        loop {
            let latest = *self.latest.borrow_and_update();
            if latest > version {
                return match self.changes.since(version) {
                    Some(events) if !events.is_empty() => Next::Changes(events),
                    _ => Next::Behind,
                };
            }
            if self.latest.changed().await.is_err() {
                return Next::Closed;
            }
        }
    }

    /// Waits for any version after `version`; false when closed.
    pub async fn newer_than(&mut self, version: u64) -> bool {
        self.latest.wait_for(|latest| *latest > version).await.is_ok()
    }
}

impl Changes {
    /// Starts at `version` (the environment's first snapshot).
    pub fn new(version: u64) -> Arc<Changes> {
        Arc::new(Changes {
            latest: watch::channel(version).0,
            recent: Mutex::default(),
            sse_snapshot: Mutex::new(None),
            wire: wire::WireCache::default(),
        })
    }

    /// Keeps a change and announces it (never blocks).
    pub fn publish(&self, event: ChangeEvent) {
        let version = event.version;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            debug_assert!(recent.events.back().is_none_or(|last| last.version() < version), "versions only grow");
            recent.bytes += event.weight;
            recent.events.push_back(Arc::new(event));
            while recent.events.len() > HISTORY || recent.bytes > HISTORY_BYTES {
                match recent.events.pop_front() {
                    Some(old) => recent.bytes -= old.weight,
                    None => break,
                }
            }
        }
        self.latest.send_replace(version);
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        Subscription { changes: self.clone(), latest: self.latest.subscribe() }
    }

    /// The events after `version`, if every one of them is still kept.
    pub fn since(&self, version: u64) -> Option<Vec<Arc<ChangeEvent>>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Versions only grow, so what came after `version` is a tail, found
        // by bisection: every subscriber asks at every change, and with the
        // history full a scan of it was a fifth of a stream's cost per change.
        let after = recent.events.partition_point(|e| e.version() <= version);
        let missed: Vec<_> = recent.events.range(after..).cloned().collect();
        match missed.first() {
            None => Some(Vec::new()),
            Some(first) if first.from_version == version => Some(missed),
            Some(_) => None,
        }
    }

    pub fn subscribers(&self) -> usize {
        self.latest.receiver_count()
    }

    /// The whole configuration as flagd's sync payload, serialised once per
    /// version whatever the number of clients.
    pub fn flagd_json(&self, snapshot: &Snapshot) -> Bytes {
        self.wire.flagd_json(snapshot)
    }

    /// The whole configuration as a flagd flag-set document (what
    /// Rampart's own sync and the SSE snapshot send), serialised once per
    /// version.
    pub fn document_json(&self, snapshot: &Snapshot) -> Bytes {
        self.wire.document_json(snapshot)
    }

    /// The SSE snapshot event of `version`, rendered by `render` once.
    pub fn sse_snapshot(&self, version: u64, render: impl FnOnce() -> Bytes) -> Bytes {
        let mut cached = self.sse_snapshot.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((cached_version, bytes)) if *cached_version == version => bytes.clone(),
            _ => {
                let bytes = render();
                *cached = Some((version, bytes.clone()));
                bytes
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rampart_engine::{Flag, FlagSet, FlagState};
    use serde_json::json;

    use super::{ChangeEvent, Changes, FlagChange, HISTORY, diff};

    fn flag(key: &str, default: &str) -> Arc<Flag> {
        let definition = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": default});
        Arc::new(Flag::compile(key, definition, "f.json").expect("compiles"))
    }

    #[test]
    fn sets_on_one_base_differ_in_their_tops_only() {
        let files = FlagSet::from_flags((0..1000).map(|i| flag(&format!("file-{i:04}"), "a")), Default::default())
            .expect("files");
        let before = FlagSet::on(&files, [flag("api-1", "a"), flag("api-2", "a")]).expect("before");
        let mut after = FlagSet::on(&files, [flag("api-1", "b"), flag("api-3", "a")]).expect("after");
        after.set_state("file-0007", FlagState::Disabled);
        let changed = diff(&before, &after);
        let expected = [
            ("api-1", FlagChange::Update),
            ("api-2", FlagChange::Delete),
            ("api-3", FlagChange::Write),
            ("file-0007", FlagChange::Update),
        ];
        assert_eq!(changed.iter().map(|(k, c)| (k.as_str(), *c)).collect::<Vec<_>>(), expected);
        // The same answer as comparing every flag of two unrelated sets.
        let flat = |set: &FlagSet| FlagSet::from_flags(set.shared().cloned(), Default::default()).expect("flat");
        assert_eq!(diff(&flat(&before), &flat(&after)), changed);
    }

    fn event(version: u64) -> ChangeEvent {
        ChangeEvent {
            weight: 64,
            from_version: version - 1,
            version,
            at: 0,
            changed: Default::default(),
            upserts: Vec::new(),
            metadata: Default::default(),
            delta_json: Default::default(),
            sse_delta: Default::default(),
            grpc_delta: Default::default(),
        }
    }

    #[test]
    fn a_subscriber_finds_what_came_after_its_version_in_a_full_history() {
        let changes = Changes::new(0);
        let newest = HISTORY as u64 + 44;
        for version in 1..=newest {
            changes.publish(event(version));
        }
        // Kept: the last HISTORY events, 45 to 300.
        let after = |version| changes.since(version).map(|events| events.iter().map(|e| e.version()).collect());
        assert_eq!(after(newest), Some(Vec::new()), "up to date");
        assert_eq!(after(newest - 1), Some(vec![newest]));
        assert_eq!(after(200), Some((201..=newest).collect::<Vec<_>>()));
        assert_eq!(after(44), Some((45..=newest).collect::<Vec<_>>()), "the oldest kept event follows 44");
        assert_eq!(after(43), None, "44 is no longer kept: start again from a snapshot");
    }
}
