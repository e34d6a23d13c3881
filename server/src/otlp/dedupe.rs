//! The span dedupe window: an exporter that did not hear the answer to an
//! export sends it again, and its spans must not count twice.
//!
//! Two generations of span fingerprints (a keyed 64-bit hash of the
//! environment, trace id and span id): a span is a duplicate while its
//! fingerprint is in either, or in an export still being recorded. The
//! current generation becomes the previous one every `window` (five
//! minutes: exporters give up retrying well within that), or earlier when
//! it holds `capacity` fingerprints — memory is bounded (about 20 bytes a
//! fingerprint, two generations), and under more traffic than that the
//! window is shorter (`rampart_otlp_dedupe_rotations_total{reason="full"}`
//! says so). A rotation never comes sooner than [`MIN_WINDOW`] after the
//! previous one: an export that would need it is refused with a retry
//! delay instead of being counted without the protection.
//!
//! Only spans that are evidence (a ramped flag's event, selected) are
//! remembered.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::spans::SpanId;
use crate::metrics::Metrics;

/// The window when traffic is below capacity.
pub const WINDOW: Duration = Duration::from_secs(300);
/// The shortest window, however full.
pub const MIN_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Dedupe {
    hasher: RandomState,
    capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    /// Fingerprints of exports being recorded now.
    in_flight: HashSet<u64>,
    /// When `current` started (Unix ms).
    started: u64,
}

/// Spans reserved by an export being recorded: committed into the window
/// once it is counted, released when it is not (so a retry counts).
#[must_use]
#[derive(Debug)]
pub struct Reservation {
    dedupe: Arc<Dedupe>,
    fingerprints: Vec<u64>,
    committed: bool,
}

/// Refused: the window is full and too young to move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub retry_after: Duration,
}

impl Dedupe {
    /// `capacity` fingerprints per generation (`limits.otlpDedupeSpans`).
    pub fn new(capacity: usize) -> Dedupe {
        Dedupe { hasher: RandomState::new(), capacity: capacity.max(1), generations: Mutex::default() }
    }

    fn fingerprint(&self, environment: &str, id: &SpanId) -> u64 {
        self.hasher.hash_one((environment, id.trace, id.span))
    }

    /// Reserves the spans of an export: returns, for each id, whether it
    /// is new (a repeat within the export is not), and the reservation to
    /// commit once they are counted.
    pub fn reserve(
        self: &Arc<Self>,
        environment: &str,
        ids: &[SpanId],
        now: u64,
        metrics: &Metrics,
    ) -> Result<(Vec<bool>, Reservation), Full> {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *generations;
        if ids.len() > self.capacity {
            // Never remembered whole: refused (the budget is checked against
            // `MAX_SPANS` at start-up, so only a misconfiguration gets here).
            return Err(Full { retry_after: MIN_WINDOW });
        }
        if now.saturating_sub(g.started) >= WINDOW.as_millis() as u64 {
            g.rotate(now);
            metrics.otlp_dedupe_rotations.with_label_values(&["window"]).inc();
        } else if g.current.len() + g.in_flight.len() + ids.len() > self.capacity {
            let age = now.saturating_sub(g.started);
            let min = MIN_WINDOW.as_millis() as u64;
            if age < min {
                let wait = Duration::from_millis(min.saturating_sub(age)).max(Duration::from_secs(1));
                return Err(Full { retry_after: wait });
            }
            g.rotate(now);
            metrics.otlp_dedupe_rotations.with_label_values(&["full"]).inc();
        }
        let mut fresh = Vec::with_capacity(ids.len());
        let mut fingerprints = Vec::with_capacity(ids.len());
        for id in ids {
            let fingerprint = self.fingerprint(environment, id);
            let new = !g.current.contains(&fingerprint)
                && !g.previous.contains(&fingerprint)
                && g.in_flight.insert(fingerprint);
            if new {
                fingerprints.push(fingerprint);
            }
            fresh.push(new);
        }
        Ok((fresh, Reservation { dedupe: self.clone(), fingerprints, committed: false }))
    }

