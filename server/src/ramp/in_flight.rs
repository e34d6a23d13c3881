//! Outcome writes in flight, by environment and the second they count in.
//!
//! An outcome report is stamped with the second it arrives in, and becomes
//! visible in the store when its commit lands — which on a busy machine (or
//! a store just reopened after a restart) can be later than the watermark.
//! A bucket read as closed is never read again, so a write landing in it
//! afterwards would be acknowledged yet missing from the evidence. The
//! invariant: **a second is read as closed only when no write into it is
//! in flight** — the observer's watermark stops at the oldest second with
//! a write in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct InFlight {
    writes: Mutex<BTreeMap<(String, u64), usize>>,
}

/// A write in flight; dropping it (committed or failed) ends it.
#[derive(Debug)]
pub struct Writing {
    in_flight: Arc<InFlight>,
    key: (String, u64),
}

impl InFlight {
    /// A write into `second` of `environment` starts.
    pub fn begin(self: &Arc<Self>, environment: &str, second: u64) -> Writing {
        let key = (environment.to_owned(), second);
        *self.writes.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default() += 1;
        Writing { in_flight: self.clone(), key }
    }

    /// The oldest second of `environment` with a write in flight.
    pub fn oldest(&self, environment: &str) -> Option<u64> {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.range((environment.to_owned(), 0)..=(environment.to_owned(), u64::MAX)).next().map(|((_, s), _)| *s)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut writes = self.in_flight.writes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = writes.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                writes.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_second_in_flight_is_known_until_its_writes_end() {
        let in_flight = Arc::new(InFlight::default());
        assert_eq!(in_flight.oldest("prod"), None);
        let a = in_flight.begin("prod", 10);
        let b = in_flight.begin("prod", 12);
        let c = in_flight.begin("prod", 10);
        let other = in_flight.begin("staging", 5);
        assert_eq!(in_flight.oldest("prod"), Some(10));
        drop(a);
        assert_eq!(in_flight.oldest("prod"), Some(10), "one write into 10 is still in flight");
        drop(c);
        assert_eq!(in_flight.oldest("prod"), Some(12));
        drop(b);
        assert_eq!(in_flight.oldest("prod"), None);
        assert_eq!(in_flight.oldest("staging"), Some(5));
        drop(other);
    }
}
