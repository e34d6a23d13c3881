//! An OpenFeature provider over a [`Client`], for applications that use
//! the `open-feature` crate's API. Evaluation stays local.

use std::collections::HashMap;

use async_trait::async_trait;
use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, FlagMetadataValue, StructValue, Value as OfValue,
};
use rampart_engine::{Context, ErrorCode, Reason};
use serde_json::Value;

use crate::client::{Client, Details};
use crate::state::Status;

/// `open_feature::provider::FeatureProvider` backed by a Rampart [`Client`].
#[derive(Debug)]
pub struct RampartProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl RampartProvider {
    pub fn new(client: Client) -> RampartProvider {
        RampartProvider { client, metadata: ProviderMetadata::new("rampart") }
    }
}

fn context(of: &EvaluationContext) -> Context {
    let mut context = Context::new();
    if let Some(key) = &of.targeting_key {
        context.insert(rampart_engine::TARGETING_KEY, key.clone());
    }
    for (name, value) in &of.custom_fields {
        let value = match value {
            EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Value::from(*i),
            EvaluationContextFieldValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => Value::from(t.unix_timestamp()),
            // Opaque structs cannot be read; rules see null.
            EvaluationContextFieldValue::Struct(_) => Value::Null,
        };
        context.insert(name.clone(), value);
    }
    context
}

fn reason(reason: Reason) -> EvaluationReason {
    match reason {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Default => EvaluationReason::Default,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Error => EvaluationReason::Error,
    }
}

fn error(code: ErrorCode, message: Option<String>) -> EvaluationError {
    let code = match code {
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::General => EvaluationErrorCode::General(message.clone().unwrap_or_default()),
    };
    EvaluationError { code, message }
}

fn metadata(client: &Client, key: &str) -> Option<FlagMetadata> {
    let flags = client.flags();
    let flag = flags.get(key)?;
    let values: HashMap<String, FlagMetadataValue> = flag
        .metadata()
        .iter()
        .filter_map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => FlagMetadataValue::Bool(*b),
                Value::Number(n) if n.is_i64() => FlagMetadataValue::Int(n.as_i64()?),
                Value::Number(n) => FlagMetadataValue::Float(n.as_f64()?),
                Value::String(s) => FlagMetadataValue::String(s.clone()),
                _ => return None,
            };
            Some((k.clone(), value))
        })
        .collect();
    Some(FlagMetadata { values })
}

fn resolution<T>(client: &Client, key: &str, details: Details<T>) -> EvaluationResult<ResolutionDetails<T>> {
    if let Some(code) = details.error_code {
        return Err(error(code, details.error_message));
    }
    Ok(ResolutionDetails {
        value: details.value,
        variant: details.variant,
        reason: Some(reason(details.reason)),
        flag_metadata: metadata(client, key),
    })
}

fn to_open_feature(value: &Value) -> OfValue {
    match value {
        Value::Bool(b) => OfValue::Bool(*b),
        Value::Number(n) if n.is_i64() => OfValue::Int(n.as_i64().unwrap_or_default()),
        Value::Number(n) => OfValue::Float(n.as_f64().unwrap_or_default()),
        Value::String(s) => OfValue::String(s.clone()),
        Value::Array(items) => OfValue::Array(items.iter().map(to_open_feature).collect()),
        Value::Object(map) => {
            OfValue::Struct(StructValue { fields: map.iter().map(|(k, v)| (k.clone(), to_open_feature(v))).collect() })
        }
        Value::Null => OfValue::String(String::new()),
    }
}

#[async_trait]
impl FeatureProvider for RampartProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    /// Waits (up to the client's connect timeout) for the first
    /// configuration, so an application that awaits the provider's
    /// initialisation starts with real values; with a bootstrap file it is
    /// ready at once. A server that stays away leaves the provider
    /// `NotReady` or `STALE`, which `status` reports.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        let timeout = self.client.connect_timeout();
        let _ = self.client.wait_ready(timeout).await;
    }

    fn status(&self) -> ProviderStatus {
        match self.client.status() {
            Status::Ready => ProviderStatus::Ready,
            Status::Stale => ProviderStatus::STALE,
            Status::NotReady => ProviderStatus::NotReady,
            Status::Error(_) => ProviderStatus::Error,
        }
    }

    async fn resolve_bool_value(&self, key: &str, of: &EvaluationContext) -> EvaluationResult<ResolutionDetails<bool>> {
        resolution(&self.client, key, self.client.bool_details(key, &context(of), false))
    }

    async fn resolve_int_value(&self, key: &str, of: &EvaluationContext) -> EvaluationResult<ResolutionDetails<i64>> {
        resolution(&self.client, key, self.client.int_details(key, &context(of), 0))
    }

    async fn resolve_float_value(&self, key: &str, of: &EvaluationContext) -> EvaluationResult<ResolutionDetails<f64>> {
        resolution(&self.client, key, self.client.float_details(key, &context(of), 0.0))
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        of: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        resolution(&self.client, key, self.client.string_details(key, &context(of), ""))
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        of: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let details = self.client.object_details(key, &context(of), Value::Null);
        let details = Details {
            value: match to_open_feature(&details.value) {
                OfValue::Struct(value) => value,
                _ => StructValue::default(),
            },
            variant: details.variant,
            reason: details.reason,
            error_code: details.error_code,
            error_message: details.error_message,
        };
        resolution(&self.client, key, details)
    }
}
