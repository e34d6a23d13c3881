//! Ramps fed by OpenTelemetry spans over OTLP/HTTP, against the real
//! binary:
//!
//! - an unmodified Python app (OpenTelemetry SDK + OTLP/HTTP exporter,
//!   OpenFeature's OFREP provider and OpenTelemetry hook, all from PyPI)
//!   exporting straight to Rampart completes a healthy ramp and has a
//!   failing treatment rolled back, with no Rampart-specific code; the same
//!   over OTLP/gRPC with gzip;
//! - a Node app (OpenTelemetry's Node SDK, OpenFeature's span-event hook
//!   from npm) exporting traces, and one exporting OTLP metrics (cumulative
//!   request histograms);
//! - hostile exports: malformed protobuf and JSON, a gzip bomb, too many
//!   spans, the wrong keys, a retried export (counted once), a variant
//!   the ramp does not compare.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use prost::Message;
use rampart_tests::{FlagDir, LineClient, Rampart, eventually, node_command, python_command, send, workspace};
use serde_json::Value;

const SDK_KEY: &str = "public-sdk-key-00001";
const REPORTER_KEY: &str = "server-reporter-key-001";
const STAGING_REPORTER_KEY: &str = "staging-reporter-key-01";
const FLAGS: &str = "flags:\n  search-engine:\n    state: ENABLED\n    variants: { \"vector\": \"vector\", \"classic\": \"classic\", \"other\": \"other\" }\n    defaultVariant: \"classic\"\n";
const HOLDING: &str = "    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n";
const QUICK: &str = "    - {percent: 50, hold: 4s}\n    - {percent: 100, hold: 2s}\n";
const LONG: Duration = Duration::from_secs(120);

fn ramp(steps: &str) -> String {
    ramp_guarded(steps, "")
}

/// The ramp with extra `guard:` lines (four spaces in).
fn ramp_guarded(steps: &str, guard: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{name: search-v2}}\nspec:\n  flag: search-engine\n  \
         treatment: vector\n  control: classic\n  interval: 1s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    \
         absolute: {{maxErrorRate: 10%, maxIncrease: 10%}}\n{guard}"
    )
}

/// A server with a production ramp on `search-engine` and the OTLP/HTTP
/// receiver; reporter keys for production and staging.
fn start(steps: &str) -> (Rampart, FlagDir) {
    start_ramp(&ramp(steps))
}

fn start_ramp(ramp: &str) -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write("ramp.yaml", ramp);
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "otlpHttpAddr: 127.0.0.1:0\notlpGrpcAddr: 127.0.0.1:0\nenvironments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    \
             sdkKeys: [{{value: {SDK_KEY}}}]\n    reporterKeys: [{{value: {REPORTER_KEY}}}]\n  staging:\n    \
             flags: [flags.yaml]\n    sdkKeys: [{{value: staging-sdk-key-0001}}]\n    reporterKeys: [{{value: {STAGING_REPORTER_KEY}}}]\n\
             limits:\n  outcomeSourceWindowSeconds: 1\n"
        ),
    );
    (Rampart::start(&["--config", &config, "--admin-insecure-local"]), dir)
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/production/search-v2", server.admin), None, None, &[]).body
}

fn wait_for(server: &Rampart, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(LONG, || {
        let status = status(server);
        if check(&status) { Ok(status) } else { Err(format!("waiting for {what}: {status}")) }
    })
}

/// The server's `/metrics` text.
fn metrics_text(server: &Rampart) -> String {
    rampart_tests::client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics")
}

