//! The Rampart server: configuration, flag loading and hot reload, the
//! OFREP, flagd and `rampart.v1` protocols, the admin API and dashboard,
//! ramps, relays, health and metrics.
//!
//! # Layout
//!
//! ARCHITECTURE.md has the code map and the layers (`tests/tests/
//! architecture.rs` holds them). Bottom to top:
//!
//! - foundations: [`model`] (runs, evidence, events), [`time`] (the one
//!   clock), [`rate`], [`limits`], [`paths`], [`enrichment`], [`exit`];
//!   [`cli`] (argument shapes) and `admin_client`;
//! - [`config`], [`loader`] (files → flag sets), [`telemetry`];
//! - [`store`] (embedded or Redis), [`snapshot`], [`changes`], [`metrics`];
//! - [`environment`] (environments, keys, the snapshot each serves),
//!   [`writes`] (every change of flags), [`ramp`] (progressive delivery);
//! - [`relay`], [`replica`], [`watch`], [`validate`], [`gitops`];
//! - [`services`] (what every transport serves from), then the transports
//!   `grpc` and `http` (with the dashboard);
//! - [`commands`], [`promote`], [`ramp_client`]: command-line tools.
//!
//! `main.rs` only parses the command line; [`Server`] is the entry point
//! tests use, with listeners on port 0.
//!
//! The server never evaluates anything itself: `rampart-engine` does, the
//! same engine the SDK embeds.

mod admin_client;
pub mod capacity;
pub mod changes;
pub mod cli;
pub mod commands;
pub mod config;
pub mod enrichment;
pub mod environment;
pub mod exit;
pub mod gitops;
mod grpc;
mod http;
/// The dashboard's pages as its render benchmarks measure them.
#[doc(hidden)]
pub use http::ui::bench as dashboard_bench;
pub mod limits;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod otlp;
pub mod paths;
pub mod promote;
pub mod ramp;
pub mod ramp_client;
pub mod rate;
pub mod relay;
pub mod replica;
pub mod services;
pub mod snapshot;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod validate;
pub mod watch;
pub mod writes;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{App, web};
use rampart_engine::LoadErrors;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, StoreConfig};
use crate::environment::Environments;
use crate::http::AdminAccess;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};

/// Why the server could not start. Each has its own exit code
/// ([`StartupError::exit_code`]), so a supervisor can tell a bad
/// configuration (fix the files) from an unreachable store (retry).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid flag files")]
    Flags(Vec<(String, LoadErrors)>),
    #[error("invalid ramp files")]
    Ramps(Vec<(String, LoadErrors)>),
    /// The store cannot be opened or reached, or holds what this version
    /// cannot read.
    #[error("{0}")]
    Store(StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A failure of this process, not of its input (no TLS for HTTP clients).
    #[error("{0}")]
    Internal(String),
    #[error("cannot use the relay cache directory: {0}")]
    RelayCache(std::io::Error),
}

impl StartupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Flags(_) | StartupError::Ramps(_) => exit::CONFIG,
            StartupError::Store(StoreError::Corrupt { .. }) => exit::STORE_DATA,
            StartupError::Store(_) => exit::STORE_UNAVAILABLE,
            StartupError::Bind { .. } => exit::BIND,
            StartupError::Internal(_) => exit::SOFTWARE,
            StartupError::RelayCache(_) => exit::STORE_UNAVAILABLE,
        }
    }
}

impl From<ramp::controller::StartError> for StartupError {
    fn from(error: ramp::controller::StartError) -> StartupError {
        match error {
            ramp::controller::StartError::Files(failures) => StartupError::Ramps(failures),
            ramp::controller::StartError::Store(error) => StartupError::Store(error),
            ramp::controller::StartError::Prometheus(error) => StartupError::Internal(error.to_string()),
        }
    }
}

/// A server whose configuration and flag files are loaded and valid, not
/// yet listening.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    state: AppState,
    /// Keeps this replica in step with the others (Redis store only).
    replica: Option<(replica::Replica, tokio::sync::mpsc::UnboundedReceiver<store::redis::Notice>)>,
}

