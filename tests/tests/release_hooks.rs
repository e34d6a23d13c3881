//! CI/CD hooks against the real binary: the verdict endpoint in the shapes
//! Argo Rollouts' `web` metric provider and Flagger's webhooks read
//! (`$.verdict`; with `?gate=true` 200 / 425 / 412), and `rampart ramp
//! status|pause|resume|wait` with their documented exit codes.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, output_within, rampart_bin, send};
use serde_json::{Value, json};

const FLAGS: &str = "flags:\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const LONG: Duration = Duration::from_secs(90);

fn ramp(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: {name}\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  salt: s1\n  interval: 1s\n  steps:\n{steps}  guard:\n    minSamples: 40\n    absolute: {{ maxErrorRate: 50%, maxIncrease: 10% }}\n"
    )
}

fn start(name: &str, steps: &str) -> (FlagDir, Rampart) {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramps = dir.write("ramp.yaml", &ramp(name, steps));
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramps, "--admin-insecure-local"]);
    (dir, server)
}

fn verdict(server: &Rampart, name: &str, gate: bool) -> (u16, Value) {
    let query = if gate { "?gate=true" } else { "" };
    let reply = send("GET", &format!("{}/admin/v1/ramps/default/{name}/verdict{query}", server.admin), None, None, &[]);
    (reply.status, reply.body)
}

