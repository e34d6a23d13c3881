//! Environments and their keys: SDK keys (which select an environment),
//! reporter keys and admin tokens, each kept only as a SHA-256 digest.

use std::collections::HashMap;
use std::path::Path;

use super::Role;
use super::file::{EnvironmentFile, KeySource, SecretSource, TokenFile};
use super::{AdminToken, ConfigError, EnvironmentConfig, KeyDigest, MIN_ADMIN_TOKEN_LENGTH};

pub(super) fn environment_config(
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
    let (sdk_key_outcomes, protected) = (file.sdk_key_outcomes, file.protected);
    Ok(EnvironmentConfig { name, flags, ramps, sdk_keys, reporter_keys, sdk_key_outcomes, protected, context })
}

pub(super) fn key_digest(key: &str, environment: &str) -> Result<KeyDigest, ConfigError> {
    if key.trim().len() < 8 {
        return Err(ConfigError::Invalid(format!(
            "environment '{environment}': SDK keys must have at least 8 characters"
        )));
    }
    Ok(KeyDigest::of(key.trim()))
}

pub(super) fn secret_digest(secret: &str, what: &str, min_length: usize) -> Result<KeyDigest, ConfigError> {
    if secret.trim().len() < min_length {
        return Err(ConfigError::Invalid(format!("{what}: tokens must have at least {min_length} characters")));
    }
    Ok(KeyDigest::of(secret.trim()))
}

pub(super) fn admin_token(token: TokenFile, env: &dyn Fn(&str) -> Option<String>) -> Result<AdminToken, ConfigError> {
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
    match (token.role, token.environments.is_empty()) {
        (Role::Relay, true) => {
            return Err(ConfigError::Invalid(format!("{what}: a relay token names the environments it may follow")));
        }
        (role, false) if role != Role::Relay => {
            return Err(ConfigError::Invalid(format!(
                "{what}: only relay tokens are scoped to environments (admin roles reach every environment)"
            )));
        }
        _ => {}
    }
    Ok(AdminToken { name: token.name, role: token.role, digest, environments: token.environments })
}

/// Token names are unique, and no secret is both a token and an SDK key:
/// each credential must mean one thing.
pub(super) fn check_tokens(tokens: &[AdminToken], environments: &[EnvironmentConfig]) -> Result<(), ConfigError> {
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
        if let Some(unknown) = token.environments.iter().find(|name| !environments.iter().any(|e| &e.name == *name)) {
            return Err(ConfigError::Invalid(format!(
                "relay token '{}' names the environment '{unknown}', which is not configured",
                token.name
            )));
        }
    }
    Ok(())
}

/// Keys must select exactly one environment, and either every environment
/// has keys or there is a single open one.
pub(super) fn check_keys(environments: &[EnvironmentConfig]) -> Result<(), ConfigError> {
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
