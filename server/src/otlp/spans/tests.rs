use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};

use super::*;
use crate::ramp::otlp_selection::{FlagSpans, Selections};
use crate::ramp::spec::spans::{SpanKind, SpanSelection};

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::IntValue(value)) }), ..Default::default() }
}

fn evaluation(flag: &str, variant: &str) -> Event {
    Event {
        name: "feature_flag.evaluation".into(),
        attributes: vec![
            text("feature_flag.key", flag),
            text("feature_flag.result.variant", variant),
            text("feature_flag.context.id", "user-1"),
        ],
        ..Default::default()
    }
}

fn span(n: u8, kind: i32, events: Vec<Event>) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        kind,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 251_000,
        events,
        ..Default::default()
    }
}

fn export(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![text("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn ramped(selection: SpanSelection, per_context: bool) -> Selections {
    Selections::new(HashMap::from([("search".to_owned(), FlagSpans { selection, per_context, metric: String::new() })]))
}

const SERVER: i32 = 2;
const INTERNAL: i32 = 1;

#[test]
fn a_server_span_with_the_flags_event_is_one_sample_however_often_it_evaluated() {
    let mut failed = span(2, SERVER, vec![evaluation("search", "new")]);
    failed.status = Some(Status { code: 2, ..Default::default() });
    let request = export(
        "checkout",
        vec![
            span(
                1,
                SERVER,
                vec![evaluation("search", "new"), evaluation("search", "new"), evaluation("search", "old")],
            ),
            failed,
            span(3, INTERNAL, vec![evaluation("search", "old")]),
            span(4, SERVER, vec![evaluation("unramped", "on")]),
            span(5, SERVER, vec![]),
        ],
    );
    let (samples, tally) = read(&request, &ramped(SpanSelection::default(), false));
    let shape: Vec<(u8, &str, bool)> = samples.iter().map(|s| (s.id.span[0], s.variant, s.failed)).collect();
    assert_eq!(shape, [(1, "new", false), (2, "new", true)]);
    assert_eq!(samples[0].duration_nanos, 250_000);
    assert_eq!(samples[0].context, None, "targeting keys only for ramps that count them");
    assert_eq!(tally.get(SpanFate::Used), 2);
    assert_eq!(tally.get(SpanFate::NotSelected), 1, "the internal span");
    assert_eq!(tally.get(SpanFate::NoRampedFlag), 2);
    assert_eq!(tally.spans(), 5);
}

#[test]
fn the_older_hook_shape_counts_too() {
    let event = Event {
        name: "feature_flag".into(),
        attributes: vec![text("feature_flag.key", "search"), text("feature_flag.variant", "old")],
        ..Default::default()
    };
    let request = export("api", vec![span(1, SERVER, vec![event])]);
    let (samples, _) = read(&request, &ramped(SpanSelection::default(), false));
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].variant, "old");
}

#[test]
fn service_kind_and_http_status_follow_the_ramps_selection() {
    let mut http_500 = span(1, INTERNAL, vec![evaluation("search", "new")]);
    http_500.attributes = vec![int("http.response.status_code", 503)];
    let mut http_404 = span(2, INTERNAL, vec![evaluation("search", "new")]);
    http_404.attributes = vec![int("http.status_code", 404)];
    let selection = SpanSelection {
        kind: SpanKind::Any,
        service: Some("checkout".into()),
        http_server_errors: true,
        slower_than: None,
    };
    let request = export("checkout", vec![http_500.clone(), http_404.clone()]);
    let (samples, _) = read(&request, &ramped(selection.clone(), true));
    let failed: Vec<bool> = samples.iter().map(|s| s.failed).collect();
    assert_eq!(failed, [true, false]);
    assert_eq!(samples[0].context, Some("user-1"));
    let request = export("billing", vec![http_500]);
    let (samples, tally) = read(&request, &ramped(selection, false));
    assert!(samples.is_empty());
    assert_eq!(tally.get(SpanFate::NotSelected), 1, "another service");
    // Without `httpServerErrors`, only the span status says it failed.
    let any = SpanSelection { kind: SpanKind::Any, ..SpanSelection::default() };
    let mut only_status = span(3, INTERNAL, vec![evaluation("search", "new")]);
    only_status.attributes = vec![int("http.response.status_code", 500)];
    let request = export("checkout", vec![only_status]);
    let (samples, _) = read(&request, &ramped(any, false));
    assert!(!samples[0].failed);
}

