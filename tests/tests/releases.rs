//! Release pipelines end to end (`kind: Release`): one file, two
//! environments. Production's stage waits for staging's to complete; a
//! rollback in staging halts the pipeline (production never starts); a
//! restart of staging mid-pipeline carries it through; a server killed
//! mid-pipeline resumes where it was; `rampart release wait` exits with
//! its documented codes.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, output_within, rampart_bin, send};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);
const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RELEASE: &str = "apiVersion: rampart.dev/v1\nkind: Release\nmetadata:\n  name: checkout\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  interval: 1s\n  guard:\n    minSamples: 40\n    absolute: { maxErrorRate: 50%, maxIncrease: 10% }\n  stages:\n    - environment: staging\n      steps: [{percent: 50, hold: 1s}, {percent: 100, hold: 1s}]\n    - environment: production\n      steps: [{percent: 5, hold: 1s}, {percent: 100, hold: 1s}]\n";
/// Reporter keys, per environment.
const KEYS: [(&str, &str); 2] = [("staging", "staging-reporter-key-01"), ("production", "production-reporter-01")];

struct Setup {
    dir: FlagDir,
    config: String,
}

impl Setup {
    fn new() -> Setup {
        Setup::with(RELEASE)
    }

    fn with(release: &str) -> Setup {
        let dir = FlagDir::new();
        dir.write("flags.yaml", FLAGS);
        dir.write("release.yaml", release);
        let config = dir.write(
            "rampart.yaml",
            "environments:\n  staging:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: staging-sdk-key-0001}]\n    \
             reporterKeys: [{value: staging-reporter-key-01}]\n  \
             production:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: production-sdk-key-01}]\n    \
             reporterKeys: [{value: production-reporter-01}]\nlimits:\n  outcomeSourceWindowSeconds: 1\n",
        );
        Setup { dir, config }
    }

    fn start(&self) -> Rampart {
        let data = self.dir.path("data");
        Rampart::start_in(
            &["--config", &self.config, "--admin-insecure-local", "--data-dir", data.to_str().expect("utf-8 path")],
            &[],
        )
    }
}

fn stage(server: &Rampart, environment: &str) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/{environment}/checkout", server.admin), None, None, &[]).body
}

fn release(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/releases/checkout", server.admin), None, None, &[]).body
}

