//! Outcome reports are untrusted: SDK keys ship inside client apps, and a
//! ramp acts on what it is told. Against the real binary:
//!
//! - by default an SDK key cannot feed a ramp at all (403), so the forged
//!   report that used to roll a production ramp back moves nothing;
//! - a reporter key's single request cannot decide a young step;
//! - where an environment opts in to SDK-key reports, one client (one
//!   address) cannot move a decision either way: a flood of treatment
//!   successes does not hide a regression driven by honest users, a flood
//!   of errors does not roll back a healthy ramp, and honest users (many,
//!   one outcome each) still complete it or roll it back.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};

const SDK_KEY: &str = "public-sdk-key-00001";
const REPORTER_KEY: &str = "server-reporter-key-001";
const FLAGS: &str = "flags:\n  search-engine:\n    state: ENABLED\n    variants: { \"vector\": \"vector\", \"classic\": \"classic\" }\n    defaultVariant: \"classic\"\n";

fn ramp(steps: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{name: search-v2}}\nspec:\n  flag: search-engine\n  \
         treatment: vector\n  interval: 1s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    \
         absolute: {{maxErrorRate: 10%, maxIncrease: 10%}}\n"
    )
}

const HOLDING: &str = "    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n";
const QUICK: &str = "    - {percent: 50, hold: 4s}\n    - {percent: 100, hold: 2s}\n";

fn start(environment: &str, steps: &str) -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write("ramp.yaml", &ramp(steps));
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    \
             sdkKeys: [{{value: {SDK_KEY}}}]\n{environment}"
        ),
    );
    (Rampart::start(&["--config", &config, "--admin-insecure-local"]), dir)
}

fn report(server: &Rampart, key: &str, outcomes: &Value) -> rampart_tests::Reply {
    post(&format!("{}/v1/outcomes", server.http), &json!({"outcomes": outcomes}).to_string(), &[("x-api-key", key)])
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/production/search-v2", server.admin), None, None, &[]).body
}

/// Waits until the ramp runs and has counted a closed second.
fn running(server: &Rampart) {
    eventually(Duration::from_secs(30), || {
        let status = status(server);
        let started = status["state"] != "Pending" && status["evidence"]["buckets"].as_u64() >= Some(2);
        if started { Ok(()) } else { Err(status.to_string()) }
    });
}

/// A few ticks go by: the ramp has decided what it would on what it holds.
fn ticks_pass(server: &Rampart) -> Value {
    let buckets = |status: &Value| status["evidence"]["buckets"].as_u64().unwrap_or(0);
    let first = buckets(&status(server));
    eventually(Duration::from_secs(30), || {
        let status = status(server);
        if buckets(&status) >= first + 3 { Ok(status) } else { Err(status.to_string()) }
    })
}

#[test]
fn the_forged_report_of_a_public_sdk_key_moves_no_ramp() {
    let (server, _dir) = start("", HOLDING);
    running(&server);
    // The report that used to roll a production ramp back (AbsoluteCeiling).
    let forged = json!([
        {"flag": "search-engine", "variant": "vector", "error": 50000},
        {"flag": "search-engine", "variant": "classic", "ok": 50000},
    ]);
    let refused = report(&server, SDK_KEY, &forged);
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{}", refused.text);
    assert!(refused.text.contains("reporterKeys"), "says what to configure: {}", refused.text);
    // One outcome, honestly shaped: refused all the same.
    let one = json!([{"flag": "search-engine", "variant": "vector", "ok": 1, "targetingKey": "u1"}]);
    assert_eq!(report(&server, SDK_KEY, &one).status, 403);
    assert!(server.metric("rampart_outcomes_refused_total{reason=\"sdk_key\"}") >= 2.0);
    let after = ticks_pass(&server);
    assert_eq!((after["state"].as_str(), after["percent"].as_f64()), (Some("Holding"), Some(50.0)), "{after}");
    assert_eq!(after["evidence"]["treatment"]["exposures"], 0, "nothing was counted: {after}");
}

