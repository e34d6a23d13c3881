//! OTLP ingest on one core: a realistic trace export (512 server spans,
//! ten attributes each, one flag evaluation event per span, as the
//! OpenTelemetry SDK's batch processor sends) decoded from protobuf and
//! read into ramp samples — everything an export costs before its one
//! store commit. Issue 27's goal: ≥ 200,000 spans/s per core.
//!
//! `cargo bench -p rampart-benches --bench otlp`

use std::collections::HashMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
use prost::Message;
use rampart_server::otlp::spans;
use rampart_server::ramp::otlp_selection::{FlagSpans, Selections};

const SPANS: usize = 512;

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn export() -> Vec<u8> {
    let spans = (0..SPANS)
        .map(|n| {
            let mut attributes: Vec<KeyValue> = [
                ("http.request.method", "GET"),
                ("http.route", "/search"),
                ("url.path", "/search"),
                ("url.scheme", "https"),
                ("server.address", "search.example.com"),
                ("network.protocol.version", "1.1"),
                ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                ("client.address", "10.1.2.3"),
            ]
            .iter()
            .map(|(k, v)| text(k, v))
            .collect();
            attributes.push(KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue { value: Some(Value::IntValue(200)) }),
                ..Default::default()
            });
            attributes.push(text("server.port", "443"));
            Span {
                trace_id: (n as u128 + 1).to_be_bytes().to_vec(),
                span_id: (n as u64 + 1).to_be_bytes().to_vec(),
                name: "GET /search".into(),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_020_000_000,
                attributes,
                events: vec![Event {
                    name: "feature_flag.evaluation".into(),
                    time_unix_nano: 1_700_000_000_010_000_000,
                    attributes: vec![
                        text("feature_flag.key", "search-engine"),
                        text("feature_flag.result.variant", if n % 2 == 0 { "vector" } else { "classic" }),
                        text("feature_flag.result.reason", "targeting_match"),
                        text("feature_flag.context.id", &format!("user-{n}")),
                        text("feature_flag.provider.name", "OFREP"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![text("service.name", "search-api")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn otlp(c: &mut Criterion) {
    let body = export();
    let ramped = Selections::new(HashMap::from([(
        "search-engine".to_owned(),
        FlagSpans { selection: Default::default(), per_context: false, metric: String::new() },
    )]));
    let mut group = c.benchmark_group("otlp_export_512_spans");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(std::hint::black_box(body.as_slice())).expect("decodes"))
    });
    group.bench_function("decode and read samples", |b| {
        b.iter(|| {
            let request = ExportTraceServiceRequest::decode(std::hint::black_box(body.as_slice())).expect("decodes");
            let (samples, _) = spans::read(&request, &ramped);
            assert_eq!(samples.len(), SPANS);
        })
    });
    group.finish();
    // What the export weighs on the wire (docs/benchmarks.md quotes it).
    assert!((250_000..400_000).contains(&body.len()), "a realistic export: {} bytes", body.len());
}

criterion_group!(benches, otlp);
criterion_main!(benches);
