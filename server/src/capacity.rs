//! One descriptor budget for the process, shared by its listeners.
//!
//! Every open connection holds a file descriptor, and the process may
//! hold only so many (its open-file limit). Splitting that limit equally
//! over the listeners gave the listener that needs thousands (streams)
//! the same share as the admin listener, which needs a few dozen. Instead:
//!
//! - the **budget** is the open-file limit minus [`RESERVED_DESCRIPTORS`]
//!   (files, the store, the watcher, Prometheus, webhooks, OTLP export);
//! - each listener is **guaranteed** a small share ([`GUARANTEED`], less on
//!   a tiny budget), so a flood on one never silences another;
//! - the **rest is shared**: whichever listener needs it takes it, up to
//!   `limits.connectionsPerListener` when that is configured.
//!
//! A connection that finds no place is **refused at once** (closed; an HTTP
//! client gets `503` with `Retry-After`), not left in the kernel's backlog
//! where it would time out after the client's connect timeout: a refused
//! client retries (SDKs back off) or goes to another replica, and the
//! refusal is counted (`rampart_listener_connections_refused_total`). What
//! each listener may hold and holds now are metrics
//! (`rampart_listener_connection_capacity`, `rampart_listener_connections`),
//! so "full" is visible before clients notice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::Rejection;
use crate::metrics::Metrics;

/// Descriptors kept for everything but client connections.
pub const RESERVED_DESCRIPTORS: u64 = 128;
/// Connections each listener may always open, whatever the others hold.
pub const GUARANTEED: usize = 64;

/// The listeners and their shares of the budget.
#[derive(Debug)]
pub struct Capacity {
    shares: Vec<Arc<Share>>,
    pub budget: usize,
    pub descriptors: u64,
}

/// One listener's share: its guaranteed places, the shared pool, and its
/// own cap.
#[derive(Debug)]
pub struct Share {
    pub name: &'static str,
    own: Arc<Semaphore>,
    shared: Arc<Semaphore>,
    /// Most connections this listener may hold (guaranteed + shared, or
    /// less where `connectionsPerListener` says so).
    pub cap: usize,
    open: AtomicUsize,
    connections: IntGauge,
    refused: IntCounter,
    metrics: Arc<Metrics>,
}

/// A connection's place; given back when it is dropped.
#[derive(Debug)]
pub struct Place {
    share: Arc<Share>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.share.open.fetch_sub(1, Ordering::Relaxed);
        self.share.connections.dec();
    }
}

