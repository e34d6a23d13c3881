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
use crate::otlp::ExportError;
use crate::ramp::outcomes::Origin;

pub(crate) struct OtlpTraces {
    pub(crate) state: GrpcState,
}

pub(crate) struct OtlpMetrics {
    pub(crate) state: GrpcState,
}

/// What an export carries.
enum Export<'a> {
    Traces(&'a ExportTraceServiceRequest),
    Metrics(&'a ExportMetricsServiceRequest),
}

/// What both services do: the caller's key and rate, the export counted,
/// the answer counted in `rampart_otlp_exports_total`; `(rejected,
/// message)` when something was not counted (partial success).
async fn receive<T>(
    state: &GrpcState,
    request: &Request<T>,
    export: Export<'_>,
) -> Result<Option<(i64, String)>, Status> {
    let signal = match export {
        Export::Traces(_) => "traces",
        Export::Metrics(_) => "metrics",
    };
    let counted = |result: &str| state.metrics.otlp_exports.with_label_values(&[signal, result]).inc();
    let (environment, trust) = state.reporter(request.metadata()).inspect_err(|_| counted("key"))?;
    let key = super::bearer_or_api_key(request.metadata());
    let origin = Origin::of(trust, key.as_deref(), request.remote_addr().map(|addr| addr.ip()));
    let taken = async {
        crate::services::otlp::admit(state, &environment.name, &origin)?;
        match export {
            Export::Traces(traces) => {
                crate::services::otlp::take_traces(state, &environment.name, &origin, traces).await
            }
            Export::Metrics(metrics) => {
                crate::services::otlp::take_metrics(state, &environment.name, &origin, metrics).await
            }
        }
    }
    .await;
    match taken {
        Ok(taken) => {
            let partial = taken.rejected > 0 || taken.message.is_some();
            counted(if partial { "partial" } else { "accepted" });
            let rejected = i64::try_from(taken.rejected).unwrap_or(i64::MAX);
            Ok(partial.then(|| (rejected, taken.message.unwrap_or_default())))
        }
        Err(error) => {
            counted(error.label());
            Err(status(&error))
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpTraces {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let partial = receive(&self.state, &request, Export::Traces(request.get_ref())).await?;
        let partial_success =
            partial.map(|(rejected_spans, error_message)| ExportTracePartialSuccess { rejected_spans, error_message });
        Ok(Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpMetrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let partial = receive(&self.state, &request, Export::Metrics(request.get_ref())).await?;
        let partial_success = partial.map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
            rejected_data_points,
            error_message,
        });
        Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
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
