//! A relay that has not yet heard from its upstream cannot tell a valid
//! key from an invalid one. It must say "not yet" (503 with `Retry-After`,
//! gRPC `UNAVAILABLE`), never "this key is invalid" (401): SDKs take a 401
//! as permanent and stop, so a relay started before its upstream would
//! have turned every client away for good.

use rampart_tests::{DEADLINE, FlagDir, Rampart, eventually, free_port, post};

const RELAY: &str = "not-ready-relay-token-0001";
const SDK_KEY: &str = "not-ready-sdk-key-000001";
const REPORTER_KEY: &str = "not-ready-reporter-key-01";

fn evaluate(relay: &Rampart, key: &str) -> rampart_tests::Reply {
    post(&format!("{}/ofrep/v1/evaluate/flags/color", relay.http), "{}", &[("authorization", &format!("Bearer {key}"))])
}

#[test]
fn a_relay_without_its_keys_yet_answers_retry_not_invalid_key() {
    let sync_addr = format!("127.0.0.1:{}", free_port());
    let cache = tempfile::tempdir().expect("cache");
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let upstream = format!("http://{sync_addr}");
    // Nothing listens at the upstream's address yet.
    let relay = Rampart::start_relay(
        &["--upstream", &upstream, "--environment", "production", "--cache-dir", &cache_dir],
        &[("RAMPART_RELAY_TOKEN", RELAY)],
    );
    let waiting = evaluate(&relay, SDK_KEY);
    assert_eq!(waiting.status, 503, "{}", waiting.text);
    assert!(waiting.text.contains("retry"), "{}", waiting.text);
    let report = post(
        &format!("{}/v1/outcomes", relay.http),
        r#"{"outcomes":[{"flag":"color","variant":"a","ok":1}]}"#,
        &[("authorization", &format!("Bearer {REPORTER_KEY}"))],
    );
    assert_eq!((report.status, report.body["error"]["code"].as_str()), (503, Some("NOT_READY")), "{}", report.text);

    // The upstream starts: the same keys work, an invalid one is now refused for good.
    let dir = FlagDir::new();
    dir.write(
        "production.json",
        r#"{"flags": {"color": {"state": "ENABLED", "variants": {"a": "blue"}, "defaultVariant": "a"}}}"#,
    );
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [production.json]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n    \
             reporterKeys: [{{value: {REPORTER_KEY}}}]\nadminTokens:\n  \
             - {{name: edge, role: relay, environments: [production], value: {RELAY}}}\n"
        ),
    );
    let _primary = Rampart::start(&["--config", &config, "--sync-addr", &sync_addr]);
    eventually(DEADLINE, || {
        let reply = evaluate(&relay, SDK_KEY);
        if reply.status == 200 && reply.body["value"] == "blue" { Ok(()) } else { Err(reply.text) }
    });
    assert_eq!(evaluate(&relay, "not-a-key-of-anything-01").status, 401);
}