#[test]
fn one_reporter_request_cannot_decide_a_young_step() {
    let (server, _dir) = start(&format!("    reporterKeys: [{{value: {REPORTER_KEY}}}]\n"), HOLDING);
    running(&server);
    let forged = json!([
        {"flag": "search-engine", "variant": "vector", "error": 50000},
        {"flag": "search-engine", "variant": "classic", "ok": 50000},
    ]);
    let refused = report(&server, REPORTER_KEY, &forged);
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (422, Some("OUTCOMES_IMPLAUSIBLE")));
    assert!(refused.text.contains("at most 20 now"), "half of minSamples: {}", refused.text);
    // Clear of a minute's end, so the next request falls in the same minute
    // (the server's wall clock, which the test shares).
    #[allow(clippy::disallowed_methods)]
    eventually(Duration::from_secs(30), || {
        let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 60;
        if second < 50 { Ok(()) } else { Err(format!("{second} s into the minute")) }
    });
    // Within the floor: counted, but not enough to decide anything.
    let within = json!([
        {"flag": "search-engine", "variant": "vector", "error": 20},
        {"flag": "search-engine", "variant": "classic", "ok": 20},
    ]);
    assert_eq!(report(&server, REPORTER_KEY, &within).status, 200);
    // …and nothing more from that key within the minute: one key alone
    // cannot bring the minSamples a decision needs.
    let more = report(&server, REPORTER_KEY, &json!([{"flag": "search-engine", "variant": "vector", "error": 20}]));
    assert_eq!(more.status, 422, "{}", more.text);
    let after = ticks_pass(&server);
    assert_ne!(after["state"], "RolledBack", "{after}");
    assert!(after["evidence"]["refusedOutcomes"]["source_volume"].as_u64() >= Some(1), "explained: {after}");
    assert!(server.metric("rampart_outcomes_refused_total{reason=\"source_volume\"}") >= 1.0);
    // Counts from an SDK key, where reporter keys are configured: 403.
    assert_eq!(report(&server, SDK_KEY, &json!([{"flag": "search-engine", "variant": "vector", "ok": 1}])).status, 403);
}

