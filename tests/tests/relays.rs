//! Relays with real processes: a primary, a relay of it and a relay of
//! the relay. Changes reach clients at the bottom; keys are checked by the
//! relays from the digests the upstream sends; a relay restarted while its
//! upstream is away serves from its cache; an upstream restarted (a new
//! epoch) makes its relays take a new snapshot.

use rampart_tests::{DEADLINE, FlagDir, Rampart, SseReader, eventually, free_port, get, post, send};
use serde_json::{Value, json};

const ADMIN: &str = "relay-test-admin-token-0001";
const RELAY: &str = "relay-test-relay-token-0001";
const PRODUCTION_KEY: &str = "production-sdk-key-0001";
const STAGING_KEY: &str = "staging-sdk-key-00000001";
const REPORTER_KEY: &str = "production-reporter-key-01";

fn flags(color: &str) -> String {
    format!(
        r#"{{"flags": {{"color": {{"state": "ENABLED", "variants": {{"a": "{color}"}}, "defaultVariant": "a"}}}}}}"#
    )
}

/// Writes the primary's configuration: two environments, an admin token
/// and a relay token that may follow production only.
fn primary_config(dir: &FlagDir, color: &str) -> String {
    dir.write("production.json", &flags(color));
    dir.write("staging.json", &flags("grey"));
    dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [production.json]\n    sdkKeys: [{{value: {PRODUCTION_KEY}}}]\n  \
             staging:\n    flags: [staging.json]\n    sdkKeys: [{{value: {STAGING_KEY}}}]\nadminTokens:\n  \
             - {{name: ops, role: admin, value: {ADMIN}}}\n  \
             - {{name: edge-eu, role: relay, environments: [production], value: {RELAY}}}\n"
        ),
    )
}

fn start_relay(upstream: &Rampart, cache: &std::path::Path, extra: &[&str]) -> Rampart {
    let url = format!("http://{}", upstream.sync);
    let cache = cache.to_string_lossy().into_owned();
    let mut args = vec!["--upstream", url.as_str(), "--environment", "production", "--cache-dir", cache.as_str()];
    args.extend_from_slice(extra);
    Rampart::start_relay(&args, &[("RAMPART_RELAY_TOKEN", RELAY)])
}

/// The `color` a server answers with the production key (or the status).
fn color(server: &Rampart, key: &str) -> Result<String, String> {
    let reply = post(
        &format!("{}/ofrep/v1/evaluate/flags/color", server.http),
        "{}",
        &[("authorization", &format!("Bearer {key}"))],
    );
    match reply.body["value"].as_str() {
        Some(value) if reply.status == 200 => Ok(value.to_owned()),
        _ => Err(format!("{} {}", reply.status, reply.body)),
    }
}

