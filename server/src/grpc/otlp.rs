//! OTLP/gRPC: the Collector's `TraceService` and `MetricsService` on their own listener
//! (`otlpGrpcAddr`, conventionally port 4317), for exporters that speak
//! gRPC (the Collector's `otlp` exporter, which compresses with gzip by
//! default). Counting is shared with OTLP/HTTP (`services::otlp`).
//!
//! Status codes as OTLP prescribes: `INVALID_ARGUMENT` for a malformed
//! export, `RESOURCE_EXHAUSTED` (without retry information: not retried)
//! for one too large, `UNAUTHENTICATED`/`PERMISSION_DENIED` for the key,
//! and `UNAVAILABLE` (retried) where sending again later helps.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use super::GrpcState;
use crate::environment::Trust;
use crate::otlp::ExportError;
use crate::ramp::outcomes::Origin;

pub(crate) struct OtlpTraces {
    pub(crate) state: GrpcState,
}

#[tonic::async_trait]
impl TraceService for OtlpTraces {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let state = &self.state;
        let counted = |result: &str| state.metrics.otlp_exports.with_label_values(&["traces", result]).inc();
        let (environment, trust) = state.reporter(request.metadata()).inspect_err(|_| counted("key"))?;
        let key = super::bearer_or_api_key(request.metadata());
        let origin = Origin::of(trust, key.as_deref(), request.remote_addr().map(|addr| addr.ip()));
        let taken = async {
            if trust == Trust::Public {
                return Err(ExportError::PublicKey);
            }
            state.outcomes.admit(&environment.name, &origin.source, state.clock.now_millis()).map_err(|refused| {
                refused.count(&state.metrics);
                ExportError::Refused(refused)
            })?;
            crate::services::otlp::take_traces(state, &environment.name, &origin, request.get_ref()).await
        }
        .await;
        match taken {
            Ok(taken) => {
                counted(if taken.rejected > 0 { "partial" } else { "accepted" });
                let partial_success = (taken.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(taken.rejected).unwrap_or(i64::MAX),
                    error_message: taken.message.unwrap_or_default(),
                });
                Ok(Response::new(ExportTraceServiceResponse { partial_success }))
            }
            Err(error) => {
                counted(error.label());
                Err(status(&error))
            }
        }
    }
}

pub(crate) struct OtlpMetrics {
    pub(crate) state: GrpcState,
}

#[tonic::async_trait]
impl MetricsService for OtlpMetrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let state = &self.state;
        let counted = |result: &str| state.metrics.otlp_exports.with_label_values(&["metrics", result]).inc();
        let (environment, trust) = state.reporter(request.metadata()).inspect_err(|_| counted("key"))?;
        let key = super::bearer_or_api_key(request.metadata());
        let origin = Origin::of(trust, key.as_deref(), request.remote_addr().map(|addr| addr.ip()));
        let taken = async {
            if trust == Trust::Public {
                return Err(ExportError::PublicKey);
            }
            state.outcomes.admit(&environment.name, &origin.source, state.clock.now_millis()).map_err(|refused| {
                refused.count(&state.metrics);
                ExportError::Refused(refused)
            })?;
            crate::services::otlp::take_metrics(state, &environment.name, &origin, request.get_ref()).await
        }
        .await;
        match taken {
            Ok(taken) => {
                let partial = taken.rejected > 0 || taken.message.is_some();
                counted(if partial { "partial" } else { "accepted" });
                let partial_success = partial.then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: i64::try_from(taken.rejected).unwrap_or(i64::MAX),
                    error_message: taken.message.unwrap_or_default(),
                });
                Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
            }
            Err(error) => {
                counted(error.label());
                Err(status(&error))
            }
        }
    }
}

fn status(error: &ExportError) -> Status {
    let message = error.to_string();
    match error {
        ExportError::Malformed { .. } | ExportError::Encoding(_) | ExportError::ContentType(_) => {
            Status::invalid_argument(message)
        }
        ExportError::TooManySpans { .. } | ExportError::TooManyPoints { .. } | ExportError::TooLarge { .. } => {
            Status::resource_exhausted(message)
        }
        ExportError::PublicKey => Status::permission_denied(message),
        ExportError::Refused(_) | ExportError::DedupeFull { .. } | ExportError::Store(_) => {
            if error.retry_after().is_some() { Status::unavailable(message) } else { Status::invalid_argument(message) }
        }
    }
}
