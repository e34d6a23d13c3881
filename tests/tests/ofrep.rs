//! OFREP over HTTP against the real binary: every status code, shapes,
//! ETag/304, empty bodies, SDK keys selecting environments.

use rampart_tests::{FlagDir, Rampart, get, post};
use serde_json::{Value, json};

const FLAGS: &str = r#"{
  "metadata": {"flagSetId": "ofrep-tests"},
  "flags": {
    "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
             "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on"]}, "metadata": {"owner": "web"}},
    "float": {"state": "ENABLED", "variants": {"one": 1, "half": 0.5}, "defaultVariant": "one"},
    "int": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two"},
    "object": {"state": "ENABLED", "variants": {"a": {"x": [1, 2]}}, "defaultVariant": "a"},
    "disabled": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    "no-default": {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "divides": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"if": [{">": [{"/": [10, {"var": "n"}]}, 1]}, "b"]}},
    "bad-variant": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                    "targeting": {"if": [{"var": "x"}, "missing"]}}
  }
}"#;

fn server() -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    let path = dir.write("flags.json", FLAGS);
    (Rampart::start(&["--flags", &path]), dir)
}

fn evaluate(server: &Rampart, key: &str, body: &str) -> rampart_tests::Reply {
    post(&format!("{}/ofrep/v1/evaluate/flags/{key}", server.http), body, &[])
}

#[test]
fn single_flag_answers_follow_the_protocol() {
    let (server, _dir) = server();

    let reply = evaluate(&server, "bool", r#"{"context": {"targetingKey": "u1", "plan": "pro"}}"#);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"key": "bool", "value": true, "variant": "on", "reason": "TARGETING_MATCH",
               "metadata": {"flagSetId": "ofrep-tests", "owner": "web"}})
    );

    // Empty body, `{}` and a body without context are an empty context.
    for body in ["", "{}", "{\"context\": null}", "  "] {
        let reply = evaluate(&server, "bool", body);
        assert_eq!(
            (reply.status, &reply.body["reason"], &reply.body["value"]),
            (200, &json!("DEFAULT"), &json!(false))
        );
    }

    // A float flag's integer-looking variant is a float on the wire.
    let reply = evaluate(&server, "float", "{}");
    assert!(reply.text.contains("\"value\":1.0"), "{}", reply.text);
    assert_eq!(reply.body["reason"], "STATIC");
    let reply = evaluate(&server, "int", "{}");
    assert!(reply.text.contains("\"value\":2,"), "{}", reply.text);
    assert_eq!(evaluate(&server, "object", "{}").body["value"], json!({"x": [1, 2]}));

    // Code default: no value, reason says why, variant present as null.
    let reply = evaluate(&server, "disabled", "{}");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"key": "disabled", "variant": null, "reason": "DISABLED", "metadata": {"flagSetId": "ofrep-tests"}})
    );
    let reply = evaluate(&server, "no-default", "{}");
    assert_eq!((reply.status, reply.body.get("value"), &reply.body["reason"]), (200, None, &json!("DEFAULT")));
}

