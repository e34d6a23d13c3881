//! The latency ladder: the fixed upper bounds request durations are counted
//! on, shared by the server (which stores and compares them) and clients
//! (which may aggregate durations per slot before reporting, sending each
//! slot's [`representative_millis`] as `Outcome.duration_ms`).
//!
//! It holds every bound of OpenTelemetry's default HTTP duration histogram
//! and Prometheus's default buckets, plus the round values a ramp file is
//! likely to name (150, 200, 300, 400 ms …).

/// Upper bounds of the slots, in milliseconds; a duration `d` falls in the
/// first slot whose bound is ≥ `d`, or in the last slot (slower than 10 s).
pub const BOUNDS_MS: [u32; 20] =
    [5, 10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 2500, 5000, 7500, 10_000];

/// Slots: one per bound, and one for everything slower than the last.
pub const SLOTS: usize = BOUNDS_MS.len() + 1;

/// The slot of a duration in milliseconds (NaN: the slowest, never hidden
/// as fast).
pub fn slot_of(millis: f64) -> usize {
    BOUNDS_MS.iter().position(|bound| millis <= f64::from(*bound)).unwrap_or(BOUNDS_MS.len())
}

/// A duration that falls in `slot`: its upper bound; past the ladder,
/// something slower than the last bound.
pub fn representative_millis(slot: usize) -> f64 {
    BOUNDS_MS.get(slot).map_or(f64::from(BOUNDS_MS[BOUNDS_MS.len() - 1]) * 2.0, |bound| f64::from(*bound))
}
