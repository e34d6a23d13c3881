//! flagd's evaluation services, v1 and v2: `Resolve*`, `ResolveAll` and
//! `EventStream`, evaluated by the same engine as OFREP.

use crate::store::usage::UsageSource;
use std::pin::Pin;

use prost_types::Struct;
use rampart_engine::{Context, ErrorCode, Reason, ValueType};
use rampart_proto::flagd::evaluation::{v1, v2};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::convert::{from_struct, to_struct};
use super::{GrpcState, status};
use crate::changes::Next;
use crate::limits::MAX_CONTEXT_FIELDS;

#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub(crate) state: GrpcState,
}

/// One resolution, before it is shaped into a v1 or v2 response.
struct Resolved {
    value: Option<Value>,
    reason: Reason,
    variant: Option<String>,
    metadata: Struct,
}

impl Evaluation {
    fn resolve(
        &self,
        metadata: &MetadataMap,
        key: &str,
        context: Option<Struct>,
        kind: ValueType,
    ) -> Result<Resolved, Status> {
        let environment = self.state.environment(metadata, None)?;
        let context = enrich(&environment, self.context(context)?, metadata);
        let snapshot = environment.snapshot();
        let evaluation = snapshot.flags.evaluate(key, &context, self.state.clock.now_seconds());
        self.state.metrics.evaluated(&environment.name, evaluation.reason);
        if evaluation.error_code != Some(ErrorCode::FlagNotFound) {
            let now = self.state.clock.now_millis();
            environment.usage.count(UsageSource::Evaluated, key, evaluation.variant, 1, now);
        }
        if let Some(limit) = evaluation.limit {
            self.state.metrics.rejected(crate::limits::Rejection::Engine(limit));
        }
        if let Some(code) = evaluation.error_code {
            return Err(status(code, evaluation.error_message.as_deref().unwrap_or(code.as_str())));
        }
        if let Some(value) = evaluation.value
            && !kind.accepts(value)
        {
            return Err(status(ErrorCode::TypeMismatch, &format!("flag '{key}' is not of type {}", kind.as_str())));
        }
        Ok(Resolved {
            value: evaluation.value.cloned(),
            reason: evaluation.reason,
            variant: evaluation.variant.map(str::to_owned),
            metadata: to_struct(evaluation.metadata),
        })
    }

    /// The request's context, with the field limit OFREP has.
    fn context(&self, context: Option<Struct>) -> Result<Context, Status> {
        let fields = context.as_ref().map_or(0, |c| c.fields.len());
        if fields > MAX_CONTEXT_FIELDS {
            self.state.metrics.rejected(crate::limits::Rejection::ContextFields);
            return Err(Status::invalid_argument(format!(
                "the context has {fields} fields; at most {MAX_CONTEXT_FIELDS} are accepted"
            )));
        }
        Ok(Context::from(context.map(from_struct).unwrap_or_default()))
    }

    /// v1 has no "no value": a code default is NOT_FOUND there, except for
    /// a disabled flag, which answers the type's zero value.
    fn resolve_v1(
        &self,
        metadata: &MetadataMap,
        key: &str,
        context: Option<Struct>,
        kind: ValueType,
    ) -> Result<Resolved, Status> {
        let resolved = self.resolve(metadata, key, context, kind)?;
        if resolved.value.is_none() && resolved.reason != Reason::Disabled {
            return Err(status(ErrorCode::FlagNotFound, &format!("flag '{key}' has no default variant")));
        }
        Ok(resolved)
    }

