//! Rampart's own traces over OTLP (`otlpExport`), received by an OTLP/HTTP
//! sink that decodes them with the official protobuf classes from PyPI: a
//! span per admin write and per ramp tick, and an OFREP evaluation whose
//! caller sent a sampled `traceparent` as a child of the caller's span,
//! carrying OpenFeature's `feature_flag.evaluation` event. Evaluations
//! without one are not traced when the sample is 0, and the exporter sends
//! the standard `OTEL_EXPORTER_OTLP_HEADERS`.

use std::time::{Duration, Instant};

use rampart_tests::{FlagDir, LineClient, Rampart, post, python_command, send, workspace};
use serde_json::{Value, json};

const FLAGS: &str = "flags:\n  search-engine:\n    state: ENABLED\n    variants: { \"vector\": \"vector\", \"classic\": \"classic\" }\n    defaultVariant: \"classic\"\n";
const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: search-v2}\nspec:\n  flag: search-engine\n  \
    treatment: vector\n  interval: 1s\n  steps:\n    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n";

#[test]
fn rampart_exports_its_own_spans_and_joins_the_callers_trace() {
    let mut sink = LineClient::spawn(python_command(&workspace().join("tests/interop/otlp_sink.py")));
    let ready = sink.line();
    let port = ready.strip_prefix("ready ").unwrap_or_else(|| panic!("{ready}; {}", sink.stderr()));
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write("ramp.yaml", RAMP);
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "otlpExport: {{endpoint: 'http://127.0.0.1:{port}', evaluationSample: 0, serviceName: rampart-test}}\n\
             environments:\n  default:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n"
        ),
    );
    let server = Rampart::start_with_env(
        &["--config", &config, "--admin-insecure-local"],
        &[("OTEL_BSP_SCHEDULE_DELAY", "200"), ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer sink-key")],
    );
    // An admin write.
    let definition = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    let put = send(
        "PUT",
        &format!("{}/admin/v1/environments/default/flags/api-flag", server.admin),
        None,
        Some(&definition),
        &[],
    );
    assert_eq!(put.status, 201, "{}", put.text);
    // An evaluation in the caller's sampled trace, and one outside any trace.
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let url = format!("{}/ofrep/v1/evaluate/flags/search-engine", server.http);
    let body = json!({"context": {"targetingKey": "user-7"}}).to_string();
    assert_eq!(post(&url, &body, &[("traceparent", &traceparent)]).status, 200);
    assert_eq!(post(&url, &json!({"context": {"targetingKey": "user-8"}}).to_string(), &[]).status, 200);

    let mut spans: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let has = |spans: &[Value], name: &str| spans.iter().any(|s| s["name"] == name);
    while !(has(&spans, "admin.write") && has(&spans, "ramp.tick") && has(&spans, "ofrep.evaluate")) {
        assert!(Instant::now() < deadline, "spans so far: {spans:#?}");
        let line = sink.line();
        spans.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
    }
    let write = spans.iter().find(|s| s["name"] == "admin.write").expect("admin.write");
    assert_eq!(write["attributes"]["http.request.method"], "PUT");
    assert_eq!(write["attributes"]["http.response.status_code"], 201);
    assert_eq!(write["service"], "rampart-test");
    assert_eq!(write["authorization"], "Bearer sink-key", "the standard header variable is sent");
    let tick = spans.iter().find(|s| s["name"] == "ramp.tick").expect("ramp.tick");
    assert_eq!(tick["attributes"]["ramp"], "search-v2");

    let evaluations: Vec<&Value> = spans.iter().filter(|s| s["name"] == "ofrep.evaluate").collect();
    let evaluation = evaluations[0];
    assert_eq!(evaluation["traceId"], trace_id, "in the caller's trace");
    assert_eq!(evaluation["parentSpanId"], parent, "a child of the caller's span");
    let event = &evaluation["events"][0];
    assert_eq!(event["name"], "feature_flag.evaluation");
    assert_eq!(event["attributes"]["feature_flag.key"], "search-engine");
    assert_eq!(event["attributes"]["feature_flag.context.id"], "user-7");
    assert!(event["attributes"]["feature_flag.result.variant"].is_string(), "{event}");
    // A few more exports later, still only the traced evaluation.
    let settled = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settled {
        let line = sink.line();
        spans.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
    }
    let evaluations = spans.iter().filter(|s| s["name"] == "ofrep.evaluate").count();
    assert_eq!(evaluations, 1, "the evaluation without a trace was not sampled (evaluationSample: 0)");
    // Logs carry no exported spans or events.
    assert!(!server.logs().iter().any(|l| l["message"] == "feature_flag.evaluation"));
}
