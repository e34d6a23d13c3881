//! Connections and streams as an attacker holds them: sockets that never
//! speak, bodies that trickle in, stream clients that never read, oversized
//! gRPC contexts. None of them may take memory or descriptors from the
//! clients that behave.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rampart_proto::flagd::evaluation::v2::ResolveBooleanRequest;
use rampart_proto::flagd::evaluation::v2::service_client::ServiceClient;
use rampart_proto::flagd::sync::v1::SyncFlagsRequest;
use rampart_proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{SubscribeRequest, sync_event};
use rampart_tests::{DEADLINE, FlagDir, Rampart, eventually, get, post};
use serde_json::json;

const MIB: u64 = 1 << 20;

fn start(flags: &str, limits: &str) -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.json", flags);
    let config = dir.write("rampart.yaml", &format!("environments:\n  default:\n    flags: [flags.json]\n{limits}"));
    let server = Rampart::start(&["--config", &config]);
    (server, dir)
}

const SMALL: &str = r#"{"flags": {"on": {"state": "ENABLED", "variants": {"yes": true}, "defaultVariant": "yes"}}}"#;

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// A request within `limit`, or a panic naming what took too long.
fn answers_within(limit: Duration, what: &str, request: impl FnOnce() -> u16) {
    let started = Instant::now();
    let status = request();
    assert_eq!(status, 200, "{what}");
    assert!(started.elapsed() < limit, "{what} took {:?}", started.elapsed());
}