fn wait_color(server: &Rampart, expected: &str) {
    eventually(DEADLINE, || match color(server, PRODUCTION_KEY) {
        Ok(value) if value == expected => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

fn put_color(primary: &Rampart, key: &str, color: &str) -> u16 {
    let body = json!({"state": "ENABLED", "variants": {"a": color}, "defaultVariant": "a"});
    send(
        "PUT",
        &format!("{}/admin/v1/environments/production/flags/{key}", primary.admin),
        Some(ADMIN),
        Some(&body),
        &[],
    )
    .status
}

fn readyz(server: &Rampart) -> (u16, Value) {
    let reply = get(&format!("{}/readyz", server.admin));
    (reply.status, reply.body)
}

#[test]
fn changes_reach_clients_through_two_relay_levels_and_keys_are_checked_at_each() {
    let dir = FlagDir::new();
    let primary = Rampart::start(&["--config", &primary_config(&dir, "blue")]);
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, &cache.path().join("a"), &[]);
    let bottom = start_relay(&relay, &cache.path().join("b"), &[]);
    wait_color(&bottom, "blue");
    // Stream clients at the bottom: SSE and the Rust SDK (rampart.v1 sync).
    let sse = SseReader::connect(
        &format!("{}/v1/stream", bottom.http),
        &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
    );
    assert_eq!(sse.status, 200);
    assert_eq!(sse.next().event, "snapshot");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let sdk = runtime.block_on(async {
        let client = rampart_sdk::Client::builder()
            .endpoint(format!("http://{}", bottom.sync))
            .sdk_key(PRODUCTION_KEY)
            .build()
            .expect("sdk");
        client.wait_ready(DEADLINE).await.expect("the SDK syncs from the bottom relay");
        client
    });
    let sdk_banner = || sdk.string_value("banner", &rampart_sdk::Context::default(), "none");
    assert_eq!(sdk_banner(), "none");

    // An API-owned flag written upstream is served at the bottom.
    assert_eq!(put_color(&primary, "banner", "red"), 201);
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/banner", bottom.http),
            "{}",
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.body["value"] == "red" { Ok(()) } else { Err(format!("{} {}", reply.status, reply.body)) }
    });
    let delta = sse.next();
    assert_eq!(delta.event, "delta", "{delta:?}");
    assert!(delta.data.contains("banner") && delta.data.contains("red"), "{}", delta.data);
    eventually(DEADLINE, || if sdk_banner() == "red" { Ok(()) } else { Err(sdk_banner()) });
    // A deletion upstream removes it at the bottom.
    let deleted = send(
        "DELETE",
        &format!("{}/admin/v1/environments/production/flags/banner", primary.admin),
        Some(ADMIN),
        None,
        &[],
    );
    assert!(deleted.status < 300, "{} {}", deleted.status, deleted.body);
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/banner", bottom.http),
            "{}",
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.status == 404 { Ok(()) } else { Err(format!("{} {}", reply.status, reply.body)) }
    });
    // A file change upstream too.
    dir.write("production.json", &flags("green"));
    wait_color(&bottom, "green");
    wait_color(&relay, "green");
    // Bulk evaluation with its ETag, and flagd's gRPC evaluation, at the bottom.
    let bulk_url = format!("{}/ofrep/v1/evaluate/flags", bottom.http);
    let auth = format!("Bearer {PRODUCTION_KEY}");
    let bulk = post(&bulk_url, "{}", &[("authorization", &auth)]);
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    let etag = bulk.etag.clone().expect("an ETag");
    assert_eq!(post(&bulk_url, "{}", &[("authorization", &auth), ("if-none-match", &etag)]).status, 304);
    let grpc_color = runtime.block_on(async {
        use rampart_proto::flagd::evaluation::v2::ResolveStringRequest;
        use rampart_proto::flagd::evaluation::v2::service_client::ServiceClient;
        let mut client = ServiceClient::connect(format!("http://{}", bottom.grpc)).await.expect("connect");
        let mut request = tonic::Request::new(ResolveStringRequest { flag_key: "color".into(), context: None });
        request.metadata_mut().insert("authorization", auth.parse().expect("ascii"));
        client.resolve_string(request).await.expect("resolve").into_inner().value
    });
    assert_eq!(grpc_color.as_deref(), Some("green"));

    // Keys: another environment's key, a made-up key, the relay token and
    // no key are refused by both relays, as the primary would.
    for server in [&relay, &bottom] {
        for (key, status) in [(STAGING_KEY, 401), ("made-up-key-000000001", 401), (RELAY, 403)] {
            let answer = color(server, key).expect_err("refused");
            assert!(answer.starts_with(&status.to_string()), "{key}: {answer}");
        }
        let reply = post(&format!("{}/ofrep/v1/evaluate/flags/color", server.http), "{}", &[]);
        assert_eq!(reply.status, 401, "{}", reply.body);
        let (status, ready) = readyz(server);
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["environments"]["production"]["upstream"]["state"], "live", "{ready}");
        // The relay's admin API is read-only and says where writes go.
        let refused = send(
            "PUT",
            &format!("{}/admin/v1/environments/production/flags/x", server.admin),
            Some(ADMIN),
            Some(&json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"})),
            &[],
        );
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "RELAY_READ_ONLY");
    }
    assert_eq!(primary.metric(r#"rampart_relay_subscriptions_total{environment="production",relay="edge-eu"}"#), 1.0);

    // The relay token cannot write on the primary, nor follow staging.
    let body = json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"});
    let write = send(
        "PUT",
        &format!("{}/admin/v1/environments/production/flags/y", primary.admin),
        Some(RELAY),
        Some(&body),
        &[],
    );
    assert_eq!(write.status, 403, "{}", write.body);
    let staging = Rampart::start_relay(
        &[
            "--upstream",
            &format!("http://{}", primary.sync),
            "--environment",
            "staging",
            "--cache-dir",
            &cache.path().join("c").to_string_lossy(),
        ],
        &[("RAMPART_RELAY_TOKEN", RELAY)],
    );
    eventually(DEADLINE, || {
        staging
            .find_log(|entry| {
                entry["message"] == "the upstream refuses this relay"
                    && entry["reason"].as_str().is_some_and(|r| r.contains("may not follow the environment 'staging'"))
            })
            .ok_or_else(|| "no refusal logged".to_owned())
    });
    let (status, ready) = readyz(&staging);
    assert_eq!(status, 503, "{ready}");
}

#[test]
fn a_relay_serves_from_its_cache_while_the_upstream_is_away_and_resyncs_with_a_new_epoch() {
    let dir = FlagDir::new();
    let config = primary_config(&dir, "blue");
    let data = tempfile::tempdir().expect("data");
    let sync_addr = format!("127.0.0.1:{}", free_port());
    let primary_args = ["--config", config.as_str(), "--sync-addr", &sync_addr];
    let data_dir = data.path().to_string_lossy().into_owned();
    let start_primary = || {
        let mut args = primary_args.to_vec();
        args.extend(["--data-dir", &data_dir]);
        Rampart::start_in(&args, &[])
    };
    let primary = start_primary();
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, cache.path(), &[]);
    wait_color(&relay, "blue");

    // The upstream goes away: the relay keeps serving and says it is stale.
    primary.kill();
    eventually(DEADLINE, || {
        let (status, ready) = readyz(&relay);
        let state = &ready["environments"]["production"]["upstream"];
        if status == 200
            && ready["status"] == "stale"
            && state["state"] == "stale"
            && state["stalenessSeconds"].is_number()
        {
            Ok(())
        } else {
            Err(format!("{status} {ready}"))
        }
    });
    assert_eq!(color(&relay, PRODUCTION_KEY), Ok("blue".to_owned()));
    assert!(relay.metric(r#"rampart_relay_upstream_connected{environment="production"}"#) == 0.0);

    // Killed and started again without its upstream: it serves its cache,
    // keys included.
    let upstream = format!("http://{sync_addr}");
    relay.kill();
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let args = ["--upstream", upstream.as_str(), "--environment", "production", "--cache-dir", cache_dir.as_str()];
    let relay = Rampart::start_relay(&args, &[("RAMPART_RELAY_TOKEN", RELAY)]);
    assert_eq!(color(&relay, PRODUCTION_KEY), Ok("blue".to_owned()));
    assert!(color(&relay, STAGING_KEY).is_err());
    let (status, ready) = readyz(&relay);
    assert_eq!((status, ready["status"].as_str()), (200, Some("stale")), "{ready}");

    // The upstream returns with other files (a new process, a new epoch):
    // the relay takes its snapshot and is live again.
    dir.write("production.json", &flags("violet"));
    let primary = start_primary();
    wait_color(&relay, "violet");
    eventually(DEADLINE, || {
        let (_, ready) = readyz(&relay);
        if ready["status"] == "ready" { Ok(()) } else { Err(ready.to_string()) }
    });
    // And follows the new process's changes.
    assert_eq!(put_color(&primary, "banner", "teal"), 201);
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/banner", relay.http),
            "{}",
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.body["value"] == "teal" { Ok(()) } else { Err(format!("{} {}", reply.status, reply.body)) }
    });
}

