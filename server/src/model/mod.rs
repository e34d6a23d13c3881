//! What a ramp run is, as both the store (which persists it) and the ramp
//! controller (which decides it) see it: the run and its states and
//! reasons, the evidence a decision was made on, and the events it
//! records. Plain data with serde; no IO, no clock, nothing of the store or
//! of the controller, so both can depend on it.
//!
//! Every name that reaches stored records, the API or metric labels is
//! written out explicitly (`#[serde(rename = …)]`, `as_str`), so renaming a
//! Rust variant never changes data.

pub mod event;
pub mod evidence;
pub mod latency;
pub mod run;
pub mod words;

pub use event::{Event, EventKind};
pub use evidence::{Arm, Evidence, GuardKind, GuardVerdict, MetricRole, MetricVerdict, Pair, Tally, Verdict};
pub use latency::Latency;
pub use run::{HoldReason, PauseReason, PendingReason, RollbackReason, Run, Status, Target};
