//! Change notification: what every stream (gRPC sync, flagd event stream,
//! SSE) sends when an environment's flags change.
//!
//! Each change becomes one [`ChangeEvent`], broadcast to every subscriber
//! of the environment. Its wire forms (flagd's full configuration, a
//! Rampart delta) are serialised once, lazily, and shared by all clients,
//! so a change costs the same work with one client or ten thousand. The
//! broadcast channel is bounded and never blocks the sender: a client that
//! falls too far behind misses events, is disconnected, and resumes.
//! Recent events are kept so a client that reconnects after a short outage
//! receives only what it missed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use actix_web::web::Bytes;
use rampart_engine::{Flag, FlagSet, Metadata};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::environment::Snapshot;

/// Events each subscriber may be behind before it is disconnected.
pub const SUBSCRIBER_BUFFER: usize = 64;
/// Recent events kept per environment for resuming clients.
const HISTORY: usize = 256;
/// Changed flags the kept events may reference together: a reload that
/// replaces a hundred thousand flags must not keep them alive 256 times.
const HISTORY_FLAGS: usize = 20_000;

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
    /// When the change was published.
    pub at: SystemTime,
    pub changed: BTreeMap<String, FlagChange>,
    /// The changed and added flags, shared with the snapshot.
    upserts: Vec<Arc<Flag>>,
    metadata: Metadata,
    delta_json: OnceLock<String>,
    /// The SSE `delta` event, rendered once and shared by every SSE client.
    sse_delta: OnceLock<Bytes>,
}

impl ChangeEvent {
    pub fn new(from_version: u64, snapshot: &Snapshot, changed: BTreeMap<String, FlagChange>) -> ChangeEvent {
        let upserts = changed
            .iter()
            .filter(|(_, change)| **change != FlagChange::Delete)
            .filter_map(|(key, _)| snapshot.flags.shared_flag(key).cloned())
            .collect();
        ChangeEvent {
            from_version,
            version: snapshot.version,
            at: snapshot.loaded_at,
            changed,
            upserts,
            metadata: snapshot.flags.metadata().clone(),
            delta_json: OnceLock::new(),
            sse_delta: OnceLock::new(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Changed and added flags as a flagd flag-set document (JSON),
    /// serialised once for all subscribers.
    pub fn upserts_json(&self) -> &str {
        self.delta_json.get_or_init(|| {
            let flags: Map<String, Value> =
                self.upserts.iter().map(|flag| (flag.key().to_owned(), flag.definition().clone())).collect();
            json!({"flags": flags, "metadata": self.metadata}).to_string()
        })
    }

    /// The SSE form of this change, rendered by `render` on first use; the
    /// returned `Bytes` share one buffer.
    pub fn sse_delta(&self, render: impl FnOnce() -> Bytes) -> Bytes {
        self.sse_delta.get_or_init(render).clone()
    }

    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.changed.iter().filter(|(_, c)| **c == FlagChange::Delete).map(|(k, _)| k.as_str())
    }
}

/// The flags that differ between two sets. Flags are shared `Arc`s, so an
/// unchanged flag is usually the same pointer; otherwise definitions are
/// compared.
pub fn diff(before: &FlagSet, after: &FlagSet) -> BTreeMap<String, FlagChange> {
    let mut changed = BTreeMap::new();
    let old: BTreeMap<&str, _> = before.shared().map(|f| (f.key(), f)).collect();
    for flag in after.shared() {
        match old.get(flag.key()) {
            None => {
                changed.insert(flag.key().to_owned(), FlagChange::Write);
            }
            Some(previous) if !Arc::ptr_eq(previous, flag) && previous.definition() != flag.definition() => {
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

/// The broadcast side of one environment.
#[derive(Debug)]
pub struct Changes {
    sender: broadcast::Sender<Arc<ChangeEvent>>,
    recent: Mutex<Recent>,
    /// The SSE `snapshot` event of the current version, rendered once for
    /// every client that connects to that version.
    sse_snapshot: Mutex<Option<(u64, Bytes)>>,
}

#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<Arc<ChangeEvent>>,
    /// Changed flags the kept events reference.
    flags: usize,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            sender: broadcast::channel(SUBSCRIBER_BUFFER).0,
            recent: Mutex::default(),
            sse_snapshot: Mutex::new(None),
        }
    }
}

impl Changes {
    /// Publishes a change to every subscriber (never blocks).
    pub fn publish(&self, event: ChangeEvent) {
        let event = Arc::new(event);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.flags += event.changed.len();
            recent.events.push_back(event.clone());
            while recent.events.len() > HISTORY || (recent.flags > HISTORY_FLAGS && recent.events.len() > 1) {
                if let Some(old) = recent.events.pop_front() {
                    recent.flags -= old.changed.len();
                }
            }
        }
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.sender.subscribe()
    }

    /// The events after `version`, if every one of them is still kept.
    pub fn since(&self, version: u64) -> Option<Vec<Arc<ChangeEvent>>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let missed: Vec<_> = recent.events.iter().filter(|e| e.version() > version).cloned().collect();
        match missed.first() {
            None => Some(Vec::new()),
            Some(first) if first.from_version == version => Some(missed),
            Some(_) => None,
        }
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
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