/// `rampart ramp ARGS…` against the server: exit code and output.
fn cli(server: &Rampart, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(rampart_bin());
    command.arg("ramp").args(args).arg("--url").arg(&server.admin).env_remove("RAMPART_ADMIN_TOKEN");
    let output = output_within(command, LONG);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Outcome reports every 100 ms following the ramp's percent, the
/// treatment failing at `treatment_errors` per thousand.
struct Reports {
    treatment_errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reports {
    fn start(server: &Rampart, name: &str) -> Reports {
        let (http, status_url) = (server.http.clone(), format!("{}/admin/v1/ramps/default/{name}", server.admin));
        let treatment_errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (errors, halt) = (treatment_errors.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
            while !halt.load(Ordering::Relaxed) {
                let percent = client
                    .get(&status_url)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .ok()
                    .and_then(|s| s["percent"].as_f64())
                    .unwrap_or(0.0);
                let treatment = (percent * 2.0).round() as u64;
                let control = 200 - treatment.min(200);
                let failed = treatment * errors.load(Ordering::Relaxed) / 1000;
                let body = json!({"outcomes": [
                    {"flag": "new-checkout", "variant": "on", "ok": treatment - failed, "error": failed},
                    {"flag": "new-checkout", "variant": "off", "ok": control, "error": 0},
                ]});
                let _ = client
                    .post(format!("{http}/v1/outcomes"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Reports { treatment_errors, stop, thread: Some(thread) }
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
fn a_healthy_ramp_passes_and_wait_returns_when_it_completes() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 50, hold: 1s }\n    - { percent: 100, hold: 1s }\n";
    let (_dir, server) = start("healthy", steps);
    // Before any evidence: pending, 200 for Argo, 425 for a gate.
    let (status, body) = verdict(&server, "healthy", false);
    assert_eq!((status, body["verdict"].as_str()), (200, Some("pending")), "{body}");
    let (status, body) = verdict(&server, "healthy", true);
    assert_eq!((status, body["verdict"].as_str()), (425, Some("pending")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "the error shape too: {body}");
    // With its reason phrase on the wire (a gate's log shows the status line).
    let status_line = {
        use std::io::{BufRead, Write};
        let address = server.admin.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        let request = format!(
            "GET /admin/v1/ramps/default/healthy/verdict?gate=true HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut line = String::new();
        std::io::BufReader::new(stream).read_line(&mut line).expect("status line");
        line
    };
    assert_eq!(status_line.trim_end(), "HTTP/1.1 425 Too Early");

    let _reports = Reports::start(&server, "healthy");
    let (code, output) =
        cli(&server, &["wait", "default/healthy", "--until", "completed", "--timeout", "80s", "--interval", "200ms"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("default/healthy: Completed at 100%"), "{output}");
    assert!(output.lines().count() >= 2, "progress lines as the ramp moves: {output}");

    let (status, body) = verdict(&server, "healthy", true);
    assert_eq!((status, body["verdict"].as_str()), (200, Some("pass")), "{body}");
    assert_eq!(body["state"], "Completed");
    assert_eq!(body["percent"], 100.0);
    let (code, output) = cli(&server, &["status", "default/healthy", "--json"]);
    assert_eq!(code, 0, "{output}");
    let status: Value = serde_json::from_str(output.trim()).expect("JSON");
    assert_eq!(status["state"], "Completed");
}

#[test]
fn wait_exits_with_a_code_for_timeout_pause_and_rollback_and_the_verdict_fails() {
    let steps = "    - { percent: 5, hold: 1s }\n    - { percent: 25, hold: 1h }\n    - { percent: 100, hold: 1h }\n";
    let (_dir, server) = start("risky", steps);
    // No traffic: the 5% step cannot advance in a second.
    let (code, output) = cli(&server, &["wait", "default/risky", "--timeout", "1s", "--interval", "200ms"]);
    assert_eq!(code, 5, "timeout: {output}");
    // Paused by a person: wait stops with 4 rather than waiting for ever.
    eventually(LONG, || match cli(&server, &["status", "default/risky", "--json"]) {
        (0, text) if !text.contains("\"Pending\"") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let (code, output) = cli(&server, &["pause", "default/risky", "--reason", "checking dashboards"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Paused"), "{output}");
    let (code, output) = cli(&server, &["wait", "default/risky", "--timeout", "30s", "--interval", "200ms"]);
    assert_eq!(code, 4, "paused: {output}");
    assert_eq!(cli(&server, &["resume", "default/risky"]).0, 0);

    // Healthy traffic reaches 25%, where the verdict passes once proven…
    let reports = Reports::start(&server, "risky");
    let (code, output) =
        cli(&server, &["wait", "default/risky", "--until", "percent:25", "--timeout", "60s", "--interval", "200ms"]);
    assert_eq!(code, 0, "{output}");
    eventually(LONG, || match verdict(&server, "risky", true) {
        (200, body) if body["verdict"] == "pass" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    // …then the treatment fails a third of its requests: rolled back.
    reports.treatment_errors.store(330, Ordering::Relaxed);
    let (code, output) = cli(&server, &["wait", "default/risky", "--timeout", "60s", "--interval", "200ms"]);
    assert_eq!(code, 3, "rolled back: {output}");
    let (status, body) = verdict(&server, "risky", true);
    assert_eq!((status, body["verdict"].as_str()), (412, Some("fail")), "{body}");
    let (status, plain) = verdict(&server, "risky", false);
    assert_eq!((status, plain["verdict"].as_str()), (200, Some("fail")), "Argo reads $.verdict from a 200: {plain}");
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("rolled back")), "{body}");

    // Refusals and an unreachable server have their own codes.
    assert_eq!(cli(&server, &["status", "default/nope"]).0, 1);
    assert_eq!(
        send("GET", &format!("{}/admin/v1/ramps/default/nope/verdict", server.admin), None, None, &[]).status,
        404
    );
    let mut command = Command::new(rampart_bin());
    command.args(["ramp", "status", "default/risky", "--url", "http://127.0.0.1:9"]);
    assert_eq!(output_within(command, LONG).status.code(), Some(2));
}

#[test]
fn plan_prints_each_step_and_names_what_cannot_be_met() {
    let plan = |traffic: &str| {
        let mut command = Command::new(rampart_bin());
        command.args(["ramp", "plan"]).arg(rampart_tests::workspace().join("examples/ramps/search-v2.yaml"));
        command.args(["--traffic", traffic, "--baseline-error", "0.1%"]);
        let output = output_within(command, LONG);
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, output) = plan("1000/min");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("total: about"), "{output}");
    assert_eq!(
        output.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count(),
        4,
        "{output}"
    );
    // No traffic: no step advances, exit 1 and say so.
    let (code, output) = plan("0/min");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("never advance") && output.contains("would not complete"), "{output}");
}
