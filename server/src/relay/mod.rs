//! Relay mode: a Rampart process with no flags of its own, fed by an
//! upstream Rampart (a primary or another relay) over `rampart.v1` sync.
//!
//! For each environment it serves, the relay follows the upstream's stream
//! (a snapshot, then deltas; after a reconnect it resumes from the epoch
//! and version it has) and serves the flags exactly as a primary would, on
//! every protocol — `rampart.v1` included, so relays chain. Which keys may
//! use an environment arrives with the snapshot as digests, so the relay
//! never holds a secret but its own token. What it received is kept in the
//! cache directory, so a relay restarted while its upstream is away serves
//! the last configuration it had. Ramps run upstream only: the exposure
//! each ramp sets is part of the flag definitions the relay receives.

mod batch;
mod cache;
mod follow;
mod outcomes;

pub use crate::config::RelayConfig;
pub use follow::ENVIRONMENT_HEADER;
pub use outcomes::{BATCH_HEADER, ForwardError, Forwarder};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::environment::Environments;
use crate::metrics::Metrics;
use crate::time::Clock;

/// A random number for jitter and ids: spread, not cryptography (the std
/// hasher's per-process random keys).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// What one followed environment last heard from the upstream.
#[derive(Debug, Default)]
pub struct Link {
    connected: AtomicBool,
    /// Unix ms of the last message from the upstream (0: never).
    last_contact: AtomicU64,
    /// Whether a configuration (from the upstream or the cache) is served.
    has_flags: AtomicBool,
}

/// How a followed environment is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connected and up to date.
    Live,
    /// The upstream is away: the last configuration received serves.
    Stale { age_ms: Option<u64> },
    /// Nothing to serve yet (no upstream, no cache).
    Waiting,
}

/// The relay at run time.
#[derive(Debug)]
pub struct Relay {
    pub config: RelayConfig,
    /// Outcomes posted here, on their way upstream.
    pub forwarder: Arc<Forwarder>,
    links: BTreeMap<String, Link>,
    clock: Clock,
    /// The largest message taken from the upstream: a flag document's limit.
    max_message_bytes: usize,
}

impl Relay {
    /// Opens the cache directory (the outcome buffer lives there).
    /// `max_message_bytes`: the largest flag document taken from upstream.
    pub fn new(config: RelayConfig, clock: Clock, max_message_bytes: usize) -> std::io::Result<Relay> {
        let links = config.environments.iter().map(|name| (name.clone(), Link::default())).collect();
        let forwarder = Arc::new(Forwarder::open(&config.cache_dir)?);
        Ok(Relay { config, forwarder, links, clock, max_message_bytes })
    }

    /// Passes `track` events on to the upstream (where the ramps that count
    /// them run) and answers with its (accepted, ignored). Not buffered:
    /// an event is acknowledged only once the upstream stored it, and a
    /// client whose call fails sends it again.
    pub async fn forward_track(
        &self,
        environment: &str,
        events: Vec<rampart_proto::rampart::v1::TrackEvent>,
    ) -> Result<(u64, u64), tonic::Status> {
        use rampart_proto::rampart::v1::TrackBatch;
        use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
        let endpoint = tonic::transport::Endpoint::from_shared(self.config.url.clone())
            .map_err(|e| tonic::Status::unavailable(format!("the upstream's address: {e}")))?;
        let channel = endpoint.connect_timeout(std::time::Duration::from_secs(5)).connect_lazy();
        let mut request = tonic::Request::new(TrackBatch { events });
        request.set_timeout(std::time::Duration::from_secs(10));
        for (name, value) in
            [("authorization", format!("Bearer {}", self.config.token)), (ENVIRONMENT_HEADER, environment.to_owned())]
        {
            if let Ok(value) = value.parse() {
                request.metadata_mut().insert(name, value);
            }
        }
        let reply = FlagSyncClient::new(channel).track(request).await?.into_inner();
        Ok((reply.accepted, reply.ignored))
    }

    /// Where writes go: the upstream (its sync address; its admin API is beside it).
    pub fn upstream(&self) -> &str {
        &self.config.url
    }

    pub fn state(&self, environment: &str) -> LinkState {
        let Some(link) = self.links.get(environment) else { return LinkState::Waiting };
        let last = link.last_contact.load(Ordering::Relaxed);
        let age_ms = (last > 0).then(|| self.clock.now_millis().saturating_sub(last));
        match (link.connected.load(Ordering::Relaxed), link.has_flags.load(Ordering::Relaxed)) {
            (_, false) => LinkState::Waiting,
            (true, true) => LinkState::Live,
            (false, true) => LinkState::Stale { age_ms },
        }
    }

    /// Loads what the cache holds (a relay restarted without its upstream
    /// serves it), then follows every environment until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        environments: Arc<Environments>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut tasks = Vec::new();
        for name in self.config.environments.clone() {
            let (cache, latest) = tokio::sync::watch::channel(None);
            tasks.push(tokio::spawn(follow::write_cache(
                self.clone(),
                environments.clone(),
                metrics.clone(),
                name.clone(),
                latest,
                shutdown.clone(),
            )));
            let follower = follow::Follower { relay: self.clone(), environments: environments.clone(), name, cache };
            tasks.push(tokio::spawn(follower.run(shutdown.clone())));
        }
        tasks.push(tokio::spawn(self.forwarder.clone().run(self.config.clone(), metrics.clone(), shutdown.clone())));
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = gauges.tick() => self.report(&metrics),
            }
        }
        for task in tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                // Re-raised: the server's supervisor logs it and stops with EX_SOFTWARE.
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }

    /// Serves each environment's cached configuration, if any, before the
    /// listeners open: a cold start without the upstream.
    pub async fn load_cache(&self, environments: &Environments) {
        for name in &self.config.environments {
            let (Some(environment), Some(link)) = (environments.get(name), self.links.get(name)) else { continue };
            match cache::load(&self.config.cache_dir, name) {
                Ok(Some(cached)) => {
                    environments.set_credentials(name, cached.credentials.clone());
                    let compiled = follow::compile(&cached.flags_json);
                    let served = match compiled {
                        Ok((flags, problems)) => environment.serve_upstream(flags, problems).await,
                        Err(errors) => Err(errors),
                    };
                    match served {
                        Ok(_) => {
                            link.has_flags.store(true, Ordering::Relaxed);
                            link.last_contact.store(cached.saved_at, Ordering::Relaxed);
                            tracing::info!(environment = %name, upstream_version = cached.version, "serving the cached configuration until the upstream answers");
                        }
                        Err(errors) => tracing::error!(
                            environment = %name,
                            %errors,
                            "the cached configuration cannot be read; waiting for the upstream (not ready until then)"
                        ),
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::error!(environment = %name, %error, "cannot read the relay cache"),
            }
        }
    }

    fn report(&self, metrics: &Metrics) {
        for (name, link) in &self.links {
            let connected = link.connected.load(Ordering::Relaxed);
            let last = link.last_contact.load(Ordering::Relaxed);
            let age =
                if connected || last == 0 { 0.0 } else { self.clock.now_millis().saturating_sub(last) as f64 / 1e3 };
            metrics.relay_upstream(name, connected, age);
        }
        metrics.relay_outcome_buffer(self.forwarder.buffered_bytes());
    }
}
