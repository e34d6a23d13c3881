//! Rampart's Rust SDK.
//!
//! The client holds the whole flag set of its environment and evaluates
//! every flag locally with `rampart-engine` — the same engine the server
//! runs, so answers are identical — with no network on the call path. A
//! background task keeps the set current over Rampart's sync stream
//! (`rampart.v1`): a snapshot on connect, then only the flags that changed,
//! resumed from the last version after a reconnect. While the server is
//! unreachable the client keeps serving its last known values and reports
//! [`Status::Stale`].
//!
//! ```no_run
//! # async fn run() -> Result<(), rampart_sdk::Error> {
//! use rampart_sdk::{Client, Context};
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:8015")
//!     .sdk_key("my-sdk-key")
//!     .build()?;
//! client.wait_ready(std::time::Duration::from_secs(5)).await?;
//! let context = Context::with_targeting_key("user-42").with("email", "ana@example.com");
//! if client.bool_value("new-checkout", &context, false) {
//!     // …
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`Client`] and [`ClientBuilder`] (`client.rs`): typed getters, status,
//!   change listeners;
//! - `sync.rs`: the stream, reconnection with capped exponential backoff
//!   and jitter, applying snapshots and deltas;
//! - [`provider`]: an OpenFeature provider over the client.

mod client;
mod error;
mod outcomes;
mod pending;
pub mod provider;
mod state;
mod sync;

pub use client::{Client, ClientBuilder, Details};
pub use error::Error;
pub use pending::Outcome;
pub use rampart_engine::{Context, ErrorCode, Reason};
pub use state::Status;
