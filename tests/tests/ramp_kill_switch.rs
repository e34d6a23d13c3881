//! A kill switch on a ramped flag: every surface agrees that nobody is
//! exposed. The ramp pauses with the typed reason `KillSwitch`, its
//! effective exposure reads 0 %, OFREP answers `DISABLED`, the dashboard
//! says so; turning the flag back on leaves the ramp paused at its step
//! until an operator resumes it.

use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};

const FLAGS: &str = "flags:\n  checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: checkout-v2}\nspec:\n  flag: checkout\n  \
                    treatment: \"on\"\n  interval: 1s\n  steps:\n    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n";

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/default/checkout-v2", server.admin), None, None, &[]).body
}

fn wait(server: &Rampart, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(30), || {
        let status = status(server);
        if check(&status) { Ok(status) } else { Err(format!("{what}: {status}")) }
    })
}

fn switch(server: &Rampart, state: &str) {
    let url = format!("{}/admin/v1/environments/default/flags/checkout", server.admin);
    let answer = send("PATCH", &url, None, Some(&json!({"state": state})), &[]);
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[test]
fn a_kill_switch_pauses_the_ramp_and_every_surface_says_nobody_is_exposed() {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let ramp = dir.write("ramp.yaml", RAMP);
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramp, "--admin-insecure-local"]);
    wait(&server, "ramping at 50 %", |s| s["percent"] == 50.0 && s["state"] != "Pending");

    switch(&server, "DISABLED");
    let paused = wait(&server, "paused by the kill switch", |s| s["state"] == "Paused");
    assert_eq!((paused["reason"].as_str(), paused["percent"].as_f64()), (Some("KillSwitch"), Some(50.0)), "{paused}");
    assert_eq!((paused["effectivePercent"].as_f64(), paused["flagEnabled"].as_bool()), (Some(0.0), Some(false)));
    let evaluated = post(
        &format!("{}/ofrep/v1/evaluate/flags/checkout", server.http),
        r#"{"context": {"targetingKey": "user-1"}}"#,
        &[],
    );
    assert_eq!(evaluated.body["reason"], "DISABLED", "{}", evaluated.text);
    let page = send("GET", &format!("{}/ui/ramps/default/checkout-v2", server.admin), None, None, &[]);
    assert!(page.text.contains("kill switch"), "the ramp page says why nobody is exposed");
    let flag_page = send("GET", &format!("{}/ui/environments/default/flags/checkout", server.admin), None, None, &[]);
    assert!(
        flag_page.text.contains("Ramped by")
            && flag_page.text.contains("checkout-v2")
            && flag_page.text.contains("kill switch"),
        "the flag page names its ramp: {}",
        flag_page.text
    );
    // Resuming while the flag is off says why it cannot.
    let refused = send("POST", &format!("{}/admin/v1/ramps/default/checkout-v2/resume", server.admin), None, None, &[]);
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("kill switch"), "{}", refused.text);

    // Back on: the ramp stays paused at its step until someone resumes.
    switch(&server, "ENABLED");
    let back = wait(&server, "the flag is on again", |s| s["flagEnabled"] == true);
    assert_eq!((back["state"].as_str(), back["reason"].as_str()), (Some("Paused"), Some("KillSwitch")), "{back}");
    assert_eq!(back["effectivePercent"], 50.0);
    let resumed = send("POST", &format!("{}/admin/v1/ramps/default/checkout-v2/resume", server.admin), None, None, &[]);
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_ne!(resumed.body["state"], "Paused", "{}", resumed.text);
}
