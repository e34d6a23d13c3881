//! The command-line tools that compute with the domain and print: they
//! read arguments (`crate::cli`), call the domain (`crate::ramp`), print
//! and choose an exit code. The domain itself never prints and never picks
//! an exit code, so it stays usable by the server and by tests.

pub mod ramp_plan;
pub mod ramp_replay;
