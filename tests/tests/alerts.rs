//! Alerts as a ramp guard, with a real Prometheus evaluating a real alert
//! rule and a real Alertmanager posting to `POST /admin/v1/alerts` with a
//! token of the narrow `alerts` role: a firing alert rolls back (or
//! pauses) the ramp it names, as the ramp's file says; the resolved alert
//! is recorded; the `alerts` role can do nothing else.

use std::time::Duration;

use rampart_tests::prometheus::{Alertmanager, Exporter, Prometheus};
use rampart_tests::{FlagDir, Rampart, eventually, send};
use serde_json::{Value, json};

const ALERTS_TOKEN: &str = "alertmanager-token-0123456789";
const ADMIN_TOKEN: &str = "alerts-admin-token-0123456789";
const READ_TOKEN: &str = "alerts-read-token-0123456789";
const FLAGS: &str = "flags:\n  search-engine:\n    state: ENABLED\n    variants: { \"vector\": \"vector\", \"classic\": \"classic\" }\n    defaultVariant: \"classic\"\n  new-checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const LONG: Duration = Duration::from_secs(90);

fn ramp(name: &str, flag: &str, treatment: &str, alerts: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{name: {name}}}\nspec:\n  flag: {flag}\n  treatment: \"{treatment}\"\n  \
         interval: 1s\n  steps:\n    - {{percent: 50, hold: 1h}}\n    - {{percent: 100, hold: 1h}}\n{alerts}"
    )
}

fn start() -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write("search.yaml", &ramp("search-v2", "search-engine", "vector", "  alerts: {onFiring: rollback}\n"));
    dir.write("checkout.yaml", &ramp("checkout-v2", "new-checkout", "on", ""));
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "adminTokens:\n  - {{name: alertmanager, role: alerts, value: {ALERTS_TOKEN}}}\n  - {{name: ops, role: admin, value: {ADMIN_TOKEN}}}\n  \
             - {{name: viewer, role: read, value: {READ_TOKEN}}}\nenvironments:\n  production:\n    flags: [flags.yaml]\n    \
             ramps: [search.yaml, checkout.yaml]\n    sdkKeys: [{{value: production-sdk-key-01}}]\n"
        ),
    );
    (Rampart::start(&["--config", &config]), dir)
}

