//! A relay's settings: `--upstream`, `--environment`, `--cache-dir` or
//! `upstream:` in `rampart.yaml`. Configuration like every other setting,
//! so it is parsed here; `crate::relay` runs what it describes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::cli::ServeArgs;

/// Where the relay token is read from unless `upstream.tokenEnv` says otherwise.
pub const TOKEN_VARIABLE: &str = "RAMPART_RELAY_TOKEN";

/// `upstream:` in `rampart.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct UpstreamFile {
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
    /// The relay token (a secret: never printed).
    pub(crate) token: String,
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
    pub(super) fn resolve(
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
