//! Server configuration: the `rampart.yaml` file, command-line options and
//! environment variables, merged and validated completely before anything
//! is bound or started.
//!
//! ```yaml
//! httpAddr: 127.0.0.1:8016
//! adminAddr: 127.0.0.1:8014
//! logFormat: json
//! prometheusUrl: http://prometheus:9090     # for Prometheus-guarded ramps
//! store:                                    # omit for the embedded store
//!   redis: { urlEnv: RAMPART_REDIS_URL, passwordEnv: RAMPART_REDIS_PASSWORD }
//! rampLeaseSeconds: 15                      # replicas: takeover of a dead driver's ramps
//! environments:
//!   production:
//!     flags: [flags/production/*.yaml]      # relative to this file
//!     ramps: [ramps/production/*.yaml]      # optional
//!     sdkKeys:
//!       - env: RAMPART_PRODUCTION_SDK_KEY   # read from the environment
//!       - sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//!   staging:
//!     flags: [flags/staging/*.yaml]
//!     sdkKeys: [{value: staging-key}]       # literal: for local use only
//! ```

mod file;
mod keys;
mod relay;
mod store;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::{LogFormat, ServeArgs};
use file::{ConfigFile, TokensFile};
use keys::{admin_token, check_keys, check_tokens, environment_config, secret_digest};
pub use relay::{RelayConfig, TOKEN_VARIABLE};
use store::store_config;
pub use store::{DEFAULT_RAMP_LEASE, RedisOptions, StoreConfig, redact};

pub const DEFAULT_HTTP_PORT: u16 = 8016;
pub const DEFAULT_ADMIN_PORT: u16 = 8014;
pub const DEFAULT_GRPC_PORT: u16 = 8013;
pub const DEFAULT_SYNC_PORT: u16 = 8015;
/// OTLP/HTTP's conventional port (the receiver is off unless configured).
pub const DEFAULT_OTLP_HTTP_PORT: u16 = 4318;
/// OTLP/gRPC's conventional port (off unless configured).
pub const DEFAULT_OTLP_GRPC_PORT: u16 = 4317;
/// The environment `--flags` serves.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// Largest request body accepted (flagd's default).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_000_000;
pub const DEFAULT_MAX_API_FLAGS: usize = 10_000;
/// Admin tokens are long-lived credentials with write access: insist on length.
const MIN_ADMIN_TOKEN_LENGTH: usize = 16;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub sync_addr: SocketAddr,
    /// The OTLP/HTTP receiver (`otlpHttpAddr`), when configured.
    pub otlp_http_addr: Option<SocketAddr>,
    /// The OTLP/gRPC receiver (`otlpGrpcAddr`), when configured.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Rampart's own traces over OTLP (`otlpExport`), when configured.
    pub otlp_export: Option<OtlpExport>,
    /// Keep-alive interval of streams.
    pub heartbeat: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub workers: Option<usize>,
    pub environments: Vec<EnvironmentConfig>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    /// Where the embedded store keeps its database.
    pub data_dir: PathBuf,
    /// Admin API tokens (digests); empty means the admin API is off unless
    /// `admin_insecure_local`.
    pub admin_tokens: Vec<AdminToken>,
    /// Serve the admin API without tokens (loopback only, local development).
    pub admin_insecure_local: bool,
    /// Mark the dashboard's session cookie `Secure` (it is reached over HTTPS).
    pub dashboard_secure_cookie: bool,
    /// Most flags the admin API may create in one environment.
    pub max_api_flags: usize,
    /// Prometheus HTTP API for ramps guarded by Prometheus queries.
    pub prometheus_url: Option<String>,
    /// Where API-owned flags, history, audit and ramp state live.
    pub store: StoreConfig,
    /// How long a ramp lease lasts without renewal.
    pub ramp_lease: Duration,
    /// What inputs, clients and history may cost.
    pub limits: crate::limits::Limits,
    /// Refuse flag files as a whole when any flag is invalid (otherwise the
    /// invalid flag answers PARSE_ERROR, as in flagd).
    pub strict_flags: bool,
    /// Set when this process is a relay: its flags come from the upstream.
    pub relay: Option<RelayConfig>,
}