/// A primary's configuration for production with the flag `checkout`
/// ramped by `checkout-v2` in one `step`, guarded by `guard` (YAML lines).
fn ramped_config(dir: &FlagDir, step: &str, guard: &str) -> String {
    dir.write(
        "production.json",
        r#"{"flags": {"checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#,
    );
    dir.write(
        "ramp.yaml",
        &format!(
            "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: checkout-v2\nspec:\n  flag: checkout\n  \
             treatment: \"on\"\n  interval: 1s\n  steps:\n    - {step}\n  guard:\n    {guard}\n"
        ),
    );
    dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [production.json]\n    ramps: [ramp.yaml]\n    \
             sdkKeys: [{{value: {PRODUCTION_KEY}}}]\n    reporterKeys: [{{value: {REPORTER_KEY}}}]\n\
             adminTokens:\n  - {{name: ops, role: admin, value: {ADMIN}}}\n  \
             - {{name: edge-eu, role: relay, environments: [production], value: {RELAY}}}\n\
             limits:\n  outcomeSourceWindowSeconds: 1\n"
        ),
    )
}

#[test]
fn outcomes_posted_to_the_bottom_relay_drive_the_upstream_ramp() {
    let dir = FlagDir::new();
    let config = ramped_config(
        &dir,
        "{ percent: 5, hold: 1h }",
        "minSamples: 40\n    absolute: { maxErrorRate: 50%, maxIncrease: 10% }",
    );
    let primary = Rampart::start(&["--config", &config]);
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, &cache.path().join("a"), &[]);
    let bottom = start_relay(&relay, &cache.path().join("b"), &[]);
    let ramp = || {
        send("GET", &format!("{}/admin/v1/ramps/production/checkout-v2", primary.admin), Some(ADMIN), None, &[]).body
    };
    eventually(DEADLINE, || if ramp()["percent"] == 5.0 { Ok(()) } else { Err(ramp().to_string()) });

    // The bottom relay takes reports with the reporter key, as the primary would;
    // 80 % errors in the treatment, none in the control, at the 5 % split.
    let batch = json!({"outcomes": [
        {"flag": "checkout", "variant": "on", "ok": 1, "error": 4},
        {"flag": "checkout", "variant": "off", "ok": 95, "error": 0},
    ]})
    .to_string();
    let rolled = eventually(std::time::Duration::from_secs(90), || {
        let reply = post(
            &format!("{}/v1/outcomes", bottom.http),
            &batch,
            &[("authorization", &format!("Bearer {REPORTER_KEY}")), ("content-type", "application/json")],
        );
        // Until the bottom relay has the upstream's keys it cannot take the
        // report: try again (the assertion is the deadline).
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.body));
        }
        let status = ramp();
        if status["state"] == "RolledBack" { Ok(status) } else { Err(status.to_string()) }
    });
    assert_eq!(rolled["percent"], 0.0, "{rolled}");
    // The rollback reaches the bottom: every context gets the control.
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/checkout", bottom.http),
            r#"{"context": {"targetingKey": "user-1"}}"#,
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.body["value"] == false { Ok(()) } else { Err(reply.body.to_string()) }
    });
    assert!(bottom.metric("rampart_relay_outcomes_forwarded_total") > 0.0);
    assert!(relay.metric("rampart_relay_outcomes_forwarded_total") > 0.0);
    // A reporter with another environment's key is refused at the relay.
    let refused = post(
        &format!("{}/v1/outcomes", bottom.http),
        &batch,
        &[("authorization", "Bearer made-up-key-000000001"), ("content-type", "application/json")],
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
}