impl Server {
    /// Opens the store and loads every environment's flag files and stored
    /// flags. Must run inside a Tokio runtime (the store is async).
    pub async fn new(config: ServerConfig) -> Result<Server, StartupError> {
        let clock = time::Clock::system();
        // Subscribed before anything is read, so no change falls between the
        // read and the subscription.
        let (store, redis): (Arc<dyn Store>, _) = match &config.store {
            StoreConfig::Embedded => {
                (Arc::new(EmbeddedStore::open(&config.data_dir).map_err(StartupError::Store)?), None)
            }
            StoreConfig::Redis(options) => {
                let (redis, notices) = RedisStore::connect(options).await.map_err(StartupError::Store)?;
                let redis = Arc::new(redis);
                tracing::info!(url = %config::redact(&options.url), prefix = %options.prefix, "using the redis store");
                (redis.clone(), Some((redis, notices)))
            }
        };
        store.retain_versions(config.limits.history_versions);
        let secret = store.installation_secret().await.map_err(StartupError::Store)?;
        let stored = store.load().await.map_err(StartupError::Store)?;
        let environments = Arc::new(Environments::load(&config, stored, clock.clone()).map_err(StartupError::Flags)?);
        let metrics = Arc::new(Metrics::new(environments.iter().map(|e| e.name.as_str())));
        let ramps = ramp::controller::Controller::load(
            &config,
            store.clone(),
            environments.clone(),
            metrics.clone(),
            clock.clone(),
        )
        .await?;
        for environment in environments.iter() {
            environment.report_to(metrics.clone());
            log_problems(environment, &metrics);
        }
        metrics.store_up.set(1);
        let replica = match redis {
            Some((redis, notices)) => {
                let (ramps_revision, _) = redis.load_ramps().await.map_err(StartupError::Store)?;
                let epoch = redis.epoch().await.map_err(StartupError::Store)?;
                let replica = replica::Replica {
                    epoch,
                    store: redis,
                    environments: environments.clone(),
                    controller: ramps.clone(),
                    metrics: metrics.clone(),
                    ramps_revision,
                };
                Some((replica, notices))
            }
            None => None,
        };
        let relay = match config.relay.clone() {
            Some(relay) => Some(Arc::new(
                relay::Relay::new(relay, clock.clone(), config.limits.flag_files.max_bytes)
                    .map_err(StartupError::RelayCache)?,
            )),
            None => None,
        };
        if let Some(relay) = &relay {
            relay.load_cache(&environments).await;
        }
        let admin = Arc::new(AdminAccess::new(&config));
        let services = services::Services {
            relay,
            environments,
            metrics,
            store,
            ramps,
            limits: Arc::new(config.limits.clone()),
            outcomes: Arc::new(ramp::outcome_gate::OutcomeGate::new(&config.limits, secret)),
            otlp_dedupe: Arc::new(otlp::dedupe::Dedupe::new(config.limits.otlp_dedupe_spans)),
            otlp_series: Arc::new(otlp::points::Series::new(otlp::MAX_SERIES)),
            shutdown: CancellationToken::new(),
            heartbeat: config.heartbeat,
            max_body_bytes: config.max_body_bytes,
            clock: clock.clone(),
        };
        let writes = writes::Writes::new(services.store.clone(), config.max_api_flags, clock.clone())
            .with_rate(config.limits.admin_writes_per_second, services.metrics.clone());
        let dashboard = Arc::new(http::Dashboard::new(clock, config.dashboard_secure_cookie).ok_or_else(|| {
            StartupError::Internal("the system's random source failed: no CSRF token for the dashboard".into())
        })?);
        let state = AppState { services, admin, writes, dashboard };
        Ok(Server { config, state, replica })
    }

    /// Binds all four listeners.
    pub fn bind(self) -> Result<BoundServer, StartupError> {
        let bind = |addr: SocketAddr| TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source });
        let http = bind(self.config.http_addr)?;
        let admin = bind(self.config.admin_addr)?;
        let grpc = bind(self.config.grpc_addr)?;
        let sync = bind(self.config.sync_addr)?;
        let otlp_http = self.config.otlp_http_addr.map(bind).transpose()?;
        let otlp_grpc = self.config.otlp_grpc_addr.map(bind).transpose()?;
        Ok(BoundServer { server: self, http, admin, grpc, sync, otlp_http, otlp_grpc })
    }
}

/// A server with bound listeners.
#[derive(Debug)]
pub struct BoundServer {
    server: Server,
    http: TcpListener,
    admin: TcpListener,
    grpc: TcpListener,
    sync: TcpListener,
    otlp_http: Option<TcpListener>,
    otlp_grpc: Option<TcpListener>,
}

