//! Ramps: progressive delivery from files, guarded by error rates
//! (RAMPS.md).
//!
//! - [`spec`]: the `kind: Ramp` file format, defaults and validation.
//! - [`stats`]: exact binomial bounds and the always-valid mixture SPRT.
//! - [`decide`]: the controller's tick as a pure function.
//! - [`outcomes`] and [`outcome_gate`]: outcome reports, and what they
//!   must pass before a ramp counts them.

pub mod controller;
pub mod decide;
pub mod files;
pub mod outcome_gate;
pub mod outcomes;
pub mod prometheus;
pub mod replay;
pub mod spec;
pub mod stats;
pub mod webhooks;
pub mod windows;
