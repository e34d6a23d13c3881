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
    let (provider, otel) = match export.map(exporter) {
        Some(Ok((provider, layer))) => (Some(provider), Some(layer)),
        Some(Err(error)) => {
            eprintln!("rampart: cannot export traces over OTLP: {error}");
            (None, None)
        }
        None => (None, None),
    };
    let _ = subscriber(format, filter, std::io::stderr, otel).try_init();
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

/// The log layer (and the export layer, if any) over one registry.
///
/// Both filters must be decidable per callsite, with a level hint: a
/// dynamic filter (`filter_fn`) makes every callsite "sometimes" enabled,
/// and then the trace-level spans h2 opens on every poll of every
/// connection are created and closed in the registry even though nothing
/// shows them: a fifth of the server's CPU samples, and 82 % of its
/// instructions per change sent, with 19,000 gRPC streams.
fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
    otel: Option<OtelLayer>,
) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    let shown = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let not_traces = Targets::new().with_default(LevelFilter::TRACE).with_target(TRACE_TARGET, LevelFilter::OFF);
    let filter = shown.and(not_traces);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).with_filter(filter).boxed(),
    };
    let mut layers = vec![fmt];
    layers.extend(otel);
    Registry::default().with(layers)
}

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
    Ok((provider, export_layer(tracer)))
}

/// The layer that exports spans of [`TRACE_TARGET`], and nothing else.
fn export_layer(tracer: opentelemetry_sdk::trace::Tracer) -> OtelLayer {
    let only_traces = tracing_subscriber::filter::Targets::new()
        .with_target(TRACE_TARGET, tracing::level_filters::LevelFilter::TRACE);
    tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_traces).boxed()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a library's trace span costs when logging is at `warn`:
    /// nothing (disabled at its callsite), and the log still shows warnings
    /// while never showing exported spans.
    #[test]
    fn library_trace_spans_are_disabled_at_their_callsite_when_nothing_shows_them() {
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let writer = move || Sink(sink.clone());
        tracing::subscriber::with_default(subscriber(LogFormat::Text, "warn", writer, None), || {
            let span = tracing::trace_span!(target: "h2::proto::connection", "poll");
            assert!(span.is_disabled(), "a trace span nobody shows is created");
            assert!(tracing::span!(target: "h2", tracing::Level::DEBUG, "Connection").is_disabled());
            tracing::warn!(target: "rampart::grpc", "shown");
            tracing::warn!(target: TRACE_TARGET, "exported only");
            let span = tracing::info_span!(target: TRACE_TARGET, "admin write");
            assert!(span.is_disabled(), "an exported span with export off is created");
        });
        let text = String::from_utf8(written.lock().map(|w| w.clone()).unwrap_or_default()).unwrap_or_default();
        assert!(text.contains("shown"), "{text}");
        assert!(!text.contains("exported only"), "{text}");

        // Exporting: only the exported spans exist.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let export = export_layer(provider.tracer("test"));
        tracing::subscriber::with_default(subscriber(LogFormat::Json, "warn", std::io::sink, Some(export)), || {
            assert!(tracing::trace_span!(target: "h2::proto::connection", "poll").is_disabled());
            assert!(!tracing::info_span!(target: TRACE_TARGET, "admin write").is_disabled());
        });
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut written) = self.0.lock() {
                written.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
