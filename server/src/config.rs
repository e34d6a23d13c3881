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

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::{LogFormat, ServeArgs};

pub const DEFAULT_HTTP_PORT: u16 = 8016;
pub const DEFAULT_ADMIN_PORT: u16 = 8014;
pub const DEFAULT_GRPC_PORT: u16 = 8013;
pub const DEFAULT_SYNC_PORT: u16 = 8015;
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
}

/// The store: embedded (one process) or Redis (replicas).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Embedded,
    Redis(crate::store::redis::RedisOptions),
}

/// The `store:` section: `store: {redis: {url, passwordEnv, prefix, timeoutMs}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoreFile {
    redis: Option<RedisFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedisFile {
    /// The URL, or `env` naming a variable holding it (it may carry a password).
    url: Option<String>,
    url_env: Option<String>,
    password_env: Option<String>,
    prefix: Option<String>,
    timeout_ms: Option<u64>,
    /// PEM CA certificate for `rediss://` with a private CA.
    ca_file: Option<PathBuf>,
}

pub const DEFAULT_RAMP_LEASE: Duration = Duration::from_secs(15);
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// What an admin token may do. Ordered: each role includes the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
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
    /// Digests of reporter keys: when any are configured, only they may
    /// report outcomes (SDK keys ship inside client apps, so they are
    /// public; a reporter key stays on the servers that report).
    pub reporter_keys: Vec<KeyDigest>,
    /// What the server adds to every evaluation context of the
    /// environment (flagd's `context-value` and `context-from-header`).
    pub context: crate::enrichment::Enrichment,
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

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    http_addr: Option<String>,
    admin_addr: Option<String>,
    grpc_addr: Option<String>,
    sync_addr: Option<String>,
    heartbeat_seconds: Option<u64>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    workers: Option<usize>,
    max_body_bytes: Option<usize>,
    shutdown_timeout_seconds: Option<u64>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    admin_tokens: Vec<TokenFile>,
    max_api_flags: Option<usize>,
    prometheus_url: Option<String>,
    store: Option<StoreFile>,
    ramp_lease_seconds: Option<f64>,
    #[serde(default)]
    limits: crate::limits::LimitsFile,
    strict_flags: Option<bool>,
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentFile>,
}

/// An admin token in `rampart.yaml` or a tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenFile {
    name: String,
    role: Role,
    #[serde(flatten)]
    secret: SecretSource,
}

/// A tokens file: `tokens: [{name, role, env|sha256|value}]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum SecretSource {
    Env(String),
    Sha256(String),
    Value(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvironmentFile {
    flags: Vec<String>,
    #[serde(default)]
    ramps: Vec<String>,
    #[serde(default)]
    sdk_keys: Vec<KeySource>,
    #[serde(default)]
    reporter_keys: Vec<KeySource>,
    /// Static values added to every evaluation context.
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
    /// Request header → context key.
    #[serde(default)]
    context_from_headers: BTreeMap<String, String>,
}

/// Where an SDK key comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum KeySource {
    /// An environment variable holding the key.
    Env(String),
    /// The key's SHA-256, in hex: the key itself never touches the file.
    Sha256(String),
    /// The key itself (local development only).
    Value(String),
}

impl ServerConfig {
    /// Builds the configuration from the command line (with its environment
    /// variables) and, when given, the configuration file. `env` reads
    /// environment variables (a parameter so tests need not mutate the
    /// process environment).
    pub fn resolve(args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<ServerConfig, ConfigError> {
        let (file, base) = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let file: ConfigFile =
                    serde_saphyr::from_str_with_options(&text, rampart_engine::source::yaml_options()).map_err(
                        |e| ConfigError::Parse {
                            path: path.clone(),
                            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
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
        let listeners = [("HTTP", http_addr), ("admin", admin_addr), ("gRPC", grpc_addr), ("sync", sync_addr)];
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
        let environments = match (&args.config, args.flags.is_empty()) {
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
        check_keys(&environments)?;

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
                    message: e.to_string().lines().next().unwrap_or_default().to_owned(),
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
            });
        }
        check_tokens(&admin_tokens, &environments)?;
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
                .or(file.data_dir.map(|dir| if dir.is_absolute() { dir } else { config_base.join(dir) }))
                .unwrap_or_else(|| PathBuf::from("data")),
            admin_tokens,
            admin_insecure_local: args.admin_insecure_local,
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
        })
    }

    /// Whether evaluation needs no SDK key (no environment has any).
    pub fn open_evaluation(&self) -> bool {
        self.environments.iter().all(|e| e.sdk_keys.is_empty())
    }
}