#[test]
fn invalid_ids_and_missing_variants_are_not_evidence() {
    let mut short = span(1, SERVER, vec![evaluation("search", "new")]);
    short.span_id = vec![1; 4];
    let zero = Span { trace_id: vec![0; 16], ..span(2, SERVER, vec![evaluation("search", "new")]) };
    let no_variant = Event {
        name: "feature_flag.evaluation".into(),
        attributes: vec![text("feature_flag.key", "search")],
        ..Default::default()
    };
    let request = export("api", vec![short, zero, span(3, SERVER, vec![no_variant])]);
    let (samples, tally) = read(&request, &ramped(SpanSelection::default(), false));
    assert!(samples.is_empty());
    assert_eq!(tally.get(SpanFate::InvalidId), 2);
    assert_eq!(tally.get(SpanFate::NoVariant), 1);
}

#[test]
fn reading_is_bounded_per_span() {
    // The flag's event after the scanned events is not seen: a span stuffed
    // with events costs what a normal one does.
    let mut events: Vec<Event> =
        (0..MAX_EVENTS_SCANNED).map(|_| Event { name: "noise".into(), ..Default::default() }).collect();
    events.push(evaluation("search", "new"));
    let request = export("api", vec![span(1, SERVER, events)]);
    let (samples, _) = read(&request, &ramped(SpanSelection::default(), false));
    assert!(samples.is_empty());
    // The same for attributes of an event.
    let mut attributes: Vec<KeyValue> = (0..MAX_ATTRIBUTES_SCANNED).map(|i| int(&format!("a{i}"), 1)).collect();
    attributes.extend([text("feature_flag.key", "search"), text("feature_flag.result.variant", "new")]);
    let event = Event { name: "feature_flag.evaluation".into(), attributes, ..Default::default() };
    let request = export("api", vec![span(1, SERVER, vec![event])]);
    let (samples, _) = read(&request, &ramped(SpanSelection::default(), false));
    assert!(samples.is_empty());
}

#[test]
fn no_ramp_reads_nothing() {
    let request = export("api", vec![span(1, SERVER, vec![evaluation("search", "new")])]);
    let (samples, tally) = read(&request, &Selections::default());
    assert!(samples.is_empty());
    assert_eq!(tally.get(SpanFate::NoRampedFlag), 1);
    assert_eq!(count(&request), 1);
}

#[test]
fn a_span_slower_than_the_ramps_limit_failed() {
    let selection =
        SpanSelection { slower_than: Some(std::time::Duration::from_micros(200)), ..SpanSelection::default() };
    // span() lasts 250 µs: slower than 200 µs.
    let request = export("api", vec![span(1, SERVER, vec![evaluation("search", "new")])]);
    let (samples, _) = read(&request, &ramped(selection, false));
    assert!(samples[0].failed);
    let patient = SpanSelection { slower_than: Some(std::time::Duration::from_millis(1)), ..SpanSelection::default() };
    let (samples, _) = read(&request, &ramped(patient, false));
    assert!(!samples[0].failed, "250 µs is within 1 ms");
}

#[test]
fn an_evaluation_child_span_counts_for_its_parent_once() {
    let parent = span(1, SERVER, vec![]);
    let child = Span {
        name: "feature_flag.evaluation".into(),
        parent_span_id: parent.span_id.clone(),
        attributes: vec![text("feature_flag.key", "search"), text("feature_flag.result.variant", "new")],
        ..span(2, INTERNAL, vec![])
    };
    // A second child of the same parent and flag: still one sample.
    let again = Span { span_id: vec![3; 8], ..child.clone() };
    let orphan = Span { parent_span_id: vec![9; 8], span_id: vec![4; 8], ..child.clone() };
    let request = export("api", vec![child, parent, again, orphan]);
    let (samples, tally) = read(&request, &ramped(SpanSelection::default(), false));
    assert_eq!(samples.len(), 1);
    assert_eq!((samples[0].id.span[0], samples[0].variant), (1, "new"), "the parent's span is the sample");
    assert_eq!(tally.get(SpanFate::Used), 1);
}