#[test]
fn outcomes_accepted_while_the_upstream_is_away_survive_a_relay_crash_and_are_counted_once() {
    let dir = FlagDir::new();
    let config = ramped_config(&dir, "{ percent: 50, hold: 1h }", "minSamples: 1000000");
    let data = tempfile::tempdir().expect("data");
    let data_dir = data.path().to_string_lossy().into_owned();
    let sync_addr = format!("127.0.0.1:{}", free_port());
    let start_primary =
        || Rampart::start_in(&["--config", &config, "--sync-addr", &sync_addr, "--data-dir", &data_dir], &[]);
    let primary = start_primary();
    let cache = tempfile::tempdir().expect("cache");
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let upstream = format!("http://{sync_addr}");
    let relay_args =
        ["--upstream", upstream.as_str(), "--environment", "production", "--cache-dir", cache_dir.as_str()];
    let relay = Rampart::start_relay(&relay_args, &[("RAMPART_RELAY_TOKEN", RELAY)]);
    wait_color_of(&relay, "checkout");
    primary.kill();

    // Accepted (200) while the upstream is away, then the relay crashes.
    let batch = json!({"outcomes": [
        {"flag": "checkout", "variant": "on", "ok": 7, "error": 3},
        {"flag": "checkout", "variant": "off", "ok": 10, "error": 0},
    ]})
    .to_string();
    for _ in 0..4 {
        let reply = post(
            &format!("{}/v1/outcomes", relay.http),
            &batch,
            &[("authorization", &format!("Bearer {REPORTER_KEY}")), ("content-type", "application/json")],
        );
        assert_eq!((reply.status, reply.body["accepted"].as_u64()), (200, Some(2)), "{}", reply.body);
    }
    // The fifth over gRPC, as the Rust SDK reports.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let reply = runtime.block_on(async {
        use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
        use rampart_proto::rampart::v1::{Outcome, OutcomeBatch};
        let outcome = |variant: &str, ok, error| Outcome {
            flag: "checkout".into(),
            variant: variant.into(),
            ok,
            error,
            targeting_key: String::new(),
            at_second: 0,
            duration_ms: None,
        };
        let mut client = FlagSyncClient::connect(format!("http://{}", relay.sync)).await.expect("connect");
        let mut request =
            tonic::Request::new(OutcomeBatch { outcomes: vec![outcome("on", 7, 3), outcome("off", 10, 0)] });
        request.metadata_mut().insert("authorization", format!("Bearer {REPORTER_KEY}").parse().expect("ascii"));
        client.report_outcomes(request).await.expect("accepted").into_inner()
    });
    assert_eq!(reply.accepted, 2);
    eventually(DEADLINE, || {
        let buffered = relay.metric("rampart_relay_outcome_buffer_bytes");
        if buffered > 0.0 { Ok(()) } else { Err("nothing buffered".to_owned()) }
    });
    relay.kill();

    // Both come back: every acknowledged outcome reaches the ramp, once.
    let primary = start_primary();
    let relay = Rampart::start_relay(&relay_args, &[("RAMPART_RELAY_TOKEN", RELAY)]);
    // What the primary counted for the ramp: (ok, error) over both variants.
    let counts = || {
        let sample = |result: &str| {
            primary.metric(&format!(r#"rampart_outcomes_total{{environment="production",result="{result}"}}"#))
        };
        (sample("ok"), sample("error"), sample("ignored"))
    };
    eventually(DEADLINE, || {
        let buffered = relay.metric("rampart_relay_outcome_buffer_bytes");
        let forwarded = relay.metric("rampart_relay_outcomes_forwarded_total");
        if buffered == 0.0 && forwarded > 0.0 { Ok(()) } else { Err(format!("{buffered} bytes still buffered")) }
    });
    // Everything was acknowledged, so nothing is left to send again: the
    // counts are final — every acknowledged outcome, once.
    assert_eq!(counts(), (85.0, 15.0, 0.0));
    assert!(relay.metric("rampart_relay_outcomes_forwarded_total") >= 2.0);
}

/// Waits until the relay serves `flag` (any answer but FLAG_NOT_FOUND).
fn wait_color_of(server: &Rampart, flag: &str) {
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/{flag}", server.http),
            "{}",
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.status == 200 { Ok(()) } else { Err(format!("{} {}", reply.status, reply.body)) }
    });
}