    fn resolve_all(
        &self,
        metadata: &MetadataMap,
        context: Option<Struct>,
    ) -> Result<(Vec<(String, Resolved)>, Struct), Status> {
        let environment = self.state.environment(metadata, None)?;
        let context = enrich(&environment, self.context(context)?, metadata);
        let snapshot = environment.snapshot();
        let now = self.state.clock.now_seconds();
        let now_ms = self.state.clock.now_millis();
        let mut flags = Vec::with_capacity(snapshot.flags.len());
        for flag in snapshot.flags.iter() {
            let evaluation = flag.evaluate(&context, now);
            self.state.metrics.evaluated(&environment.name, evaluation.reason);
            environment.usage.count(UsageSource::Bulk, flag.key(), evaluation.variant, 1, now_ms);
            if let Some(limit) = evaluation.limit {
                self.state.metrics.rejected(crate::limits::Rejection::Engine(limit));
            }
            // Like flagd: flags without a value (disabled, failed, no default) are left out.
            if let Some(value) = evaluation.value {
                flags.push((
                    flag.key().to_owned(),
                    Resolved {
                        value: Some(value.clone()),
                        reason: evaluation.reason,
                        variant: evaluation.variant.map(str::to_owned),
                        metadata: to_struct(evaluation.metadata),
                    },
                ));
            }
        }
        Ok((flags, to_struct(snapshot.flags.metadata())))
    }