/// The value of the `rampart_otlp_spans_total` sample with `result`.
fn span_count(server: &Rampart, result: &str) -> f64 {
    let text = rampart_tests::client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("rampart_otlp_spans_total{") && line.contains(&format!("result=\"{result}\"")))
        .filter(|line| line.contains("environment=\"production\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How the Python app exports.
#[derive(Clone, Copy)]
enum Exporter {
    Http,
    /// OTLP/gRPC, gzip-compressed (as the Collector sends by default).
    GrpcGzip,
}

/// The Python app, exporting its spans to `server` with `key`.
fn python_app(server: &Rampart, key: &str, error_rates: &str, per_second: u32) -> LineClient {
    python_app_exporting(server, key, error_rates, per_second, Exporter::Http)
}

fn python_app_exporting(
    server: &Rampart,
    key: &str,
    error_rates: &str,
    per_second: u32,
    exporter: Exporter,
) -> LineClient {
    let mut command = python_command(&workspace().join("tests/interop/otel_app.py"));
    match exporter {
        Exporter::Http => {
            let otlp = server.otlp_http.as_deref().expect("the OTLP/HTTP receiver is configured");
            command.env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{otlp}/v1/traces"));
        }
        Exporter::GrpcGzip => {
            let otlp = server.otlp_grpc.as_deref().expect("the OTLP/gRPC receiver is configured");
            command
                .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
                .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("http://{otlp}"))
                .env("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
                .env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip");
        }
    }
    command
        .env("OFREP_URL", &server.http)
        .env("FLAG_KEY", SDK_KEY)
        .env("ERROR_RATES", error_rates)
        .env("LOAD_PER_SECOND", per_second.to_string())
        // The standard OpenTelemetry settings: which header to export with.
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", format!("authorization=Bearer%20{key}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut app = LineClient::spawn(command);
    let ready = app.line();
    assert!(ready.starts_with("ready "), "{ready}; stderr: {}", app.stderr());
    app
}

#[test]
fn an_opentelemetry_app_completes_a_healthy_ramp_with_no_rampart_code() {
    let (server, _dir) = start(QUICK);
    let app = python_app(&server, REPORTER_KEY, r#"{"vector": 0.01, "classic": 0.01}"#, 60);
    let done = wait_for(&server, "the ramp to complete", |s| s["state"] == "Completed" || s["state"] == "RolledBack");
    assert_eq!(done["state"], "Completed", "{done}; app stderr: {}", app.stderr());
    assert!(span_count(&server, "used") >= 80.0, "spans were the evidence: {}", span_count(&server, "used"));
    assert_eq!(span_count(&server, "duplicate"), 0.0);
}

#[test]
fn an_opentelemetry_app_whose_treatment_fails_is_rolled_back() {
    let (server, _dir) = start(HOLDING);
    let app = python_app(&server, REPORTER_KEY, r#"{"vector": 0.4, "classic": 0.02}"#, 60);
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
    assert!(span_count(&server, "used") > 0.0);
}

#[test]
fn the_same_app_exporting_over_otlp_grpc_with_gzip_is_rolled_back() {
    let (server, _dir) = start(HOLDING);
    let app =
        python_app_exporting(&server, REPORTER_KEY, r#"{"vector": 0.4, "classic": 0.02}"#, 60, Exporter::GrpcGzip);
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
    assert!(span_count(&server, "used") > 0.0);
    let text = rampart_tests::client().get(format!("{}/metrics", server.admin)).send().unwrap().text().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("rampart_otlp_exports_total{") && l.contains("accepted") && !l.ends_with(" 0")),
        "exports were accepted over gRPC"
    );
}

/// The Node app: OTLP metrics (cumulative, http/protobuf) to `server`.
fn node_metrics_app(server: &Rampart, error_rates: &str, per_second: u32) -> LineClient {
    node_metrics_app_with(server, error_rates, "{}", per_second)
}

fn node_metrics_app_with(server: &Rampart, error_rates: &str, slow: &str, per_second: u32) -> LineClient {
    let otlp = server.otlp_http.as_deref().expect("the OTLP/HTTP receiver is configured");
    let mut command = node_command(&workspace().join("tests/interop/otel_metrics_app.cjs"));
    command
        .env("OFREP_URL", &server.http)
        .env("FLAG_KEY", SDK_KEY)
        .env("ERROR_RATES", error_rates)
        .env("SLOW", slow)
        .env("LOAD_PER_SECOND", per_second.to_string())
        .env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("{otlp}/v1/metrics"))
        .env("OTEL_EXPORTER_OTLP_METRICS_HEADERS", format!("authorization=Bearer {REPORTER_KEY}"))
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500");
    let mut app = LineClient::spawn(command);
    let ready = app.line();
    assert!(ready.starts_with("ready "), "{ready}; stderr: {}", app.stderr());
    app
}

#[test]
fn a_node_app_with_the_openfeature_span_event_hook_has_a_failing_treatment_rolled_back() {
    node_traces_app_is_rolled_back("event");
}

#[test]
fn a_node_app_with_the_openfeature_span_hook_has_a_failing_treatment_rolled_back() {
    node_traces_app_is_rolled_back("span");
}

/// The Node traces app with `hook` (`event`: SpanEventHook, `span`: SpanHook).
fn node_traces_app_is_rolled_back(hook: &str) {
    let (server, _dir) = start(HOLDING);
    let otlp = server.otlp_http.as_deref().expect("the OTLP/HTTP receiver is configured");
    let mut command = node_command(&workspace().join("tests/interop/otel_traces_app.cjs"));
    command
        .env("OFREP_URL", &server.http)
        .env("FLAG_KEY", SDK_KEY)
        .env("ERROR_RATES", r#"{"vector": 0.4, "classic": 0.02}"#)
        .env("LOAD_PER_SECOND", "60")
        .env("HOOK", hook)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{otlp}/v1/traces"))
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", format!("x-api-key={REPORTER_KEY}"))
        // The Node SDK starts metrics and logs exporters too unless told not to.
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none");
    let mut app = LineClient::spawn(command);
    let ready = app.line();
    assert!(ready.starts_with("ready "), "{ready}; stderr: {}", app.stderr());
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
    assert!(span_count(&server, "used") > 0.0, "the hook's events on server spans were the evidence");
}

fn point_count(server: &Rampart, result: &str) -> f64 {
    metrics_text(server)
        .lines()
        .filter(|l| l.starts_with("rampart_otlp_points_total{") && l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_node_apps_otlp_metrics_complete_a_healthy_ramp_and_roll_a_failing_one_back() {
    let (healthy, _dir) = start(QUICK);
    let app = node_metrics_app(&healthy, r#"{"vector": 0.01, "classic": 0.01}"#, 60);
    let done = wait_for(&healthy, "the ramp to complete", |s| s["state"] == "Completed" || s["state"] == "RolledBack");
    assert_eq!(done["state"], "Completed", "{done}; app stderr: {}", app.stderr());
    assert!(point_count(&healthy, "used") > 0.0);
    assert!(point_count(&healthy, "baseline") > 0.0, "cumulative series start from a baseline");
    drop(app);

    let (failing, _dir) = start(HOLDING);
    let app = node_metrics_app(&failing, r#"{"vector": 0.4, "classic": 0.02}"#, 60);
    let done = wait_for(&failing, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
}

/// The Python app with a treatment that is only slow (200 ms in 40 % of
/// its requests, no errors at all).
fn slow_python_app(server: &Rampart) -> LineClient {
    let mut command = python_command(&workspace().join("tests/interop/otel_app.py"));
    let otlp = server.otlp_http.as_deref().expect("OTLP/HTTP");
    command
        .env("OFREP_URL", &server.http)
        .env("FLAG_KEY", SDK_KEY)
        .env("SLOW", r#"{"vector": [0.4, 0.2]}"#)
        .env("LOAD_PER_SECOND", "60")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{otlp}/v1/traces"))
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", format!("authorization=Bearer%20{REPORTER_KEY}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut app = LineClient::spawn(command);
    let ready = app.line();
    assert!(ready.starts_with("ready "), "{ready}; stderr: {}", app.stderr());
    app
}

#[test]
fn a_slower_treatment_is_rolled_back_when_the_ramp_names_a_latency_limit() {
    let (server, _dir) = start_ramp(&ramp_guarded(HOLDING, "    spans: {slowerThan: 100ms}\n"));
    let app = slow_python_app(&server);
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
}

/// The latency guard on its own proportion: the share of requests slower
/// than the control's p95, from the spans' durations.
#[test]
fn the_latency_guard_rolls_back_a_treatment_slower_than_the_controls_p95() {
    let ramp = ramp_guarded(HOLDING, "") + "  latency: {slowerThan: p95, tolerance: 20%}\n";
    let (server, _dir) = start_ramp(&ramp);
    let app = slow_python_app(&server);
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
    assert!(done.to_string().contains("LatencyRegression"), "the latency guard, not the error guard: {done}");
}

// ---- hostile exports ----

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Any::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A server span of request `n` that served `variant` of `search-engine`.
fn span(n: u32, variant: &str, failed: bool) -> Span {
    let mut trace_id = vec![7; 16];
    trace_id[..4].copy_from_slice(&n.to_be_bytes());
    let mut span_id = vec![9; 8];
    span_id[..4].copy_from_slice(&n.to_be_bytes());
    Span {
        trace_id,
        span_id,
        name: "GET /search".into(),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        events: vec![Event {
            name: "feature_flag.evaluation".into(),
            attributes: vec![text("feature_flag.key", "search-engine"), text("feature_flag.result.variant", variant)],
            ..Default::default()
        }],
        status: failed.then(|| Status { code: 2, ..Default::default() }),
        ..Default::default()
    }
}

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![text("service.name", "search-api")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn post(server: &Rampart, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let url = format!("{}/v1/traces", server.otlp_http.as_deref().expect("OTLP/HTTP"));
    let mut request = rampart_tests::client().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().expect("POST /v1/traces");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    Answer { status, content_type, body: response.bytes().expect("body").to_vec() }
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const AS_REPORTER: (&str, &str) = ("authorization", "Bearer server-reporter-key-001");

/// `google.rpc.Status` (code, message), as OTLP errors carry it.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn running(server: &Rampart) {
    wait_for(server, "the ramp to run", |s| s["state"] != "Pending" && s["evidence"]["buckets"].as_u64() >= Some(2));
}

#[test]
fn a_retried_export_counts_once_and_only_the_ramps_arms_count() {
    let (server, _dir) = start(HOLDING);
    running(&server);
    let mut spans: Vec<Span> = (0..15).map(|n| span(n, "vector", n % 5 == 0)).collect();
    spans.extend((100..115).map(|n| span(n, "classic", false)));
    spans.push(span(200, "other", false)); // a variant the ramp does not compare
    let body = export(spans).encode_to_vec();
    for attempt in 0..3 {
        let answer = post(&server, body.clone(), &[PROTOBUF, AS_REPORTER]);
        assert_eq!(answer.status, 200, "attempt {attempt}: {}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.content_type, "application/x-protobuf");
        let response = ExportTraceServiceResponse::decode(answer.body.as_slice()).expect("an OTLP response");
        assert_eq!(response.partial_success, None, "nothing rejected");
    }
    let counted = wait_for(&server, "the spans to be counted", |s| {
        s["evidence"]["treatment"]["exposures"] == 15 && s["evidence"]["control"]["exposures"] == 15
    });
    assert_eq!(counted["evidence"]["treatment"]["errors"], 3, "span status ERROR is an error: {counted}");
    assert_eq!(counted["evidence"]["control"]["errors"], 0);
    assert_eq!(span_count(&server, "used"), 30.0);
    assert_eq!(span_count(&server, "duplicate"), 62.0, "two retries of 31 evidence spans");
    assert_eq!(span_count(&server, "not_an_arm"), 1.0);
    // Later ticks still hold exactly the first export's counts.
    let later = wait_for(&server, "two more buckets", |s| {
        s["evidence"]["buckets"].as_u64() >= Some(counted["evidence"]["buckets"].as_u64().unwrap_or(0) + 2)
    });
    assert_eq!(later["evidence"]["treatment"]["exposures"], 15, "{later}");

    // The same spans as OTLP/JSON (hex ids) are the same spans: duplicates.
    let json = serde_json::to_vec(&export(vec![span(0, "vector", false), span(300, "vector", false)])).unwrap();
    let answer = post(&server, json, &[("content-type", "application/json"), AS_REPORTER]);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(answer.content_type.starts_with("application/json"), "{}", answer.content_type);
    let counted = wait_for(&server, "the JSON span", |s| s["evidence"]["treatment"]["exposures"] == 16);
    assert_eq!(counted["evidence"]["control"]["exposures"], 15);
}

#[test]
fn hostile_exports_get_otlp_errors_and_count_nothing() {
    let (server, _dir) = start(HOLDING);
    running(&server);
    // Malformed protobuf: 400 with a google.rpc.Status, INVALID_ARGUMENT.
    let answer = post(&server, vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2], &[PROTOBUF, AS_REPORTER]);
    assert_eq!(answer.status, 400);
    let refusal = RpcStatus::decode(answer.body.as_slice()).expect("a Status body");
    assert_eq!(refusal.code, 3, "{}", refusal.message);
    // Malformed JSON: the same, as JSON.
    let answer =
        post(&server, b"{\"resourceSpans\": 5}".to_vec(), &[("content-type", "application/json"), AS_REPORTER]);
    assert_eq!(answer.status, 400);
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON Status");
    assert_eq!(body["code"], 3, "{body}");
    // A gzip bomb: a few KiB that expand past the body limit (8 MiB).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 9 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let answer = post(&server, bomb, &[PROTOBUF, ("content-encoding", "gzip"), AS_REPORTER]);
    assert_eq!(answer.status, 413);
    assert_eq!(RpcStatus::decode(answer.body.as_slice()).unwrap().code, 8, "RESOURCE_EXHAUSTED");
    // More spans than one export may hold.
    let many = export((0..20_001).map(|n| span(n, "vector", false)).collect()).encode_to_vec();
    let answer = post(&server, many, &[PROTOBUF, AS_REPORTER]);
    assert_eq!(answer.status, 413);
    assert!(RpcStatus::decode(answer.body.as_slice()).unwrap().message.contains("20000"));
    // An unknown content type.
    assert_eq!(post(&server, b"x".to_vec(), &[("content-type", "text/plain"), AS_REPORTER]).status, 415);

    // Keys: none (401), the public SDK key (403: spans need a reporter key).
    let honest = export((0..10).map(|n| span(n, "vector", true)).collect()).encode_to_vec();
    assert_eq!(post(&server, honest.clone(), &[PROTOBUF]).status, 401);
    let answer = post(&server, honest.clone(), &[PROTOBUF, ("x-api-key", SDK_KEY)]);
    assert_eq!(answer.status, 403);
    assert!(RpcStatus::decode(answer.body.as_slice()).unwrap().message.contains("reporterKeys"));
    // Another environment's reporter key: taken, for staging (no ramp there).
    let staging = format!("Bearer {STAGING_REPORTER_KEY}");
    assert_eq!(post(&server, honest, &[PROTOBUF, ("authorization", &staging)]).status, 200);

    // None of it reached the production ramp.
    let after = wait_for(&server, "a few more buckets", |s| s["evidence"]["buckets"].as_u64() >= Some(5));
    assert_eq!(after["evidence"]["treatment"]["exposures"], 0, "{after}");
    assert_eq!((after["state"].as_str(), after["percent"].as_f64()), (Some("Holding"), Some(50.0)), "{after}");
    assert_eq!(span_count(&server, "used"), 0.0);
    // The server is still serving.
    assert_eq!(status(&server)["flag"], "search-engine");
}

#[test]
fn one_reporter_key_cannot_bring_a_young_steps_evidence_in_one_export() {
    let (server, _dir) = start(HOLDING);
    running(&server);
    // 2,000 failing treatment spans at once: far more than one source may
    // add to a step that needs 40 samples.
    let flood = export((0..2_000).map(|n| span(n, "vector", true)).collect()).encode_to_vec();
    let answer = post(&server, flood, &[PROTOBUF, AS_REPORTER]);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let response = ExportTraceServiceResponse::decode(answer.body.as_slice()).unwrap();
    let partial = response.partial_success.expect("a partial success: most spans not counted");
    assert!(partial.rejected_spans >= 1_980, "{partial:?}");
    assert!(partial.error_message.contains("reporter key"), "{}", partial.error_message);
    let after = wait_for(&server, "the part taken to be counted", |s| {
        s["evidence"]["treatment"]["exposures"].as_u64().unwrap_or(0) > 0
    });
    let taken = after["evidence"]["treatment"]["exposures"].as_u64().unwrap();
    assert_eq!(taken, 2_000 - partial.rejected_spans as u64, "counted = sent − rejected: {after}");
    assert!(taken <= 20, "at most half of minSamples: {after}");
    assert_ne!(after["state"], "RolledBack", "one export cannot roll the ramp back: {after}");
}

#[test]
fn a_retried_metrics_export_counts_once() {
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric::Data,
    };
    let (server, _dir) = start(HOLDING);
    running(&server);
    let point = |variant: &str, count: u64| HistogramDataPoint {
        attributes: vec![text("feature_flag.key", "search-engine"), text("feature_flag.result.variant", variant)],
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        count,
        ..Default::default()
    };
    let export = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![text("service.name", "search-api")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    data: Some(Data::Histogram(Histogram {
                        aggregation_temporality: 1, // delta
                        data_points: vec![point("vector", 12), point("classic", 14)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let url = format!("{}/v1/metrics", server.otlp_http.as_deref().unwrap());
    for _ in 0..3 {
        let response = rampart_tests::client()
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("x-api-key", REPORTER_KEY)
            .body(export.encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer = ExportMetricsServiceResponse::decode(response.bytes().unwrap().as_ref()).unwrap();
        assert_eq!(answer.partial_success, None);
    }
    let counted = wait_for(&server, "the points to be counted", |s| {
        s["evidence"]["treatment"]["exposures"] == 12 && s["evidence"]["control"]["exposures"] == 14
    });
    assert_eq!(point_count(&server, "duplicate"), 4.0, "two retries of two points: {counted}");
}

/// The latency guard fed by OTLP metrics: the request histogram's buckets
/// (the conventions' advised bounds, all on Rampart's ladder).
#[test]
fn a_node_apps_request_histogram_rolls_back_a_slower_treatment() {
    let ramp = ramp_guarded(HOLDING, "") + "  latency: {slowerThan: 100ms}\n";
    let (server, _dir) = start_ramp(&ramp);
    let app = node_metrics_app_with(&server, "{}", r#"{"vector": [0.4, 0.2]}"#, 60);
    let done = wait_for(&server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["percent"], 0.0, "{done}; app stderr: {}", app.stderr());
    assert!(done.to_string().contains("LatencyRegression"), "{done}");
}