fn wait(server: &Rampart, timeout: &str) -> (Option<i32>, String) {
    let mut command = Command::new(rampart_bin());
    command.args(["release", "wait", "checkout", "--timeout", timeout, "--interval", "200ms", "--url", &server.admin]);
    let output = output_within(command, LONG);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// Outcomes for both environments every 100 ms, each following its stage's
/// percent; the treatment fails `errors` per thousand in staging.
struct Reports {
    staging_errors: Arc<AtomicU64>,
    production_errors: Arc<AtomicU64>,
    target: Arc<std::sync::Mutex<(String, String)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reports {
    fn start(server: &Rampart) -> Reports {
        let target = Arc::new(std::sync::Mutex::new((server.http.clone(), server.admin.clone())));
        let (staging_errors, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let production_errors = Arc::new(AtomicU64::new(0));
        let (errors, halt, where_to) = (staging_errors.clone(), stop.clone(), target.clone());
        let production_rate = production_errors.clone();
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
            let mut carry = [0.0_f64; 2];
            while !halt.load(Ordering::Relaxed) {
                let (http, admin) = where_to.lock().expect("lock").clone();
                for (environment, key) in KEYS {
                    let percent = client
                        .get(format!("{admin}/admin/v1/ramps/{environment}/checkout"))
                        .send()
                        .and_then(|r| r.json::<Value>())
                        .ok()
                        .and_then(|s| s["percent"].as_f64())
                        .unwrap_or(0.0);
                    // A fleet's reports, each within what one reporter may add
                    // to a young step (half of minSamples, 20, for the
                    // smaller arm), errors carried over between reports.
                    let share = percent / 100.0;
                    let total = (20.0 / share.max(1.0 - share).max(0.5)).round();
                    let treatment = (total * share).round() as u64;
                    let control = (total as u64).saturating_sub(treatment);
                    let rate =
                        if environment == "staging" { &errors } else { &production_rate }.load(Ordering::Relaxed);
                    let carried = if environment == "staging" { &mut carry[0] } else { &mut carry[1] };
                    *carried += treatment as f64 * rate as f64 / 1000.0;
                    let failed = (carried.floor() as u64).min(treatment);
                    *carried -= failed as f64;
                    let body = json!({"outcomes": [
                        {"flag": "new-checkout", "variant": "on", "ok": treatment - failed, "error": failed},
                        {"flag": "new-checkout", "variant": "off", "ok": control, "error": 0},
                    ]});
                    let _ = client
                        .post(format!("{http}/v1/outcomes"))
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Reports { staging_errors, production_errors, target, stop, thread: Some(thread) }
    }

    fn retarget(&self, server: &Rampart) {
        *self.target.lock().expect("lock") = (server.http.clone(), server.admin.clone());
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn production_waits_for_staging_and_the_release_survives_a_restart() {
    let setup = Setup::new();
    let server = setup.start();
    // Before any evidence: staging runs, production waits for it.
    eventually(LONG, || {
        let production = stage(&server, "production");
        if production["state"] == "Pending" && production["reason"] == "PreviousStage" {
            Ok(())
        } else {
            Err(production.to_string())
        }
    });
    let status = release(&server);
    assert_eq!(status["stages"].as_array().map(Vec::len), Some(2), "{status}");
    assert_eq!(status["stages"][0]["environment"], "staging");
    assert_ne!(status["state"], "Completed");

    let reports = Reports::start(&server);
    // Production starts only after staging has completed.
    eventually(LONG, || {
        let production = stage(&server, "production");
        if production["state"] == "Pending" {
            return Err("production still waiting".to_owned());
        }
        assert_eq!(stage(&server, "staging")["state"], "Completed", "production started before staging completed");
        Ok(())
    });
    // Killed mid-pipeline, restarted on the same data: it carries on.
    server.kill();
    let server = setup.start();
    reports.retarget(&server);
    let (code, output) = wait(&server, "80s");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("checkout: Completed, stage 2 of 2 (production)"), "{output}");
    let status = release(&server);
    assert_eq!(status["state"], "Completed", "{status}");
    assert_eq!(stage(&server, "production")["percent"], 100.0);
    // The history, oldest first: staging completed before production started.
    let history = send("GET", &format!("{}/admin/v1/releases/checkout/history", server.admin), None, None, &[]).body;
    let decisions = history["decisions"].as_array().expect("decisions").clone();
    let position = |environment: &str, to: &str| {
        decisions
            .iter()
            .position(|d| d["environment"] == environment && d["to"] == to)
            .unwrap_or_else(|| panic!("{environment} {to}: {history}"))
    };
    assert!(position("staging", "Completed") < position("production", "Ramping"), "{history}");
}

#[test]
fn a_rollback_in_staging_halts_the_pipeline_until_staging_is_restarted() {
    let setup = Setup::new();
    let server = setup.start();
    let reports = Reports::start(&server);
    reports.staging_errors.store(400, Ordering::Relaxed);
    let (code, output) = wait(&server, "80s");
    assert_eq!(code, Some(3), "halted: {output}");
    let status = release(&server);
    assert_eq!(status["state"], "Halted", "{status}");
    assert_eq!(status["stages"][0]["state"], "RolledBack");
    // Production never started.
    let production = stage(&server, "production");
    assert_eq!((production["state"].as_str(), production["reason"].as_str()), (Some("Pending"), Some("PreviousStage")));
    assert_eq!(production["percent"], 0.0);

    // Fixed: staging restarted mid-pipeline carries the release through.
    reports.staging_errors.store(0, Ordering::Relaxed);
    let restart = send("POST", &format!("{}/admin/v1/ramps/staging/checkout/restart", server.admin), None, None, &[]);
    assert_eq!(restart.status, 200, "{}", restart.text);
    let (code, output) = wait(&server, "80s");
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(release(&server)["state"], "Completed");
}

#[test]
fn with_rollback_earlier_stages_a_production_rollback_takes_staging_back_too() {
    let setup = Setup::with(&RELEASE.replace("  stages:\n", "  rollbackEarlierStages: true\n  stages:\n"));
    let server = setup.start();
    let reports = Reports::start(&server);
    reports.production_errors.store(400, Ordering::Relaxed);
    let (code, output) = wait(&server, "80s");
    assert_eq!(code, Some(3), "halted: {output}");
    let production = stage(&server, "production");
    assert_eq!(production["state"], "RolledBack", "{production}");
    // Staging had completed; the release takes it back to 0 % as well.
    let staging = eventually(LONG, || {
        let staging = stage(&server, "staging");
        if staging["state"] == "RolledBack" { Ok(staging) } else { Err(staging.to_string()) }
    });
    assert_eq!(
        (staging["reason"].as_str(), staging["by"].as_str()),
        (Some("LaterStage"), Some("release")),
        "{staging}"
    );
    assert_eq!(staging["percent"], 0.0);
    assert_eq!(release(&server)["state"], "Halted");
}

#[test]
fn an_api_owned_flag_is_promoted_into_the_next_environment_when_its_stage_starts() {
    let dir = FlagDir::new();
    dir.write("flags.yaml", "flags:\n  other:\n    state: ENABLED\n    variants: { a: 1 }\n    defaultVariant: a\n");
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  staging:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: staging-sdk-key-0001}]\n    \
             reporterKeys: [{value: staging-reporter-key-01}]\n  \
         production:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: production-sdk-key-01}]\n    \
             reporterKeys: [{value: production-reporter-01}]\nlimits:\n  outcomeSourceWindowSeconds: 1\n",
    );
    let server = Rampart::start(&["--config", &config, "--admin-insecure-local"]);
    // The flag exists only in staging, created through the API.
    let definition = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    let created = send(
        "PUT",
        &format!("{}/admin/v1/environments/staging/flags/new-checkout", server.admin),
        None,
        Some(&definition),
        &[],
    );
    assert!(created.status == 200 || created.status == 201, "{}", created.text);
    let in_production = || {
        send("GET", &format!("{}/admin/v1/environments/production/flags/new-checkout", server.admin), None, None, &[])
    };
    assert_eq!(in_production().status, 404);
    // The release file arrives; both environments read their stage.
    dir.write("release.yaml", RELEASE);
    eventually(LONG, || match release(&server) {
        status if status["stages"].as_array().is_some_and(|s| s.len() == 2) => Ok(()),
        other => Err(other.to_string()),
    });
    let _reports = Reports::start(&server);
    let (code, output) = wait(&server, "80s");
    assert_eq!(code, Some(0), "{output}");
    // Promoted when production's stage started: API-owned there, audited as the release's.
    let promoted = in_production();
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(promoted.body["source"], "api");
    assert_eq!(promoted.body["definition"]["variants"], definition["variants"]);
    let audit =
        send("GET", &format!("{}/admin/v1/audit?flag=new-checkout&limit=100", server.admin), None, None, &[]).body;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["action"] == "promote" && e["environment"] == "production" && e["actor"] == "release"),
        "{audit}"
    );
}

#[test]
fn validate_checks_every_stage_against_the_flags() {
    let setup = Setup::new();
    let release = setup.dir.path("release.yaml");
    let flags = setup.dir.path("flags.yaml");
    let mut command = Command::new(rampart_bin());
    command.args(["validate", flags.to_str().expect("utf-8 path"), release.to_str().expect("utf-8 path")]);
    let output = output_within(command, LONG);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let broken = setup.dir.write("broken.yaml", &RELEASE.replace("flag: new-checkout", "flag: missing-flag"));
    let mut command = Command::new(rampart_bin());
    command.args(["validate", flags.to_str().expect("utf-8 path"), &broken]);
    let output = output_within(command, LONG);
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("broken.yaml:6") && text.contains("missing-flag"), "file and line: {text}");
}