    /// Fingerprints held now (both generations), for tests and the bound.
    pub fn len(&self) -> usize {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.current.len() + g.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    fn rotate(&mut self, now: u64) {
        self.previous = std::mem::take(&mut self.current);
        self.started = now;
    }
}

impl Reservation {
    /// The spans were counted: they stay in the window.
    pub fn commit(mut self) {
        let mut g = self.dedupe.generations.lock().unwrap_or_else(|e| e.into_inner());
        for fingerprint in self.fingerprints.drain(..) {
            g.in_flight.remove(&fingerprint);
            g.current.insert(fingerprint);
        }
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.committed || self.fingerprints.is_empty() {
            return;
        }
        let mut g = self.dedupe.generations.lock().unwrap_or_else(|e| e.into_inner());
        for fingerprint in &self.fingerprints {
            g.in_flight.remove(fingerprint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SpanId {
        SpanId { trace: [n; 16], span: [n; 8] }
    }

    fn metrics() -> Metrics {
        Metrics::new(["production"])
    }

    #[test]
    fn a_committed_span_is_a_duplicate_and_a_released_one_is_not() {
        let dedupe = Arc::new(Dedupe::new(100));
        let metrics = metrics();
        let (fresh, reservation) = dedupe.reserve("production", &[id(1), id(2), id(1)], 1_000, &metrics).unwrap();
        assert_eq!(fresh, [true, true, false], "a repeat inside one export is a duplicate");
        // While the first is being recorded, the same spans are held back.
        let (during, held) = dedupe.reserve("production", &[id(1)], 1_001, &metrics).unwrap();
        assert_eq!(during, [false]);
        drop(held);
        reservation.commit();
        let (again, _) = dedupe.reserve("production", &[id(1), id(2), id(3)], 2_000, &metrics).unwrap();
        assert_eq!(again, [false, false, true]);
        // Another environment's span with the same ids is its own.
        let (other, _) = dedupe.reserve("staging", &[id(1)], 2_000, &metrics).unwrap();
        assert_eq!(other, [true]);

        let (released, reservation) = dedupe.reserve("production", &[id(9)], 3_000, &metrics).unwrap();
        assert_eq!(released, [true]);
        drop(reservation); // not counted (refused, or the store failed)
        let (retried, _) = dedupe.reserve("production", &[id(9)], 3_001, &metrics).unwrap();
        assert_eq!(retried, [true], "a span that was not counted counts when retried");
    }

    #[test]
    fn the_window_keeps_two_generations_then_forgets() {
        let dedupe = Arc::new(Dedupe::new(100));
        let metrics = metrics();
        let window = WINDOW.as_millis() as u64;
        let (_, r) = dedupe.reserve("production", &[id(1)], 1_000, &metrics).unwrap();
        r.commit();
        // One window later the span is in the previous generation: still a duplicate.
        let (fresh, _) = dedupe.reserve("production", &[id(1)], 1_000 + window, &metrics).unwrap();
        assert_eq!(fresh, [false]);
        // Two windows later it is forgotten.
        let (fresh, _) = dedupe.reserve("production", &[id(1)], 1_000 + 2 * window + 1, &metrics).unwrap();
        assert_eq!(fresh, [true]);
        assert_eq!(metrics.otlp_dedupe_rotations.with_label_values(&["window"]).get(), 2);
    }

    #[test]
    fn at_capacity_the_window_is_shorter_never_below_its_minimum() {
        let dedupe = Arc::new(Dedupe::new(4));
        let metrics = metrics();
        let ids: Vec<SpanId> = (1..=4).map(id).collect();
        let (_, r) = dedupe.reserve("production", &ids, 1_000, &metrics).unwrap();
        r.commit();
        assert_eq!(dedupe.len(), 4);
        // Full and younger than the minimum window: refused, nothing counted.
        let full = dedupe.reserve("production", &[id(5)], 2_000, &metrics).unwrap_err();
        assert_eq!(full.retry_after, Duration::from_secs(8), "the generation started at 0");
        // Older than the minimum: the window moves on early; the earlier spans
        // are still duplicates (previous generation), the bound holds.
        let later = 1_000 + MIN_WINDOW.as_millis() as u64;
        let (fresh, r) = dedupe.reserve("production", &[id(5), id(1)], later, &metrics).unwrap();
        assert_eq!(fresh, [true, false]);
        r.commit();
        assert_eq!(dedupe.len(), 5, "at most two generations of `capacity`");
        assert_eq!(metrics.otlp_dedupe_rotations.with_label_values(&["full"]).get(), 1);
        // An export larger than a generation can never be remembered whole.
        let huge: Vec<SpanId> = (10..=20).map(id).collect();
        assert!(dedupe.reserve("production", &huge, later + 60_000, &metrics).is_err());
    }
}
