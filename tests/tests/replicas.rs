//! Several `rampart` replicas sharing one real `redis-server` (issue 7):
//! changes on one replica reach the others' OFREP and streams, a Redis
//! outage under load loses no evaluation and refuses writes with 503, a
//! restarted replica catches up, and exactly one replica drives a ramp —
//! with takeover after SIGKILL and a paused (SIGSTOP) leader's late write
//! refused by the fencing token.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rampart_tests::redis::Redis;
use rampart_tests::{DEADLINE, FlagDir, Rampart, SseReader, eventually, get, post, send};
use serde_json::{Value, json};

const TOKEN: &str = "replica-test-admin-token-01";
const FLAGS: &str = "flags:\n  file-flag:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"on\"\n";

fn replica(redis: &Redis, flags: &str, extra: &[&str]) -> Rampart {
    let mut args = vec!["--flags", flags, "--redis-url", &redis.url];
    args.extend_from_slice(extra);
    Rampart::start_with_env(&args, &[("RAMPART_ADMIN_TOKEN", TOKEN)])
}

fn put(server: &Rampart, key: &str, value: i64) -> rampart_tests::Reply {
    let url = format!("{}/admin/v1/environments/default/flags/{key}", server.admin);
    let body = json!({"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"});
    send("PUT", &url, Some(TOKEN), Some(&body), &[])
}

