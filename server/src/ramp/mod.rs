//! Ramps: progressive delivery from files, guarded by error rates
//! (docs/ramps.md). The run model they drive is [`crate::model`].
//!
//! - [`spec`]: the `kind: Ramp` file format, defaults and validation.
//! - [`stats`]: exact binomial bounds and the always-valid mixture SPRT.
//! - [`evidence`]: the statistics of an observation, as a decision sees them.
//! - [`decide`]: the controller's tick as a pure function.
//! - [`guards`]: the latency and conversion guards' verdicts.
//! - [`outcomes`], [`outcome_gate`] and [`contribution`]: outcome reports,
//!   what they must pass before a ramp counts them, and how much one
//!   source may add to a step's evidence.

pub mod applied;
pub mod contribution;
pub mod controller;
pub mod decide;
pub mod evidence;
pub mod files;
pub mod guards;
pub mod in_flight;
pub mod kind;
pub mod observe;
pub mod otlp_selection;
pub mod outcome_gate;
pub mod outcomes;
pub mod plan;
pub mod prometheus;
pub mod release;
pub mod spec;
pub mod stats;
pub mod verdict;
pub mod webhooks;
pub mod windows;