/// The store: Redis when a URL is given (command line, environment or
/// file), else embedded.
fn store_config(
    args: &ServeArgs,
    file: Option<&StoreFile>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreConfig, ConfigError> {
    let redis = file.and_then(|f| f.redis.as_ref());
    let url = match (&args.redis_url, redis) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(RedisFile { url: Some(url), .. })) => Some(url.clone()),
        (None, Some(RedisFile { url_env: Some(name), .. })) => Some(
            env(name)
                .ok_or_else(|| ConfigError::Invalid(format!("store.redis.urlEnv names {name}, which is not set")))?,
        ),
        (None, Some(_)) => {
            return Err(ConfigError::Invalid("store.redis needs url or urlEnv".into()));
        }
        (None, None) => None,
    };
    let Some(url) = url else { return Ok(StoreConfig::Embedded) };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::Invalid(format!(
            "the Redis URL {} must start with redis:// or rediss:// (TLS)",
            crate::store::redis::redact(&url)
        )));
    }
    let password =
        match redis.and_then(|r| r.password_env.as_deref()) {
            Some(name) => Some(env(name).ok_or_else(|| {
                ConfigError::Invalid(format!("store.redis.passwordEnv names {name}, which is not set"))
            })?),
            None => env("RAMPART_REDIS_PASSWORD"),
        };
    let prefix =
        args.redis_prefix.clone().or_else(|| redis.and_then(|r| r.prefix.clone())).unwrap_or_else(|| "rampart".into());
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(ConfigError::Invalid(format!(
            "the Redis prefix '{prefix}' may only use letters, digits, '-', '_' and '.'"
        )));
    }
    let timeout = redis.and_then(|r| r.timeout_ms).map_or(DEFAULT_REDIS_TIMEOUT, Duration::from_millis);
    let ca_file = args.redis_ca_file.clone().or_else(|| {
        redis.and_then(|r| r.ca_file.clone()).map(|file| if file.is_absolute() { file } else { base.join(file) })
    });
    if ca_file.is_some() && !url.starts_with("rediss://") {
        return Err(ConfigError::Invalid("a Redis CA file needs a rediss:// (TLS) URL".into()));
    }
    Ok(StoreConfig::Redis(crate::store::redis::RedisOptions { url, password, prefix, timeout, ca_file }))
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