impl BoundServer {
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.server.config.http_addr)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.server.config.admin_addr)
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// in-flight requests finish (bounded by the shutdown timeout) and stops
    /// the file watcher. Must run inside an actix system.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let (http_addr, admin_addr) = (self.http_addr(), self.admin_addr());
        let grpc_addr = self.grpc.local_addr()?;
        let sync_addr = self.sync.local_addr()?;
        let otlp_http_addr = self.otlp_http.as_ref().map(TcpListener::local_addr).transpose()?;
        let otlp_grpc_addr = self.otlp_grpc.as_ref().map(TcpListener::local_addr).transpose()?;
        let BoundServer { server, http, admin, grpc, sync, otlp_http, otlp_grpc } = self;
        let Server { config, state, replica } = server;
        let mut state = state;
        state.services.shutdown = shutdown.clone();
        let data = web::Data::new(state.clone());

        let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        // One descriptor budget, shared by the listeners (`capacity`).
        let mut names = vec!["http", "admin", "grpc", "sync"];
        names.extend(otlp_http.as_ref().map(|_| "otlp_http"));
        names.extend(otlp_grpc.as_ref().map(|_| "otlp_grpc"));
        let capacity =
            capacity::Capacity::plan(config.limits.descriptors(), &names, config.limits.listener_cap(), &state.metrics);
        capacity.log(config.limits.connections_per_listener);
        let settings = |listener, name: &str, workers| http::listener::Settings {
            listener,
            workers,
            share: capacity.share(name),
            shutdown_timeout: config.shutdown_timeout,
            metrics: state.metrics.clone(),
        };
        let http_data = data.clone();
        let http_server =
            http::listener::serve(settings(http::refusals::Listener::Application, "http", workers), http, move || {
                App::new()
                    .app_data(http_data.clone())
                    .wrap(from_fn(|req, next| http::observe("http", req, next)))
                    .configure(http::configure_http)
                    .default_service(web::to(http::not_found))
            })?;
        let admin_data = data.clone();
        let admin_server = http::listener::serve(
            settings(http::refusals::Listener::Operator, "admin", workers.min(2)),
            admin,
            move || {
                App::new()
                    .app_data(admin_data.clone())
                    .wrap(from_fn(http::relay_read_only))
                    .wrap(from_fn(|req, next| http::observe("admin", req, next)))
                    .configure(http::configure_admin)
                    .default_service(web::to(http::not_found))
            },
        )?;
        let otlp_server = match otlp_http {
            Some(socket) => {
                let otlp_data = data.clone();
                let settings = settings(http::refusals::Listener::Application, "otlp_http", workers.min(2));
                Some(http::listener::serve(settings, socket, move || {
                    App::new()
                        .app_data(otlp_data.clone())
                        .wrap(from_fn(|req, next| http::observe("otlp", req, next)))
                        .configure(http::configure_otlp)
                        .default_service(web::to(http::not_found))
                })?)
            }
            None => None,
        };
        let otlp_handle = otlp_server.as_ref().map(actix_server::Server::handle);
        let (http_handle, admin_handle) = (http_server.handle(), admin_server.handle());

        let grpc_thread = grpc::spawn(state.services.clone(), (grpc, sync, otlp_grpc), &capacity, workers)?;
        // A background task that panics stops the server (EX_SOFTWARE) instead
        // of leaving it serving without, say, its ramp controller.
        let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let supervised = |name: &'static str, task: tokio::task::JoinHandle<()>| {
            let (panicked, shutdown) = (panicked.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(error) = task.await
                    && error.is_panic()
                {
                    tracing::error!(task = name, "a server task panicked: stopping the server");
                    panicked.store(true, std::sync::atomic::Ordering::SeqCst);
                    shutdown.cancel();
                }
            })
        };
        let watcher = watch::Watcher::start(state.environments.clone(), state.metrics.clone(), state.ramps.clone());
        let controller = supervised("ramp controller", tokio::spawn(state.ramps.clone().run(shutdown.clone())));
        let webhooks = supervised(
            "webhooks",
            tokio::spawn(ramp::webhooks::run(
                state.store.clone(),
                state.metrics.clone(),
                (state.ramps.holder().to_owned(), config.ramp_lease),
                state.clock.clone(),
                shutdown.clone(),
            )),
        );
        let replica = replica
            .map(|(replica, notices)| supervised("replica", tokio::spawn(replica.run(notices, shutdown.clone()))));
        let relay = state.services.relay.clone().map(|relay| {
            supervised(
                "relay",
                tokio::spawn(relay.run(state.environments.clone(), state.metrics.clone(), shutdown.clone())),
            )
        });
        let retention = supervised(
            "history retention",
            tokio::spawn(prune_history(state.services.clone(), config.limits.audit_retention)),
        );
        let usage = supervised("flag usage", tokio::spawn(services::usage::run(state.services.clone())));
        let watcher = supervised("file watcher", tokio::spawn(watcher.run(shutdown.clone())));
        let environments: Vec<String> = state.environments.iter().map(|e| e.name.clone()).collect();
        tracing::info!(
            %http_addr,
            %admin_addr,
            %grpc_addr,
            %sync_addr,
            otlp_http_addr = otlp_http_addr.map(|addr| addr.to_string()),
            otlp_grpc_addr = otlp_grpc_addr.map(|addr| addr.to_string()),
            environments = environments.join(","),
            open_evaluation = config.open_evaluation(),
            "listening"
        );

        if config.open_evaluation()
            && !http_addr.ip().is_loopback()
            && config.environments.iter().any(|e| !e.ramps.is_empty())
        {
            tracing::warn!(
                %http_addr,
                "no SDK or reporter keys are configured and the application listener is not on loopback: \
                 anyone who reaches it can report outcomes that steer the ramps, without bounds per source; \
                 configure sdkKeys and reporterKeys"
            );
        }
        for environment in config.environments.iter().filter(|e| e.sdk_key_outcomes) {
            tracing::warn!(
                environment = %environment.name,
                "sdkKeyOutcomes is on: anyone holding this environment's SDK keys (they ship in client apps) can \
                 report outcomes that feed its ramps; each client address and targeting key is bounded, but a \
                 crowd of clients can still bend a decision. Report from your servers with reporterKeys instead"
            );
        }
        if matches!(*state.admin, AdminAccess::Disabled) {
            tracing::warn!(
                "the admin API is off: no admin token is configured (adminTokens, --admin-tokens, RAMPART_ADMIN_TOKEN); \
                 pass --admin-insecure-local to use it without tokens on a loopback address"
            );
        }
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down");
            let otlp = async {
                if let Some(handle) = otlp_handle {
                    handle.stop(true).await;
                }
            };
            tokio::join!(http_handle.stop(true), admin_handle.stop(true), otlp);
        });
        let otlp = async {
            match otlp_server {
                Some(server) => server.await,
                None => Ok(()),
            }
        };
        let (http_result, admin_result, otlp_result) = tokio::join!(http_server, admin_server, otlp);
        stopper.abort();
        let _ = watcher.await;
        let _ = controller.await;
        let _ = webhooks.await;
        let _ = retention.await;
        let _ = usage.await;
        if let Some(replica) = replica {
            let _ = replica.await;
        }
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        let grpc_result = tokio::task::spawn_blocking(move || grpc_thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the gRPC thread panicked"))?;
        if panicked.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("a server task panicked (logged above)"));
        }
        tracing::info!("stopped");
        http_result.and(admin_result).and(otlp_result).and(grpc_result)
    }
}

