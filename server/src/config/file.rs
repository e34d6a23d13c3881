//! `rampart.yaml` as written: serde shapes with unknown keys rejected,
//! validated and resolved by [`super::ServerConfig::resolve`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Role;
use super::store::StoreFile;
use crate::cli::LogFormat;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ConfigFile {
    pub(super) http_addr: Option<String>,
    pub(super) admin_addr: Option<String>,
    pub(super) grpc_addr: Option<String>,
    pub(super) sync_addr: Option<String>,
    /// The OTLP/HTTP receiver; off when absent.
    pub(super) otlp_http_addr: Option<String>,
    /// The OTLP/gRPC receiver; off when absent.
    pub(super) otlp_grpc_addr: Option<String>,
    /// Rampart's own traces over OTLP; off when absent.
    pub(super) otlp_export: Option<OtlpExportFile>,
    pub(super) heartbeat_seconds: Option<u64>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log: Option<String>,
    pub(super) workers: Option<usize>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) shutdown_timeout_seconds: Option<u64>,
    pub(super) data_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) admin_tokens: Vec<TokenFile>,
    pub(super) max_api_flags: Option<usize>,
    pub(super) prometheus_url: Option<String>,
    pub(super) store: Option<StoreFile>,
    pub(super) ramp_lease_seconds: Option<f64>,
    #[serde(default)]
    pub(super) limits: crate::limits::LimitsFile,
    pub(super) strict_flags: Option<bool>,
    /// The dashboard's session cookie is `Secure` (reached over HTTPS).
    pub(super) dashboard_secure_cookie: Option<bool>,
    #[serde(default)]
    pub(super) environments: BTreeMap<String, EnvironmentFile>,
    /// Run as a relay of this upstream.
    pub(super) upstream: Option<super::relay::UpstreamFile>,
}

/// `otlpExport` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct OtlpExportFile {
    endpoint: Option<String>,
    evaluation_sample: Option<f64>,
    service_name: Option<String>,
}

/// `otlpExport` checked; the command line's endpoint wins over the file's.
pub(super) fn resolve_otlp_export(
    cli: Option<&str>,
    file: Option<OtlpExportFile>,
) -> Result<super::OtlpExport, super::ConfigError> {
    let file = file.unwrap_or_default();
    let invalid = |message: String| super::ConfigError::Invalid(message);
    let endpoint = cli
        .map(str::to_owned)
        .or(file.endpoint)
        .ok_or_else(|| invalid("otlpExport: name the collector's endpoint (e.g. http://127.0.0.1:4318)".into()))?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid(format!("otlpExport.endpoint: '{endpoint}' is not an http:// or https:// URL")));
    }
    let evaluation_sample = file.evaluation_sample.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&evaluation_sample) {
        return Err(invalid(format!("otlpExport.evaluationSample: {evaluation_sample} is not between 0 and 1")));
    }
    Ok(super::OtlpExport {
        endpoint,
        evaluation_sample,
        service_name: file.service_name.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "rampart".into()),
    })
}

/// An admin token in `rampart.yaml` or a tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TokenFile {
    pub(super) name: String,
    pub(super) role: Role,
    /// The environments a `relay` token may follow.
    #[serde(default)]
    pub(super) environments: Vec<String>,
    #[serde(flatten)]
    pub(super) secret: SecretSource,
}

/// A tokens file: `tokens: [{name, role, env|sha256|value}]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokensFile {
    pub(super) tokens: Vec<TokenFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) enum SecretSource {
    Env(String),
    Sha256(String),
    Value(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct EnvironmentFile {
    pub(super) flags: Vec<String>,
    #[serde(default)]
    pub(super) ramps: Vec<String>,
    #[serde(default)]
    pub(super) sdk_keys: Vec<KeySource>,
    #[serde(default)]
    pub(super) reporter_keys: Vec<KeySource>,
    /// Whether outcome reports made with SDK keys may feed this
    /// environment's ramps (off: SDK keys are public).
    #[serde(default)]
    pub(super) sdk_key_outcomes: bool,
    /// A production environment: the dashboard marks it on every page and
    /// asks for the flag's or ramp's name before a dangerous action.
    #[serde(default)]
    pub(super) protected: bool,
    /// Static values added to every evaluation context.
    #[serde(default)]
    pub(super) context: serde_json::Map<String, serde_json::Value>,
    /// Request header → context key.
    #[serde(default)]
    pub(super) context_from_headers: BTreeMap<String, String>,
}

/// Where an SDK key comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) enum KeySource {
    /// An environment variable holding the key.
    Env(String),
    /// The key's SHA-256, in hex: the key itself never touches the file.
    Sha256(String),
    /// The key itself (local development only).
    Value(String),
}
