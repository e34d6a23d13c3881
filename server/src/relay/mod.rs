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

pub use follow::ENVIRONMENT_HEADER;
pub use outcomes::{BATCH_HEADER, ForwardError, Forwarder};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::config::ConfigError;
use crate::environment::Environments;
use crate::metrics::Metrics;
use crate::time::Clock;

/// Where the relay token is read from unless `upstream.tokenEnv` says otherwise.
pub const TOKEN_VARIABLE: &str = "RAMPART_RELAY_TOKEN";

/// `upstream:` in `rampart.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamFile {
    url: String,
    environments: Vec<String>,
    cache_dir: Option<PathBuf>,
    token_env: Option<String>,
}

/// A relay's upstream and what it follows there.
#[derive(Clone)]
pub struct RelayConfig {
    /// The upstream's sync listener, e.g. `http://primary:8015`.
    pub url: String,
    pub environments: Vec<String>,
    /// Where the last configuration received (and the outcome buffer) is kept.
    pub cache_dir: PathBuf,
    token: String,
}

/// The token is a secret: never printed.
impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("url", &self.url)
            .field("environments", &self.environments)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl RelayConfig {
    /// The relay settings from the command line (`--upstream`,
    /// `--environment`, `--cache-dir`) or `upstream:` in the file; `None`
    /// when this process is not a relay.
    pub(crate) fn resolve(
        args: &ServeArgs,
        file: Option<UpstreamFile>,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<RelayConfig>, ConfigError> {
        let (url, environments, cache_dir, token_env) = match (&args.upstream, file) {
            (None, None) => return Ok(None),
            (Some(url), file) => {
                let file_environments = file.as_ref().map(|f| f.environments.clone()).unwrap_or_default();
                let environments = if args.relay_environments.is_empty() {
                    file_environments
                } else {
                    args.relay_environments.clone()
                };
                let cache_dir = file.as_ref().and_then(|f| f.cache_dir.clone()).map(|dir| base.join(dir));
                (url.clone(), environments, args.cache_dir.clone().or(cache_dir), file.and_then(|f| f.token_env))
            }
            (None, Some(file)) => {
                let environments = if args.relay_environments.is_empty() {
                    file.environments
                } else {
                    args.relay_environments.clone()
                };
                let cache_dir = args.cache_dir.clone().or(file.cache_dir.map(|dir| base.join(dir)));
                (file.url, environments, cache_dir, file.token_env)
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "the upstream '{url}' must be an http(s) URL of its sync listener"
            )));
        }
        if environments.is_empty() {
            return Err(ConfigError::Invalid(
                "a relay needs the environments it serves: --environment NAME (or upstream.environments)".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) = environments.iter().find(|name| !seen.insert(*name)) {
            return Err(ConfigError::Invalid(format!("the environment '{repeated}' is named twice")));
        }
        let variable = token_env.unwrap_or_else(|| TOKEN_VARIABLE.to_owned());
        let token = env(&variable)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConfigError::Invalid(format!("a relay authenticates with a relay token: set {variable}")))?;
        Ok(Some(RelayConfig {
            url: url.trim_end_matches('/').to_owned(),
            environments,
            cache_dir: cache_dir.unwrap_or_else(|| PathBuf::from("relay-cache")),
            token,
        }))
    }
}

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
            let _ = task.await;
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