fn environment_config(
    name: String,
    file: EnvironmentFile,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvironmentConfig, ConfigError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ConfigError::Invalid(format!(
            "environment name '{name}' must be non-empty and use only letters, digits, '-' and '_'"
        )));
    }
    if file.flags.is_empty() {
        return Err(ConfigError::Invalid(format!("environment '{name}': flags must list at least one file or glob")));
    }
    let resolve = |pattern: String| {
        if Path::new(&pattern).is_absolute() { pattern } else { base.join(pattern).to_string_lossy().into_owned() }
    };
    let flags = file.flags.into_iter().map(resolve).collect();
    let ramps = file.ramps.into_iter().map(resolve).collect();
    let digests = |sources: Vec<KeySource>, what: &str| -> Result<Vec<KeyDigest>, ConfigError> {
        sources
            .into_iter()
            .map(|source| match source {
                KeySource::Value(key) => key_digest(&key, &name),
                KeySource::Env(variable) => match env(&variable) {
                    Some(key) => key_digest(&key, &name),
                    None => Err(ConfigError::Invalid(format!(
                        "environment '{name}': the {what} variable {variable} is not set"
                    ))),
                },
                KeySource::Sha256(hex_digest) => {
                    let bytes = hex::decode(hex_digest.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                    bytes.map(KeyDigest).ok_or_else(|| {
                        ConfigError::Invalid(format!("environment '{name}': sha256 must be 64 hexadecimal characters"))
                    })
                }
            })
            .collect()
    };
    let sdk_keys = digests(file.sdk_keys, "SDK key")?;
    let reporter_keys = digests(file.reporter_keys, "reporter key")?;
    if reporter_keys.iter().any(|digest| sdk_keys.contains(digest)) {
        return Err(ConfigError::Invalid(format!(
            "environment '{name}': a reporter key must not also be an SDK key (SDK keys are public)"
        )));
    }
    let context = crate::enrichment::Enrichment::new(file.context, file.context_from_headers)
        .map_err(|message| ConfigError::Invalid(format!("environment '{name}': {message}")))?;
    Ok(EnvironmentConfig { name, flags, ramps, sdk_keys, reporter_keys, context })
}

fn key_digest(key: &str, environment: &str) -> Result<KeyDigest, ConfigError> {
    if key.trim().len() < 8 {
        return Err(ConfigError::Invalid(format!(
            "environment '{environment}': SDK keys must have at least 8 characters"
        )));
    }
    Ok(KeyDigest::of(key.trim()))
}

fn secret_digest(secret: &str, what: &str, min_length: usize) -> Result<KeyDigest, ConfigError> {
    if secret.trim().len() < min_length {
        return Err(ConfigError::Invalid(format!("{what}: tokens must have at least {min_length} characters")));
    }
    Ok(KeyDigest::of(secret.trim()))
}

