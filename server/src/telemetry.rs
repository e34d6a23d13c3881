//! Logging — `tracing` to stderr, human-readable or one JSON object per
//! line — and, when `otlpExport` is configured, Rampart's own traces over
//! OTLP/HTTP: a span per admin write, ramp tick and configuration reload,
//! and a sample of evaluation requests (always those whose caller sent a
//! sampled `traceparent`, so a server-side evaluation shows in the
//! caller's trace with OpenFeature's `feature_flag.evaluation` event).
//!
//! Exported spans have their own target ([`TRACE_TARGET`]): the log layer
//! never shows them and the export layer sees nothing else, so logs and
//! traces stay independent. With export off no layer wants those spans,
//! and creating one costs a cached callsite check.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::cli::LogFormat;

/// The target of the spans (and their events) that are exported, and only
/// exported: logs never show them, and no other span is exported.
pub const TRACE_TARGET: &str = "rampart::trace";

static EXPORTING: AtomicBool = AtomicBool::new(false);
/// Evaluation requests traced without a caller's trace: one in this many
/// (`u64::MAX`: none).
static EVALUATION_EVERY: AtomicU64 = AtomicU64::new(u64::MAX);
static EVALUATIONS: AtomicU64 = AtomicU64::new(0);

pub use crate::config::OtlpExport;

/// Whether spans are being exported: span sites check this first.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether to trace this evaluation request: when exporting, one in
/// `1 / evaluation_sample` (counted, so it is exact and costs no random
/// number).
pub fn sample_evaluation() -> bool {
    let every = EVALUATION_EVERY.load(Ordering::Relaxed);
    exporting() && every != u64::MAX && EVALUATIONS.fetch_add(1, Ordering::Relaxed).is_multiple_of(every)
}

/// Flushes exported spans when dropped (at exit).
#[must_use]
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. `filter` is a `RUST_LOG`-style directive;
/// an invalid one falls back to `info` rather than silencing the server.
pub fn init(format: LogFormat, filter: &str, export: Option<&OtlpExport>) -> Telemetry {
    use tracing_subscriber::filter::filter_fn;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let not_traces = filter_fn(|metadata| metadata.target() != TRACE_TARGET);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt.with_filter(filter).with_filter(not_traces).boxed(),
        LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(false).with_filter(filter).with_filter(not_traces).boxed()
        }
    };
    let (provider, otel) = match export.map(exporter) {
        Some(Ok((provider, layer))) => (Some(provider), Some(layer)),
        Some(Err(error)) => {
            eprintln!("rampart: cannot export traces over OTLP: {error}");
            (None, None)
        }
        None => (None, None),
    };
    let mut layers = vec![fmt];
    layers.extend(otel);
    let _ = Registry::default().with(layers).try_init();
    if let Some(export) = export.filter(|_| provider.is_some()) {
        let every =
            if export.evaluation_sample > 0.0 { (1.0 / export.evaluation_sample).round() as u64 } else { u64::MAX };
        EVALUATION_EVERY.store(every.max(1), Ordering::Relaxed);
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %export.endpoint, evaluation_sample = export.evaluation_sample, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

type OtelLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn exporter(export: &OtlpExport) -> Result<(opentelemetry_sdk::trace::SdkTracerProvider, OtelLayer), String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", export.endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(export.service_name.clone()).build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("rampart");
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let only_traces = tracing_subscriber::filter::filter_fn(|metadata| metadata.target() == TRACE_TARGET);
    Ok((provider, tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_traces).boxed()))
}

/// Makes `span` a child of the caller's trace when `traceparent` names a
/// sampled one; returns whether it did.
pub fn follow_caller(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(traceparent) = traceparent else { return false };
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    let sampled = context.span().span_context().is_sampled();
    if sampled {
        let _ = span.set_parent(context);
    }
    sampled
}

/// Whether a `traceparent` header names a sampled trace (its flags' last
/// bit): such a caller gets its evaluation traced whatever the sample.
pub fn caller_sampled(traceparent: Option<&str>) -> bool {
    exporting()
        && traceparent
            .and_then(|value| value.trim().rsplit('-').next())
            .and_then(|flags| u8::from_str_radix(flags, 16).ok())
            .is_some_and(|flags| flags & 1 == 1)
}
