//! Request and response bodies of the admin API, and the OpenAPI document
//! generated from them and from the handlers' annotations.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use crate::snapshot::Snapshot;
use crate::store::{AuditEntry, FlagVersion};
use crate::time::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvironmentView {
    pub(crate) name: String,
    /// Version of the configuration being served; grows with every change.
    pub(crate) version: u64,
    pub(crate) flags: usize,
    pub(crate) api_flags: usize,
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnvironmentList {
    pub(crate) environments: Vec<EnvironmentView>,
}

/// Who owns a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ownership {
    /// Defined in a flag file: its rules change in the file; the admin API
    /// can only disable and enable it.
    File,
    /// Created through the admin API.
    Api,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlagSummary {
    pub(crate) key: String,
    pub(crate) source: Ownership,
    /// The file, for file-owned flags.
    pub(crate) file: Option<String>,
    /// The version, for API-owned flags.
    pub(crate) version: Option<u64>,
    /// `ENABLED` or `DISABLED`, as served.
    pub(crate) state: String,
    /// Whether a stored kill-switch override sets the state.
    pub(crate) overridden: bool,
    /// Why the flag cannot be used (it answers `PARSE_ERROR`), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FlagList {
    pub(crate) flags: Vec<FlagSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OverrideView {
    pub(crate) state: String,
    pub(crate) by: String,
    pub(crate) at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlagView {
    pub(crate) key: String,
    pub(crate) environment: String,
    pub(crate) source: Ownership,
    pub(crate) file: Option<String>,
    pub(crate) version: Option<u64>,
    pub(crate) state: String,
    /// The flag in flagd's format, as served (overrides applied).
    #[schema(value_type = Object)]
    pub(crate) definition: Value,
    pub(crate) updated_at: Option<String>,
    pub(crate) updated_by: Option<String>,
    #[serde(rename = "override")]
    pub(crate) state_override: Option<OverrideView>,
    /// Why the flag cannot be used (it answers `PARSE_ERROR`), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A flag in flagd's flag-definition format.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: handlers read the body as JSON
pub(crate) struct FlagDefinition {
    #[schema(value_type = FlagStateName)]
    pub(crate) state: String,
    /// Variant name → value; all values of one type (boolean, string, number or object).
    #[schema(value_type = Object)]
    pub(crate) variants: Value,
    /// A variant name, or null for the caller's code default.
    pub(crate) default_variant: Option<String>,
    /// JsonLogic targeting with flagd's operators.
    #[schema(value_type = Option<Object>)]
    pub(crate) targeting: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateChange {
    #[schema(value_type = FlagStateName)]
    pub(crate) state: String,
}

/// A flag state.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documentation only
pub(crate) enum FlagStateName {
    #[schema(rename = "ENABLED")]
    Enabled,
    #[schema(rename = "DISABLED")]
    Disabled,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionView {
    pub(crate) version: u64,
    pub(crate) action: String,
    pub(crate) by: String,
    pub(crate) at: String,
    pub(crate) changes: Vec<String>,
    /// The flag at this version; null for a delete.
    #[schema(value_type = Option<Object>)]
    pub(crate) definition: Option<Value>,
}

impl From<FlagVersion> for VersionView {
    fn from(version: FlagVersion) -> VersionView {
        VersionView {
            version: version.version,
            action: version.action,
            by: version.by,
            at: rfc3339(version.at),
            changes: version.changes,
            definition: version.definition,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct History {
    pub(crate) key: String,
    pub(crate) environment: String,
    pub(crate) versions: Vec<VersionView>,
    /// Pass as `after` for the next page; null on the last page.
    pub(crate) next: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevertRequest {
    /// The version whose content becomes the new version.
    #[serde(deserialize_with = "integral")]
    #[schema(minimum = 1)]
    pub(crate) version: u64,
}

/// A non-negative integer, also when written as `3.0` (JSON Schema's
/// `integer` includes it).
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19).map(|f| f as u64))
        .ok_or_else(|| serde::de::Error::custom(format!("expected a non-negative integer, found {number}")))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditView {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) environment: String,
    pub(crate) flag: String,
    pub(crate) action: String,
    pub(crate) version: Option<u64>,
    pub(crate) changes: Vec<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> AuditView {
        AuditView {
            seq: entry.seq,
            at: rfc3339(entry.at),
            actor: entry.actor,
            environment: entry.environment,
            flag: entry.flag,
            action: entry.action,
            version: entry.version,
            changes: entry.changes,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    pub(crate) entries: Vec<AuditView>,
    /// Pass as `after` for the next page; null on the last page.
    pub(crate) next: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PromoteRequest {
    /// The environment to copy into.
    pub(crate) to: String,
    /// Flags to copy (API-owned in the source); all API-owned flags when absent.
    pub(crate) flags: Option<Vec<String>>,
    /// Show what would change without changing anything.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PromotionAction {
    Create,
    Update,
    Unchanged,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromotionItem {
    pub(crate) flag: String,
    pub(crate) action: PromotionAction,
    pub(crate) changes: Vec<String>,
    /// The version written in the target (absent on a dry run or when unchanged).
    pub(crate) version: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromoteResult {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) dry_run: bool,
    /// Whether the target changed.
    pub(crate) applied: bool,
    pub(crate) changes: Vec<PromotionItem>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OverrideDrift {
    pub(crate) flag: String,
    pub(crate) file: Option<String>,
    /// The state the file gives the flag (absent when the flag left the files).
    pub(crate) file_state: Option<String>,
    /// The state being served.
    pub(crate) state: String,
    pub(crate) by: String,
    pub(crate) at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiFlagDrift {
    pub(crate) flag: String,
    pub(crate) version: u64,
    pub(crate) by: String,
    pub(crate) at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvironmentDrift {
    pub(crate) name: String,
    /// File-owned flags whose state an override changes.
    pub(crate) overrides: Vec<OverrideDrift>,
    /// Overrides of flags that are no longer in the files (no effect).
    pub(crate) stale_overrides: Vec<OverrideDrift>,
    /// Flags that exist only through the admin API, not in the files.
    pub(crate) api_flags: Vec<ApiFlagDrift>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DriftReport {
    pub(crate) environments: Vec<EnvironmentDrift>,
}

/// The summary of one flag in a snapshot.
pub(crate) fn summary(snapshot: &Snapshot, key: &str) -> Option<FlagSummary> {
    let flag = snapshot.flags.get(key)?;
    let api = snapshot.api.get(key);
    Some(FlagSummary {
        key: key.to_owned(),
        source: if api.is_some() { Ownership::Api } else { Ownership::File },
        file: snapshot.file_of(key).map(str::to_owned),
        version: api.map(|r| r.version),
        state: flag.state().as_str().to_owned(),
        overridden: snapshot.file_states.contains_key(key),
        error: flag.problem().map(str::to_owned),
    })
}

/// The full view of one flag in a snapshot.
pub(crate) fn view(snapshot: &Snapshot, environment: &str, key: &str) -> Option<FlagView> {
    let flag = snapshot.flags.get(key)?;
    let api = snapshot.api.get(key);
    let state_override = snapshot.file_states.contains_key(key).then(|| snapshot.overrides.get(key)).flatten();
    Some(FlagView {
        key: key.to_owned(),
        environment: environment.to_owned(),
        source: if api.is_some() { Ownership::Api } else { Ownership::File },
        file: snapshot.file_of(key).map(str::to_owned),
        version: api.map(|r| r.version),
        state: flag.state().as_str().to_owned(),
        definition: flag.definition(),
        updated_at: api.map(|r| rfc3339(r.at)).or_else(|| state_override.map(|o| rfc3339(o.at))),
        updated_by: api.map(|r| r.by.clone()).or_else(|| state_override.map(|o| o.by.clone())),
        state_override: state_override.map(|o| OverrideView {
            state: o.state.as_str().to_owned(),
            by: o.by.clone(),
            at: rfc3339(o.at),
        }),
        error: flag.problem().map(str::to_owned),
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart admin API",
        description = "Flags, kill switches, history, audit, promotion and drift. Every request needs \
                       `Authorization: Bearer <admin token>`; GET needs the role `read`, changes `write`. \
                       Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        version = "1.0.0"
    ),
    paths(
        super::flags::list_environments,
        super::flags::list_flags,
        super::flags::get_flag,
        super::flags::put_flag,
        super::flags::patch_flag,
        super::flags::delete_flag,
        super::history::flag_history,
        super::history::revert_flag,
        super::history::audit,
        super::promote::promote,
        super::promote::drift,
        super::ramps::list_ramps,
        super::ramps::get_ramp,
        super::ramps::ramp_history,
        super::ramps::explain_ramp,
        super::ramps::ramp_verdict,
        super::releases::list_releases,
        super::releases::get_release,
        super::releases::release_history,
        super::ramps::ramp_command,
        super::alerts::receive_alerts,
        super::usage::flag_usage,
        super::usage::ready_to_remove,
    ),
    components(schemas(crate::http::error::ErrorBody, crate::http::error::ErrorFields, FlagDefinition, FlagStateName)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