#[test]
fn an_environment_larger_than_grpcs_default_message_limit_reaches_relays_and_sdks() {
    // About 6 MB of flags: one snapshot message above gRPC's default 4 MiB.
    let padding = "x".repeat(100);
    let flags: serde_json::Map<String, Value> = (0..50_000)
        .map(|i| {
            let definition =
                json!({"state": "ENABLED", "variants": {"a": format!("{padding}{i}")}, "defaultVariant": "a"});
            (format!("flag-{i:05}"), definition)
        })
        .collect();
    let document = json!({"flags": flags}).to_string();
    assert!(document.len() > 5 << 20, "{} bytes", document.len());
    let dir = FlagDir::new();
    let config = primary_config(&dir, "blue");
    dir.write("production.json", &document);
    let primary = Rampart::start(&["--config", &config]);
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, cache.path(), &[]);
    let last = format!("{padding}49999");
    eventually(DEADLINE, || {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/flag-49999", relay.http),
            "{}",
            &[("authorization", &format!("Bearer {PRODUCTION_KEY}"))],
        );
        if reply.body["value"] == last.as_str() { Ok(()) } else { Err(format!("{} {}", reply.status, reply.body)) }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = rampart_sdk::Client::builder()
            .endpoint(format!("http://{}", relay.sync))
            .sdk_key(PRODUCTION_KEY)
            .build()
            .expect("sdk");
        client.wait_ready(DEADLINE).await.expect("the SDK takes the large snapshot");
        assert_eq!(client.string_value("flag-49999", &rampart_sdk::Context::default(), "none"), last);
    });
}

