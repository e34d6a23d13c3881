//! Ramps guarded by a real Prometheus:
//! Prometheus scrapes, every second, an exporter whose per-variant
//! counters the test drives; the ramp's guard queries Prometheus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rampart_tests::prometheus::{Exporter, Prometheus};
use rampart_tests::{FlagDir, Rampart, eventually, send};
use serde_json::Value;

const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const LONG: Duration = Duration::from_secs(120);

fn ramp_file(steps: &str, policy: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: checkout\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  interval: 3s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    prometheus:\n      errors: 'sum(increase(app_errors_total{{flag=\"{{{{flag}}}}\",variant=\"{{{{variant}}}}\"}}[{{{{window}}}}]))'\n      total: 'sum(increase(app_requests_total{{flag=\"{{{{flag}}}}\",variant=\"{{{{variant}}}}\"}}[{{{{window}}}}]))'\n      lag: 2s\n    absolute: {{ maxErrorRate: 50%, maxIncrease: 10% }}\n{policy}"
    )
}

/// Requests per second split by the ramp's current percent, and error rates.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    requests: f64,
    treatment_errors: f64,
    control_errors: f64,
    /// Shares of requests slower than 300 ms.
    treatment_slow: f64,
    control_slow: f64,
}

/// Counts "served requests" into the exporter's counters every 100 ms,
/// following the ramp's percent, as an instrumented application would.
struct App {
    traffic: Arc<Mutex<Traffic>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    fn start(exporter: Arc<Exporter>, admin: String, traffic: Traffic) -> App {
        for variant in ["on", "off"] {
            exporter.add(&series("app_requests_total", variant), 0.0);
            exporter.add(&series("app_errors_total", variant), 0.0);
            exporter.add(&bucket(variant, "0.3"), 0.0);
        }
        let traffic = Arc::new(Mutex::new(traffic));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (traffic.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
            let mut percent = 0.0;
            while !s.load(Ordering::Relaxed) {
                if let Ok(status) = client
                    .get(format!("{admin}/admin/v1/ramps/default/checkout"))
                    .send()
                    .and_then(|r| r.json::<Value>())
                {
                    percent = status["percent"].as_f64().unwrap_or(percent);
                }
                let traffic = *t.lock().expect("lock");
                let treatment = traffic.requests * percent / 100.0 / 10.0;
                let control = traffic.requests / 10.0 - treatment;
                exporter.add(&series("app_requests_total", "on"), treatment);
                exporter.add(&series("app_requests_total", "off"), control);
                exporter.add(&series("app_errors_total", "on"), treatment * traffic.treatment_errors);
                exporter.add(&series("app_errors_total", "off"), control * traffic.control_errors);
                // The request histogram's 300 ms bucket: requests no slower.
                exporter.add(&bucket("on", "0.3"), treatment * (1.0 - traffic.treatment_slow));
                exporter.add(&bucket("off", "0.3"), control * (1.0 - traffic.control_slow));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        App { traffic, stop, thread: Some(thread) }
    }

    fn set(&self, traffic: Traffic) {
        *self.traffic.lock().expect("lock") = traffic;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn series(name: &str, variant: &str) -> String {
    format!("{name}{{flag=\"new-checkout\",variant=\"{variant}\"}}")
}

/// A bucket of the request duration histogram.
fn bucket(variant: &str, le: &str) -> String {
    format!("app_request_duration_seconds_bucket{{flag=\"new-checkout\",variant=\"{variant}\",le=\"{le}\"}}")
}

fn status(server: &Rampart) -> Value {
    let reply = send("GET", &format!("{}/admin/v1/ramps/default/checkout", server.admin), None, None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn wait_for(server: &Rampart, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(LONG, || {
        let status = status(server);
        if check(&status) { Ok(status) } else { Err(format!("waiting for {what}: {status}")) }
    })
}

struct Setup {
    _dir: FlagDir,
    ramp_path: String,
    flags_path: String,
    exporter: Arc<Exporter>,
    prometheus: Prometheus,
    server: Rampart,
}

fn setup(ramp: &str) -> Setup {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramp = dir.write("ramp.yaml", ramp);
    let exporter = Arc::new(Exporter::start());
    for variant in ["on", "off"] {
        exporter.add(&series("app_requests_total", variant), 0.0);
        exporter.add(&series("app_errors_total", variant), 0.0);
    }
    let prometheus = Prometheus::start(std::slice::from_ref(&exporter.address));
    prometheus.wait_for_series("app_requests_total");
    let server = Rampart::start(&[
        "--flags",
        &flags,
        "--ramps",
        &ramp,
        "--admin-insecure-local",
        "--prometheus-url",
        &prometheus.url,
    ]);
    Setup { _dir: dir, ramp_path: ramp, flags_path: flags, exporter, prometheus, server }
}

#[test]
fn a_prometheus_guarded_ramp_advances_then_rolls_back_on_a_spike() {
    let steps = "    - { percent: 25, hold: 3s }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let setup = setup(&ramp_file(steps, ""));
    let healthy = Traffic {
        requests: 400.0,
        treatment_errors: 0.005,
        control_errors: 0.005,
        treatment_slow: 0.0,
        control_slow: 0.0,
    };
    let app = App::start(setup.exporter.clone(), setup.server.admin.clone(), healthy);
    let at50 = wait_for(&setup.server, "advance to 50%", |s| s["percent"] == 50.0);
    assert_eq!(at50["state"], "Ramping");

    app.set(Traffic { treatment_errors: 0.2, ..healthy });
    let rolled = wait_for(&setup.server, "rollback", |s| s["state"] == "RolledBack");
    assert_eq!((rolled["reason"].as_str(), rolled["percent"].as_f64()), (Some("Regression"), Some(0.0)));
    let history =
        send("GET", &format!("{}/admin/v1/ramps/default/checkout/history", setup.server.admin), None, None, &[]);
    let rollback =
        history.body["decisions"].as_array().unwrap().iter().find(|d| d["to"] == "RolledBack").cloned().unwrap();
    let evidence = &rollback["evidence"];
    assert!(evidence["treatment"]["errors"].as_u64() > evidence["control"]["errors"].as_u64(), "{evidence}");
    drop(app);

    // Replaying the same Prometheus history gives the same decisions.
    let decisions = history.body["decisions"].as_array().unwrap();
    let kinds = ["started", "advanced", "rolled_back"];
    let live: Vec<(String, f64)> = decisions
        .iter()
        .flat_map(|d| {
            d["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (e["kind"].as_str().unwrap().to_owned(), d["percent"].as_f64().unwrap()))
        })
        .filter(|(kind, _)| kinds.contains(&kind.as_str()))
        .collect();
    let rfc3339 = |ms: u64| {
        let output = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{}.{:03}", ms / 1000, ms % 1000), "+%Y-%m-%dT%H:%M:%S.%3NZ"])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let from = rfc3339(decisions[0]["at"].as_u64().unwrap());
    let to = rfc3339(rollback["at"].as_u64().unwrap() + 15_000);
    let output = std::process::Command::new(rampart_tests::rampart_bin())
        .args([
            "ramp",
            "replay",
            &setup.ramp_path,
            "--flags",
            &setup.flags_path,
            "--prometheus-url",
            &setup.prometheus.url,
            "--from",
            &from,
            "--to",
            &to,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let replayed: Vec<(String, f64)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["percent"].as_f64().unwrap()))
        .filter(|(kind, _)| kinds.contains(&kind.as_str()))
        .collect();
    assert_eq!(replayed, live, "replay from {from} to {to}");
}

#[test]
fn prometheus_down_holds_then_pauses_and_only_holding_recovers_by_itself() {
    let steps = "    - { percent: 25, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let policy = "  policy:\n    onMissingData: { pauseAfterFailedChecks: 6, then: pause }\n";
    let mut setup = setup(&ramp_file(steps, policy));
    let healthy =
        Traffic { requests: 400.0, treatment_errors: 0.0, control_errors: 0.0, treatment_slow: 0.0, control_slow: 0.0 };
    let _app = App::start(setup.exporter.clone(), setup.server.admin.clone(), healthy);
    let before = wait_for(&setup.server, "evidence from Prometheus", |s| {
        s["state"] == "Ramping" && s["evidence"]["treatment"]["exposures"].as_u64() > Some(0)
    });

    // A counter reset (the application restarted)
    // neither loses nor inflates counts, and is not a data outage.
    let counted = |s: &Value| s["evidence"]["treatment"]["exposures"].as_u64().unwrap_or(0);
    setup.exporter.reset();
    let after = wait_for(&setup.server, "counting past the reset", |s| counted(s) > counted(&before) + 100);
    let (t, c) = (counted(&after) as f64, after["evidence"]["control"]["exposures"].as_f64().unwrap());
    assert!((t / (t + c) - 0.25).abs() < 0.05, "the split survives the reset: {after}");
    assert_eq!((after["failedChecks"].as_u64(), after["state"].as_str()), (Some(0), Some("Ramping")));

    // Down: hold, never advance, count the blind checks.
    setup.prometheus.stop();
    let holding = wait_for(&setup.server, "Holding(MetricsUnavailable)", |s| s["reason"] == "MetricsUnavailable");
    assert_eq!((holding["state"].as_str(), holding["percent"].as_f64()), (Some("Holding"), Some(25.0)));
    assert!(holding["failedChecks"].as_u64() >= Some(1));
    // Back: Holding resumes by itself, the gap folded into the next bucket.
    setup.prometheus.restart();
    let recovered = wait_for(&setup.server, "recovered", |s| s["failedChecks"] == 0 && s["state"] != "Holding");
    assert_eq!(recovered["percent"], 25.0);

    // Down long enough: paused for a person; back again: still paused.
    setup.prometheus.stop();
    let paused = wait_for(&setup.server, "Paused(MissingDataLimit)", |s| s["state"] == "Paused");
    assert_eq!((paused["reason"].as_str(), paused["percent"].as_f64()), (Some("MissingDataLimit"), Some(25.0)));
    setup.prometheus.restart();
    let seq = paused["seq"].clone();
    // A complete observation again resets the blind-check count, and the ramp stays paused.
    let still = wait_for(&setup.server, "a check with data", |s| s["failedChecks"] == 0);
    assert_eq!(
        (still["state"].as_str(), still["reason"].as_str(), still["seq"].clone()),
        (Some("Paused"), Some("MissingDataLimit"), seq)
    );
    assert!(
        send("POST", &format!("{}/admin/v1/ramps/default/checkout/resume", setup.server.admin), None, None, &[]).status
            == 200
    );
}

/// A latency gate (paired sign test per bucket) lets the ramp advance when
/// the treatment is as fast as the control, and holds it when it is slower.
#[test]
fn a_latency_gate_passes_at_equal_speed_and_holds_a_slower_treatment() {
    let steps = "    - { percent: 25, hold: 3s }\n    - { percent: 50, hold: 3s }\n    - { percent: 100, hold: 1h }\n";
    let metrics = "  metrics:\n    - name: p99-latency\n      role: gate\n      query: 'max_over_time(app_latency_seconds{flag=\"{{flag}}\",variant=\"{{variant}}\"}[{{window}}])'\n      relative: { tolerance: 15% }\n      minBuckets: 5\n";
    let setup = setup(&ramp_file(steps, metrics));
    setup.exporter.add(&series("app_latency_seconds", "on"), 0.2);
    setup.exporter.add(&series("app_latency_seconds", "off"), 0.2);
    let healthy =
        Traffic { requests: 400.0, treatment_errors: 0.0, control_errors: 0.0, treatment_slow: 0.0, control_slow: 0.0 };
    let _app = App::start(setup.exporter.clone(), setup.server.admin.clone(), healthy);
    wait_for(&setup.server, "advance to 50%", |s| s["percent"] == 50.0);
    // Now the treatment is 2.5× slower: the gate fails and the ramp holds at 50 %.
    setup.exporter.add(&series("app_latency_seconds", "on"), 0.3);
    let explain_url = format!("{}/admin/v1/ramps/default/checkout/explain", setup.server.admin);
    let failing = eventually(LONG, || {
        let explain = send("GET", &explain_url, None, None, &[]).body;
        if explain["evidence"]["metrics"][0]["verdict"] == "fail" { Ok(explain) } else { Err(format!("{explain}")) }
    });
    assert_eq!(failing["percent"], 50.0);
    let status = wait_for(&setup.server, "held by the gate", |s| s["state"] == "Holding");
    assert_eq!((status["reason"].as_str(), status["percent"].as_f64()), (Some("Inconclusive"), Some(50.0)));
}

/// A Prometheus that accepts connections and never answers: a tick may not
/// hold its ramp (and its lease renewals) for the query timeout, so an
/// operator command is answered within a fraction of the lease.
#[test]
fn a_hanging_prometheus_never_holds_a_ramp_longer_than_its_tick_budget() {
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = hanging.local_addr().expect("address");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in hanging.incoming().flatten() {
            keep.lock().expect("lock").push(stream);
        }
    });
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramp = dir.write("ramp.yaml", &ramp_file("    - { percent: 50, hold: 1h }\n", ""));
    let server = Rampart::start(&[
        "--flags",
        &flags,
        "--ramps",
        &ramp,
        "--admin-insecure-local",
        "--prometheus-url",
        &format!("http://{address}"),
        "--ramp-lease-seconds",
        "1.5",
    ]);
    // Let the controller start waiting on the silent Prometheus.
    eventually(Duration::from_secs(30), || {
        if held.lock().expect("lock").is_empty() { Err("no query yet".to_owned()) } else { Ok(()) }
    });
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let reply = send("POST", &format!("{}/admin/v1/ramps/default/checkout/pause", server.admin), None, None, &[]);
        assert!(reply.status < 500, "{}", reply.text);
        // Budget: a third of the lease, at least 0.5 s, for the tick the
        // command waits behind and again for its own; without it a command
        // waits for the 5 s query timeout at least once. The margin is for
        // a loaded machine.
        assert!(started.elapsed() < Duration::from_millis(4000), "the command waited {:?}", started.elapsed());
    }
}

/// The latency guard read from a Prometheus histogram: the share of
/// requests above the 300 ms bucket, per variant; no errors at all.
#[test]
fn a_latency_guard_on_a_prometheus_histogram_rolls_back_a_slower_treatment() {
    let steps = "    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let latency = "  latency:\n    slowerThan: 300ms\n    prometheus:\n      within: 'sum(increase(app_request_duration_seconds_bucket{flag=\"{{flag}}\",variant=\"{{variant}}\",le=\"0.3\"}[{{window}}]))'\n      total: 'sum(increase(app_requests_total{flag=\"{{flag}}\",variant=\"{{variant}}\"}[{{window}}]))'\n";
    let setup = setup(&ramp_file(steps, latency));
    let slower = Traffic {
        requests: 400.0,
        treatment_errors: 0.0,
        control_errors: 0.0,
        treatment_slow: 0.4,
        control_slow: 0.02,
    };
    let _app = App::start(setup.exporter.clone(), setup.server.admin.clone(), slower);
    let done = wait_for(&setup.server, "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(done["reason"], "LatencyRegression", "{done}");
}
