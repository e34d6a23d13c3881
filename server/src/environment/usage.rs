//! Evaluations counted where they happen, cheaply: per flag and variant,
//! in memory, until the next flush writes them to the store (once a
//! minute; `store::usage` keeps them by hour and by day).
//!
//! Only flags that exist are counted (an unknown key is no usage), so the
//! map between two flushes holds at most the environment's flags, each
//! with at most its variants and "no variant" — bounded by the flag set
//! itself, not by requests. The map is split in shards by key so that two
//! workers evaluating different flags rarely share a lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use crate::store::usage::{UsageCount, UsageSource};

/// Locks the counts are split over.
const SHARDS: usize = 16;

/// One flag's counts since the last flush.
#[derive(Debug, Default)]
struct Counts {
    /// (source, variant or "" for none, evaluations).
    variants: Vec<(UsageSource, Box<str>, u64)>,
    /// Unix milliseconds of the last evaluation.
    last: u64,
}

/// An environment's evaluations since the last flush.
#[derive(Debug)]
pub struct Usage {
    shards: Vec<Mutex<HashMap<Box<str>, Counts>>>,
    hasher: RandomState,
    /// Held for writing by a flush from taking the counts until the store
    /// has them, and for reading by a read of the store and the pending
    /// counts: a read never misses counts in flight nor sees them twice.
    /// Counting itself never waits on it.
    pub flushing: tokio::sync::RwLock<()>,
}

impl Default for Usage {
    fn default() -> Usage {
        Usage {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            flushing: tokio::sync::RwLock::new(()),
        }
    }
}

impl Usage {
    /// Counts `count` evaluations of `flag` (which exists) answering
    /// `variant` (`None`: no variant — a code default, an error).
    pub fn count(&self, source: UsageSource, flag: &str, variant: Option<&str>, count: u64, now_ms: u64) {
        let shard = &self.shards[(self.hasher.hash_one(flag) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let counts = match map.get_mut(flag) {
            Some(counts) => counts,
            None => map.entry(flag.into()).or_default(),
        };
        counts.last = counts.last.max(now_ms);
        let variant = variant.unwrap_or("");
        match counts.variants.iter_mut().find(|(s, v, _)| *s == source && &**v == variant) {
            Some((_, _, n)) => *n = n.saturating_add(count),
            None => counts.variants.push((source, variant.into(), count)),
        }
    }

    /// Takes what was counted since the last call.
    pub fn take(&self) -> Vec<UsageCount> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let map = std::mem::take(&mut *shard.lock().unwrap_or_else(|e| e.into_inner()));
            for (flag, counts) in map {
                for (source, variant, count) in counts.variants {
                    out.push(UsageCount {
                        flag: flag.to_string(),
                        source,
                        variant: variant.into(),
                        count,
                        last: counts.last,
                    });
                }
            }
        }
        out
    }

    /// Counts taken but not stored (the store failed): kept for the next flush.
    pub fn put_back(&self, counts: Vec<UsageCount>) {
        for count in counts {
            self.count(
                count.source,
                &count.flag,
                Some(count.variant.as_str()).filter(|v| !v.is_empty()),
                count.count,
                count.last,
            );
        }
    }

    /// What was counted and not yet flushed, for one flag (or all): a read
    /// shows this replica's last minute too.
    pub fn pending(&self, flag: Option<&str>) -> Vec<UsageCount> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (key, counts) in map.iter().filter(|(key, _)| flag.is_none_or(|f| f == &***key)) {
                for (source, variant, count) in &counts.variants {
                    out.push(UsageCount {
                        flag: key.to_string(),
                        source: *source,
                        variant: variant.to_string(),
                        count: *count,
                        last: counts.last,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_flag_source_and_variant_until_taken() {
        let usage = Usage::default();
        for _ in 0..3 {
            usage.count(UsageSource::Evaluated, "a", Some("on"), 1, 10);
        }
        usage.count(UsageSource::Evaluated, "a", None, 1, 30);
        usage.count(UsageSource::Bulk, "a", Some("on"), 1, 20);
        usage.count(UsageSource::Sdk, "b", Some("off"), 500, 5);
        assert_eq!(usage.pending(Some("a")).len(), 3);
        let mut taken = usage.take();
        taken.sort_by(|x, y| (&x.flag, x.source, &x.variant).cmp(&(&y.flag, y.source, &y.variant)));
        let view: Vec<_> =
            taken.iter().map(|c| (c.flag.as_str(), c.source, c.variant.as_str(), c.count, c.last)).collect();
        assert_eq!(
            view,
            [
                ("a", UsageSource::Evaluated, "", 1, 30),
                ("a", UsageSource::Evaluated, "on", 3, 30),
                ("a", UsageSource::Bulk, "on", 1, 30),
                ("b", UsageSource::Sdk, "off", 500, 5),
            ]
        );
        assert!(usage.take().is_empty(), "taken once");
        usage.put_back(taken);
        assert_eq!(usage.take().len(), 4, "a failed flush loses nothing");
    }
}
