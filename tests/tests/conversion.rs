//! Conversion guards against the real binary: OpenFeature `track` from the
//! Rust SDK (`rampart.v1` `Track`) and over `POST /ofrep/v1/track`, counted
//! per exposed targeting key, once per key and event a step.
//!
//! Exposures come from the SDK's per-context outcome reports (a reporter
//! key), as a service reports the requests it served.

use std::time::Duration;

use rampart_sdk::{Client, Context, Outcome};
use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};

const SDK_KEY: &str = "public-sdk-key-00001";
const REPORTER_KEY: &str = "server-reporter-key-001";
const FLAGS: &str = "flags:\n  checkout-flow:\n    state: ENABLED\n    variants: { \"one-page\": \"one-page\", \"classic\": \"classic\" }\n    defaultVariant: \"classic\"\n";
const USERS: u32 = 600;

const ADMIN: &str = "conversion-admin-token-001";
const RELAY: &str = "conversion-relay-token-001";

fn start() -> (Rampart, FlagDir) {
    start_with("")
}

/// `extra`: more `rampart.yaml` lines (admin and relay tokens).
fn start_with(extra: &str) -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write(
        "ramp.yaml",
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: one-page}\nspec:\n  flag: checkout-flow\n  \
         treatment: one-page\n  interval: 1s\n  steps:\n    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n  \
         guard:\n    minSamples: 2000\n  conversion: {event: checkout, maxDrop: 10%, minUsers: 100}\n",
    );
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    \
             sdkKeys: [{{value: {SDK_KEY}}}]\n    reporterKeys: [{{value: {REPORTER_KEY}}}]\n\
             limits:\n  outcomeSourceWindowSeconds: 1\n  outcomesPerClientPerMinute: 100000\n{extra}"
        ),
    );
    let local: &[&str] = if extra.contains("adminTokens") { &[] } else { &["--admin-insecure-local"] };
    (Rampart::start(&[&["--config", config.as_str()], local].concat()), dir)
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/production/one-page", server.admin), Some(ADMIN), None, &[]).body
}

