//! Server-sent events: `/v1/stream` (snapshot, deltas, resume with
//! Last-Event-ID) and OFREP's change notification (`eventStreams` in bulk
//! answers, `refetchEvaluation` events).

use rampart_tests::{FlagDir, Rampart, SseReader, post, send};
use serde_json::{Value, json};

const TOKEN: &str = "sse-test-admin-token-0001";

fn start() -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    let path = dir
        .write("flags.json", r#"{"flags": {"a": {"state": "ENABLED", "variants": {"v": 1}, "defaultVariant": "v"}}}"#);
    (Rampart::start_with_env(&["--flags", &path], &[("RAMPART_ADMIN_TOKEN", TOKEN)]), dir)
}

fn put(server: &Rampart, key: &str, value: i64) {
    let url = format!("{}/admin/v1/environments/default/flags/{key}", server.admin);
    let body = json!({"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"});
    let status = send("PUT", &url, Some(TOKEN), Some(&body), &[]).status;
    assert!(status == 200 || status == 201, "{status}");
}

#[test]
fn stream_sends_snapshot_then_deltas_and_resumes() {
    let (server, _dir) = start();
    let url = format!("{}/v1/stream", server.http);
    let stream = SseReader::connect(&url, &[]);
    assert_eq!(stream.status, 200);
    let snapshot = stream.next();
    assert_eq!(snapshot.event, "snapshot");
    let data: Value = serde_json::from_str(&snapshot.data).unwrap();
    assert_eq!(data["document"]["flags"]["a"]["variants"]["v"], 1);
    let first_id = snapshot.id.clone().expect("id");

    put(&server, "b", 2);
    let delta = stream.next();
    assert_eq!(delta.event, "delta");
    let data: Value = serde_json::from_str(&delta.data).unwrap();
    assert_eq!(data["upserts"]["flags"].as_object().unwrap().keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(data["removed"], json!([]));
    put(&server, "c", 3);
    assert_eq!(stream.next().event, "delta");

    // Reconnecting from the first event: only the two deltas, no snapshot.
    let resumed = SseReader::connect(&url, &[("last-event-id", &first_id)]);
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let event = resumed.next();
            assert_eq!(event.event, "delta");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            data["upserts"]["flags"].as_object().unwrap().keys().next().unwrap().clone()
        })
        .collect();
    assert_eq!(keys, ["b", "c"]);
    // An unknown position gets a snapshot.
    let fresh = SseReader::connect(&url, &[("last-event-id", "other-epoch:1")]);
    assert_eq!(fresh.next().event, "snapshot");
}

#[test]
fn ofrep_bulk_advertises_an_event_stream_that_says_refetch() {
    let (server, _dir) = start();
    let bulk = post(&format!("{}/ofrep/v1/evaluate/flags", server.http), "{}", &[]);
    let stream = &bulk.body["eventStreams"][0];
    assert_eq!(stream["type"], "sse");
    let uri = stream["endpoint"]["requestUri"].as_str().unwrap();
    let events = SseReader::connect(&format!("{}{uri}", server.http), &[]);
    assert_eq!(events.status, 200);
    put(&server, "x", 5);
    let event = events.next();
    assert_eq!(event.event, "message");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["type"], "refetchEvaluation");
    assert!(data["lastModified"].as_u64().unwrap() > 1_700_000_000);
    // A refetch sees the change.
    let again = post(&format!("{}/ofrep/v1/evaluate/flags/x", server.http), "{}", &[]);
    assert_eq!(again.body["value"], 5);
}

#[test]
fn streams_need_an_sdk_key_when_keys_are_configured() {
    let dir = FlagDir::new();
    dir.write("flags.json", r#"{"flags": {}}"#);
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  production:\n    flags: [flags.json]\n    sdkKeys: [{value: stream-key-1}]\n",
    );
    let server = Rampart::start(&["--config", &config]);
    assert_eq!(SseReader::connect(&format!("{}/v1/stream", server.http), &[]).status, 401);
    let with_header =
        SseReader::connect(&format!("{}/v1/stream", server.http), &[("authorization", "Bearer stream-key-1")]);
    assert_eq!((with_header.status, with_header.next().event.as_str()), (200, "snapshot"));
    let with_query = SseReader::connect(&format!("{}/ofrep/v1/events?key=stream-key-1", server.http), &[]);
    assert_eq!(with_query.status, 200);
}
