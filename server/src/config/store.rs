//! Where state is kept: the embedded store (one process) or Redis
//! (replicas), and how Redis is reached.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::cli::ServeArgs;

/// The store: embedded (one process) or Redis (replicas).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Embedded,
    Redis(RedisOptions),
}

/// The `store:` section: `store: {redis: {url, passwordEnv, prefix, timeoutMs}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StoreFile {
    pub(super) redis: Option<RedisFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RedisFile {
    /// The URL, or `env` naming a variable holding it (it may carry a password).
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    /// PEM CA certificate for `rediss://` with a private CA.
    pub(super) ca_file: Option<PathBuf>,
}

pub const DEFAULT_RAMP_LEASE: Duration = Duration::from_secs(15);
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` or `rediss://…` (TLS). May carry a password;
    /// it is never logged.
    pub url: String,
    /// Overrides the URL's password.
    pub password: Option<String>,
    /// Key prefix, so several Rampart installations can share one Redis.
    pub prefix: String,
    /// Longest a single store call may take.
    pub timeout: Duration,
    /// PEM file of the CA that signed the server's certificate (`rediss://`
    /// with a private CA); the system's roots otherwise.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The store: Redis when a URL is given (command line, environment or
/// file), else embedded.
pub(super) fn store_config(
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
            redact(&url)
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
    Ok(StoreConfig::Redis(RedisOptions { url, password, prefix, timeout, ca_file }))
}
