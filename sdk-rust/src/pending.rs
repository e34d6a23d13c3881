//! Outcomes recorded and not yet sent: what the client records into and
//! the reporting task ([`crate::outcomes`]) ships.

use std::collections::HashMap;
use std::sync::Mutex;

/// How a request served with a flag's variant went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    Ok,
    Error,
}

/// Distinct (flag, variant, targeting key) counters kept at most; beyond
/// that new keys are dropped (and counted) rather than growing without bound.
const MAX_PENDING: usize = 10_000;

/// (flag, variant, targeting key, latency slot of the outcomes' duration).
pub(crate) type Key = (String, String, Option<String>, Option<u8>);
/// (ok, error) per key.
pub(crate) type Counts = HashMap<Key, (u64, u64)>;

/// Counts waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    counts: Mutex<HashMap<Key, (u64, u64)>>,
    pub(crate) dropped: std::sync::atomic::AtomicU64,
}

impl Pending {
    pub(crate) fn add(&self, key: Key, ok: u64, error: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = counts.len() >= MAX_PENDING;
        match counts.get_mut(&key) {
            Some(entry) => {
                entry.0 += ok;
                entry.1 += error;
            }
            None if full => {
                self.dropped.fetch_add(ok + error, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                counts.insert(key, (ok, error));
            }
        }
    }

    pub(crate) fn take(&self) -> HashMap<Key, (u64, u64)> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn restore(&self, counts: HashMap<Key, (u64, u64)>) {
        for (key, (ok, error)) in counts {
            self.add(key, ok, error);
        }
    }
}

/// `track` events kept at most between flushes; beyond that new ones are
/// dropped (and counted).
const MAX_PENDING_TRACKS: usize = 10_000;

/// `track` events waiting to be sent: (event name, targeting key), each
/// once — the server counts one conversion per key and event a step, so
/// repeats between two flushes would only cost bandwidth.
#[derive(Debug, Default)]
pub(crate) struct PendingTracks {
    events: Mutex<std::collections::HashSet<(String, String)>>,
    pub(crate) dropped: std::sync::atomic::AtomicU64,
}

impl PendingTracks {
    pub(crate) fn add(&self, event: String, targeting_key: String) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() >= MAX_PENDING_TRACKS && !events.contains(&(event.clone(), targeting_key.clone())) {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        events.insert((event, targeting_key));
    }

    pub(crate) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect()
    }

    pub(crate) fn restore(&self, events: Vec<(String, String)>) {
        for (event, key) in events {
            self.add(event, key);
        }
    }
}
