//! Flag usage against the real binary: evaluations over OFREP (single and
//! bulk) and flagd gRPC counted per variant exactly, SDK reports counted
//! apart (unknown flags and variants ignored, oversized reports refused),
//! the counts flushed at shutdown and read back after a restart, and the
//! flags ready to remove.

use rampart_proto::flagd::evaluation::v2::ResolveBooleanRequest;
use rampart_proto::flagd::evaluation::v2::service_client::ServiceClient;
use rampart_tests::{FlagDir, Rampart, get, post, send};
use serde_json::{Value, json};

const TOKEN: &str = "usage-admin-token-000001";
const SDK_KEY: &str = "usage-sdk-key-0001";

const FLAGS: &str = r#"
flags:
  checkout:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
    targeting:
      if: [{in: [{var: country}, [de]]}, "on", "off"]
  banner:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: on
  forgotten:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
"#;

fn start(dir: &FlagDir, data: &str) -> Rampart {
    dir.write("flags.yaml", FLAGS);
    let config = dir.write(
        "rampart.yaml",
        &format!("environments:\n  production:\n    flags: [flags.yaml]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n"),
    );
    Rampart::start_in(&["--config", &config, "--data-dir", data], &[("RAMPART_ADMIN_TOKEN", TOKEN)])
}

fn evaluate(server: &Rampart, flag: &str, context: Value) -> u16 {
    let url = format!("{}/ofrep/v1/evaluate/flags/{flag}", server.http);
    post(&url, &json!({"context": context}).to_string(), &[("authorization", &format!("Bearer {SDK_KEY}"))]).status
}