#[test]
fn idle_connections_neither_exhaust_descriptors_nor_starve_other_listeners() {
    let (server, _dir) = start(SMALL, "limits:\n  connectionsPerListener: 50\n  handshakeTimeoutSeconds: 1\n");
    // Far more silent sockets than the cap, on both gRPC listeners.
    let idle: Vec<TcpStream> = (0..150)
        .flat_map(|_| [TcpStream::connect(&server.grpc), TcpStream::connect(&server.sync)])
        .map(|stream| stream.expect("connect"))
        .collect();
    answers_within(Duration::from_secs(5), "OFREP", || {
        post(&format!("{}/ofrep/v1/evaluate/flags/on", server.http), "{}", &[]).status
    });
    answers_within(Duration::from_secs(5), "health", || get(&format!("{}/healthz", server.admin)).status);
    // The silent ones are closed once the handshake time is over (the
    // server's own HTTP/2 settings may arrive first).
    let mut idle = idle;
    let mut first = idle.remove(0);
    first.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match first.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => assert!(started.elapsed() < DEADLINE, "an idle gRPC connection stayed open"),
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock || error.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("an idle gRPC connection stayed open for {:?}", started.elapsed())
            }
            Err(_) => break,
        }
    }
    eventually(DEADLINE, || {
        let handshakes = server.metric(r#"rampart_limit_rejections_total{limit="handshake"}"#);
        let full = server.metric(r#"rampart_limit_rejections_total{limit="connections"}"#);
        if handshakes >= 50.0 && full >= 1.0 { Ok(()) } else { Err(format!("handshake {handshakes}, full {full}")) }
    });
    // And gRPC answers again.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let reached = async {
            loop {
                if let Ok(mut client) = ServiceClient::connect(format!("http://{}", server.grpc)).await {
                    let request = ResolveBooleanRequest { flag_key: "on".into(), context: None };
                    if let Ok(answer) = client.resolve_boolean(request).await {
                        return answer.into_inner().value;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        assert_eq!(tokio::time::timeout(DEADLINE, reached).await.expect("gRPC answers again"), Some(true));
    });
}

/// The descriptor budget is shared: one listener (streams) takes what the
/// others do not need, the others keep their guaranteed share, and a
/// connection beyond the budget is refused at once (counted), not left in
/// the kernel's backlog.
#[test]
fn one_listener_takes_most_of_the_descriptor_budget_while_another_still_answers() {
    let dir = FlagDir::new();
    dir.write("flags.json", SMALL);
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  default:\n    flags: [flags.json]\nlimits:\n  handshakeTimeoutSeconds: 60\n",
    );
    // 400 descriptors: 128 reserved, 272 for four listeners: 34 guaranteed
    // each, 136 shared. The sync listener may hold 34 + 136 = 170.
    let server = Rampart::start_with_open_files(400, &["--config", &config]);
    let capacity =
        |listener: &str| server.metric(&format!("rampart_listener_connection_capacity{{listener=\"{listener}\"}}"));
    assert_eq!(capacity("sync"), 170.0);
    assert_eq!(capacity("admin"), 170.0);
    let warned = server.logs().iter().any(|l| l["listener"] == "sync" && l["level"] == "WARN" && l["capacity"] == 170);
    assert!(warned, "start-up says the listener holds less than the default 10,000 and why");
    // Silent stream clients on the sync listener, far more than it may hold.
    let idle: Vec<TcpStream> = (0..250).filter_map(|_| TcpStream::connect(&server.sync).ok()).collect();
    assert!(idle.len() >= 170);
    eventually(DEADLINE, || {
        let held = server.metric(r#"rampart_listener_connections{listener="sync"}"#);
        let refused = server.metric(r#"rampart_listener_connections_refused_total{listener="sync"}"#);
        if held == 170.0 && refused >= 1.0 { Ok(()) } else { Err(format!("held {held}, refused {refused}")) }
    });
    // The others still answer, from their guaranteed share.
    answers_within(Duration::from_secs(5), "health", || get(&format!("{}/healthz", server.admin)).status);
    answers_within(Duration::from_secs(5), "OFREP", || {
        post(&format!("{}/ofrep/v1/evaluate/flags/on", server.http), "{}", &[]).status
    });
    // A refused connection is closed at once, not left to time out.
    let mut extra = TcpStream::connect(&server.sync).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let started = Instant::now();
    let closed = matches!(extra.read(&mut [0u8; 64]), Ok(0) | Err(_));
    assert!(closed && started.elapsed() < Duration::from_secs(5), "refused at once ({:?})", started.elapsed());
    drop(idle);
}

#[test]
fn slow_request_bodies_time_out_with_a_json_answer() {
    let (server, _dir) = start(
        SMALL,
        "limits:\n  bodyReadTimeoutSeconds: 1\nadminTokens: [{name: ops, role: admin, value: slow-body-admin-token-01}]\n",
    );
    for (listener, head) in [
        (&server.http, "POST /ofrep/v1/evaluate/flags/on HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"),
        (
            &server.admin,
            "PUT /admin/v1/environments/default/flags/new HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow-body-admin-token-01\r\n",
        ),
    ] {
        let mut stream = TcpStream::connect(host(listener)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let started = Instant::now();
        stream.write_all(format!("{head}Content-Length: 100\r\n\r\n{{").as_bytes()).expect("write");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("}}") && !String::from_utf8_lossy(&answer).contains("\"}") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 1.0 s"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    }
    assert!(server.metric(r#"rampart_limit_rejections_total{limit="body_read_timeout"}"#) >= 2.0);
}

#[test]
fn grpc_contexts_have_the_field_limit_of_ofrep() {
    let (server, _dir) = start(SMALL, "");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut client = ServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect");
        let context = |fields: usize| prost_types::Struct {
            fields: (0..fields)
                .map(|i| {
                    (format!("f{i}"), prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(1.0)) })
                })
                .collect(),
        };
        let refused = client
            .resolve_boolean(ResolveBooleanRequest { flag_key: "on".into(), context: Some(context(1001)) })
            .await
            .expect_err("over the limit");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        let accepted = client
            .resolve_boolean(ResolveBooleanRequest { flag_key: "on".into(), context: Some(context(1000)) })
            .await
            .expect("at the limit");
        assert_eq!(accepted.into_inner().value, Some(true));
    });
}

/// A configuration of about 1 MB whose `marker` flag says which round wrote it.
fn big_configuration(round: usize) -> String {
    json!({"flags": {
        "marker": {"state": "ENABLED", "variants": {"round": round}, "defaultVariant": "round"},
        "payload": {"state": "ENABLED", "variants": {"blob": format!("{round}{}", "x".repeat(1 << 20))}, "defaultVariant": "blob"},
    }})
    .to_string()
}

#[test]
fn stream_clients_that_never_read_cost_bounded_memory() {
    let (server, dir) = start(&big_configuration(0), "");
    let marker = |server: &Rampart| {
        post(&format!("{}/ofrep/v1/evaluate/flags/marker", server.http), "{}", &[]).body["value"].as_u64()
    };
    assert_eq!(marker(&server), Some(0));
    let baseline = server.rss();

    // 150 SSE clients and 40 gRPC subscribers (20 of flagd's sync, 20 of
    // Rampart's) that never read.
    let sse: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut stream = TcpStream::connect(host(&server.http)).expect("connect");
            stream.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
            stream
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let subscribers = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..20 {
            let mut client = FlagSyncServiceClient::connect(format!("http://{}", server.sync)).await.expect("connect");
            let stream = client
                .sync_flags(SyncFlagsRequest { provider_id: "p".into(), selector: String::new() })
                .await
                .expect("subscribe")
                .into_inner();
            held.push(Box::new((client, stream)) as Box<dyn std::any::Any>);
            let mut client = FlagSyncClient::connect(format!("http://{}", server.sync)).await.expect("connect");
            let stream = client.subscribe(SubscribeRequest::default()).await.expect("subscribe").into_inner();
            held.push(Box::new((client, stream)));
        }
        held
    });

    // Twenty changes of the whole megabyte while they hold on.
    let mut slowest = Duration::ZERO;
    for round in 1..=20 {
        dir.write("flags.json", &big_configuration(round));
        eventually(DEADLINE, || {
            let started = Instant::now();
            let seen = marker(&server);
            slowest = slowest.max(started.elapsed());
            if seen == Some(round as u64) { Ok(()) } else { Err(format!("round {round}: {seen:?}")) }
        });
    }
    let growth = server.rss().saturating_sub(baseline);
    eprintln!("resident memory: {} MiB before the clients, {} MiB more after", baseline / MIB, growth / MIB);
    // Before: a copy of each configuration per client and change (about
    // 7 MB per flagd subscriber, 0.6 MB per SSE client: 370 MB here). Now:
    // the one message each gRPC stream is sending (about 2.5 MB measured,
    // a debug build), a slice per SSE client, the bounded history.
    assert!(growth < 180 * MIB, "memory grew by {} MiB", growth / MIB);
    assert!(slowest < Duration::from_secs(1), "an evaluation took {slowest:?} meanwhile");
    // A client that reads gets the latest configuration.
    let reader = rampart_tests::SseReader::connect(&format!("{}/v1/stream", server.http), &[]);
    let snapshot = reader.next();
    assert_eq!(snapshot.event, "snapshot");
    assert!(snapshot.data.contains("\"round\":20"), "{}", &snapshot.data[..200.min(snapshot.data.len())]);
    // So does a gRPC subscriber whose window is a small part of the
    // snapshot: written as the window opens, and whole.
    runtime.block_on(async {
        let channel = small_window_channel(&server.sync).await;
        let mut client = FlagSyncClient::new(channel).max_decoding_message_size(8 << 20);
        let mut stream = client.subscribe(SubscribeRequest::default()).await.expect("subscribe").into_inner();
        let first = stream.message().await.expect("message").expect("event").event;
        let Some(sync_event::Event::Snapshot(snapshot)) = first else { panic!("not a snapshot: {first:?}") };
        let flags: serde_json::Value = serde_json::from_str(&snapshot.flags_json).expect("whole JSON");
        assert_eq!(flags["flags"]["marker"]["variants"]["round"], 20, "{}", &snapshot.flags_json[..200]);
        assert!(snapshot.flags_json.len() > 1 << 20, "{} bytes", snapshot.flags_json.len());
    });
    drop(sse);
    drop(subscribers);
}

/// A gRPC channel whose client grants 64 KiB of window: a large message
/// is written to it in parts, as the client reads.
async fn small_window_channel(address: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .initial_stream_window_size(64 << 10)
        .initial_connection_window_size(64 << 10)
        .connect()
        .await
        .expect("connect")
}

#[test]
fn a_subscriber_that_stops_reading_does_not_hold_the_shutdown() {
    let (server, _dir) = start(&big_configuration(0), "");
    // A subscription whose megabyte snapshot is more than the client's
    // window, then a runtime never polled again: the server waits for
    // window that never comes, and never hears an answer to its goodbye.
    let frozen = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    frozen.block_on(async {
        let channel = small_window_channel(&server.sync).await;
        let mut client = FlagSyncClient::new(channel);
        let stream = client.subscribe(SubscribeRequest::default()).await.expect("subscribe").into_inner();
        std::mem::forget((client, stream));
    });
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "stopped after the drain time: {:?}", started.elapsed());
    drop(frozen);
}