impl Capacity {
    /// Plans the budget of `descriptors` over `listeners`; `cap` is
    /// `limits.connectionsPerListener` when configured.
    pub fn plan(descriptors: u64, listeners: &[&'static str], cap: Option<usize>, metrics: &Arc<Metrics>) -> Capacity {
        let budget = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
        let count = listeners.len().max(1);
        // At most half of the budget is guaranteed; the rest is shared.
        let guaranteed = GUARANTEED.min(budget / (2 * count)).max(1);
        let pool = budget.saturating_sub(guaranteed * count);
        let shared = Arc::new(Semaphore::new(pool));
        let shares = listeners
            .iter()
            .map(|name| {
                let most = guaranteed + pool;
                let cap = cap.map_or(most, |cap| cap.min(most));
                let capacity = metrics.listener_capacity.with_label_values(&[name]);
                capacity.set(cap as i64);
                Arc::new(Share {
                    name,
                    own: Arc::new(Semaphore::new(guaranteed)),
                    shared: shared.clone(),
                    cap,
                    open: AtomicUsize::new(0),
                    connections: metrics.listener_connections.with_label_values(&[name]),
                    refused: metrics.listener_refused.with_label_values(&[name]),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Capacity { shares, budget, descriptors }
    }

    /// A listener's share (planned for every listener named at start-up).
    pub fn share(&self, name: &str) -> Arc<Share> {
        self.shares
            .iter()
            .find(|share| share.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("listener '{name}' was not planned"))
    }

    pub fn shares(&self) -> &[Arc<Share>] {
        &self.shares
    }

    /// Says at start-up what each listener may hold and why: `info`
    /// always, `warn` where it is less than `wanted` (what the
    /// configuration or the documented default asks for).
    pub fn log(&self, wanted: usize) {
        for share in &self.shares {
            if share.cap < wanted {
                tracing::warn!(
                    listener = share.name,
                    capacity = share.cap,
                    wanted,
                    descriptors = self.descriptors,
                    reserved = RESERVED_DESCRIPTORS,
                    "this listener may hold fewer connections than wanted: raise the open-file limit \
                     (ulimit -n, LimitNOFILE, docker run --ulimit nofile=…)"
                );
            } else {
                tracing::info!(
                    listener = share.name,
                    capacity = share.cap,
                    guaranteed = share.own.available_permits(),
                    budget = self.budget,
                    descriptors = self.descriptors,
                    reserved = RESERVED_DESCRIPTORS,
                    "connection capacity"
                );
            }
        }
    }
}

impl Share {
    /// A place for a new connection: one of the listener's own, else one
    /// from the shared pool; `None` (counted) when neither is free or the
    /// listener is at its cap.
    pub fn take(self: &Arc<Self>) -> Option<Place> {
        let refuse = || {
            self.refused.inc();
            self.metrics.rejected(Rejection::Connections);
            None
        };
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return refuse();
        }
        let permit = self.own.clone().try_acquire_owned().or_else(|_| self.shared.clone().try_acquire_owned());
        match permit {
            Ok(permit) => {
                self.connections.inc();
                Some(Place { share: self.clone(), _permit: permit })
            }
            Err(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                refuse()
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(["default"]))
    }

    #[test]
    fn one_listener_takes_the_shared_budget_and_the_others_keep_their_guarantee() {
        let metrics = metrics();
        let capacity = Capacity::plan(20_000, &["http", "admin", "grpc", "sync"], None, &metrics);
        assert_eq!(capacity.budget, 20_000 - 128);
        let sync = capacity.share("sync");
        assert_eq!(sync.cap, capacity.budget - 3 * GUARANTEED, "one listener may hold all but the others' guarantee");
        let held: Vec<Place> = std::iter::from_fn(|| sync.take()).take(30_000).collect();
        assert_eq!(held.len(), sync.cap, "~19,600 streams on one listener");
        assert!(sync.take().is_none(), "full: refused");
        assert_eq!(metrics.listener_refused.with_label_values(&["sync"]).get(), 2);
        // The admin listener still answers: its guaranteed places.
        let admin = capacity.share("admin");
        let admin_places: Vec<Place> = std::iter::from_fn(|| admin.take()).take(1_000).collect();
        assert_eq!(admin_places.len(), GUARANTEED);
        assert_eq!(metrics.listener_connections.with_label_values(&["sync"]).get(), sync.cap as i64);
        drop(held);
        assert_eq!((sync.open(), metrics.listener_connections.with_label_values(&["sync"]).get()), (0, 0));
        assert!(sync.take().is_some(), "places are given back");
    }

    #[test]
    fn a_configured_cap_and_a_tiny_budget_are_honoured() {
        let metrics = metrics();
        let capped = Capacity::plan(20_000, &["http", "admin"], Some(50), &metrics);
        let http = capped.share("http");
        assert_eq!(http.cap, 50);
        let held: Vec<Place> = std::iter::from_fn(|| http.take()).take(100).collect();
        assert_eq!(held.len(), 50);
        assert_eq!(metrics.listener_capacity.with_label_values(&["http"]).get(), 50);
        // 256 descriptors: 128 reserved, 128 for four listeners: 16 each guaranteed.
        let tiny = Capacity::plan(256, &["a", "b", "c", "d"], None, &metrics);
        assert_eq!(tiny.budget, 128);
        let a = tiny.share("a");
        let taken: Vec<Place> = std::iter::from_fn(|| a.take()).take(1_000).collect();
        assert_eq!(taken.len(), 128 - 3 * 16);
        let d = tiny.share("d");
        let held: Vec<Place> = std::iter::from_fn(|| d.take()).take(1_000).collect();
        assert_eq!(held.len(), 16);
    }
}