/// The conversion guard's verdict in a status.
fn conversion(status: &Value) -> Value {
    status["evidence"]["guards"]
        .as_array()
        .and_then(|guards| guards.iter().find(|g| g["guard"] == "conversion"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Serves `USERS` users with the Rust SDK, reporting one outcome per user
/// (the exposures); `converts(variant, user)` says who then converts, and
/// those are tracked through `track`. Returns the users per variant.
fn serve(
    server: &Rampart,
    runtime: &tokio::runtime::Runtime,
    track: impl Fn(&Client, &Context, &str, u32),
) -> (Client, Vec<String>, Vec<String>) {
    runtime.block_on(async {
        let client = Client::builder()
            .endpoint(format!("http://{}", server.sync))
            .sdk_key(SDK_KEY)
            .reporter_key(REPORTER_KEY)
            .outcome_interval(Duration::from_millis(200))
            .build()
            .expect("client");
        client.wait_ready(Duration::from_secs(30)).await.expect("ready");
        let (mut treatment, mut control) = (Vec::new(), Vec::new());
        for user in 0..USERS {
            let key = format!("user-{user}");
            let context = Context::with_targeting_key(key.as_str());
            let details = client.string_details("checkout-flow", &context, "classic");
            client.record_context_outcome("checkout-flow", &details, &context, Outcome::Ok);
            let variant = details.variant.clone().unwrap_or_default();
            track(&client, &context, &variant, user);
            if variant == "one-page" { treatment.push(key) } else { control.push(key) }
        }
        (client, treatment, control)
    })
}

/// Waits until the step runs and has closed a bucket: events of the
/// second it started in belong to no step, like its outcomes.
fn running(server: &Rampart) {
    eventually(Duration::from_secs(30), || {
        let status = status(server);
        let started = status["state"] != "Pending" && status["evidence"]["buckets"].as_u64() >= Some(2);
        if started { Ok(()) } else { Err(status.to_string()) }
    });
}

#[test]
fn a_treatment_that_converts_less_is_rolled_back_from_rust_sdk_track_events() {
    let (server, _dir) = start();
    running(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // Control users convert 2 in 5, treatment users 1 in 10; one treatment
    // user's checkout runs in a loop (counted once).
    let (client, treatment, control) = serve(&server, &runtime, |client, context, variant, user| {
        let converts = if variant == "one-page" { user % 10 == 0 } else { user % 5 < 2 };
        if converts {
            let repeats = if user == 0 { 50 } else { 1 };
            for _ in 0..repeats {
                client.track("checkout", context);
            }
        }
        // Another event name: not this guard's.
        client.track("page-view", context);
    });
    assert!(treatment.len() > 200 && control.len() > 200, "{} {}", treatment.len(), control.len());
    let done = eventually(Duration::from_secs(120), || {
        let status = status(&server);
        if status["state"] == "RolledBack" { Ok(status) } else { Err(format!("{status}")) }
    });
    assert_eq!(done["percent"], 0.0, "{done}");
    assert!(done.to_string().contains("ConversionDrop"), "the conversion guard rolled it back: {done}");
    // About 2/5 of the control and 1/10 of the treatment, each once (the
    // SDK sends a key's event once per flush; the server counts it once).
    let accepted = server.metric("rampart_track_events_total{environment=\"production\",result=\"accepted\"}");
    assert!((100.0..=200.0).contains(&accepted), "{accepted}");
    assert!(
        server.metric("rampart_track_events_total{environment=\"production\",result=\"ignored\"}") >= 200.0,
        "page views are not a guard's event"
    );
    client.close();
}

#[test]
fn ofrep_track_counts_each_exposed_key_once_and_nothing_else() {
    let (server, _dir) = start();
    running(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (client, treatment, control) = serve(&server, &runtime, |_, _, _, _| {});
    let track = |key: &str, events: &Value| {
        post(
            &format!("{}/ofrep/v1/track", server.http),
            &json!({"events": events}).to_string(),
            &[("authorization", &format!("Bearer {key}"))],
        )
    };
    // Both arms convert one user in four; every converting user's event is
    // sent three times (an app retrying), and keys nobody served convert
    // too (a forger guessing user ids).
    let converting: Vec<&String> = treatment.iter().step_by(4).chain(control.iter().step_by(4)).collect();
    let mut events: Vec<Value> = converting
        .iter()
        .flat_map(|key| {
            let event = json!({"trackingEventName": "checkout", "context": {"targetingKey": key}, "trackingEventDetails": {"value": 30}});
            [event.clone(), event.clone(), event]
        })
        .collect();
    events.extend(
        (0..300).map(|n| json!({"trackingEventName": "checkout", "context": {"targetingKey": format!("ghost-{n}")}})),
    );
    events.push(json!({"trackingEventName": "checkout", "context": {}}));
    let mut accepted = 0;
    for chunk in events.chunks(500) {
        // A backend tracking for its users: a reporter key (one client
        // address with the public SDK key may send only a few a minute).
        let reply = track(REPORTER_KEY, &Value::Array(chunk.to_vec()));
        assert_eq!(reply.status, 202, "{}", reply.text);
        accepted += reply.body["accepted"].as_u64().unwrap_or(0);
    }
    assert_eq!(accepted as usize, events.len() - 1, "all but the event without a targeting key");
    let expected = (treatment.iter().step_by(4).count() as u64, control.iter().step_by(4).count() as u64);
    let counted = eventually(Duration::from_secs(90), || {
        let status = status(&server);
        let guard = conversion(&status);
        let counts = (guard["treatment"]["hits"].as_u64(), guard["control"]["hits"].as_u64());
        let exposed = (guard["treatment"]["samples"].as_u64(), guard["control"]["samples"].as_u64());
        if counts == (Some(expected.0), Some(expected.1))
            && exposed == (Some(treatment.len() as u64), Some(control.len() as u64))
        {
            Ok(status)
        } else {
            Err(format!(
                "expected {expected:?} conversions of {} and {} users: {status}",
                treatment.len(),
                control.len()
            ))
        }
    });
    assert_eq!(conversion(&counted)["verdict"], "pass", "{counted}");
    assert_ne!(counted["state"], "RolledBack");

    // Hostile requests: refused whole, nothing counted.
    let too_many: Vec<Value> = (0..1001)
        .map(|n| json!({"trackingEventName": "checkout", "context": {"targetingKey": format!("user-{n}")}}))
        .collect();
    let reply = track(SDK_KEY, &Value::Array(too_many));
    assert_eq!((reply.status, reply.body["error"]["code"].as_str()), (400, Some("BAD_REQUEST")), "{}", reply.text);
    assert_eq!(track(SDK_KEY, &json!([{"trackingEventName": "", "context": {}}])).status, 400);
    assert_eq!(server.metric("rampart_limit_rejections_total{limit=\"track_events\"}"), 1.0);
    let garbage = post(&format!("{}/ofrep/v1/track", server.http), "{\"events\": 7", &[("x-api-key", SDK_KEY)]);
    assert_eq!(garbage.status, 400, "{}", garbage.text);
    assert_eq!(track("not-a-key-at-all-000", &json!([])).status, 401);
    // One client with the public SDK key cannot bring a step's conversions:
    // 5 % of minSamples a minute at most.
    let flood: Vec<Value> = control
        .iter()
        .take(200)
        .map(|key| json!({"trackingEventName": "checkout", "context": {"targetingKey": key}}))
        .collect();
    let flooded = track(SDK_KEY, &Value::Array(flood));
    assert_eq!(
        (flooded.status, flooded.body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{}",
        flooded.text
    );
    let later = status(&server);
    assert_eq!(conversion(&later)["treatment"]["hits"].as_u64(), Some(expected.0), "{later}");
    assert_eq!(conversion(&later)["control"]["hits"].as_u64(), Some(expected.1), "{later}");
    client.close();
}

/// A relay runs no ramps: it passes `track` events on to its upstream,
/// which counts them as the relay's (one source), and acknowledges only
/// once the upstream stored them.
#[test]
fn track_events_sent_to_a_relay_are_counted_upstream() {
    let (primary, _dir) = start_with(&format!(
        "adminTokens:\n  - {{name: ops, role: admin, value: {ADMIN}}}\n  \
         - {{name: edge-eu, role: relay, environments: [production], value: {RELAY}}}\n"
    ));
    running(&primary);
    let cache = tempfile::tempdir().expect("cache dir");
    let upstream = format!("http://{}", primary.sync);
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let relay = Rampart::start_relay(
        &["--upstream", &upstream, "--environment", "production", "--cache-dir", &cache_dir],
        &[("RAMPART_RELAY_TOKEN", RELAY)],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (client, treatment, control) = serve(&primary, &runtime, |_, _, _, _| {});
    // The relay knows the SDK key once it follows the environment.
    let track = |events: &Value| {
        post(
            &format!("{}/ofrep/v1/track", relay.http),
            &json!({"events": events}).to_string(),
            &[("authorization", &format!("Bearer {SDK_KEY}"))],
        )
    };
    // Fewer than the relay's default 60 a client may send a minute.
    let converting: Vec<&String> = treatment.iter().step_by(12).chain(control.iter().step_by(12)).collect();
    let events: Vec<Value> = converting
        .iter()
        .map(|key| json!({"trackingEventName": "checkout", "context": {"targetingKey": key}}))
        .collect();
    let reply = eventually(Duration::from_secs(30), || {
        let reply = track(&Value::Array(events.clone()));
        if reply.status == 202 { Ok(reply) } else { Err(format!("{} {}", reply.status, reply.text)) }
    });
    assert_eq!(reply.body["accepted"].as_u64(), Some(events.len() as u64), "{}", reply.text);
    let expected = (treatment.iter().step_by(12).count() as u64, control.iter().step_by(12).count() as u64);
    eventually(Duration::from_secs(90), || {
        let status = status(&primary);
        let guard = conversion(&status);
        let counts = (guard["treatment"]["hits"].as_u64(), guard["control"]["hits"].as_u64());
        if counts == (Some(expected.0), Some(expected.1)) { Ok(()) } else { Err(format!("{expected:?}: {status}")) }
    });
    client.close();
}