/// Logs each flag of the files that cannot be used (it answers
/// `PARSE_ERROR`), with its file and line, and counts those refused by a
/// limit: a flag served leniently hit its budget all the same.
pub(crate) fn log_problems(environment: &environment::Environment, metrics: &Metrics) {
    let snapshot = environment.snapshot();
    metrics.rejected_load(&snapshot.problems);
    for problem in snapshot.problems.iter() {
        // A flag whose targeting compiles but cannot work as written is
        // served as flagd serves it; one that does not compile answers
        // PARSE_ERROR.
        let served =
            problem.flag.as_deref().and_then(|key| snapshot.flags.get(key)).is_some_and(|f| f.problem().is_none());
        let consequence = if served {
            "this flag is served, but its targeting cannot work as written (evaluations that reach it fail)"
        } else {
            "this flag cannot be used and answers PARSE_ERROR"
        };
        tracing::error!(
            environment = %environment.name,
            file = %problem.file,
            line = problem.line,
            flag = problem.flag.as_deref(),
            "{consequence}: {problem}"
        );
    }
}

/// Applies the history retention (`limits.auditRetentionDays`,
/// `limits.historyVersionsPerFlag`) at start-up and then hourly.
async fn prune_history(services: services::Services, retention: std::time::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = services.shutdown.cancelled() => return,
            _ = every.tick() => {
                let before = services.clock.now_millis().saturating_sub(retention.as_millis() as u64);
                match services.store.prune(before).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "pruned audit entries and flag versions past their retention"),
                    Err(error) => tracing::warn!(%error, "cannot prune the history"),
                }
            }
        }
    }
}

/// Installs SIGINT and SIGTERM handlers now (so a signal that arrives
/// before the server is up is not fatal) and returns a future that cancels
/// `token` when one arrives. Must be called inside a runtime.
pub fn cancel_on_signal(token: CancellationToken) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    token.cancel();
                }
                _ => tracing::warn!("cannot install signal handlers"),
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    }
}