/// The other side of the bound: an honest reporter whose batch is larger
/// than a young step may take from one source loses nothing. The Rust SDK
/// sends the part the server takes (halving on `RESOURCE_EXHAUSTED`),
/// keeps the rest, and every outcome is counted exactly once as the
/// allowance grows window by window.
#[test]
fn the_sdk_sends_a_batch_the_server_takes_only_in_part_in_parts_and_counts_it_once() {
    let (server, _dir) = start(
        &format!("    reporterKeys: [{{value: {REPORTER_KEY}}}]\nlimits:\n  outcomeSourceWindowSeconds: 1\n"),
        HOLDING,
    );
    running(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // The client runs on the runtime's workers; the test polls the server
    // from this thread (blocking HTTP) while its background flushes go on.
    let (client, treatment, control) = runtime.block_on(async {
        let client = rampart_sdk::Client::builder()
            .endpoint(format!("http://{}", server.sync))
            .sdk_key(SDK_KEY)
            .reporter_key(REPORTER_KEY)
            .outcome_interval(Duration::from_millis(200))
            .build()
            .expect("client");
        client.wait_ready(Duration::from_secs(30)).await.expect("ready");
        let (mut treatment, mut control) = (0u64, 0u64);
        for user in 0..600 {
            let context = rampart_sdk::Context::with_targeting_key(format!("user-{user}").as_str());
            let details = client.string_details("search-engine", &context, "classic");
            if details.variant.as_deref() == Some("vector") {
                // One outcome per targeting key, as a request handler reports.
                client.record_context_outcome("search-engine", &details, &context, rampart_sdk::Outcome::Ok);
                treatment += 1;
            } else {
                // Aggregated counts.
                client.record_outcome("search-engine", &details, rampart_sdk::Outcome::Ok);
                control += 1;
            }
        }
        // The first flush: far more than 20 (half of minSamples) per arm, so
        // the server takes a part and the rest stays pending.
        client.flush_outcomes().await.expect("a part is taken");
        (client, treatment, control)
    });
    let counted = eventually(Duration::from_secs(90), || {
        let status = status(&server);
        let arm = |name: &str| status["evidence"][name]["exposures"].as_u64().unwrap_or(0);
        if (arm("treatment"), arm("control")) == (treatment, control) {
            Ok(status)
        } else {
            Err(format!("{} of {treatment} and {} of {control} counted: {status}", arm("treatment"), arm("control")))
        }
    });
    // Still exactly that a few ticks later: nothing was counted twice.
    let later = ticks_pass(&server);
    assert_eq!(later["evidence"]["treatment"]["exposures"], counted["evidence"]["treatment"]["exposures"]);
    assert_eq!(later["evidence"]["control"]["exposures"], counted["evidence"]["control"]["exposures"]);
    client.close();
    drop(runtime);
    assert!(treatment > 200 && control > 200, "both arms well over the allowance: {treatment} {control}");
    assert!(
        server.metric("rampart_outcomes_refused_total{reason=\"source_volume\"}") >= 1.0,
        "the server took the batch only in part (else this test proves nothing)"
    );
}

/// Honest users: many, one outcome each, from many client addresses;
/// the treatment fails for `treatment_error_every`-th user (0: never).
struct Users {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Users {
    fn start(
        server: &Rampart,
        treatment_error_every: u64,
        percent_of_treatment: impl Fn() -> f64 + Send + 'static,
    ) -> Users {
        let url = format!("{}/v1/outcomes", server.http);
        let clients: Vec<reqwest::blocking::Client> = (10..250)
            .map(|i| {
                let address: IpAddr = format!("127.0.{}.{}", i / 100 + 1, i % 100 + 1).parse().expect("address");
                reqwest::blocking::Client::builder().local_address(address).build().expect("client")
            })
            .collect();
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut user = 0u64;
            let mut share = 0.5;
            while !s.load(Ordering::Relaxed) {
                if user.is_multiple_of(40) {
                    share = percent_of_treatment() / 100.0;
                }
                let mut outcomes = Vec::new();
                for _ in 0..2 {
                    user += 1;
                    // The split as users see it: a stable share of them get the treatment.
                    let treatment = (user % 100) as f64 / 100.0 < share;
                    let variant = if treatment { "vector" } else { "classic" };
                    let failed = treatment && treatment_error_every > 0 && user.is_multiple_of(treatment_error_every);
                    let (ok, error) = if failed { (0, 1) } else { (1, 0) };
                    outcomes.push(json!({"flag": "search-engine", "variant": variant, "ok": ok, "error": error, "targetingKey": format!("user-{user}")}));
                }
                let client = &clients[(user / 2) as usize % clients.len()];
                let body = json!({"outcomes": outcomes}).to_string();
                if let Ok(reply) = client
                    .post(&url)
                    .header("x-api-key", SDK_KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    && reply.status().is_success()
                {
                    n.fetch_add(2, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Users { stop, sent, thread: Some(thread) }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One client (one address) sending as much as it can of one kind.
struct Flood {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(server: &Rampart, ok: u64, error: u64) -> Flood {
        let url = format!("{}/v1/outcomes", server.http);
        let client = reqwest::blocking::Client::builder()
            .local_address("127.0.0.2".parse::<IpAddr>().expect("address"))
            .build()
            .expect("client");
        let (stop, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, r) = (stop.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                // Small requests, so whatever its bound lets in gets in.
                let outcomes: Vec<Value> = (0..20)
                    .map(|_| {
                        n += 1;
                        json!({"flag": "search-engine", "variant": "vector", "ok": ok, "error": error, "targetingKey": format!("bot-{n}")})
                    })
                    .collect();
                let body = json!({"outcomes": outcomes}).to_string();
                match client
                    .post(&url)
                    .header("x-api-key", SDK_KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                {
                    Ok(reply) if reply.status() == 429 => {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Flood { stop, refused, thread: Some(thread) }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn percent_of(server: &Rampart) -> impl Fn() -> f64 + Send + 'static {
    let url = format!("{}/admin/v1/ramps/production/search-v2", server.admin);
    move || {
        let status = send("GET", &url, None, None, &[]).body;
        status["percent"].as_f64().unwrap_or(50.0)
    }
}

fn wait_for_state(server: &Rampart, wanted: &str, deadline: Duration) -> Value {
    eventually(deadline, || {
        let status = status(server);
        if status["state"] == wanted { Ok(status) } else { Err(status.to_string()) }
    })
}

#[test]
fn a_flood_of_treatment_successes_does_not_hide_a_regression() {
    let (server, _dir) = start("    sdkKeyOutcomes: true\n", HOLDING);
    running(&server);
    // The attacker starts first, so its successes are there from the start.
    let flood = Flood::start(&server, 1, 0);
    // Honest users: the treatment fails for every second user of it.
    let users = Users::start(&server, 2, percent_of(&server));
    let rolled_back = wait_for_state(&server, "RolledBack", Duration::from_secs(90));
    assert_eq!(rolled_back["reason"], "AbsoluteCeiling", "{rolled_back}");
    assert!(flood.refused.load(Ordering::Relaxed) > 0, "the flood ran into its client's bound");
    assert!(server.metric("rampart_outcomes_refused_total{reason=\"client_volume\"}") >= 1.0);
    assert!(users.sent.load(Ordering::Relaxed) > 0);
}

#[test]
fn honest_users_complete_a_healthy_ramp_through_a_flood_of_errors() {
    let (server, _dir) = start("    sdkKeyOutcomes: true\n", QUICK);
    running(&server);
    let flood = Flood::start(&server, 0, 1);
    let users = Users::start(&server, 0, percent_of(&server));
    let completed = wait_for_state(&server, "Completed", Duration::from_secs(120));
    let history =
        send("GET", &format!("{}/admin/v1/ramps/production/search-v2/history", server.admin), None, None, &[]);
    assert!(!history.text.contains("RolledBack"), "never rolled back: {}", history.text);
    assert!(flood.refused.load(Ordering::Relaxed) > 0);
    assert!(users.sent.load(Ordering::Relaxed) > 0, "{completed}");
    // Each entry of an SDK-key report is one outcome for a named user.
    let counts = report(
        &server,
        SDK_KEY,
        &json!([{"flag": "search-engine", "variant": "vector", "ok": 5, "targetingKey": "u"}]),
    );
    assert_eq!(counts.status, 400, "{}", counts.text);
    let anonymous = report(&server, SDK_KEY, &json!([{"flag": "search-engine", "variant": "vector", "ok": 1}]));
    assert_eq!(anonymous.status, 400, "{}", anonymous.text);
}

#[test]
fn honest_users_still_roll_back_a_regression() {
    let (server, _dir) = start("    sdkKeyOutcomes: true\n", HOLDING);
    running(&server);
    let _users = Users::start(&server, 2, percent_of(&server));
    let rolled_back = wait_for_state(&server, "RolledBack", Duration::from_secs(90));
    assert_eq!(rolled_back["reason"], "AbsoluteCeiling", "{rolled_back}");
    // The start-up warning names the risk.
    let warned = server.find_log(|e| e["message"].as_str().is_some_and(|m| m.contains("sdkKeyOutcomes is on")));
    assert!(warned.is_some_and(|e| e["level"] == "WARN"), "warned at start-up");
}