#[test]
fn errors_have_the_protocol_status_and_shape() {
    let (server, _dir) = server();

    let reply = evaluate(&server, "nope", "{}");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["key"], "nope");
    assert_eq!(reply.body["errorCode"], "FLAG_NOT_FOUND");
    assert!(reply.body["errorDetails"].as_str().unwrap().contains("nope"));

    // A targeting failure at run time and a variant that does not exist are GENERAL.
    let reply = evaluate(&server, "divides", r#"{"context": {"n": 0}}"#);
    assert_eq!((reply.status, &reply.body["errorCode"]), (400, &json!("GENERAL")), "{}", reply.text);
    assert_eq!(evaluate(&server, "divides", r#"{"context": {"n": 2}}"#).body["value"], 2);
    let reply = evaluate(&server, "bad-variant", r#"{"context": {"x": true}}"#);
    assert_eq!((reply.status, &reply.body["errorCode"]), (400, &json!("GENERAL")));
    assert!(reply.body["errorDetails"].as_str().unwrap().contains("missing"), "{}", reply.text);

    // Malformed requests are INVALID_CONTEXT.
    for body in ["{", "[1]", r#"{"context": "u1"}"#, r#"{"context": [1]}"#] {
        let reply = evaluate(&server, "bool", body);
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.body["errorCode"], "INVALID_CONTEXT", "{body}");
        assert_eq!(reply.body["key"], "bool");
        assert!(reply.body["errorDetails"].is_string());
    }
    let reply = post(&format!("{}/ofrep/v1/evaluate/flags", server.http), "{", &[]);
    assert_eq!((reply.status, &reply.body["errorCode"]), (400, &json!("INVALID_CONTEXT")));

    // Oversized bodies are refused with JSON, not a dropped connection.
    let huge = format!(r#"{{"context": {{"blob": "{}"}}}}"#, "x".repeat(1_100_000));
    let reply = evaluate(&server, "bool", &huge);
    assert_eq!(reply.status, 413);
    assert!(reply.body["errorDetails"].as_str().unwrap().contains("larger than"));

    // Wrong method and unknown paths answer JSON too.
    let reply = get(&format!("{}/ofrep/v1/evaluate/flags/bool", server.http));
    assert_eq!(reply.status, 405);
    assert!(reply.body["errorDetails"].is_string());
    let reply = get(&format!("{}/nope", server.http));
    assert_eq!(reply.status, 404);
    assert!(reply.body["errorDetails"].is_string());
}

#[test]
fn bulk_evaluates_every_flag_with_an_etag() {
    let (server, _dir) = server();
    let url = format!("{}/ofrep/v1/evaluate/flags", server.http);
    let body = r#"{"context": {"targetingKey": "u1", "plan": "pro", "n": 0}}"#;

    let reply = post(&url, body, &[]);
    assert_eq!(reply.status, 200);
    let flags = reply.body["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["bad-variant", "bool", "disabled", "divides", "float", "int", "no-default", "object"]);
    let by_key = |key: &str| flags.iter().find(|f| f["key"] == key).unwrap().clone();
    assert_eq!(by_key("bool")["value"], true);
    assert_eq!(by_key("disabled")["reason"], "DISABLED");
    assert_eq!(by_key("divides")["errorCode"], "GENERAL");
    assert_eq!(reply.body["metadata"], json!({"flagSetId": "ofrep-tests"}));

    let etag = reply.etag.clone().expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    // Same context, same answer: 304 with no body; the trailing slash works too.
    let unchanged = post(&format!("{url}/"), body, &[("if-none-match", &etag)]);
    assert_eq!(unchanged.status, 304);
    assert_eq!(unchanged.text, "");
    assert_eq!(unchanged.etag.as_deref(), Some(etag.as_str()));
    let weak = post(&url, body, &[("if-none-match", &format!("\"other\", W/{etag}"))]);
    assert_eq!(weak.status, 304);

    // A different context gets a different answer and ETag.
    let other =
        post(&url, r#"{"context": {"targetingKey": "u1", "plan": "free", "n": 0}}"#, &[("if-none-match", &etag)]);
    assert_eq!(other.status, 200);
    assert_ne!(other.etag.as_deref(), Some(etag.as_str()));
    // An empty body is fine for bulk too.
    assert_eq!(post(&url, "", &[]).status, 200);
}

#[test]
fn sdk_keys_select_the_environment() {
    let dir = FlagDir::new();
    dir.write(
        "prod.json",
        r#"{"flags": {"env": {"state": "ENABLED", "variants": {"p": "production"}, "defaultVariant": "p"}}}"#,
    );
    dir.write(
        "staging.yaml",
        "flags:\n  env:\n    state: ENABLED\n    variants: {s: staging}\n    defaultVariant: s\n",
    );
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  production:\n    flags: [prod.json]\n    sdkKeys: [{env: PROD_SDK_KEY}]\n  staging:\n    flags: [staging.yaml]\n    sdkKeys: [{value: staging-key-123}]\n",
    );
    let server = Rampart::start_with_env(&["--config", &config], &[("PROD_SDK_KEY", "prod-key-456")]);
    let url = format!("{}/ofrep/v1/evaluate/flags/env", server.http);

    let value = |headers: &[(&str, &str)]| {
        let reply = post(&url, "{}", headers);
        (reply.status, reply.body.get("value").cloned().unwrap_or(Value::Null))
    };
    assert_eq!(value(&[("authorization", "Bearer prod-key-456")]), (200, json!("production")));
    assert_eq!(value(&[("x-api-key", "staging-key-123")]), (200, json!("staging")));
    assert_eq!(value(&[]).0, 401);
    assert_eq!(value(&[("authorization", "Bearer wrong-key-000")]).0, 401);
    assert_eq!(value(&[("authorization", "Basic cHJvZA==")]).0, 401);

    let reply = post(&url, "{}", &[]);
    assert!(reply.body["errorDetails"].as_str().unwrap().contains("SDK key"), "{}", reply.text);
    let bulk = post(&format!("{}/ofrep/v1/evaluate/flags", server.http), "{}", &[("x-api-key", "staging-key-123")]);
    assert_eq!(bulk.body["flags"][0]["value"], "staging");
    assert_eq!(post(&format!("{}/ofrep/v1/evaluate/flags", server.http), "{}", &[]).status, 401);

    // Secrets never reach the logs.
    let logs = serde_json::to_string(&server.logs()).unwrap();
    assert!(!logs.contains("prod-key-456") && !logs.contains("staging-key-123"));
}

#[test]
fn health_readiness_and_metrics() {
    let (server, _dir) = server();
    evaluate(&server, "bool", "{}");
    evaluate(&server, "disabled", "{}");
    evaluate(&server, "nope", "{}");

    assert_eq!(get(&format!("{}/healthz", server.admin)).status, 200);
    let ready = get(&format!("{}/readyz", server.admin));
    assert_eq!(ready.status, 200);
    // A flag whose targeting can return a name that is not a variant is
    // served as flagd would (GENERAL at evaluation) and listed, with its line.
    let default = &ready.body["environments"]["default"];
    assert_eq!((default["version"].as_u64(), default["flags"].as_u64()), (Some(1), Some(8)), "{default}");
    let invalid = default["invalidFlags"].as_array().expect("list");
    assert_eq!(invalid.len(), 1, "{default}");
    assert_eq!(invalid[0]["flag"], "bad-variant");
    assert!(
        invalid[0]["line"].as_u64().is_some()
            && invalid[0]["message"].as_str().is_some_and(|m| m.contains("'missing'"))
    );
    assert_eq!(ready.body["store"], json!({"kind": "embedded", "state": "ok"}));

    let metrics = get(&format!("{}/metrics", server.admin)).text;
    for line in [
        "rampart_evaluations_total{environment=\"default\",reason=\"DEFAULT\"} 1",
        "rampart_evaluations_total{environment=\"default\",reason=\"DISABLED\"} 1",
        "rampart_evaluations_total{environment=\"default\",reason=\"ERROR\"} 1",
        "rampart_config_version{environment=\"default\"} 1",
        "rampart_config_flags{environment=\"default\"} 8",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(metrics.contains(
        "rampart_http_request_duration_seconds_count{listener=\"http\",route=\"/ofrep/v1/evaluate/flags/{key}\",status=\"404\"} 1"
    ), "{metrics}");
    // The admin listener does not serve OFREP, nor the HTTP listener metrics.
    assert_eq!(post(&format!("{}/ofrep/v1/evaluate/flags/bool", server.admin), "{}", &[]).status, 404);
    assert_eq!(get(&format!("{}/metrics", server.http)).status, 404);
}

#[test]
fn sigterm_stops_cleanly() {
    let (server, _dir) = server();
    let status = server.terminate();
    assert!(status.success(), "{status}");
}