fn status(server: &Rampart, ramp: &str) -> Value {
    let reply =
        send("GET", &format!("{}/admin/v1/ramps/production/{ramp}", server.admin), Some(ADMIN_TOKEN), None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn wait_for(server: &Rampart, ramp: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(LONG, || {
        let status = status(server, ramp);
        if check(&status) { Ok(status) } else { Err(format!("waiting for {what}: {status}")) }
    })
}

fn audit_actions(server: &Rampart) -> Vec<(String, String)> {
    let reply = send("GET", &format!("{}/admin/v1/audit?limit=100", server.admin), Some(ADMIN_TOKEN), None, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or("").to_owned(), e["actor"].as_str().unwrap_or("").to_owned()))
        .collect()
}

const RULES: &str = "groups:\n  - name: app\n    rules:\n      \
    - alert: SearchLatencyHigh\n        expr: app_alarm{which=\"search\"} > 0\n        \
      labels: {rampart_ramp: search-v2, environment: production}\n        annotations: {summary: p99 above 2 s}\n      \
    - alert: CheckoutErrors\n        expr: app_alarm{which=\"checkout\"} > 0\n        \
      labels: {rampart_flag: new-checkout}\n";

#[test]
fn alertmanager_rolls_back_or_pauses_the_ramp_its_alert_names() {
    let (server, _dir) = start();
    for ramp in ["search-v2", "checkout-v2"] {
        wait_for(&server, ramp, "the ramp to run", |s| s["percent"] == 50.0);
    }
    let exporter = Exporter::start();
    exporter.add("app_alarm{which=\"search\"}", 0.0);
    exporter.add("app_alarm{which=\"checkout\"}", 0.0);
    let alertmanager = Alertmanager::start(&format!("{}/admin/v1/alerts", server.admin), ALERTS_TOKEN);
    let prometheus =
        Prometheus::start_alerting(std::slice::from_ref(&exporter.address), Some((RULES, &alertmanager.address)));
    prometheus.wait_for_series("app_alarm");

    // The search alert fires: its ramp's file says roll back.
    exporter.add("app_alarm{which=\"search\"}", 1.0);
    let rolled_back = wait_for(&server, "search-v2", "the rollback", |s| s["state"] == "RolledBack");
    assert_eq!(rolled_back["percent"], 0.0, "{rolled_back}");
    assert_eq!(status(&server, "checkout-v2")["state"], "Holding", "an alert moves only the ramp it names");
    let history = send(
        "GET",
        &format!("{}/admin/v1/ramps/production/search-v2/history", server.admin),
        Some(ADMIN_TOKEN),
        None,
        &[],
    );
    assert!(history.text.contains("alert SearchLatencyHigh firing: p99 above 2 s"), "{}", history.text);

    // The checkout alert names the flag; that ramp's file says nothing: pause.
    exporter.add("app_alarm{which=\"checkout\"}", 1.0);
    let paused = wait_for(&server, "checkout-v2", "the pause", |s| s["state"] == "Paused");
    assert_eq!(paused["percent"], 50.0, "a pause keeps the step: {paused}");

    // Both resolve: recorded, and nothing resumes by itself.
    exporter.reset();
    eventually(LONG, || {
        let resolved = audit_actions(&server).iter().filter(|(action, _)| action == "ramp.alert_resolved").count();
        if resolved >= 2 { Ok(()) } else { Err(format!("{resolved} resolved alerts recorded")) }
    });
    assert!(
        audit_actions(&server).iter().any(|(action, actor)| action == "ramp.rolled_back" && actor == "alertmanager"),
        "the rollback is the alerts token's: {:?}",
        audit_actions(&server)
    );
    assert_eq!(status(&server, "checkout-v2")["state"], "Paused");
    assert!(server.metric("rampart_alerts_total{result=\"rolled_back\"}") >= 1.0);
}

#[test]
fn the_alerts_role_posts_alerts_and_nothing_else() {
    let (server, _dir) = start();
    let url = format!("{}/admin/v1/alerts", server.admin);
    let alert = |status: &str, labels: Value| {
        json!({"version": "4", "status": status, "alerts": [
        {"status": status, "labels": labels, "annotations": {}, "startsAt": "2026-12-07T10:00:00Z"}]})
    };
    // Nothing to stop: an alert naming no ramp is counted as unmatched.
    let reply = send("POST", &url, Some(ALERTS_TOKEN), Some(&alert("firing", json!({"alertname": "Other"}))), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["unmatched"], 1);
    // The alerts token reads nothing; a read token posts no alerts; no token: 401.
    let ramps = send("GET", &format!("{}/admin/v1/ramps", server.admin), Some(ALERTS_TOKEN), None, &[]);
    assert_eq!(ramps.status, 403, "{}", ramps.text);
    let named = alert("firing", json!({"alertname": "X", "rampart_ramp": "search-v2"}));
    assert_eq!(send("POST", &url, Some(READ_TOKEN), Some(&named), &[]).status, 403);
    assert_eq!(send("POST", &url, None, Some(&named), &[]).status, 401);
    // Bad bodies: 400 with the JSON error, and a bound on alerts per notification.
    let bad = send("POST", &url, Some(ALERTS_TOKEN), Some(&json!({"alerts": "no"})), &[]);
    assert_eq!((bad.status, bad.body["error"]["code"].as_str()), (400, Some("BAD_REQUEST")), "{}", bad.text);
    let many: Vec<Value> = (0..1_001).map(|_| json!({"status": "firing", "labels": {}})).collect();
    let too_many = send("POST", &url, Some(ALERTS_TOKEN), Some(&json!({"alerts": many})), &[]);
    assert_eq!(too_many.status, 413, "{}", too_many.text);
    // None of it moved a ramp.
    assert_ne!(status(&server, "search-v2")["state"], "RolledBack");
}
