//! The Rust SDK against the real server: local evaluation equal to OFREP
//! on the engine's fixtures, changes pushed to the SDK, restarts (stale,
//! reconnect, catch up), bootstrap with no server, resuming with deltas
//! only, and a slow consumer that does not delay anyone else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{SubscribeRequest, sync_event};
use rampart_sdk::{Client, Context, Status};
use rampart_tests::{DEADLINE, FlagDir, Rampart, Reply, free_port, workspace};
use serde_json::{Value, json};

const TOKEN: &str = "sdk-test-admin-token-0001";

/// The harness's blocking HTTP helpers, callable from async tests (they run
/// their own runtime, which must not be dropped on an async worker).
fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    tokio::task::block_in_place(|| rampart_tests::post(url, body, headers))
}

fn send(method: &str, url: &str, token: Option<&str>, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
    tokio::task::block_in_place(|| rampart_tests::send(method, url, token, body, headers))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

async fn eventually<T>(mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = std::time::Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(error) if start.elapsed() > DEADLINE => panic!("not true after {DEADLINE:?}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn client(server: &Rampart) -> Client {
    Client::builder()
        .endpoint(format!("http://{}", server.sync))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .expect("client")
}

/// The engine's flag fixture without the flags that a strict load rejects.
fn fixture_flags() -> (Value, Vec<Value>) {
    let path = workspace().join("sdk-rust/engine/tests/fixtures/flags.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let mut document = fixture["document"].clone();
    for broken in fixture["strictErrors"].as_array().expect("list") {
        document["flags"].as_object_mut().expect("flags").remove(broken.as_str().expect("key"));
    }
    let cases = fixture["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c.get("type").is_none() && document["flags"].get(c["flag"].as_str().expect("flag")).is_some())
        .cloned()
        .collect();
    (document, cases)
}

#[test]
fn sdk_evaluation_equals_ofrep_on_the_fixtures() {
    let (document, cases) = fixture_flags();
    let dir = FlagDir::new();
    let path = dir.write("flags.json", &document.to_string());
    let server = Rampart::start(&["--flags", &path]);
    runtime().block_on(async {
        let client = client(&server);
        client.wait_ready(DEADLINE).await.expect("ready");
        let flags = client.flags();
        let mut compared = 0;
        for case in &cases {
            // Time-dependent rules would differ between two clocks; the
            // fixture's time flag pins its own `now` and is skipped here.
            if case.get("now").is_some() {
                continue;
            }
            let key = case["flag"].as_str().expect("flag");
            let context = case.get("context").cloned().unwrap_or(json!({}));
            let local_context = Context::try_from(context.clone()).expect("object");
            let local = flags.evaluate(key, &local_context, 0);
            let remote = post(
                &format!("{}/ofrep/v1/evaluate/flags/{key}", server.http),
                &json!({"context": context}).to_string(),
                &[],
            )
            .body;
            assert_eq!(local.value, remote.get("value"), "{key} {context}");
            assert_eq!(local.reason.as_str(), remote["reason"].as_str().unwrap_or("ERROR"), "{key} {context}");
            assert_eq!(local.variant, remote.get("variant").and_then(Value::as_str), "{key} {context}");
            assert_eq!(local.error_code.map(|c| c.as_str()), remote.get("errorCode").and_then(Value::as_str), "{key}");
            compared += 1;
        }
        // All the fixture's cases but time-dependent ones and those of flags
        // a strict load refuses.
        assert!(compared >= 29, "only {compared} cases compared");
    });
}

#[test]
fn admin_changes_reach_the_sdk() {
    let dir = FlagDir::new();
    let path =
        dir.write("flags.yaml", &std::fs::read_to_string(workspace().join("examples/flags.yaml")).expect("examples"));
    let server = Rampart::start_with_env(&["--flags", &path], &[("RAMPART_ADMIN_TOKEN", TOKEN)]);
    runtime().block_on(async {
        let client = client(&server);
        client.wait_ready(DEADLINE).await.expect("ready");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = seen.clone();
        client.on_change(move |keys| sink.lock().expect("lock").extend(keys.iter().cloned()));
        let context = Context::with_targeting_key("u1");
        assert!(client.bool_value("new-checkout", &context, false));

        let url = format!("{}/admin/v1/environments/default/flags/new-checkout", server.admin);
        assert_eq!(send("PATCH", &url, Some(TOKEN), Some(&json!({"state": "DISABLED"})), &[]).status, 200);
        eventually(|| {
            if client.bool_value("new-checkout", &context, false) { Err("still enabled".to_owned()) } else { Ok(()) }
        })
        .await;
        assert_eq!(client.bool_details("new-checkout", &context, false).reason, rampart_sdk::Reason::Disabled);

        let created = format!("{}/admin/v1/environments/default/flags/sdk-new", server.admin);
        let body = json!({"state": "ENABLED", "variants": {"a": 41, "b": 42}, "defaultVariant": "b"});
        assert_eq!(send("PUT", &created, Some(TOKEN), Some(&body), &[]).status, 201);
        eventually(|| match client.int_value("sdk-new", &context, 0) {
            42 => Ok(()),
            other => Err(format!("{other}")),
        })
        .await;
        let seen = seen.lock().expect("lock").clone();
        assert!(seen.contains(&"new-checkout".to_owned()) && seen.contains(&"sdk-new".to_owned()), "{seen:?}");
        // Only the changed flags were reported, not the whole set.
        assert!(!seen.contains(&"theme".to_owned()), "{seen:?}");
    });
}

#[test]
fn restart_keeps_last_values_reports_stale_and_catches_up() {
    let dir = FlagDir::new();
    let path = dir.write(
        "flags.json",
        r#"{"flags": {"greeting": {"state": "ENABLED", "variants": {"v": "before"}, "defaultVariant": "v"}}}"#,
    );
    let data = dir.path("data").to_string_lossy().into_owned();
    let sync = format!("127.0.0.1:{}", free_port());
    let args = ["--flags", &path, "--data-dir", &data, "--sync-addr", &sync];
    let server = Rampart::start_in(&args, &[]);
    runtime().block_on(async {
        let client = Client::builder()
            .endpoint(format!("http://{sync}"))
            .backoff(Duration::from_millis(50), Duration::from_millis(300))
            .build()
            .expect("client");
        client.wait_ready(DEADLINE).await.expect("ready");
        let context = Context::new();
        assert_eq!(client.string_value("greeting", &context, "x"), "before");

        server.kill();
        eventually(|| if client.status() == Status::Stale { Ok(()) } else { Err(format!("{:?}", client.status())) })
            .await;
        // The last known values keep serving while the server is away.
        assert_eq!(client.string_value("greeting", &context, "x"), "before");

        dir.write(
            "flags.json",
            r#"{"flags": {"greeting": {"state": "ENABLED", "variants": {"v": "after"}, "defaultVariant": "v"}}}"#,
        );
        let _server = Rampart::start_in(&args, &[]);
        client.wait_ready(DEADLINE).await.expect("ready again");
        eventually(|| match client.string_value("greeting", &context, "x").as_str() {
            "after" => Ok(()),
            other => Err(other.to_owned()),
        })
        .await;
    });
}

#[test]
fn bootstrap_serves_with_no_server_at_all() {
    let dir = FlagDir::new();
    let path = dir.write(
        "bootstrap.yaml",
        "flags:\n  mode:\n    state: ENABLED\n    variants: {safe: safe, fast: fast}\n    defaultVariant: safe\n",
    );
    runtime().block_on(async {
        let client = Client::builder()
            .endpoint(format!("http://127.0.0.1:{}", free_port()))
            .bootstrap_file(dir.path("bootstrap.yaml"))
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .build()
            .expect("client");
        assert_eq!(client.string_value("mode", &Context::new(), "x"), "safe");
        assert!(client.wait_ready(Duration::from_millis(300)).await.is_err());
        assert_eq!(client.status(), Status::Stale);
        assert_eq!(client.string_value("mode", &Context::new(), "x"), "safe");
    });
    drop(path);
}

#[test]
fn a_reconnecting_client_receives_only_what_it_missed() {
    let dir = FlagDir::new();
    let path =
        dir.write("flags.yaml", &std::fs::read_to_string(workspace().join("examples/flags.yaml")).expect("examples"));
    let server = Rampart::start_with_env(&["--flags", &path], &[("RAMPART_ADMIN_TOKEN", TOKEN)]);
    runtime().block_on(async {
        let endpoint = format!("http://{}", server.sync);
        let mut first = FlagSyncClient::connect(endpoint.clone())
            .await
            .expect("connect")
            .subscribe(SubscribeRequest::default())
            .await
            .expect("subscribe")
            .into_inner();
        let (epoch, version) = match first.message().await.expect("message").expect("event").event {
            Some(sync_event::Event::Snapshot(snapshot)) => (snapshot.epoch, snapshot.version),
            other => panic!("expected a snapshot, got {other:?}"),
        };
        drop(first);

        for (index, key) in ["one", "two", "three"].iter().enumerate() {
            let url = format!("{}/admin/v1/environments/default/flags/{key}", server.admin);
            let body = json!({"state": "ENABLED", "variants": {"v": index}, "defaultVariant": "v"});
            assert_eq!(send("PUT", &url, Some(TOKEN), Some(&body), &[]).status, 201);
        }

        let mut resumed = FlagSyncClient::connect(endpoint)
            .await
            .expect("connect")
            .subscribe(SubscribeRequest { epoch: epoch.clone(), version })
            .await
            .expect("subscribe")
            .into_inner();
        let mut expected_from = version;
        for key in ["one", "two", "three"] {
            match resumed.message().await.expect("message").expect("event").event {
                Some(sync_event::Event::Delta(delta)) => {
                    assert_eq!(
                        (delta.epoch.as_str(), delta.from_version, delta.version),
                        (epoch.as_str(), expected_from, expected_from + 1)
                    );
                    let upserts: Value = serde_json::from_str(&delta.upserts_json).expect("json");
                    assert_eq!(upserts["flags"].as_object().expect("flags").keys().collect::<Vec<_>>(), [key]);
                    expected_from = delta.version;
                }
                other => panic!("expected a delta for {key}, got {other:?}"),
            }
        }

        // A position from another epoch (a restarted server) gets a snapshot.
        let mut stranger = FlagSyncClient::connect(format!("http://{}", server.sync))
            .await
            .expect("connect")
            .subscribe(SubscribeRequest { epoch: "another-epoch".into(), version })
            .await
            .expect("subscribe")
            .into_inner();
        assert!(matches!(
            stranger.message().await.expect("message").expect("event").event,
            Some(sync_event::Event::Snapshot(_))
        ));
    });
}

#[test]
fn a_client_that_never_reads_does_not_delay_the_others() {
    let dir = FlagDir::new();
    let path = dir.write(
        "flags.json",
        r#"{"flags": {"counter": {"state": "ENABLED", "variants": {"v": 0}, "defaultVariant": "v"}}}"#,
    );
    let server = Rampart::start_with_env(&["--flags", &path], &[("RAMPART_ADMIN_TOKEN", TOKEN)]);
    runtime().block_on(async {
        // A subscriber that never reads its stream.
        let _stuck = FlagSyncClient::connect(format!("http://{}", server.sync)).await.expect("connect")
            .subscribe(SubscribeRequest::default()).await.expect("subscribe").into_inner();
        let client = client(&server);
        client.wait_ready(DEADLINE).await.expect("ready");
        // Far more changes than a subscriber may have buffered, each large.
        let big = "x".repeat(20_000);
        for round in 1..=150 {
            let url = format!("{}/admin/v1/environments/default/flags/api-flag", server.admin);
            let body = json!({"state": "ENABLED", "variants": {"v": round, "w": 0}, "defaultVariant": "v", "metadata": {"padding": big}});
            assert_eq!(send("PUT", &url, Some(TOKEN), Some(&body), &[]).status, if round == 1 { 201 } else { 200 });
        }
        let started = std::time::Instant::now();
        eventually(|| match client.int_value("api-flag", &Context::new(), 0) {
            150 => Ok(()),
            other => Err(format!("{other}")),
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(5), "the healthy client lagged {:?}", started.elapsed());
    });
}

#[test]
fn sdk_keys_select_the_environment_over_grpc() {
    let dir = FlagDir::new();
    dir.write(
        "prod.json",
        r#"{"flags": {"where": {"state": "ENABLED", "variants": {"p": "production"}, "defaultVariant": "p"}}}"#,
    );
    dir.write(
        "stage.json",
        r#"{"flags": {"where": {"state": "ENABLED", "variants": {"s": "staging"}, "defaultVariant": "s"}}}"#,
    );
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  production:\n    flags: [prod.json]\n    sdkKeys: [{value: grpc-prod-key}]\n  staging:\n    flags: [stage.json]\n    sdkKeys: [{value: grpc-stage-key}]\n",
    );
    let server = Rampart::start(&["--config", &config]);
    runtime().block_on(async {
        let endpoint = format!("http://{}", server.sync);
        let refused = FlagSyncClient::connect(endpoint.clone())
            .await
            .expect("connect")
            .subscribe(SubscribeRequest::default())
            .await;
        assert_eq!(refused.expect_err("no key").code(), tonic::Code::Unauthenticated);

        let staging = Client::builder().endpoint(endpoint.clone()).sdk_key("grpc-stage-key").build().expect("client");
        staging.wait_ready(DEADLINE).await.expect("ready");
        assert_eq!(staging.string_value("where", &Context::new(), "x"), "staging");

        let wrong = Client::builder()
            .endpoint(endpoint)
            .sdk_key("not-a-key-at-all")
            .backoff(Duration::from_millis(20), Duration::from_millis(50))
            .build()
            .expect("client");
        eventually(|| match wrong.status() {
            Status::Error(message) => Ok(message),
            other => Err(format!("{other:?}")),
        })
        .await;
    });
}

#[test]
fn streams_send_heartbeats_and_say_reconnect_on_shutdown() {
    let dir = FlagDir::new();
    let path = dir.write("flags.json", r#"{"flags": {}}"#);
    let server = Rampart::start(&["--flags", &path, "--heartbeat-seconds", "1"]);
    runtime().block_on(async {
        let mut stream = FlagSyncClient::connect(format!("http://{}", server.sync))
            .await
            .expect("connect")
            .subscribe(SubscribeRequest::default())
            .await
            .expect("subscribe")
            .into_inner();
        assert!(matches!(
            stream.message().await.expect("message").expect("event").event,
            Some(sync_event::Event::Snapshot(_))
        ));
        assert!(matches!(
            stream.message().await.expect("message").expect("event").event,
            Some(sync_event::Event::Heartbeat(_))
        ));
        let pid = server.pid();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        loop {
            match stream.message().await {
                Ok(Some(event)) => match event.event {
                    Some(sync_event::Event::Reconnect(reconnect)) => {
                        assert!(reconnect.reason.contains("shutting down"), "{}", reconnect.reason);
                        break;
                    }
                    Some(sync_event::Event::Heartbeat(_)) => continue,
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("the stream ended without a reconnect: {other:?}"),
            }
        }
    });
}