#[test]
fn a_relay_restarted_next_to_its_upstream_resumes_and_is_ready_without_waiting_for_a_heartbeat() {
    let dir = FlagDir::new();
    // Heartbeats far apart: readiness must not wait for one.
    let primary = Rampart::start(&["--config", &primary_config(&dir, "blue"), "--heartbeat-seconds", "600"]);
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, cache.path(), &[]);
    wait_color(&relay, "blue");
    relay.kill();
    let relay = start_relay(&primary, cache.path(), &[]);
    eventually(DEADLINE, || {
        let (status, ready) = readyz(&relay);
        if status == 200 && ready["status"] == "ready" { Ok(()) } else { Err(format!("{status} {ready}")) }
    });
    assert_eq!(color(&relay, PRODUCTION_KEY), Ok("blue".to_owned()));
    // Both runs subscribed (the second from its cached position).
    assert_eq!(primary.metric(r#"rampart_relay_subscriptions_total{environment="production",relay="edge-eu"}"#), 2.0);
}

/// A relay never drops what it acknowledged: two concurrent reports of
/// 30,000 + 30,000 are summed into one second, more than the upstream lets
/// one relay add to a young step at once; the relay sends them in smaller
/// parts as the upstream's bound grows, and every outcome is counted once.
#[test]
fn a_relay_sends_what_the_upstream_takes_only_in_part_in_smaller_parts_and_loses_nothing() {
    let dir = FlagDir::new();
    let config = ramped_config(&dir, "{ percent: 50, hold: 1h }", "minSamples: 1000");
    let primary = Rampart::start(&["--config", &config]);
    let cache = tempfile::tempdir().expect("cache");
    let relay = start_relay(&primary, &cache.path().join("a"), &[]);
    let ramp = || {
        send("GET", &format!("{}/admin/v1/ramps/production/checkout-v2", primary.admin), Some(ADMIN), None, &[]).body
    };
    eventually(DEADLINE, || if ramp()["percent"] == 50.0 { Ok(()) } else { Err(ramp().to_string()) });
    let batch = json!({"outcomes": [
        {"flag": "checkout", "variant": "on", "ok": 30000, "error": 0},
        {"flag": "checkout", "variant": "off", "ok": 30000, "error": 0},
    ]})
    .to_string();
    let post_once = |batch: String, url: String| {
        std::thread::spawn(move || {
            eventually(DEADLINE, || {
                let reply = post(
                    &url,
                    &batch,
                    &[("authorization", &format!("Bearer {REPORTER_KEY}")), ("content-type", "application/json")],
                );
                if reply.status == 200 { Ok(()) } else { Err(format!("{}: {}", reply.status, reply.body)) }
            })
        })
    };
    let url = format!("{}/v1/outcomes", relay.http);
    let posts = [post_once(batch.clone(), url.clone()), post_once(batch, url)];
    for post in posts {
        post.join().expect("reported");
    }
    let counted = || primary.metric("rampart_outcomes_total{environment=\"production\",result=\"ok\"}");
    eventually(std::time::Duration::from_secs(90), || {
        let ok = counted();
        if ok >= 120_000.0 { Ok(()) } else { Err(format!("{ok} of 120000 counted")) }
    });
    assert_eq!(counted(), 120_000.0, "each acknowledged outcome exactly once");
    assert!(primary.metric("rampart_outcomes_refused_total{reason=\"source_volume\"}") >= 1.0, "the bound was met");
    assert_eq!(relay.metric("rampart_relay_outcomes_quarantined_total"), 0.0);
}
