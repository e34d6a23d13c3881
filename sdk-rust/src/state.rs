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
    /// Each evaluating thread's usage counters (`ReportUsage`).
    pub(crate) usage: Mutex<Vec<Arc<Mutex<crate::pending::UsageShard>>>>,
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

    /// A new thread's usage counters, registered for the reporting task;
    /// `None` when the client reports no usage (no server, or turned off).
    pub(crate) fn usage_shard(&self) -> Option<Arc<Mutex<crate::pending::UsageShard>>> {
        self.config.endpoint.as_ref()?;
        self.config.usage_interval?;
        let shard = Arc::new(Mutex::default());
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).push(shard.clone());
        Some(shard)
    }

    /// Every thread's counts since the last call, summed; the counters of
    /// threads that are gone are dropped once read.
    pub(crate) fn take_usage(&self) -> (Vec<(String, Option<String>, u64)>, u64) {
        let mut shards = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let mut sums: std::collections::BTreeMap<(String, Option<String>), u64> = Default::default();
        let mut dropped = 0;
        for shard in shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            dropped += std::mem::take(&mut shard.dropped);
            for (flag, variant, count) in shard.take() {
                *sums.entry((flag, variant)).or_default() += count;
            }
        }
        // A thread that ended left its counters only here.
        shards.retain(|shard| Arc::strong_count(shard) > 1);
        (sums.into_iter().map(|((flag, variant), count)| (flag, variant, count)).collect(), dropped)
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
    /// How often in-process evaluation counts are reported (`None`: never).
    pub(crate) usage_interval: Option<Duration>,
}

/// The SDK's one reading of the system clock: its coarse clock (kept by
/// the sync task, read by evaluations) starts and is refreshed from here.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}