fn admin_token(token: TokenFile, env: &dyn Fn(&str) -> Option<String>) -> Result<AdminToken, ConfigError> {
    let what = format!("admin token '{}'", token.name);
    if token.name.is_empty() || token.name.chars().any(char::is_control) {
        return Err(ConfigError::Invalid("admin tokens need a name (it is the actor in the audit log)".into()));
    }
    let digest = match token.secret {
        SecretSource::Value(secret) => secret_digest(&secret, &what, MIN_ADMIN_TOKEN_LENGTH)?,
        SecretSource::Env(variable) => match env(&variable) {
            Some(secret) => secret_digest(&secret, &what, MIN_ADMIN_TOKEN_LENGTH)?,
            None => return Err(ConfigError::Invalid(format!("{what}: the variable {variable} is not set"))),
        },
        SecretSource::Sha256(hex_digest) => {
            let bytes = hex::decode(hex_digest.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
            KeyDigest(
                bytes
                    .ok_or_else(|| ConfigError::Invalid(format!("{what}: sha256 must be 64 hexadecimal characters")))?,
            )
        }
    };
    Ok(AdminToken { name: token.name, role: token.role, digest })
}

/// Token names are unique, and no secret is both a token and an SDK key:
/// each credential must mean one thing.
fn check_tokens(tokens: &[AdminToken], environments: &[EnvironmentConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    let mut digests = std::collections::HashSet::new();
    for token in tokens {
        if !names.insert(token.name.as_str()) {
            return Err(ConfigError::Invalid(format!("admin token name '{}' is used twice", token.name)));
        }
        if !digests.insert(token.digest) {
            return Err(ConfigError::Invalid(format!("admin token '{}' repeats another token's secret", token.name)));
        }
        if environments.iter().any(|e| e.sdk_keys.contains(&token.digest) || e.reporter_keys.contains(&token.digest)) {
            return Err(ConfigError::Invalid(format!("admin token '{}' is also an SDK key", token.name)));
        }
    }
    Ok(())
}

/// Keys must select exactly one environment, and either every environment
/// has keys or there is a single open one.
fn check_keys(environments: &[EnvironmentConfig]) -> Result<(), ConfigError> {
    let with_keys = environments.iter().filter(|e| !e.sdk_keys.is_empty()).count();
    if with_keys == 0 && environments.len() > 1 {
        return Err(ConfigError::Invalid(
            "with several environments every environment needs sdkKeys: the key selects the environment".into(),
        ));
    }
    if with_keys > 0 && with_keys < environments.len() {
        let open: Vec<&str> = environments.iter().filter(|e| e.sdk_keys.is_empty()).map(|e| e.name.as_str()).collect();
        return Err(ConfigError::Invalid(format!(
            "environments without sdkKeys could not be reached: {}",
            open.join(", ")
        )));
    }
    let mut owner: HashMap<KeyDigest, &str> = HashMap::new();
    for environment in environments {
        for key in &environment.sdk_keys {
            if let Some(other) = owner.insert(*key, &environment.name)
                && other != environment.name
            {
                return Err(ConfigError::Invalid(format!(
                    "the same SDK key is configured for environments '{other}' and '{}'",
                    environment.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("rampart.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn resolve(args: ServeArgs) -> Result<ServerConfig, ConfigError> {
        let vars = |name: &str| (name == "PROD_KEY").then(|| "prod-secret-key".to_owned());
        ServerConfig::resolve(&args, &vars)
    }

    #[test]
    fn quick_start_defaults_bind_loopback() {
        let config = resolve(ServeArgs { flags: vec!["f.json".into()], ..Default::default() }).unwrap();
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8016");
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:8014");
        assert_eq!(config.environments[0].name, "default");
        assert!(config.open_evaluation());
    }

    #[test]
    fn file_environments_keys_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "httpAddr: 127.0.0.1:9000\nenvironments:\n  production:\n    flags: [prod/*.yaml]\n    ramps: [ramps/*.yaml]\n    sdkKeys: [{env: PROD_KEY}]\n  staging:\n    flags: [/abs/s.json]\n    sdkKeys: [{value: staging-key-1}]\n",
        );
        let config = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap();
        assert_eq!(config.http_addr.port(), 9000);
        let production = &config.environments[0];
        assert_eq!(production.name, "production");
        assert_eq!(production.flags, vec![dir.path().join("prod/*.yaml").to_string_lossy().into_owned()]);
        assert_eq!(production.ramps, vec![dir.path().join("ramps/*.yaml").to_string_lossy().into_owned()]);
        assert_eq!(production.sdk_keys, vec![KeyDigest::of("prod-secret-key")]);
        assert_eq!(config.environments[1].flags, vec!["/abs/s.json".to_owned()]);
        assert!(!config.open_evaluation());
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "httpAddr: 127.0.0.1:9000\nenvironments:\n  a:\n    flags: [x.json]\n");
        let args =
            ServeArgs { config: Some(path), http_addr: Some("0.0.0.0:7000".parse().unwrap()), ..Default::default() };
        assert_eq!(resolve(args).unwrap().http_addr.to_string(), "0.0.0.0:7000");
    }

    #[test]
    fn the_redis_store_is_configured_from_the_file_or_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let flags = "environments:\n  a:\n    flags: [x]\n";
        let embedded = resolve(ServeArgs { flags: vec!["f".into()], ..Default::default() }).unwrap();
        assert!(matches!(embedded.store, StoreConfig::Embedded));
        assert_eq!(embedded.ramp_lease, DEFAULT_RAMP_LEASE);

        let path = write(
            dir.path(),
            &format!("store:\n  redis:\n    urlEnv: PROD_KEY_URL\n    prefix: team-a\nrampLeaseSeconds: 5\n{flags}"),
        );
        let vars = |name: &str| (name == "PROD_KEY_URL").then(|| "redis://:pw@cache:6379/2".to_owned());
        let config = ServerConfig::resolve(&ServeArgs { config: Some(path), ..Default::default() }, &vars).unwrap();
        let StoreConfig::Redis(redis) = &config.store else { panic!("redis expected") };
        assert_eq!((redis.url.as_str(), redis.prefix.as_str()), ("redis://:pw@cache:6379/2", "team-a"));
        assert_eq!(config.ramp_lease, Duration::from_secs(5));
        assert!(!format!("{config:?}").contains(":pw@"), "the password is not in Debug output");

        let cli = ServeArgs {
            flags: vec!["f".into()],
            redis_url: Some("rediss://cache:6380".into()),
            ramp_lease_seconds: Some(2.5),
            ..Default::default()
        };
        let config = resolve(cli).unwrap();
        assert!(
            matches!(&config.store, StoreConfig::Redis(r) if r.url == "rediss://cache:6380" && r.prefix == "rampart")
        );

        for (text, expected) in [
            ("store:\n  redis:\n    url: http://cache:6379\n", "must start with redis://"),
            ("store:\n  redis:\n    urlEnv: NOPE\n", "NOPE, which is not set"),
            ("store:\n  redis:\n    prefix: x\n", "needs url or urlEnv"),
            ("store:\n  redis:\n    url: redis://c\n    prefix: 'a b'\n", "may only use letters"),
            ("rampLeaseSeconds: 0.1\n", "between 0.5 and 3600"),
            ("store:\n  redis:\n    url: redis://c\n    caFile: ca.pem\n", "needs a rediss://"),
            ("store:\n  sqlite: {}\n", "unknown field `sqlite`"),
        ] {
            let path = write(dir.path(), &format!("{text}{flags}"));
            let error = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}\n→ {error}");
        }
    }

    #[test]
    fn invalid_configurations_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("environments:\n  a:\n    flags: [x.json]\n    colour: red\n", "unknown field `colour`"),
            ("environments: {}\n", "no environments are configured"),
            ("httpAddr: localhost\nenvironments:\n  a:\n    flags: [x]\n", "httpAddr: 'localhost' is not an address"),
            ("environments:\n  a:\n    flags: []\n", "flags must list at least one"),
            ("prometheusUrl: localhost:9090\nenvironments:\n  a:\n    flags: [x]\n", "must be an http(s) URL"),
            ("environments:\n  a b:\n    flags: [x]\n", "environment name 'a b'"),
            ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{env: MISSING}]\n", "MISSING is not set"),
            ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{sha256: zz}]\n", "64 hexadecimal"),
            ("environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: short}]\n", "at least 8 characters"),
            ("environments:\n  a:\n    flags: [x]\n  b:\n    flags: [y]\n", "every environment needs sdkKeys"),
            (
                "environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: same-key-1}]\n  b:\n    flags: [y]\n    sdkKeys: [{value: same-key-1}]\n",
                "the same SDK key",
            ),
            (
                "environments:\n  a:\n    flags: [x]\n    sdkKeys: [{value: key-aaaa-1}]\n  b:\n    flags: [y]\n",
                "could not be reached: b",
            ),
        ];
        for (text, expected) in cases {
            let path = write(dir.path(), text);
            let error = resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}\n→ {error}");
        }
        let neither = resolve(ServeArgs::default()).unwrap_err().to_string();
        assert!(neither.contains("nothing to serve"), "{neither}");
        let same = ServeArgs {
            flags: vec!["f".into()],
            http_addr: Some("127.0.0.1:9".parse().unwrap()),
            admin_addr: Some("127.0.0.1:9".parse().unwrap()),
            ..Default::default()
        };
        assert!(resolve(same).unwrap_err().to_string().contains("cannot share"));
        let defaults = resolve(ServeArgs { flags: vec!["f".into()], ..Default::default() }).unwrap();
        assert_eq!((defaults.grpc_addr.port(), defaults.sync_addr.port()), (8013, 8015));
    }

    #[test]
    fn key_digests_are_not_printed() {
        assert_eq!(format!("{:?}", KeyDigest::of("secret")), "KeyDigest(…)");
    }
}