/// Sends `request` and reads until the server closes the connection.
fn exchange(listener: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(host(listener)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    // The server may refuse before it has read everything: a reset while
    // writing still leaves its answer to read.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and JSON body of a raw answer, checking its framing.
fn refusal(answer: &str) -> (u16, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    let head = head.to_ascii_lowercase();
    assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head} / {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

#[test]
fn refusals_of_the_http_library_carry_the_listeners_json_error() {
    let (server, _dir) = start(SMALL, "");
    let many_headers: String = (0..120).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let long_uri = "a".repeat(200 * 1024);
    for (listener, is_admin) in [(&server.http, false), (&server.admin, true)] {
        let cases = [
            (format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), 431, "too large"),
            (format!("GET /{long_uri} HTTP/1.1\r\nHost: x\r\n\r\n"), 431, "too large"),
            ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "not valid HTTP"),
        ];
        for (request, expected, words) in cases {
            let (status, body) = refusal(&exchange(listener, request.as_bytes()));
            assert_eq!(status, expected, "{body}");
            let message = if is_admin { &body["error"]["message"] } else { &body["errorDetails"] };
            assert!(message.as_str().is_some_and(|m| m.contains(words)), "{body}");
            if is_admin {
                assert!(body["error"]["code"].is_string(), "{body}");
            } else {
                assert_eq!(body["errorCode"], "GENERAL");
            }
        }
        // Headers that never finish: the head timeout (5 s) answers 408.
        let started = Instant::now();
        let (status, body) = refusal(&exchange(listener, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"));
        assert_eq!(status, 408, "{body}");
        assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
        // The listener still answers normally, keep-alive included.
        let answer = exchange(listener, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 40"), "{answer}");
    }
    for limit in ["request_head", "malformed_request", "head_timeout"] {
        assert!(server.metric(&format!(r#"rampart_limit_rejections_total{{limit="{limit}"}}"#)) >= 2.0, "{limit}");
    }
}

#[test]
fn a_grpc_client_that_stops_reading_does_not_hold_the_shutdown() {
    let (server, _dir) = start(SMALL, "");
    // A client makes a call, then its runtime is never polled again: its
    // connection stays open and never answers the server's goodbye.
    let frozen = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    frozen.block_on(async {
        let mut client = ServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect");
        let request = tonic::Request::new(ResolveBooleanRequest { flag_key: "on".into(), context: None });
        client.resolve_boolean(request).await.expect("resolve");
        std::mem::forget(client);
    });
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "stopped after the drain time: {:?}", started.elapsed());
    drop(frozen);
}

#[test]
fn an_oversized_subscribe_request_is_out_of_range_and_the_listener_still_serves() {
    let (server, _dir) = start(SMALL, "");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut client = FlagSyncClient::connect(format!("http://{}", server.sync)).await.expect("connect");
        // A message over `maxBodyBytes` (1 MB by default).
        let request = SubscribeRequest { epoch: "e".repeat(1 << 20), ..Default::default() };
        let refused = client.subscribe(request).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
        let mut stream = client.subscribe(SubscribeRequest::default()).await.expect("subscribe").into_inner();
        let first = stream.message().await.expect("message").expect("event").event;
        assert!(matches!(first, Some(sync_event::Event::Snapshot(_))), "{first:?}");
    });
}