    /// `provider_ready`, then `configuration_change` naming the changed
    /// flags after every change, and `keep_alive` in between.
    fn events(&self, metadata: &MetadataMap) -> Result<ReceiverStream<Result<FlagdEvent, Status>>, Status> {
        let environment = self.state.environment(metadata, None)?;
        let (sender, receiver) = mpsc::channel(8);
        let state = self.state.clone();
        let mut changes = environment.changes.subscribe();
        let mut sent = environment.snapshot().version;
        tokio::spawn(async move {
            if sender.send(Ok(("provider_ready".into(), Map::new()))).await.is_err() {
                return;
            }
            let mut keep_alive = tokio::time::interval(state.heartbeat);
            keep_alive.tick().await;
            loop {
                let message = tokio::select! {
                    _ = state.shutdown.cancelled() => break,
                    _ = keep_alive.tick() => Ok(("keep_alive".into(), Map::new())),
                    next = changes.after(sent) => match next {
                        Next::Changes(events) => {
                            sent = events.last().map_or(sent, |e| e.version());
                            let flags: Map<String, Value> = events
                                .iter()
                                .flat_map(|event| event.changed.iter())
                                .map(|(key, change)| (key.clone(), json!({"type": change.as_str()})))
                                .collect();
                            let mut data = Map::new();
                            data.insert("flags".into(), Value::Object(flags));
                            Ok(("configuration_change".into(), data))
                        }
                        Next::Behind => Err(Status::unavailable("this stream fell behind; reconnect to resynchronise")),
                        Next::Closed => break,
                    },
                };
                let failed = message.is_err();
                if sender.send(message).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(ReceiverStream::new(receiver))
    }
}

/// The request's context with what the environment adds to it (headers are
/// the call's metadata).
fn enrich(environment: &crate::environment::Environment, context: Context, metadata: &MetadataMap) -> Context {
    environment.context.apply(context, |name| metadata.get(name).and_then(|v| v.to_str().ok()))
}

/// A flagd event: its type and data.
type FlagdEvent = (String, Map<String, Value>);

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

fn object(value: &Value) -> Option<Struct> {
    value.as_object().map(to_struct)
}

macro_rules! evaluation_service {
    ($version:ident, $resolve:ident, optional = $optional:tt) => {
        #[tonic::async_trait]
        impl $version::service_server::Service for Evaluation {
            async fn resolve_all(&self, request: Request<$version::ResolveAllRequest>) -> Result<Response<$version::ResolveAllResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let (flags, set_metadata) = self.resolve_all(&metadata, body.context)?;
                let flags = flags
                    .into_iter()
                    .map(|(key, resolved)| {
                        use $version::any_flag::Value as V;
                        let value = resolved.value.as_ref().and_then(|v| match v {
                            Value::Bool(b) => Some(V::BoolValue(*b)),
                            Value::String(s) => Some(V::StringValue(s.clone())),
                            Value::Number(n) => n.as_f64().map(V::DoubleValue),
                            Value::Object(map) => Some(V::ObjectValue(to_struct(map))),
                            _ => None,
                        });
                        let flag = $version::AnyFlag {
                            reason: resolved.reason.as_str().into(),
                            variant: evaluation_service!(@variant $optional, resolved.variant),
                            value,
                            metadata: Some(resolved.metadata),
                        };
                        (key, flag)
                    })
                    .collect();
                Ok(Response::new($version::ResolveAllResponse { flags, metadata: Some(set_metadata) }))
            }

            async fn resolve_boolean(&self, request: Request<$version::ResolveBooleanRequest>) -> Result<Response<$version::ResolveBooleanResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let r = self.$resolve(&metadata, &body.flag_key, body.context, ValueType::Bool)?;
                Ok(Response::new($version::ResolveBooleanResponse {
                    value: evaluation_service!(@value $optional, r.value.as_ref().and_then(Value::as_bool)),
                    reason: r.reason.as_str().into(),
                    variant: evaluation_service!(@variant $optional, r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            async fn resolve_string(&self, request: Request<$version::ResolveStringRequest>) -> Result<Response<$version::ResolveStringResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let r = self.$resolve(&metadata, &body.flag_key, body.context, ValueType::String)?;
                Ok(Response::new($version::ResolveStringResponse {
                    value: evaluation_service!(@value $optional, r.value.as_ref().and_then(Value::as_str).map(str::to_owned)),
                    reason: r.reason.as_str().into(),
                    variant: evaluation_service!(@variant $optional, r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            async fn resolve_float(&self, request: Request<$version::ResolveFloatRequest>) -> Result<Response<$version::ResolveFloatResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let r = self.$resolve(&metadata, &body.flag_key, body.context, ValueType::Float)?;
                Ok(Response::new($version::ResolveFloatResponse {
                    value: evaluation_service!(@value $optional, r.value.as_ref().and_then(number)),
                    reason: r.reason.as_str().into(),
                    variant: evaluation_service!(@variant $optional, r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            async fn resolve_int(&self, request: Request<$version::ResolveIntRequest>) -> Result<Response<$version::ResolveIntResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let r = self.$resolve(&metadata, &body.flag_key, body.context, ValueType::Int)?;
                Ok(Response::new($version::ResolveIntResponse {
                    value: evaluation_service!(@value $optional, r.value.as_ref().and_then(integer)),
                    reason: r.reason.as_str().into(),
                    variant: evaluation_service!(@variant $optional, r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            async fn resolve_object(&self, request: Request<$version::ResolveObjectRequest>) -> Result<Response<$version::ResolveObjectResponse>, Status> {
                let (metadata, _, body) = request.into_parts();
                let r = self.$resolve(&metadata, &body.flag_key, body.context, ValueType::Object)?;
                Ok(Response::new($version::ResolveObjectResponse {
                    value: evaluation_service!(@object $optional, r.value.as_ref().and_then(object)),
                    reason: r.reason.as_str().into(),
                    variant: evaluation_service!(@variant $optional, r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            type EventStreamStream = EventStream<$version::EventStreamResponse>;

            async fn event_stream(&self, request: Request<$version::EventStreamRequest>) -> Result<Response<Self::EventStreamStream>, Status> {
                use tokio_stream::StreamExt;
                let events = self.events(request.metadata())?;
                let stream = events.map(|event| {
                    event.map(|(kind, data)| $version::EventStreamResponse { r#type: kind, data: Some(to_struct(&data)) })
                });
                Ok(Response::new(Box::pin(stream)))
            }
        }
    };
    (@value true, $value:expr) => { $value };
    (@value false, $value:expr) => { $value.unwrap_or_default() };
    (@object true, $value:expr) => { $value };
    (@object false, $value:expr) => { $value };
    (@variant true, $variant:expr) => { $variant };
    (@variant false, $variant:expr) => { $variant.unwrap_or_default() };
}

evaluation_service!(v2, resolve, optional = true);
evaluation_service!(v1, resolve_v1, optional = false);
