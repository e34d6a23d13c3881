//! What the client and its background tasks share: the flag set, the
//! status, the position to resume from, the configuration and the outcomes
//! waiting to be sent. Its own module, below the client and the tasks, so
//! neither reaches into the other.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rampart_engine::FlagSet;
use tokio::sync::watch;

/// Where the client stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// No flags yet: not connected, no bootstrap file.
    NotReady,
    /// Connected and up to date.
    Ready,
    /// Serving the last known (or bootstrap) values while disconnected.
    Stale,
    /// The server refuses the client (e.g. an unknown SDK key); it keeps
    /// serving what it has and keeps retrying.
    Error(String),
}

pub(crate) type Listener = Arc<dyn Fn(&[String]) + Send + Sync>;

/// What the client and its sync task share.
pub(crate) struct State {
    /// Unique in the process: what the thread-local cache keys on (an
    /// address can be reused by the next client).
    pub(crate) id: u64,
    pub(crate) flags: ArcSwap<FlagSet>,
    /// Bumped with every new flag set, so evaluating threads can keep the
    /// current set in a thread-local cache and check it with one atomic load.
    pub(crate) generation: AtomicU64,
    pub(crate) status: watch::Sender<Status>,
    /// The server's epoch and the last version applied, to resume from.
    pub(crate) position: Mutex<(String, u64)>,
    pub(crate) listeners: Mutex<Vec<Listener>>,
    /// Unix seconds, refreshed by the sync task, so an evaluation needs no
    /// clock read (`$flagd.timestamp` has one-second resolution anyway).
    pub(crate) now: AtomicI64,
    pub(crate) config: Config,
    /// Outcome counts waiting to be sent.
    pub(crate) outcomes: crate::pending::Pending,
    pub(crate) tracks: crate::pending::PendingTracks,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("status", &*self.status.borrow()).finish_non_exhaustive()
    }
}

impl State {
    /// Publishes a new flag set and tells the listeners which keys changed.
    pub(crate) fn replace(&self, flags: FlagSet, changed: &[String]) {
        self.flags.store(Arc::new(flags));
        self.generation.fetch_add(1, Ordering::Release);
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for listener in listeners {
            listener(changed);
        }
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) endpoint: Option<String>,
    pub(crate) sdk_key: Option<String>,
    /// Sent with outcome reports instead of the SDK key, for environments
    /// that accept outcomes only from reporter keys.
    pub(crate) reporter_key: Option<String>,
    pub(crate) connect_timeout: Duration,
    /// With no message (heartbeats included) for this long, reconnect.
    pub(crate) idle_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    /// How often recorded outcomes are sent.
    pub(crate) outcome_interval: Duration,
}

/// The SDK's one reading of the system clock: its coarse clock (kept by
/// the sync task, read by evaluations) starts and is refreshed from here.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}