/// The value a replica's OFREP serves for an integer flag (None: not found).
fn served(server: &Rampart, key: &str) -> Option<i64> {
    let reply = post(&format!("{}/ofrep/v1/evaluate/flags/{key}", server.http), r#"{"context":{}}"#, &[]);
    (reply.status == 200).then(|| reply.body["value"].as_i64()).flatten()
}

fn ready(server: &Rampart) -> Value {
    get(&format!("{}/readyz", server.admin)).body
}

fn revision(server: &Rampart) -> u64 {
    ready(server)["environments"]["default"]["revision"].as_u64().expect("revision")
}

fn metric(server: &Rampart, name: &str) -> f64 {
    let text = get(&format!("{}/metrics", server.admin)).text;
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn signal(server: &Rampart, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(server.pid().to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
}

#[test]
fn a_change_on_one_replica_reaches_every_replica_and_its_streams() {
    let redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let replicas: Vec<Rampart> = (0..3).map(|_| replica(&redis, &flags, &[])).collect();
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
    let streams: Vec<SseReader> =
        [b, c].iter().map(|r| SseReader::connect(&format!("{}/v1/stream", r.http), &[])).collect();
    for stream in &streams {
        assert_eq!(stream.next().event, "snapshot");
    }

    let started = Instant::now();
    let reply = put(a, "checkout", 7);
    assert_eq!(reply.status, 201, "{}", reply.text);
    for stream in &streams {
        let delta = stream.next();
        assert_eq!(delta.event, "delta");
        let data: Value = serde_json::from_str(&delta.data).expect("delta JSON");
        assert_eq!(data["upserts"]["flags"]["checkout"]["variants"]["v"], 7, "{data}");
    }
    let streamed = started.elapsed();
    for server in [b, c] {
        eventually(DEADLINE, || served(server, "checkout").filter(|v| *v == 7).ok_or_else(|| "not yet".to_owned()));
    }
    eprintln!("propagation A → streams of B and C: {streamed:?}");

    // The kill switch of a file-owned flag, on B, reaches A and C.
    let url = format!("{}/admin/v1/environments/default/flags/file-flag", b.admin);
    let reply = send("PATCH", &url, Some(TOKEN), Some(&json!({"state": "DISABLED"})), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    for server in [a, c] {
        eventually(DEADLINE, || {
            let reply = post(&format!("{}/ofrep/v1/evaluate/flags/file-flag", server.http), "{}", &[]);
            if reply.body["reason"] == "DISABLED" { Ok(()) } else { Err(reply.text) }
        });
    }
    // A delete on C, and one history for all of them.
    let url = format!("{}/admin/v1/environments/default/flags/checkout", c.admin);
    assert_eq!(send("DELETE", &url, Some(TOKEN), None, &[]).status, 204);
    for server in [a, b] {
        eventually(DEADLINE, || {
            if served(server, "checkout").is_none() { Ok(()) } else { Err("still served".to_owned()) }
        });
    }
    let history = send(
        "GET",
        &format!("{}/admin/v1/environments/default/flags/checkout/history", b.admin),
        Some(TOKEN),
        None,
        &[],
    );
    assert_eq!(history.status, 200, "{}", history.text);
    assert_eq!(history.body["versions"].as_array().map(Vec::len), Some(2), "{}", history.text);
    // Everyone at the same revision, and no replica needed a full read.
    eventually(DEADLINE, || {
        let revisions: Vec<u64> = replicas.iter().map(revision).collect();
        if revisions == [3, 3, 3] { Ok(()) } else { Err(format!("{revisions:?}")) }
    });
    for server in &replicas {
        assert_eq!(metric(server, "rampart_replication_resyncs_total"), 0.0);
    }
}

/// Evaluates continuously against every replica, counting failures.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let threads = urls
            .into_iter()
            .map(|url| {
                let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
                std::thread::spawn(move || {
                    let client = rampart_tests::client();
                    while !stop.load(Ordering::Relaxed) {
                        let reply = client
                            .post(format!("{url}/ofrep/v1/evaluate/flags/steady"))
                            .header("content-type", "application/json")
                            .body(r#"{"context":{"targetingKey":"u"}}"#)
                            .send();
                        match reply {
                            Ok(r) if r.status() == 200 => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failed.lock().expect("lock").push(format!("status {}", r.status())),
                            Err(e) => failed.lock().expect("lock").push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { stop, done, failed, threads }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        (self.done.load(Ordering::Relaxed), self.failed.lock().expect("lock").clone())
    }
}

#[test]
fn a_redis_outage_keeps_evaluations_serving_and_refuses_writes() {
    let mut redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let (a, b) = (replica(&redis, &flags, &[]), replica(&redis, &flags, &[]));
    assert_eq!(put(&a, "steady", 1).status, 201);
    eventually(DEADLINE, || served(&b, "steady").ok_or_else(|| "not yet".to_owned()));
    let load = Load::start(vec![a.http.clone(), b.http.clone(), a.http.clone(), b.http.clone()]);

    redis.stop();
    let outage = Instant::now();
    // Writes fail fast with 503 and say why; nothing is half-applied.
    let reply = put(&a, "steady", 2);
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "STORE_UNAVAILABLE", "{}", reply.text);
    assert!(outage.elapsed() < Duration::from_secs(5), "the 503 took {:?}", outage.elapsed());
    for server in [&a, &b] {
        eventually(DEADLINE, || {
            let ready = ready(server);
            if ready["store"]["state"] == "unavailable" && ready["status"] == "ready" {
                Ok(())
            } else {
                Err(ready.to_string())
            }
        });
        eventually(DEADLINE, || {
            if metric(server, "rampart_store_up") == 0.0 { Ok(()) } else { Err("store_up".to_owned()) }
        });
    }
    // Ten seconds without Redis: evaluations keep being answered.
    let before = Instant::now();
    let served_before = load.done.load(Ordering::Relaxed);
    while outage.elapsed() < Duration::from_secs(10) {
        assert_eq!(put(&b, "other", 1).status, 503);
        std::thread::sleep(Duration::from_millis(500));
    }
    let during = load.done.load(Ordering::Relaxed) - served_before;
    assert!(during > 100, "only {during} evaluations in {:?} of outage", before.elapsed());

    redis.restart();
    // Writes work again (the connection comes back with backoff), and the
    // other replica converges.
    eventually(Duration::from_secs(30), || {
        let reply = put(&a, "steady", 2);
        if reply.status == 200 { Ok(()) } else { Err(reply.text) }
    });
    eventually(DEADLINE, || served(&b, "steady").filter(|v| *v == 2).ok_or_else(|| "b not updated".to_owned()));
    assert_eq!(put(&b, "other", 5).status, 201);
    eventually(DEADLINE, || served(&a, "other").filter(|v| *v == 5).ok_or_else(|| "a not updated".to_owned()));
    eventually(DEADLINE, || {
        let (ra, rb) = (revision(&a), revision(&b));
        if ra == rb && ready(&a)["store"]["state"] == "ok" { Ok(()) } else { Err(format!("{ra} vs {rb}")) }
    });
    let (done, failed) = load.finish();
    assert!(failed.is_empty(), "{} failed evaluations of {done}: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    eprintln!("{done} evaluations, none failed, across a 10 s Redis outage");
}

#[test]
fn a_restarted_replica_catches_up_while_changes_happen() {
    let redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let a = replica(&redis, &flags, &[]);
    let b = replica(&redis, &flags, &[]);
    let c = replica(&redis, &flags, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (admin, stop) = (a.admin.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = 0i64;
            while !stop.load(Ordering::Relaxed) {
                written += 1;
                let url = format!("{admin}/admin/v1/environments/default/flags/counter-{}", written % 5);
                let body = json!({"state": "ENABLED", "variants": {"v": written}, "defaultVariant": "v"});
                let status = send("PUT", &url, Some(TOKEN), Some(&body), &[]).status;
                assert!(status == 200 || status == 201, "write {written}: {status}");
            }
            written
        })
    };
    eventually(DEADLINE, || if revision(&c) > 5 { Ok(()) } else { Err("no changes yet".to_owned()) });
    c.kill();
    let c = replica(&redis, &flags, &[]);
    // B misses messages for sure: paused while its subscription is cut and
    // changes go on, it must find the gap and read the environment again.
    signal(&b, "STOP");
    eventually(DEADLINE, || match redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]) {
        Ok(reply) if reply.starts_with(':') => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let cut_at = revision(&a);
    eventually(DEADLINE, || if revision(&a) >= cut_at + 5 { Ok(()) } else { Err("no changes yet".to_owned()) });
    signal(&b, "CONT");
    eventually(DEADLINE, || if revision(&b) >= cut_at + 5 { Ok(()) } else { Err("b behind".to_owned()) });
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 10, "only {written} writes");
    eventually(DEADLINE, || {
        let revisions: Vec<u64> = [&a, &b, &c].iter().map(|r| revision(r)).collect();
        if revisions.iter().all(|r| *r == written as u64) { Ok(()) } else { Err(format!("{revisions:?} of {written}")) }
    });
    assert!(metric(&b, "rampart_replication_resyncs_total") >= 1.0, "b caught up without reading again?");
    for key in 0..5 {
        let key = format!("counter-{key}");
        let values: Vec<Option<i64>> = [&a, &b, &c].iter().map(|r| served(r, &key)).collect();
        assert!(values.iter().all(|v| *v == values[0] && v.is_some()), "{key}: {values:?}");
    }
}

const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: checkout-v2\nspec:\n  flag: file-flag\n  treatment: \"on\"\n  control: \"off\"\n  salt: s1\n  revision: 1\n  interval: 1s\n  steps:\n    - { percent: 5, hold: 2s }\n    - { percent: 10, hold: 2s }\n    - { percent: 20, hold: 2s }\n    - { percent: 30, hold: 2s }\n    - { percent: 40, hold: 2s }\n    - { percent: 50, hold: 2s }\n    - { percent: 60, hold: 2s }\n    - { percent: 70, hold: 2s }\n    - { percent: 80, hold: 2s }\n    - { percent: 100, hold: 2s }\n  guard:\n    minSamples: 40\n    absolute: { maxErrorRate: 50%, maxIncrease: 10% }\n";
const RAMP_FLAGS: &str = "flags:\n  file-flag:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";

fn ramp_status(server: &Rampart) -> Value {
    let reply = send("GET", &format!("{}/admin/v1/ramps/default/checkout-v2", server.admin), Some(TOKEN), None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn leader(servers: &[&Rampart]) -> Result<usize, String> {
    let leading: Vec<usize> =
        (0..servers.len()).filter(|i| metric(servers[*i], "rampart_ramp_leader") == 1.0).collect();
    match leading.as_slice() {
        [one] => Ok(*one),
        other => Err(format!("leaders: {other:?}")),
    }
}

/// Healthy outcome traffic — 400 requests a second split between the arms
/// as the ramp's percent says, fractions carried over so the split is exact
/// (a rounded split would trip the sample-ratio check) — spread over the
/// live replicas.
fn drive(targets: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
        let mut carry = 0.0_f64;
        while !stop.load(Ordering::Relaxed) {
            let list = targets.lock().expect("lock").clone();
            for (http, admin) in list.iter().filter_map(|t| t.split_once(' ')) {
                let url = format!("{admin}/admin/v1/ramps/default/checkout-v2");
                let Some(percent) = client
                    .get(url)
                    .bearer_auth(TOKEN)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .ok()
                    .and_then(|s| s["percent"].as_f64())
                else {
                    continue;
                };
                let total = 40 / list.len() as u64;
                carry += total as f64 * percent / 100.0;
                let on = carry.floor();
                carry -= on;
                let on = (on as u64).min(total);
                let body = json!({"outcomes": [
                    {"flag": "file-flag", "variant": "on", "ok": on, "error": 0},
                    {"flag": "file-flag", "variant": "off", "ok": total - on, "error": 0},
                ]});
                let _ = client
                    .post(format!("{http}/v1/outcomes"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn one_replica_drives_a_ramp_and_another_takes_over() {
    const LEASE: Duration = Duration::from_secs(3);
    let redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", RAMP_FLAGS);
    let ramp = dir.write("ramp.yaml", RAMP);
    let extra = ["--ramps", &ramp, "--ramp-lease-seconds", "3"];
    let mut replicas: Vec<Option<Rampart>> = (0..3).map(|_| Some(replica(&redis, &flags, &extra))).collect();
    let live = |replicas: &[Option<Rampart>]| -> Vec<String> {
        replicas.iter().flatten().map(|r| format!("{} {}", r.http, r.admin)).collect()
    };
    let targets = Arc::new(Mutex::new(live(&replicas)));
    let stop = Arc::new(AtomicBool::new(false));
    let driver = drive(targets.clone(), stop.clone());

    let all: Vec<&Rampart> = replicas.iter().flatten().collect();
    let first = eventually(DEADLINE, || leader(&all));
    // Every replica shows the same ramp, and serves its exposure.
    let at_step_two = eventually(Duration::from_secs(60), || {
        let status = ramp_status(all[(first + 1) % 3]);
        if status["step"].as_u64() >= Some(2) { Ok(status) } else { Err(status.to_string()) }
    });
    assert_eq!(at_step_two["state"], "Ramping");
    drop(all);

    // SIGKILL the leader mid-step: another takes over within the lease time.
    let step_at_kill = ramp_status(replicas[first].as_ref().expect("leader")).get("step").cloned();
    replicas[first].take().expect("leader").kill();
    *targets.lock().expect("lock") = live(&replicas);
    let killed = Instant::now();
    let rest: Vec<&Rampart> = replicas.iter().flatten().collect();
    let second = eventually(LEASE + Duration::from_secs(5), || leader(&rest));
    let takeover = killed.elapsed();
    assert!(takeover <= LEASE + Duration::from_secs(2), "takeover after {takeover:?}");
    let resumed = ramp_status(rest[second]);
    assert!(
        resumed["step"].as_u64() >= step_at_kill.as_ref().and_then(Value::as_u64),
        "{resumed} after {step_at_kill:?}"
    );
    eprintln!("takeover {takeover:?} after SIGKILL (lease {LEASE:?})");

    // SIGSTOP the new leader past its lease: the third replica takes over
    // and advances. Then pause that one too, right after an advance, and let
    // the step's hold pass: when the first paused replica resumes, its next
    // tick must write (advance or hold, whichever state it sees) — with the
    // token it held before the pause, which the store refuses.
    let paused = rest[second];
    let other = rest[1 - second];
    signal(paused, "STOP");
    *targets.lock().expect("lock") = vec![format!("{} {}", other.http, other.admin)];
    eventually(LEASE + Duration::from_secs(5), || {
        if metric(other, "rampart_ramp_leader") == 1.0 { Ok(()) } else { Err("no takeover".to_owned()) }
    });
    let seq_before = ramp_status(other)["seq"].as_u64().expect("seq");
    let advanced = eventually(Duration::from_secs(30), || {
        let status = ramp_status(other);
        if status["seq"].as_u64() > Some(seq_before) && status["state"] == "Ramping" {
            signal(other, "STOP");
            Ok(status)
        } else {
            Err(status.to_string())
        }
    });
    *targets.lock().expect("lock") = Vec::new();
    // Scenario time, not synchronisation: the step's hold (2 s from its
    // stored start) passes while both are stopped.
    let step_started = advanced["stepStartedAt"].as_str().and_then(rampart_server::time::parse).expect("step start");
    let hold_over = step_started + 2000;
    eventually(Duration::from_secs(10), || {
        if rampart_tests::wall_clock_millis() > hold_over { Ok(()) } else { Err("the hold still runs".to_owned()) }
    });
    signal(paused, "CONT");
    // Its next write carries the token it held before the pause and is
    // refused (fenced). One exception, seen 1 in 4 runs on a loaded machine:
    // the SIGSTOP caught it with a lease renewal in flight, whose answer
    // ("lost") arrives before its next tick, and it writes nothing at all.
    // Either way no late step lands — the history checks below hold that.
    let fenced = eventually(Duration::from_secs(30), || {
        let fenced = metric(paused, "rampart_ramp_fenced_writes_total");
        let lost =
            paused.find_log(|l| l["message"].as_str().is_some_and(|m| m.contains("lost the ramp's lease"))).is_some();
        if fenced >= 1.0 {
            Ok(true)
        } else if lost {
            Ok(false)
        } else {
            Err(format!("fenced {fenced}, the lease not yet seen lost"))
        }
    });
    eprintln!("the paused replica's late write: {}", if fenced { "fenced" } else { "none (lease seen lost first)" });
    assert!(
        !fenced
            || paused
                .find_log(|l| l["message"].as_str().is_some_and(|m| m.contains("late write of a stale lease holder")))
                .is_some(),
        "no fencing log"
    );
    signal(other, "CONT");
    *targets.lock().expect("lock") =
        vec![format!("{} {}", other.http, other.admin), format!("{} {}", paused.http, paused.admin)];

    // Complete, with one step sequence: no step applied twice, none skipped.
    eventually(Duration::from_secs(90), || {
        let status = ramp_status(other);
        if status["state"] == "Completed" { Ok(()) } else { Err(status.to_string()) }
    });
    eventually(DEADLINE, || {
        let status = ramp_status(paused);
        if status["state"] == "Completed" { Ok(()) } else { Err(status.to_string()) }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = driver.join();
    let history = send(
        "GET",
        &format!("{}/admin/v1/ramps/default/checkout-v2/history?limit=1000", other.admin),
        Some(TOKEN),
        None,
        &[],
    );
    let decisions = history.body["decisions"].as_array().expect("decisions").clone();
    let seqs: Vec<u64> = decisions.iter().filter_map(|d| d["seq"].as_u64()).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "a seq recorded twice: {seqs:?}");
    let events = |kind: &str| -> Vec<Value> {
        decisions
            .iter()
            .flat_map(|d| d["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["kind"] == kind)
            .map(|e| e["reason"].clone())
            .collect()
    };
    let expected: Vec<Value> = [10, 20, 30, 40, 50, 60, 70, 80, 100].iter().map(|p| json!(format!("{p}%"))).collect();
    assert_eq!(events("advanced"), expected, "{decisions:#?}");
    assert_eq!(events("started").len(), 1);
    assert_eq!(events("completed").len(), 1);
}

#[test]
fn a_replica_stopped_gracefully_hands_its_ramps_over_at_once() {
    let redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", RAMP_FLAGS);
    let ramp = dir.write("ramp.yaml", RAMP);
    // A lease far longer than the test: only a release explains a quick takeover.
    let extra = ["--ramps", &ramp, "--ramp-lease-seconds", "120"];
    let a = replica(&redis, &flags, &extra);
    eventually(DEADLINE, || if metric(&a, "rampart_ramp_leader") == 1.0 { Ok(()) } else { Err("a leads".to_owned()) });
    let b = replica(&redis, &flags, &extra);
    assert_eq!(metric(&b, "rampart_ramp_leader"), 0.0);
    let stopped = Instant::now();
    let stream = SseReader::connect(&format!("{}/v1/stream", a.http), &[]);
    assert_eq!(stream.next().event, "snapshot");
    let status = a.terminate();
    assert!(status.success(), "{status}");
    // Stream clients are told to reconnect (to another replica) before the
    // end; a change published before the stop (the ramp starting) may come
    // first.
    let mut event = stream.next();
    while event.event == "delta" {
        event = stream.next();
    }
    assert_eq!(event.event, "reconnect");
    eventually(
        DEADLINE,
        || if metric(&b, "rampart_ramp_leader") == 1.0 { Ok(()) } else { Err("no takeover".to_owned()) },
    );
    assert!(stopped.elapsed() < Duration::from_secs(10), "took {:?} with a 120 s lease", stopped.elapsed());
}

#[test]
fn a_redis_that_lost_its_data_is_followed_loudly() {
    let redis = Redis::start();
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let (a, b) = (replica(&redis, &flags, &[]), replica(&redis, &flags, &[]));
    assert_eq!(put(&a, "api-flag", 1).status, 201);
    eventually(DEADLINE, || served(&b, "api-flag").ok_or_else(|| "not yet".to_owned()));
    // Redis restarted empty (no persistence) or was replaced: its revisions
    // start again, so comparing numbers would miss it; the epoch does not.
    assert!(redis.command(&["FLUSHALL"]).expect("flushall").starts_with("+OK"));
    for server in [&a, &b] {
        eventually(DEADLINE, || {
            if served(server, "api-flag").is_none() { Ok(()) } else { Err("still served".to_owned()) }
        });
        assert!(
            server.find_log(|l| l["message"].as_str().is_some_and(|m| m.contains("redis lost its data"))).is_some()
        );
        // File-owned flags are untouched.
        assert_eq!(post(&format!("{}/ofrep/v1/evaluate/flags/file-flag", server.http), "{}", &[]).status, 200);
    }
    // Writes number from 1 again, and reach the other replica.
    assert_eq!(put(&b, "api-flag", 2).status, 201);
    eventually(DEADLINE, || served(&a, "api-flag").filter(|v| *v == 2).ok_or_else(|| "a not updated".to_owned()));
}
