//! Ramps end to end against the real binary: a healthy ramp to
//! `Completed`, an error spike rolled back within an interval and seen by
//! the SDK through its stream, `kill -9` mid-ramp, GitOps edits, outcome
//! reports from the Rust SDK, monotonic exposure, and a flagd in-process
//! provider agreeing with the server during a ramp. What needs minutes to
//! show (flapping, zero traffic and the step timeout, sticky rollbacks) runs
//! in-process on a simulated clock: `server/src/ramp/controller/tests.rs`.
//!
//! Intervals are one second. Outcomes come from a driver thread that posts
//! to `/v1/outcomes` every 100 ms at configured rates, like a fleet of SDKs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rampart_tests::{FlagDir, LineClient, Rampart, eventually, node_command, post, send, workspace};
use serde_json::{Value, json};

const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RAMP: &str = "checkout-v2";
const LONG: Duration = Duration::from_secs(90);

/// A ramp file on `new-checkout` with `steps` (YAML list items) and extra spec lines.
fn ramp_file(revision: u64, salt: &str, steps: &str, extra: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: {RAMP}\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  salt: {salt}\n  revision: {revision}\n  interval: 1s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    absolute: {{ maxErrorRate: 50%, maxIncrease: 10% }}\n{extra}"
    )
}

struct Setup {
    dir: FlagDir,
    ramp: String,
    flags: String,
}

impl Setup {
    fn new(ramp: &str) -> Setup {
        let dir = FlagDir::new();
        let flags = dir.write("flags.yaml", FLAGS);
        let ramp = dir.write("ramp.yaml", ramp);
        Setup { dir, ramp, flags }
    }

    fn start(&self) -> Rampart {
        Rampart::start(&["--flags", &self.flags, "--ramps", &self.ramp, "--admin-insecure-local"])
    }

    fn start_with_data(&self, data: &str) -> Rampart {
        Rampart::start_in(
            &["--flags", &self.flags, "--ramps", &self.ramp, "--admin-insecure-local", "--data-dir", data],
            &[],
        )
    }

    fn rewrite(&self, text: &str) {
        self.dir.write("ramp.yaml", text);
    }
}