fn usage(server: &Rampart, flag: &str) -> Value {
    let url = format!("{}/admin/v1/environments/production/flags/{flag}/usage", server.admin);
    let reply = send("GET", &url, Some(TOKEN), None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[test]
fn evaluations_are_counted_per_variant_and_survive_a_restart() {
    let dir = FlagDir::new();
    let data = dir.path("data").to_string_lossy().into_owned();
    let server = start(&dir, &data);
    for _ in 0..6 {
        assert_eq!(evaluate(&server, "checkout", json!({"targetingKey": "u", "country": "de"})), 200);
    }
    for _ in 0..4 {
        assert_eq!(evaluate(&server, "checkout", json!({"targetingKey": "u", "country": "us"})), 200);
    }
    assert_eq!(evaluate(&server, "no-such-flag", json!({})), 404, "an unknown flag is no usage");
    let bulk = post(
        &format!("{}/ofrep/v1/evaluate/flags", server.http),
        r#"{"context": {"targetingKey": "u"}}"#,
        &[("authorization", &format!("Bearer {SDK_KEY}"))],
    );
    assert_eq!(bulk.status, 200);
    // flagd gRPC, twice.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut grpc = ServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect");
        for _ in 0..2 {
            let mut request = tonic::Request::new(ResolveBooleanRequest { flag_key: "banner".into(), context: None });
            request.metadata_mut().insert("authorization", format!("Bearer {SDK_KEY}").parse().expect("ascii"));
            grpc.resolve_boolean(request).await.expect("resolve");
        }
    });
    // The client's connection closes with its runtime.
    drop(runtime);
    // An SDK's report of its own evaluations: known flags and variants only.
    let report = json!({"evaluations": [
        {"flag": "checkout", "variant": "on", "count": 100},
        {"flag": "checkout", "variant": "maybe", "count": 5},
        {"flag": "no-such-flag", "variant": "on", "count": 5},
        {"flag": "checkout", "count": 0},
    ]});
    let reply = post(
        &format!("{}/v1/usage", server.http),
        &report.to_string(),
        &[("authorization", &format!("Bearer {SDK_KEY}"))],
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body, json!({"accepted": 1, "ignored": 3}));
    let too_many: Vec<Value> = (0..1_001).map(|_| json!({"flag": "checkout", "variant": "on", "count": 1})).collect();
    let refused = post(
        &format!("{}/v1/usage", server.http),
        &json!({"evaluations": too_many}).to_string(),
        &[("authorization", &format!("Bearer {SDK_KEY}"))],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let unknown =
        post(&format!("{}/v1/usage", server.http), &report.to_string(), &[("authorization", "Bearer nope-nope")]);
    assert_eq!(unknown.status, 401);

    let expected_checkout = json!({
        "evaluated": {"on": 6, "off": 4},
        "bulk": {"off": 1},
        "sdk": {"on": 100},
    });
    let checkout = usage(&server, "checkout");
    assert_eq!(checkout["last24h"], expected_checkout, "{checkout}");
    assert_eq!(checkout["last30d"], expected_checkout, "{checkout}");
    assert!(checkout["lastEvaluated"].is_string(), "{checkout}");
    let banner = usage(&server, "banner");
    assert_eq!(banner["last24h"], json!({"evaluated": {"on": 2}, "bulk": {"on": 1}}), "{banner}");
    let forgotten = usage(&server, "forgotten");
    assert_eq!(forgotten["last24h"], json!({"bulk": {"off": 1}}), "bulk fetches are counted apart: {forgotten}");
    let missing = send(
        "GET",
        &format!("{}/admin/v1/environments/production/flags/no-such-flag/usage", server.admin),
        Some(TOKEN),
        None,
        &[],
    );
    assert_eq!(missing.status, 404);

    // Ready to remove: nothing yet is old enough to serve one variant "for
    // 7 days", and every flag was fetched at least in bulk.
    let url = format!("{}/admin/v1/environments/production/ready-to-remove?days=7", server.admin);
    let removable = send("GET", &url, Some(TOKEN), None, &[]);
    assert_eq!(removable.status, 200, "{}", removable.body);
    assert_eq!(removable.body["flags"], json!([]), "{}", removable.body);
    let bad = send("GET", &url.replace("days=7", "days=90"), Some(TOKEN), None, &[]);
    assert_eq!(bad.status, 400);
    assert!(server.metric("rampart_flags_ready_to_remove{environment=\"production\",reason=\"notEvaluated\"}") == 0.0);

    // A graceful stop flushes; a restart reads the counts back from the store.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let server = start(&dir, &data);
    assert_eq!(usage(&server, "checkout")["last24h"], expected_checkout);
    let flushes = get(&format!("{}/metrics", server.admin)).text;
    assert!(!flushes.contains("event=\"flush\",result=\"failed\""), "{flushes}");
}

#[test]
fn a_flag_nobody_evaluates_is_ready_to_remove_and_one_in_use_is_not() {
    let dir = FlagDir::new();
    let data = dir.path("data").to_string_lossy().into_owned();
    let server = start(&dir, &data);
    assert_eq!(evaluate(&server, "checkout", json!({"targetingKey": "u", "country": "de"})), 200);
    assert_eq!(evaluate(&server, "banner", json!({"targetingKey": "u"})), 200);
    let url = format!("{}/admin/v1/environments/production/ready-to-remove?days=7", server.admin);
    let removable = send("GET", &url, Some(TOKEN), None, &[]);
    assert_eq!(removable.status, 200);
    assert_eq!(
        removable.body["flags"],
        json!([{"flag": "forgotten", "reason": "notEvaluated", "variant": null, "lastEvaluated": null, "ramp": null}]),
        "{}",
        removable.body
    );
    assert_eq!(server.metric("rampart_flags_ready_to_remove{environment=\"production\",reason=\"notEvaluated\"}"), 1.0);
}

#[test]
fn the_rust_sdk_reports_its_in_process_evaluations() {
    let dir = FlagDir::new();
    let data = dir.path("data").to_string_lossy().into_owned();
    let server = start(&dir, &data);
    // The client's tasks run on this runtime's threads while the test waits outside it.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client = runtime.block_on(async {
        let client = rampart_sdk::Client::builder()
            .endpoint(format!("http://{}", server.sync))
            .sdk_key(SDK_KEY)
            .usage_interval(Some(std::time::Duration::from_millis(100)))
            .build()
            .expect("client");
        client.wait_ready(std::time::Duration::from_secs(20)).await.expect("ready");
        client
    });
    let germany = rampart_sdk::Context::new().with("targetingKey", "u").with("country", "de");
    let elsewhere = rampart_sdk::Context::new().with("targetingKey", "u").with("country", "us");
    // Evaluations on two threads: each keeps its own counters.
    let (a, b) = (client.clone(), client.clone());
    let one = std::thread::spawn(move || (0..25).filter(|_| a.bool_value("checkout", &germany, false)).count());
    let two =
        std::thread::spawn(move || (0..15).filter(|_| b.bool_details("checkout", &elsewhere, true).value).count());
    assert_eq!(one.join().expect("thread"), 25);
    assert_eq!(two.join().expect("thread"), 0);
    assert!(!client.bool_value("no-such-flag", &rampart_sdk::Context::new(), false), "not counted: unknown");
    rampart_tests::eventually(std::time::Duration::from_secs(20), || {
        let sdk = usage(&server, "checkout")["last24h"]["sdk"].clone();
        if sdk == json!({"on": 25, "off": 15}) { Ok(()) } else { Err(format!("sdk usage so far: {sdk}")) }
    });
    assert!(usage(&server, "checkout")["last24h"].get("evaluated").is_none(), "counted apart from the server's own");
    drop(client);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
}