/// `otlpExport`: where Rampart sends its own traces (`telemetry`).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExport {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended).
    /// Headers come from the standard `OTEL_EXPORTER_OTLP_HEADERS` /
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` variables (secrets stay out of
    /// files).
    pub endpoint: String,
    /// The share of evaluation requests traced on their own (0–1; default
    /// 0.01). Requests whose caller sent a sampled `traceparent` are
    /// always traced.
    pub evaluation_sample: f64,
    /// `service.name` of the spans (default `rampart`).
    pub service_name: String,
}

/// What an admin token may do. Ordered: from `read` on, each role includes
/// the ones before; `alerts` and `relay` are narrow roles for one purpose
/// each (`http::policy` says exactly what).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Alertmanager's credential: posts alerts (`POST /admin/v1/alerts`);
    /// nothing else, not even reading.
    Alerts,
    /// A relay's credential: subscribes to the environments it is scoped
    /// to and forwards outcomes; nothing on the admin API.
    Relay,
    /// GET requests only.
    Read,
    /// Flag changes.
    Write,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Alerts => "alerts",
            Role::Relay => "relay",
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// An admin token: its name (the actor in the audit log), role, and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    pub digest: KeyDigest,
    /// The environments a relay token may follow (empty for other roles).
    pub environments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EnvironmentConfig {
    pub name: String,
    /// Flag files or globs, already resolved against the config file's directory.
    pub flags: Vec<String>,
    /// Ramp files or globs, resolved the same way.
    pub ramps: Vec<String>,
    /// SHA-256 digests of the environment's SDK keys; keys themselves are
    /// never kept.
    pub sdk_keys: Vec<KeyDigest>,
    /// Digests of reporter keys: the credentials that report outcomes
    /// (a reporter key stays on the servers that report).
    pub reporter_keys: Vec<KeyDigest>,
    /// Whether SDK keys may report outcomes too (`sdkKeyOutcomes: true`).
    /// Off by default: SDK keys ship inside client apps, so anyone holds
    /// them; their reports are then held to the public bounds
    /// (`ramp::outcome_gate`: one outcome per entry, per client and per
    /// targeting key).
    pub sdk_key_outcomes: bool,
    /// `protected: true`: production. The dashboard marks it on every page
    /// and asks the operator to type the flag's or ramp's name before a
    /// kill switch, abort, promotion or revert there.
    pub protected: bool,
    /// What the server adds to every evaluation context of the
    /// environment (flagd's `context-value` and `context-from-header`).
    pub context: crate::enrichment::Enrichment,
}

impl EnvironmentConfig {
    /// An environment a relay serves: no files, no ramps; keys from upstream.
    pub fn relayed(name: &str) -> EnvironmentConfig {
        EnvironmentConfig {
            name: name.to_owned(),
            flags: Vec::new(),
            ramps: Vec::new(),
            sdk_keys: Vec::new(),
            reporter_keys: Vec::new(),
            sdk_key_outcomes: false,
            protected: false,
            context: crate::enrichment::Enrichment::default(),
        }
    }
}

/// SHA-256 of a secret. Secrets are compared by digest, so a lookup never
/// depends on how much of a guessed key is right.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn of(secret: &str) -> KeyDigest {
        KeyDigest(Sha256::digest(secret.as_bytes()).into())
    }
}

/// Never prints the digest either: it identifies a key.
impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Builds the configuration from the command line (with its environment
    /// variables) and, when given, the configuration file. `env` reads
    /// environment variables (a parameter so tests need not mutate the
    /// process environment).
    pub fn resolve(args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<ServerConfig, ConfigError> {
        let (mut file, base) = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let file: ConfigFile =
                    serde_saphyr::from_str_with_options(&text, rampart_engine::source::yaml_options()).map_err(
                        |e| ConfigError::Parse {
                            path: path.clone(),
                            message: rampart_engine::source::yaml_message(&e.to_string()),
                        },
                    )?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (file, Some(base))
            }
            None => (ConfigFile::default(), None),
        };

        let http_addr = pick_addr(args.http_addr, file.http_addr.as_deref(), "httpAddr", DEFAULT_HTTP_PORT)?;
        let admin_addr = pick_addr(args.admin_addr, file.admin_addr.as_deref(), "adminAddr", DEFAULT_ADMIN_PORT)?;
        let grpc_addr = pick_addr(args.grpc_addr, file.grpc_addr.as_deref(), "grpcAddr", DEFAULT_GRPC_PORT)?;
        let sync_addr = pick_addr(args.sync_addr, file.sync_addr.as_deref(), "syncAddr", DEFAULT_SYNC_PORT)?;
        let otlp_http_addr = match (args.otlp_http_addr, file.otlp_http_addr.as_deref()) {
            (None, None) => None,
            (cli, file) => Some(pick_addr(cli, file, "otlpHttpAddr", DEFAULT_OTLP_HTTP_PORT)?),
        };
        let otlp_grpc_addr = match (args.otlp_grpc_addr, file.otlp_grpc_addr.as_deref()) {
            (None, None) => None,
            (cli, file) => Some(pick_addr(cli, file, "otlpGrpcAddr", DEFAULT_OTLP_GRPC_PORT)?),
        };
        let otlp_export = match (&args.otlp_export, file.otlp_export.take()) {
            (None, None) => None,
            (cli, file) => Some(file::resolve_otlp_export(cli.as_deref(), file)?),
        };
        let mut listeners = vec![("HTTP", http_addr), ("admin", admin_addr), ("gRPC", grpc_addr), ("sync", sync_addr)];
        listeners.extend(otlp_http_addr.map(|addr| ("OTLP/HTTP", addr)));
        listeners.extend(otlp_grpc_addr.map(|addr| ("OTLP/gRPC", addr)));
        for (index, (name, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..index].iter().find(|(_, a)| a == addr && addr.port() != 0) {
                return Err(ConfigError::Invalid(format!(
                    "the {other} and {name} listeners cannot share the address {addr}"
                )));
            }
        }
        let heartbeat = args.heartbeat_seconds.or(file.heartbeat_seconds).unwrap_or(20);
        if heartbeat == 0 {
            return Err(ConfigError::Invalid("heartbeat seconds must be at least 1".into()));
        }

        let config_base = base.clone().unwrap_or_default();
        let relay = RelayConfig::resolve(args, file.upstream.take(), &config_base, env)?;
        let environments = match (&args.config, args.flags.is_empty()) {
            _ if relay.is_some() => {
                if !args.flags.is_empty() || !file.environments.is_empty() {
                    return Err(ConfigError::Invalid(
                        "a relay serves what its upstream sends: it takes no flag files or environments of its own \
                         (name them in --environment / upstream.environments)"
                            .into(),
                    ));
                }
                relay
                    .iter()
                    .flat_map(|relay| relay.environments.iter())
                    .map(|name| EnvironmentConfig::relayed(name))
                    .collect()
            }
            (Some(path), true) => {
                if file.environments.is_empty() {
                    return Err(ConfigError::Invalid(format!("{}: no environments are configured", path.display())));
                }
                let base = base.clone().unwrap_or_default();
                file.environments
                    .into_iter()
                    .map(|(name, environment)| environment_config(name, environment, &base, env))
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, false) => vec![EnvironmentConfig {
                name: DEFAULT_ENVIRONMENT.to_owned(),
                flags: args.flags.clone(),
                ramps: args.ramps.clone(),
                sdk_keys: Vec::new(),
                reporter_keys: Vec::new(),
                sdk_key_outcomes: false,
                protected: false,
                context: crate::enrichment::Enrichment::default(),
            }],
            (Some(_), false) => {
                return Err(ConfigError::Invalid(
                    "--flags and --config cannot be combined: list flag files per environment in the configuration file"
                        .into(),
                ));
            }
            (None, true) => {
                return Err(ConfigError::Invalid(
                    "nothing to serve: pass --flags FILE (one open environment) or --config rampart.yaml".into(),
                ));
            }
        };
        if relay.is_none() {
            check_keys(&environments)?;
        }

        let mut admin_tokens = Vec::new();
        for token in file.admin_tokens {
            admin_tokens.push(admin_token(token, env)?);
        }
        if let Some(path) = &args.admin_tokens {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let tokens: TokensFile = serde_saphyr::from_str_with_options(&text, rampart_engine::source::yaml_options())
                .map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: rampart_engine::source::yaml_message(&e.to_string()),
                })?;
            for token in tokens.tokens {
                admin_tokens.push(admin_token(token, env)?);
            }
        }
        if let Some(secret) = env("RAMPART_ADMIN_TOKEN") {
            admin_tokens.push(AdminToken {
                name: "admin".into(),
                role: Role::Admin,
                digest: secret_digest(&secret, "RAMPART_ADMIN_TOKEN", MIN_ADMIN_TOKEN_LENGTH)?,
                environments: Vec::new(),
            });
        }
        check_tokens(&admin_tokens, &environments)?;
        if args.admin_insecure_local && !admin_tokens.is_empty() {
            // Tokens win over the flag, so a token left exported from an
            // earlier shell silently turned every local call into a 401.
            return Err(ConfigError::Invalid(format!(
                "--admin-insecure-local and admin tokens ({}) are both configured: with tokens every caller must \
                 present one, so the flag would be ignored; drop one of them (e.g. `unset RAMPART_ADMIN_TOKEN`)",
                admin_tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if args.admin_insecure_local && !admin_addr.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "--admin-insecure-local serves the admin API without tokens, so it needs a loopback admin address, not {admin_addr}"
            )));
        }

        let workers = args.workers.or(file.workers);
        if workers == Some(0) {
            return Err(ConfigError::Invalid("workers must be at least 1".into()));
        }
        let store = store_config(args, file.store.as_ref(), &config_base, env)?;
        let ramp_lease = match args.ramp_lease_seconds.or(file.ramp_lease_seconds) {
            None => DEFAULT_RAMP_LEASE,
            Some(seconds) if seconds.is_finite() && (0.5..=3600.0).contains(&seconds) => {
                Duration::from_secs_f64(seconds)
            }
            Some(seconds) => {
                return Err(ConfigError::Invalid(format!(
                    "rampLeaseSeconds must be between 0.5 and 3600, not {seconds}"
                )));
            }
        };
        let limits = file.limits.resolve().map_err(ConfigError::Invalid)?;
        Ok(ServerConfig {
            http_addr,
            admin_addr,
            grpc_addr,
            sync_addr,
            otlp_http_addr,
            otlp_grpc_addr,
            otlp_export,
            heartbeat: Duration::from_secs(heartbeat),
            log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            log_filter: args.log.clone().or(file.log).unwrap_or_else(|| "info".to_owned()),
            workers,
            environments,
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            shutdown_timeout: Duration::from_secs(file.shutdown_timeout_seconds.unwrap_or(10)),
            data_dir: args
                .data_dir
                .clone()
                .or_else(|| relay.as_ref().map(|relay| relay.cache_dir.join("store")))
                .or(file.data_dir.map(|dir| if dir.is_absolute() { dir } else { config_base.join(dir) }))
                .unwrap_or_else(|| PathBuf::from("data")),
            admin_tokens,
            admin_insecure_local: args.admin_insecure_local,
            dashboard_secure_cookie: args.dashboard_secure_cookie || file.dashboard_secure_cookie.unwrap_or(false),
            max_api_flags: file.max_api_flags.unwrap_or(DEFAULT_MAX_API_FLAGS),
            prometheus_url: match args.prometheus_url.clone().or(file.prometheus_url) {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(url.trim_end_matches('/').to_owned())
                }
                Some(url) => {
                    return Err(ConfigError::Invalid(format!("prometheusUrl '{url}' must be an http(s) URL")));
                }
                None => None,
            },
            store,
            ramp_lease,
            limits,
            strict_flags: args.strict_flags || file.strict_flags.unwrap_or(false),
            relay,
        })
    }

    /// Whether evaluation needs no SDK key (no environment has any). A
    /// relay learns its keys from the upstream and starts closed.
    pub fn open_evaluation(&self) -> bool {
        self.relay.is_none() && self.environments.iter().all(|e| e.sdk_keys.is_empty())
    }
}

fn pick_addr(cli: Option<SocketAddr>, file: Option<&str>, name: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    if let Some(addr) = cli {
        return Ok(addr);
    }
    match file {
        Some(text) => text
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("{name}: '{text}' is not an address like 127.0.0.1:{port}"))),
        None => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
    }
}

#[cfg(test)]
mod tests;
