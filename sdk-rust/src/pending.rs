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

/// Distinct (flag, variant) counters one thread keeps between reports;
/// beyond that new ones are dropped (and counted). Only flags of the set
/// are counted, so this bound is met only by a set that large.
const MAX_PENDING_USAGE: usize = 10_000;

/// A flag key's hash for the usage counters: FNV-1a, a few nanoseconds for
/// short keys (the default SipHash costs several times more on this path,
/// and the keys are the application's own, not an attacker's).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// (variant or none, evaluations) of one flag.
type Variants = Vec<(Option<Box<str>>, u64)>;

/// One thread's in-process evaluations since the last report: locked by
/// its own thread on every evaluation (uncontended) and by the reporting
/// task once per report.
#[derive(Debug, Default)]
pub(crate) struct UsageShard {
    counts: HashMap<Box<str>, Variants, std::hash::BuildHasherDefault<Fnv>>,
    entries: usize,
    pub(crate) dropped: u64,
}

impl UsageShard {
    pub(crate) fn count(&mut self, flag: &str, variant: Option<&str>) {
        if let Some(variants) = self.counts.get_mut(flag) {
            if let Some(entry) = variants.iter_mut().find(|(v, _)| v.as_deref() == variant) {
                entry.1 += 1;
                return;
            }
            if self.entries < MAX_PENDING_USAGE {
                variants.push((variant.map(Box::from), 1));
                self.entries += 1;
                return;
            }
        } else if self.entries < MAX_PENDING_USAGE {
            self.counts.insert(flag.into(), vec![(variant.map(Box::from), 1)]);
            self.entries += 1;
            return;
        }
        self.dropped += 1;
    }

    /// Takes the counts: (flag, variant, evaluations).
    pub(crate) fn take(&mut self) -> Vec<(String, Option<String>, u64)> {
        self.entries = 0;
        std::mem::take(&mut self.counts)
            .into_iter()
            .flat_map(|(flag, variants)| {
                variants.into_iter().map(move |(variant, count)| (flag.to_string(), variant.map(String::from), count))
            })
            .collect()
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn counts_per_flag_and_variant_until_taken_within_a_bound() {
        let mut shard = UsageShard::default();
        for _ in 0..3 {
            shard.count("a", Some("on"));
        }
        shard.count("a", None);
        shard.count("b", Some("off"));
        let mut taken = shard.take();
        taken.sort();
        assert_eq!(
            taken,
            [("a".into(), None, 1), ("a".into(), Some("on".into()), 3), ("b".into(), Some("off".into()), 1)]
        );
        assert!(shard.take().is_empty(), "taken once");
        for index in 0..MAX_PENDING_USAGE + 5 {
            shard.count(&format!("flag-{index}"), None);
        }
        assert_eq!(shard.dropped, 5, "new counters beyond the bound are dropped and counted");
    }
}
