//! The latency guard fed by outcome reports with durations, against the
//! real binary: the Rust SDK's timed outcomes (rounded to the latency
//! ladder, aggregated, sent over `rampart.v1`), and `durationMs` over
//! `POST /v1/outcomes`.

use std::time::Duration;

use rampart_sdk::{Client, Context, Outcome};
use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};

const SDK_KEY: &str = "public-sdk-key-00001";
const REPORTER_KEY: &str = "server-reporter-key-001";
const FLAGS: &str = "flags:\n  search-engine:\n    state: ENABLED\n    variants: { \"vector\": \"vector\", \"classic\": \"classic\" }\n    defaultVariant: \"classic\"\n";

fn start() -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write(
        "ramp.yaml",
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: search-v2}\nspec:\n  flag: search-engine\n  \
         treatment: vector\n  interval: 1s\n  steps:\n    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n  \
         guard:\n    minSamples: 200\n    absolute: {maxIncrease: 10%}\n  latency: {slowerThan: 300ms, tolerance: 20%}\n",
    );
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    \
             sdkKeys: [{{value: {SDK_KEY}}}]\n    reporterKeys: [{{value: {REPORTER_KEY}}}]\n\
             limits:\n  outcomeSourceWindowSeconds: 1\n"
        ),
    );
    (Rampart::start(&["--config", &config, "--admin-insecure-local"]), dir)
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/production/search-v2", server.admin), None, None, &[]).body
}

fn running(server: &Rampart) {
    eventually(Duration::from_secs(30), || {
        let status = status(server);
        let started = status["state"] != "Pending" && status["evidence"]["buckets"].as_u64() >= Some(2);
        if started { Ok(()) } else { Err(status.to_string()) }
    });
}

#[test]
fn timed_outcomes_from_the_rust_sdk_roll_back_a_slower_treatment() {
    let (server, _dir) = start();
    running(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let client = runtime.block_on(async {
        let client = Client::builder()
            .endpoint(format!("http://{}", server.sync))
            .sdk_key(SDK_KEY)
            .reporter_key(REPORTER_KEY)
            .outcome_interval(Duration::from_millis(200))
            .build()
            .expect("client");
        client.wait_ready(Duration::from_secs(30)).await.expect("ready");
        // No errors at all: 4 in 10 treatment requests take 800 ms, the
        // control's 1 in 50 (durations as the app measured them).
        for user in 0..2000u32 {
            let context = Context::with_targeting_key(format!("user-{user}").as_str());
            let details = client.string_details("search-engine", &context, "classic");
            let slow = if details.variant.as_deref() == Some("vector") { user % 10 < 4 } else { user % 50 == 0 };
            let took = Duration::from_millis(if slow { 800 } else { 40 });
            client.record_timed_outcome("search-engine", &details, Outcome::Ok, took);
        }
        client
    });
    let done = eventually(Duration::from_secs(120), || {
        let status = status(&server);
        if status["state"] == "RolledBack" { Ok(status) } else { Err(status.to_string()) }
    });
    // Every outcome was a success: only the latency guard could act.
    assert_eq!(done["reason"], "LatencyRegression", "{done}");
    client.close();
}

#[test]
fn duration_ms_over_http_is_counted_and_a_bad_one_is_refused() {
    let (server, _dir) = start();
    running(&server);
    let report = |outcomes: Value| {
        post(
            &format!("{}/v1/outcomes", server.http),
            &json!({"outcomes": outcomes}).to_string(),
            &[("x-api-key", REPORTER_KEY)],
        )
    };
    // Nothing timed yet: the dashboard says the latency guard is silent.
    let page = rampart_tests::client()
        .get(format!("{}/ui/ramps/production/search-v2", server.admin))
        .send()
        .and_then(|r| r.text())
        .expect("the ramp page");
    assert!(page.contains("Latency guard") && page.contains("silent: nothing from the treatment"), "{page}");
    let bad = report(json!([{"flag": "search-engine", "variant": "vector", "ok": 1, "durationMs": -5}]));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("outcomes[0]: durationMs"), "{}", bad.text);
    let ok = report(json!([
        {"flag": "search-engine", "variant": "vector", "ok": 10, "durationMs": 900},
        {"flag": "search-engine", "variant": "classic", "ok": 10, "durationMs": 20},
    ]));
    assert_eq!(ok.status, 200, "{}", ok.text);
    let counted = eventually(Duration::from_secs(30), || {
        let status = status(&server);
        let latency = status["evidence"]["guards"].as_array().and_then(|g| g.first()).cloned().unwrap_or(Value::Null);
        let counts = (
            latency["treatment"]["samples"].as_u64(),
            latency["treatment"]["hits"].as_u64(),
            latency["control"]["hits"].as_u64(),
        );
        if counts == (Some(10), Some(10), Some(0)) { Ok(latency) } else { Err(status.to_string()) }
    });
    assert_eq!(counted["thresholdMs"], 300, "{counted}");
}
