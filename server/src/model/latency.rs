//! Request durations counted on one fixed ladder of upper bounds
//! (`rampart_proto::latency`, shared with clients), so every source
//! (spans, histogram buckets, outcome reports with a duration) lands in the
//! same counters, a second of them costs at most [`SLOTS`] numbers in the
//! store whatever the traffic, and a latency guard can ask "how many were
//! slower than T" for any T on the ladder — given in the ramp file, or the
//! control arm's p95 read from the same counters.

use serde::{Deserialize, Serialize};

pub use rampart_proto::latency::{BOUNDS_MS, SLOTS};

/// How many durations fell in each slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    counts: [u64; SLOTS],
}

impl Latency {
    /// The slot of a duration in milliseconds (NaN: the slowest).
    pub fn slot_of(millis: f64) -> usize {
        rampart_proto::latency::slot_of(millis)
    }

    /// A duration that falls in `slot`, for carrying a slot through a
    /// report's `durationMs`.
    pub fn representative_millis(slot: usize) -> f64 {
        rampart_proto::latency::representative_millis(slot)
    }

    /// Whether `millis` is one of the ladder's bounds.
    pub fn is_bound(millis: u32) -> bool {
        BOUNDS_MS.contains(&millis)
    }

    pub fn add(&mut self, slot: usize, n: u64) {
        if let Some(count) = self.counts.get_mut(slot) {
            *count = count.saturating_add(n);
        }
    }

    pub fn merge(&mut self, other: &Latency) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count = count.saturating_add(more);
        }
    }

    /// What `self` counts beyond `before`, slot by slot; `None` when some
    /// slot shrank (a cumulative series that reset).
    pub fn minus(&self, before: &Latency) -> Option<Latency> {
        let mut grown = Latency::default();
        for (slot, (now, then)) in self.counts.iter().zip(before.counts).enumerate() {
            grown.counts[slot] = now.checked_sub(then)?;
        }
        Some(grown)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|n| *n == 0)
    }

    /// The slots that hold something, as (slot, count).
    pub fn slots(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts.iter().copied().enumerate().filter(|(_, n)| *n > 0)
    }

    /// Durations slower than `bound_ms`, which must be a ladder bound
    /// (a ramp file's threshold is checked to be one).
    pub fn slower_than(&self, bound_ms: u32) -> u64 {
        let first_slower = BOUNDS_MS.iter().position(|b| *b > bound_ms).unwrap_or(BOUNDS_MS.len());
        self.counts[first_slower..].iter().fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// The smallest ladder bound at or above the `q` quantile (at least
    /// `q` of the durations are no slower than it); `None` when empty or
    /// when the quantile is slower than the ladder's last bound.
    pub fn quantile_bound(&self, q: f64) -> Option<u32> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let needed = (q * total as f64).ceil() as u64;
        let mut seen = 0u64;
        for (slot, bound) in BOUNDS_MS.iter().enumerate() {
            seen += self.counts[slot];
            if seen >= needed {
                return Some(*bound);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_slot_whose_bound_holds_them() {
        assert_eq!(Latency::slot_of(0.0), 0);
        assert_eq!(Latency::slot_of(5.0), 0);
        assert_eq!(Latency::slot_of(5.1), 1);
        assert_eq!(Latency::slot_of(300.0), 9);
        assert_eq!(Latency::slot_of(10_000.0), 19);
        assert_eq!(Latency::slot_of(10_000.5), 20);
        assert_eq!(Latency::slot_of(f64::NAN), 20, "NaN compares false: slowest, never hidden as fast");
        for slot in 0..SLOTS {
            assert_eq!(Latency::slot_of(Latency::representative_millis(slot)), slot);
        }
    }

    #[test]
    fn slower_than_and_the_quantile_read_the_ladder() {
        let mut latency = Latency::default();
        latency.add(Latency::slot_of(40.0), 90); // ≤ 50 ms
        latency.add(Latency::slot_of(280.0), 6); // ≤ 300 ms
        latency.add(Latency::slot_of(20_000.0), 4); // > 10 s
        assert_eq!(latency.total(), 100);
        assert_eq!(latency.slower_than(50), 10);
        assert_eq!(latency.slower_than(300), 4);
        assert_eq!(latency.slower_than(10_000), 4);
        assert_eq!(latency.quantile_bound(0.90), Some(50));
        assert_eq!(latency.quantile_bound(0.95), Some(300));
        assert_eq!(latency.quantile_bound(0.99), None, "slower than the ladder");
        assert_eq!(Latency::default().quantile_bound(0.95), None);
        let mut merged = latency;
        merged.merge(&latency);
        assert_eq!(merged.slower_than(300), 8);
        assert_eq!(merged.slots().count(), 3);
    }
}
