//! The upstream's record of the outcome batches relays forwarded: a relay
//! sends a batch until it is acknowledged, so a resent batch (the answer
//! was lost, the relay restarted) must be acknowledged without being
//! counted again.
//!
//! Claiming a batch id and recording it as applied happen under one lock,
//! and a batch in flight is claimed: two concurrent sends of the same
//! batch never both count it. A claim that is dropped without being
//! completed (the batch was refused, the store failed, the call was
//! cancelled) releases the id, so the resend counts it — once.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Batch ids remembered as applied (the oldest is forgotten first).
pub const APPLIED_IDS: usize = 100_000;

#[derive(Debug, Default)]
struct Ids {
    applied: HashSet<String>,
    order: VecDeque<String>,
    in_flight: HashSet<String>,
}

/// Batch ids applied here, and those being applied now.
#[derive(Debug, Default)]
pub struct AppliedBatches {
    ids: Arc<Mutex<Ids>>,
}

/// What a forwarded batch's id says about it.
#[derive(Debug)]
pub enum Claim {
    /// New: apply it, then [`Claimed::applied`].
    Fresh(Claimed),
    /// Applied before: acknowledge it without counting it.
    Applied,
    /// Another call is applying it now: answer "retry" (acknowledging it
    /// could lose it if that call fails).
    InFlight,
}

/// A batch being applied; dropping it without [`Claimed::applied`]
/// releases the id.
#[derive(Debug)]
pub struct Claimed {
    ids: Arc<Mutex<Ids>>,
    id: Option<String>,
}

impl AppliedBatches {
    pub fn claim(&self, id: &str) -> Claim {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.applied.contains(id) {
            return Claim::Applied;
        }
        if !ids.in_flight.insert(id.to_owned()) {
            return Claim::InFlight;
        }
        Claim::Fresh(Claimed { ids: self.ids.clone(), id: Some(id.to_owned()) })
    }

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).applied.contains(id)
    }
}

impl Claimed {
    /// The batch was counted: remember it as applied.
    pub fn applied(mut self) {
        let Some(id) = self.id.take() else { return };
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.in_flight.remove(&id);
        if ids.applied.insert(id.clone()) {
            ids.order.push_back(id);
        }
        while ids.order.len() > APPLIED_IDS {
            if let Some(old) = ids.order.pop_front() {
                ids.applied.remove(&old);
            }
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.ids.lock().unwrap_or_else(|e| e.into_inner()).in_flight.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_applied_once_however_its_sends_interleave() {
        let applied = AppliedBatches::default();
        let Claim::Fresh(first) = applied.claim("r/a:1") else { panic!("new") };
        assert!(matches!(applied.claim("r/a:1"), Claim::InFlight), "a concurrent resend waits");
        first.applied();
        assert!(matches!(applied.claim("r/a:1"), Claim::Applied));
        // A send that failed releases its id for the resend.
        let Claim::Fresh(failed) = applied.claim("r/a:2") else { panic!("new") };
        drop(failed);
        assert!(matches!(applied.claim("r/a:2"), Claim::Fresh(_)));
    }

    #[test]
    fn concurrent_sends_of_one_batch_count_it_once() {
        let applied = Arc::new(AppliedBatches::default());
        let counted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (applied, counted) = (applied.clone(), counted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if let Claim::Fresh(claimed) = applied.claim("r/b:1") {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            claimed.applied();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(counted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_oldest_ids_are_forgotten_first() {
        let applied = AppliedBatches::default();
        let claim = |id: &str| match applied.claim(id) {
            Claim::Fresh(claimed) => claimed.applied(),
            other => panic!("{other:?}"),
        };
        claim("relay/a:1:production:0");
        for n in 0..APPLIED_IDS {
            claim(&format!("other:{n}"));
        }
        assert!(!applied.contains("relay/a:1:production:0"));
        assert!(applied.contains(&format!("other:{}", APPLIED_IDS - 1)));
    }
}