fn status(server: &Rampart) -> Value {
    let reply = send("GET", &format!("{}/admin/v1/ramps/default/{RAMP}", server.admin), None, None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn command(server: &Rampart, action: &str) -> rampart_tests::Reply {
    send("POST", &format!("{}/admin/v1/ramps/default/{RAMP}/{action}", server.admin), None, None, &[])
}

fn history(server: &Rampart) -> Vec<Value> {
    let reply =
        send("GET", &format!("{}/admin/v1/ramps/default/{RAMP}/history?limit=1000", server.admin), None, None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["decisions"].as_array().expect("decisions").clone()
}

fn events(server: &Rampart, kind: &str) -> Vec<Value> {
    history(server)
        .iter()
        .flat_map(|d| d["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Waits until the ramp's status satisfies `check`.
fn wait_for(server: &Rampart, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(LONG, || {
        let status = status(server);
        if check(&status) { Ok(status) } else { Err(format!("waiting for {what}: {status}")) }
    })
}

/// How many edits of the ramp file the server has applied (logged).
fn reloads_applied(server: &Rampart) -> usize {
    server.logs().iter().filter(|l| l["message"] == "ramp file change applied").count()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Which of `keys` the server gives the treatment.
fn exposed(server: &Rampart, keys: &[String]) -> Vec<bool> {
    keys.iter()
        .map(|key| {
            let body = json!({"context": {"targetingKey": key}}).to_string();
            let reply = post(&format!("{}/ofrep/v1/evaluate/flags/new-checkout", server.http), &body, &[]);
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.body["variant"] == "on"
        })
        .collect()
}

/// Outcome traffic: requests per second, split between the arms as the
/// ramp's current percent says (as a fleet of SDKs would report), and each
/// arm's error rate.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    requests: f64,
    treatment_errors: f64,
    control_errors: f64,
    /// Share of the treatment's outcomes that get reported (1: all; less
    /// simulates a treatment that crashes before it reports).
    treatment_reported: f64,
}

const HEALTHY: Traffic =
    Traffic { requests: 400.0, treatment_errors: 0.0, control_errors: 0.0, treatment_reported: 1.0 };

/// Posts outcomes every 100 ms until dropped, following the ramp's percent
/// (read from the admin API every 200 ms). Errors are spread
/// deterministically (fractions carried over), so rates are exact.
struct Driver {
    traffic: Arc<Mutex<Option<Traffic>>>,
    target: Arc<Mutex<(String, String)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(server: &Rampart, traffic: Option<Traffic>) -> Driver {
        let traffic = Arc::new(Mutex::new(traffic));
        let target = Arc::new(Mutex::new((server.http.clone(), server.admin.clone())));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, u, s) = (traffic.clone(), target.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
            let mut carry = [0.0_f64; 4];
            let mut percent = 0.0;
            for round in 0u64.. {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let (http, admin) = u.lock().expect("lock").clone();
                if round % 2 == 0 {
                    let url = format!("{admin}/admin/v1/ramps/default/{RAMP}");
                    if let Ok(status) = client.get(url).send().and_then(|r| r.json::<Value>()) {
                        percent = status["percent"].as_f64().unwrap_or(percent);
                    }
                }
                let now = *t.lock().expect("lock");
                if let Some(traffic) = now {
                    let tenth = |i: usize, amount: f64, carry: &mut [f64; 4]| {
                        carry[i] += amount / 10.0;
                        let whole = carry[i].floor();
                        carry[i] -= whole;
                        whole as u64
                    };
                    let served = traffic.requests * percent / 100.0;
                    let control = traffic.requests - served;
                    let treatment = served * traffic.treatment_reported;
                    let t_total = tenth(0, treatment, &mut carry);
                    let c_total = tenth(1, control, &mut carry);
                    let t_err = tenth(2, treatment * traffic.treatment_errors, &mut carry).min(t_total);
                    let c_err = tenth(3, control * traffic.control_errors, &mut carry).min(c_total);
                    let body = json!({"outcomes": [
                        {"flag": "new-checkout", "variant": "on", "ok": t_total - t_err, "error": t_err},
                        {"flag": "new-checkout", "variant": "off", "ok": c_total - c_err, "error": c_err},
                    ]});
                    let url = format!("{http}/v1/outcomes");
                    let _ = client.post(url).header("content-type", "application/json").body(body.to_string()).send();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Driver { traffic, target, stop, thread: Some(thread) }
    }

    fn set(&self, traffic: Option<Traffic>) {
        *self.traffic.lock().expect("lock") = traffic;
    }

    fn retarget(&self, server: &Rampart) {
        *self.target.lock().expect("lock") = (server.http.clone(), server.admin.clone());
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const FAST_STEPS: &str = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1s }\n    - { percent: 50, hold: 1s }\n    - { percent: 100, hold: 1s }\n";

#[test]
fn a_healthy_ramp_goes_5_25_50_100_then_completes() {
    let setup = Setup::new(&ramp_file(1, "s1", FAST_STEPS, ""));
    let server = setup.start();
    let _driver = Driver::start(&server, Some(HEALTHY));
    let done = wait_for(&server, "Completed", |s| s["state"] == "Completed");
    assert_eq!(done["percent"], 100.0);
    let advanced: Vec<Value> = events(&server, "advanced").iter().map(|e| e["reason"].clone()).collect();
    assert_eq!(advanced, [json!("25%"), json!("50%"), json!("100%")]);
    assert_eq!(events(&server, "completed").len(), 1);
    assert!(events(&server, "rolled_back").is_empty());
    // Each step advanced with its own evidence, in order, never skipping.
    let percents: Vec<f64> = history(&server).iter().map(|d| d["percent"].as_f64().unwrap()).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(exposed(&server, &keys(50)).iter().all(|e| *e), "everyone with the control gets the treatment at 100%");
    // Metrics and audit.
    let metrics = send("GET", &format!("{}/metrics", server.admin), None, None, &[]).text;
    assert!(
        metrics.contains(&format!("rampart_ramp_percent{{environment=\"default\",ramp=\"{RAMP}\"}} 100")),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(&format!("rampart_ramp_state{{environment=\"default\",ramp=\"{RAMP}\",state=\"Completed\"}} 1"))
    );
    let audit = send("GET", &format!("{}/admin/v1/audit?flag=new-checkout&limit=100", server.admin), None, None, &[]);
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"ramp.started") && actions.contains(&"ramp.completed"), "{actions:?}");
}

#[test]
fn an_error_spike_rolls_back_within_an_interval_and_sdks_see_zero_percent() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1h }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let server = setup.start();
    // The spike: 25 % of 2 000 requests per check, 0.5 % errors, then 5 % in the treatment.
    let baseline =
        Traffic { requests: 2000.0, control_errors: 0.005, treatment_errors: 0.005, treatment_reported: 1.0 };
    let driver = Driver::start(&server, Some(baseline));
    wait_for(&server, "step 25%", |s| s["percent"] == 25.0 && s["state"] != "Pending");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sdk = runtime.block_on(async {
        let client = rampart_sdk::Client::builder().endpoint(format!("http://{}", server.sync)).build().unwrap();
        client.wait_ready(Duration::from_secs(30)).await.unwrap();
        client
    });
    let keys = keys(200);
    let on_in_sdk = |client: &rampart_sdk::Client| {
        keys.iter()
            .filter(|k| client.bool_value("new-checkout", &rampart_sdk::Context::with_targeting_key(k.as_str()), false))
            .count()
    };
    let before = on_in_sdk(&sdk);
    assert!((20..=80).contains(&before), "about 25% of 200 keys exposed in the SDK, got {before}");

    // 10×: treatment 5 % against a 0.5 % control.
    let spike = Instant::now();
    driver.set(Some(Traffic { treatment_errors: 0.05, ..baseline }));
    let rolled = wait_for(&server, "RolledBack", |s| s["state"] == "RolledBack");
    let elapsed = spike.elapsed();
    eprintln!("rolled back {elapsed:?} after the spike started (interval 1 s, watermark 1.5 s)");
    assert_eq!(rolled["reason"], "Regression");
    assert_eq!(rolled["percent"], 0.0);
    // The first whole second of spike closes within 1 s, is read after the
    // 1.5 s watermark, at the next 1 s tick: about 3.5 s, plus a loaded machine.
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");

    // The SDK sees 0 % through its stream.
    eventually(LONG, || if on_in_sdk(&sdk) == 0 { Ok(()) } else { Err("SDK still exposes keys".to_owned()) });

    // One rollback on record with its evidence. (That it stays rolled back
    // whatever the traffic does next is checked over simulated minutes in
    // the controller's in-process tests.)
    driver.set(Some(HEALTHY));
    let rollbacks: Vec<Value> = history(&server).into_iter().filter(|d| d["to"] == "RolledBack").collect();
    assert_eq!(rollbacks.len(), 1);
    let evidence = &rollbacks[0]["evidence"];
    assert!(evidence["lambda"].as_f64().unwrap() >= evidence["lambdaThreshold"].as_f64().unwrap(), "{evidence}");
    assert!(evidence["treatment"]["errors"].as_u64().unwrap() > evidence["control"]["errors"].as_u64().unwrap());
    // Promote and resume cannot bring it back.
    assert_eq!(command(&server, "promote").status, 409);
    assert_eq!(command(&server, "resume").status, 409);
    let metrics = send("GET", &format!("{}/metrics", server.admin), None, None, &[]).text;
    assert!(
        metrics.contains(&format!(
            "rampart_ramp_transitions_total{{environment=\"default\",event=\"rolled_back\",ramp=\"{RAMP}\",reason=\"Regression\"}} 1"
        )),
        "{metrics}"
    );
    drop(sdk);
}

#[test]
fn kill_9_mid_ramp_resumes_at_the_same_step_with_the_same_users() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 6s }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let data = setup.dir.path("data").to_string_lossy().into_owned();
    let server = setup.start_with_data(&data);
    let driver = Driver::start(&server, Some(HEALTHY));
    let before = wait_for(&server, "step 25%", |s| s["percent"] == 25.0);
    let keys = keys(300);
    let exposed_before = exposed(&server, &keys);
    server.kill();

    let server = setup.start_with_data(&data);
    driver.retarget(&server);
    let after = status(&server);
    for field in ["runId", "step", "percent", "stepStartedAt", "revision"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    // The log says where it picked up.
    let resumed = server
        .find_log(|entry| entry["message"] == "ramp resumed from the store")
        .expect("a log line about the resumed ramp");
    assert_eq!((resumed["step"].clone(), resumed["percent"].clone()), (before["step"].clone(), json!(25.0)));
    assert!(resumed["hold_remaining_seconds"].as_u64().is_some_and(|s| s <= 6), "{resumed}");
    assert_eq!(exposed(&server, &keys), exposed_before, "the same users stay exposed");
    let done = wait_for(&server, "step 100%", |s| s["percent"] == 100.0);
    assert_eq!(done["runId"], before["runId"]);
    // It advanced only after the full hold measured from the step start.
    let decisions = history(&server);
    let at = |percent: f64| {
        decisions
            .iter()
            .find(|d| d["percent"] == percent && d["to"] == "Ramping" && d["events"][0]["kind"] == "advanced")
            .map(|d| d["at"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("no advance to {percent}: {decisions:#?}"))
    };
    assert!(at(100.0) - at(25.0) >= 6000, "hold honoured across the crash");
    assert_eq!(events(&server, "advanced").len(), 2, "no step applied twice");
}

#[test]
fn file_edits_apply_or_are_refused_rollback_is_sticky_and_revision_restarts() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1h }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let server = setup.start();
    let _driver = Driver::start(&server, Some(HEALTHY));
    let at25 = wait_for(&server, "step 25%", |s| s["percent"] == 25.0);
    let keys = keys(200);
    let exposed_at25 = exposed(&server, &keys);

    // (a) A step added after the current one and a tighter tolerance: applied, no jump.
    let more = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1h }\n    - { percent: 35, hold: 1h }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let edited = ramp_file(1, "s1", more, "")
        .replace("maxIncrease: 10% }", "maxIncrease: 10% }\n    relative: { tolerance: 10% }");
    setup.rewrite(&edited);
    let applied = wait_for(&server, "new steps", |s| s["steps"].as_array().is_some_and(|a| a.len() == 5));
    assert_eq!((applied["percent"].clone(), applied["step"].clone()), (json!(25.0), json!(2)));
    assert_eq!(exposed(&server, &keys), exposed_at25);

    // (b) A new salt is refused for the running run; exposure unchanged.
    setup.rewrite(&edited.replace("salt: s1", "salt: s2"));
    let refused = wait_for(&server, "refused edit", |s| s["refusedChange"].is_string());
    assert!(refused["refusedChange"].as_str().unwrap().contains("salt"), "{refused}");
    assert_eq!(refused["percent"], 25.0);
    assert_eq!(exposed(&server, &keys), exposed_at25);
    setup.rewrite(&edited);
    wait_for(&server, "edit accepted again", |s| s["refusedChange"].is_null());

    // (b2) An invalid edit: shown in the status with its line, counted,
    // audited once however often the file is read again; fixed, it clears.
    let invalid = edited.replace("percent: 35", "percent: 350");
    setup.rewrite(&invalid);
    let rejected = wait_for(&server, "rejected edit", |s| s["fileErrors"].as_array().is_some_and(|e| !e.is_empty()));
    let problem = rejected["fileErrors"][0].as_str().unwrap().to_owned();
    assert!(problem.contains("350") && problem.contains("ramp.yaml:"), "{problem}");
    assert_eq!(rejected["percent"], 25.0, "the last good configuration keeps driving it");
    let reload_ok = r#"rampart_config_last_reload_success{environment="default"}"#;
    assert_eq!(server.metric(reload_ok), 0.0);
    setup.rewrite(&format!("{invalid}# saved again\n"));
    setup.rewrite(&invalid);
    let rejections = || {
        let audit = send("GET", &format!("{}/admin/v1/audit?limit=1000", server.admin), None, None, &[]);
        audit.body["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "ramp.file_rejected").count()
    };
    setup.rewrite(&edited);
    wait_for(&server, "invalid edit fixed", |s| s["fileErrors"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(server.metric(reload_ok), 1.0);
    assert_eq!(rejections(), 1, "audited once per edit, not per read");
    // (The rejection's own message: a listener's "starting service" line
    // names its ephemeral port, which can contain "350" too.)
    let logged: Vec<Value> = server
        .logs()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("rejected ramp files") && m.contains("350")))
        .collect();
    assert_eq!(logged.len(), 1, "logged once: {logged:#?}");

    // (c) After a rollback, reloading the same file does not restart it…
    assert_eq!(command(&server, "abort").status, 200);
    let aborted = status(&server);
    assert_eq!((aborted["state"].clone(), aborted["reason"].clone()), (json!("RolledBack"), json!("Aborted")));
    let applied_before = reloads_applied(&server);
    setup.rewrite(&format!("{edited}# touched\n"));
    eventually(LONG, || {
        if reloads_applied(&server) > applied_before { Ok(()) } else { Err("edit not read yet".to_owned()) }
    });
    let still = status(&server);
    assert_eq!((still["state"].clone(), still["runId"].clone()), (json!("RolledBack"), aborted["runId"].clone()));
    assert!(exposed(&server, &keys).iter().all(|e| !e));
    // …a new revision starts a new run at the first step.
    setup.rewrite(&edited.replace("revision: 1", "revision: 2"));
    let new_run = wait_for(&server, "new run", |s| s["runId"] != aborted["runId"] && s["percent"] == 5.0);
    assert_eq!(new_run["revision"], 2);
    assert_ne!(new_run["runId"], at25["runId"]);

    // (d) Deleting the file freezes the ramp where it is, with a warning.
    std::fs::remove_file(&setup.ramp).unwrap();
    let frozen = wait_for(&server, "frozen", |s| s["frozen"] == true);
    assert_eq!(frozen["percent"], new_run["percent"]);
    assert!(frozen["warnings"][0].as_str().unwrap().contains("missing"), "{frozen}");

    // (e) The admin API cannot change the file-owned flag's rules, but can abort its ramp.
    let flag_url = format!("{}/admin/v1/environments/default/flags/new-checkout", server.admin);
    let definition = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    assert_eq!(send("PUT", &flag_url, None, Some(&definition), &[]).status, 409);
    assert_eq!(command(&server, "promote").status, 409);
    let promote_url = format!("{}/admin/v1/ramps/default/{RAMP}/promote", server.admin);
    let unexplained = send("POST", &promote_url, None, Some(&json!({"force": true})), &[]);
    assert_eq!((unexplained.status, unexplained.text.contains("needs a reason")), (400, true), "{}", unexplained.text);
    let forced = send("POST", &promote_url, None, Some(&json!({"force": true, "reason": "hotfix"})), &[]);
    assert_eq!(forced.status, 409, "a frozen ramp is not promoted, forced or not");
    assert!(forced.body["error"]["details"].get("evidence").is_some(), "{}", forced.text);
    let abort = command(&server, "abort");
    assert_eq!(abort.status, 200, "{}", abort.text);
    assert_eq!(abort.body["state"], "RolledBack");
    let audit = send(
        "GET",
        &format!("{}/admin/v1/audit?flag=new-checkout&actor=local&limit=100", server.admin),
        None,
        None,
        &[],
    );
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["ramp.rolled_back", "ramp.rolled_back"], "{}", audit.text);
}

#[test]
fn the_rust_sdk_reports_outcomes_that_the_ramp_counts() {
    let steps = "    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let server = setup.start();
    // Buckets count whole seconds inside the step: report after its first one.
    wait_for(&server, "a second into the step", |s| {
        s["percent"] == 50.0 && s["holdRemainingSeconds"].as_u64() < Some(3598)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (treatment, control) = runtime.block_on(async {
        let client = rampart_sdk::Client::builder()
            .endpoint(format!("http://{}", server.sync))
            .outcome_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        client.wait_ready(Duration::from_secs(30)).await.unwrap();
        let (mut treatment, mut control) = (0, 0);
        for key in keys(300) {
            let context = rampart_sdk::Context::with_targeting_key(key.as_str());
            let details = client.bool_details("new-checkout", &context, false);
            if details.value {
                treatment += 1
            } else {
                control += 1
            }
            // Both arms fail alike: a regression would roll the ramp back
            // before the evidence is read (flaky on a loaded machine).
            let failing = key.ends_with('7');
            let _ = client.with_outcome("new-checkout", &details, || if failing { Err("boom") } else { Ok(()) });
        }
        // A flag without a ramp is accepted and ignored.
        let other = client.bool_details("new-checkout", &rampart_sdk::Context::new(), false);
        client.record_outcome("not-ramped", &other, rampart_sdk::Outcome::Ok);
        client.flush_outcomes().await.unwrap();
        (treatment, control)
    });
    let expected_errors = keys(300).iter().filter(|k| k.ends_with('7')).count();
    let status = wait_for(&server, "outcomes counted", |s| {
        s["evidence"]["treatment"]["exposures"] == treatment && s["evidence"]["control"]["exposures"] == control
    });
    let errors = |arm: &str| status["evidence"][arm]["errors"].as_u64().unwrap() as usize;
    assert!(errors("treatment") > 0 && errors("control") > 0, "{status}");
    assert_eq!(errors("treatment") + errors("control"), expected_errors, "every outcome counted once: {status}");
    assert_ne!(status["state"], "RolledBack", "equal error rates: nothing to roll back: {status}");
}

#[test]
fn exposure_is_monotonic_and_a_flagd_in_process_provider_agrees() {
    let steps = "    - { percent: 1, hold: 1h }\n    - { percent: 5, hold: 1h }\n    - { percent: 25, hold: 1h }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let server = setup.start();
    wait_for(&server, "started", |s| s["percent"] == 1.0);
    let keys = keys(600);
    let mut provider = LineClient::spawn(node_command(&workspace().join("tests/interop/flagd_provider.cjs")));
    let port: u16 = server.sync.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        provider.call(&json!({"op": "init", "mode": "in-process", "host": "127.0.0.1", "port": port})),
        json!({"ok": true})
    );
    let mut previous: BTreeSet<usize> = BTreeSet::new();
    for percent in [1.0, 5.0, 25.0, 50.0, 100.0] {
        let now = wait_for(&server, "step", |s| s["percent"] == percent);
        assert_eq!(now["percent"], percent);
        let exposed: BTreeSet<usize> =
            exposed(&server, &keys).iter().enumerate().filter(|(_, e)| **e).map(|(i, _)| i).collect();
        assert!(previous.is_subset(&exposed), "someone exposed at an earlier step lost the treatment at {percent}%");
        let p = percent / 100.0;
        let sigma = (p * (1.0 - p) / keys.len() as f64).sqrt();
        let share = exposed.len() as f64 / keys.len() as f64;
        assert!((share - p).abs() <= 4.0 * sigma + 1e-9, "{percent}%: measured {share}");
        // The flagd provider evaluates the streamed configuration itself.
        // Wait until it has this step's configuration: a newly exposed key says so.
        if let Some(new) = exposed.difference(&previous).next() {
            let seen = provider
                .call(&json!({"op": "waitFor", "type": "bool", "flag": "new-checkout", "default": false,
                "context": {"targetingKey": keys[*new]}, "value": true, "timeoutMs": 20000}));
            assert!(seen.get("timedOut").is_none(), "{seen}");
        }
        for (index, key) in keys.iter().enumerate().step_by(3) {
            let got = provider.call(&json!({"op": "resolve", "type": "bool", "flag": "new-checkout", "default": false,
                "context": {"targetingKey": key}}));
            assert_eq!(got["value"], json!(exposed.contains(&index)), "{percent}% {key}: {got}");
        }
        previous = exposed;
        if percent < 100.0 {
            let promoted = command(&server, "promote");
            assert_eq!(promoted.status, 200, "{}", promoted.text);
        }
    }
    provider.call(&json!({"op": "close"}));
}

/// `unit: context`: a targeting key counts once per bucket, however many
/// outcomes it reports, so one noisy client cannot fake a regression.
#[test]
fn counting_contexts_dedupes_a_noisy_client() {
    let steps = "    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(
        &ramp_file(1, "s1", steps, "").replace("    minSamples: 40\n", "    minSamples: 40\n    unit: context\n"),
    );
    let server = setup.start();
    wait_for(&server, "a second into the step", |s| {
        s["percent"] == 50.0 && s["holdRemainingSeconds"].as_u64() < Some(3598)
    });
    let mut outcomes: Vec<Value> = (0..20)
        .map(|i| json!({"flag": "new-checkout", "variant": "on", "ok": 3, "targetingKey": format!("t{i}")}))
        .collect();
    // As noisy as one user may be in a minute (limits.outcomesPerContextPerMinute).
    outcomes.push(json!({"flag": "new-checkout", "variant": "on", "error": 60, "targetingKey": "noisy"}));
    outcomes.extend(
        (0..30).map(|i| json!({"flag": "new-checkout", "variant": "off", "ok": 2, "targetingKey": format!("c{i}")})),
    );
    // A variant that is neither arm is not stored.
    outcomes.push(json!({"flag": "new-checkout", "variant": "blue", "ok": 9, "targetingKey": "x"}));
    let reply = post(&format!("{}/v1/outcomes", server.http), &json!({"outcomes": outcomes}).to_string(), &[]);
    assert_eq!(
        (reply.status, reply.body["accepted"].clone(), reply.body["ignored"].clone()),
        (200, json!(51), json!(1)),
        "{}",
        reply.text
    );
    // Beyond that, one user is not believed to be many: refused whole.
    let noisier =
        json!({"outcomes": [{"flag": "new-checkout", "variant": "on", "error": 500, "targetingKey": "noisier"}]});
    let refused = post(&format!("{}/v1/outcomes", server.http), &noisier.to_string(), &[]);
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (422, Some("OUTCOMES_IMPLAUSIBLE")),
        "{}",
        refused.text
    );
    let status = wait_for(&server, "contexts counted", |s| s["evidence"]["control"]["exposures"] == 30);
    assert_eq!(status["evidence"]["treatment"], json!({"exposures": 21, "errors": 1}));
    assert!(
        status["state"] != "RolledBack" && status["evidence"]["lambda"].as_f64() < Some(100.0),
        "one noisy client is not a regression: {status}"
    );
    // Bad batches get a 400 with a JSON error, never a 5xx.
    for bad in [
        r#"{"outcomes": [{"flag": "", "variant": "on"}]}"#,
        r#"{"outcomes": 3}"#,
        "not json",
        r#"{"outcomes": [{"flag": "f", "variant": "v", "ok": -1}]}"#,
    ] {
        let reply = post(&format!("{}/v1/outcomes", server.http), bad, &[]);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert!(reply.body["error"]["message"].is_string(), "{}", reply.text);
    }
}

/// the treatment, at 25 %, reports like 2 %.
#[test]
fn a_starved_treatment_holds_on_sample_ratio_mismatch() {
    let steps = "    - { percent: 25, hold: 1s }\n    - { percent: 100, hold: 1h }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, ""));
    let server = setup.start();
    let _driver = Driver::start(&server, Some(Traffic { treatment_reported: 0.06, ..HEALTHY }));
    let held = wait_for(&server, "Holding(SampleRatioMismatch)", |s| s["reason"] == "SampleRatioMismatch");
    assert_eq!((held["state"].as_str(), held["percent"].as_f64()), (Some("Holding"), Some(25.0)));
    assert!(held["evidence"]["srmZ"].as_f64().unwrap() < -3.29, "{held}");
    let explain = send("GET", &format!("{}/admin/v1/ramps/default/{RAMP}/explain", server.admin), None, None, &[]);
    let srm = explain.body["guards"].as_array().unwrap().iter().find(|g| g["name"] == "sample ratio").cloned().unwrap();
    assert_eq!(srm["verdict"], "fail", "{}", explain.text);
    assert!(events(&server, "advanced").is_empty());
}

#[test]
fn approvals_gate_a_step_and_a_late_approval_is_refused() {
    let steps = "    - { percent: 5, hold: 1s, approve: true }\n    - { percent: 100, hold: 1h }\n";
    let policy = "  policy:\n    approvalTimeout: { after: 6s, then: pause }\n";
    let setup = Setup::new(&ramp_file(1, "s1", steps, policy));
    let server = setup.start();
    let _driver = Driver::start(&server, Some(HEALTHY));
    assert_eq!(command(&server, "approve").status, 409, "nothing to approve yet");
    let waiting = wait_for(&server, "AwaitingApproval", |s| s["reason"] == "AwaitingApproval");
    assert_eq!((waiting["state"].as_str(), waiting["percent"].as_f64()), (Some("Ramping"), Some(5.0)));
    assert_eq!(events(&server, "approval_requested").len(), 1);
    // Not approved in time: paused; approving now is refused.
    wait_for(&server, "Paused(ApprovalTimeout)", |s| s["reason"] == "ApprovalTimeout");
    let late = command(&server, "approve");
    assert_eq!(late.status, 409);
    assert!(late.body["error"]["message"].as_str().unwrap().contains("timed out"), "{}", late.text);
    // Resume asks again; approving in time advances.
    assert_eq!(command(&server, "resume").status, 200);
    wait_for(&server, "AwaitingApproval again", |s| s["reason"] == "AwaitingApproval");
    let approved = command(&server, "approve");
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["percent"], 100.0);
    let audit = send("GET", &format!("{}/admin/v1/audit?flag=new-checkout&limit=100", server.admin), None, None, &[]);
    assert!(audit.text.contains("ramp.approved"), "{}", audit.text);
}

#[test]
fn a_dry_run_decides_and_records_but_never_exposes_anyone() {
    let setup = Setup::new(&ramp_file(1, "s1", FAST_STEPS, "  dryRun: true\n"));
    let server = setup.start();
    let _driver = Driver::start(&server, Some(HEALTHY));
    let keys = keys(200);
    let done = wait_for(&server, "would complete", |s| s["state"] == "Completed");
    assert_eq!(done["percent"], 100.0, "the run says what it would do");
    assert!(exposed(&server, &keys).iter().all(|e| !e), "nobody is exposed by a dry run");
    let would: Vec<Value> = events(&server, "would_advanced");
    assert_eq!(would.len(), 3, "{would:?}");
    assert!(events(&server, "advanced").is_empty());
    // Turning the dry run off needs a new revision (no silent jump to 100 %).
    setup.rewrite(&ramp_file(1, "s1", FAST_STEPS, ""));
    wait_for(&server, "refused", |s| s["refusedChange"].as_str().is_some_and(|r| r.contains("dryRun")));
    assert!(exposed(&server, &keys).iter().all(|e| !e));
}
