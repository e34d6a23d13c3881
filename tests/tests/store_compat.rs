//! Stored data outlives the code that wrote it: a store written before
//! ramp events, reasons and verdicts became typed (see the fixture's
//! README) still loads, and reads exactly as it did.

use rampart_tests::{Rampart, get, workspace};
use serde_json::Value;

fn copy_fixture(to: &std::path::Path) {
    let fixture = workspace().join("tests/fixtures/store-before-typed-events");
    for entry in std::fs::read_dir(&fixture).expect("fixture") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy fixture");
    }
    std::fs::create_dir_all(to.join("data")).expect("data dir");
    std::fs::rename(to.join("rampart.redb"), to.join("data/rampart.redb")).expect("move store");
}

/// `(to, reason, [event kinds])` of each decision of a ramp's history.
fn decisions(server: &Rampart, ramp: &str) -> Vec<(String, String, Vec<String>)> {
    let history = get(&format!("{}/admin/v1/ramps/default/{ramp}/history", server.admin));
    assert_eq!(history.status, 200, "{}", history.text);
    history.body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|decision| {
            let kinds = decision["events"].as_array().expect("events").iter();
            (
                decision["to"].as_str().unwrap_or_default().to_owned(),
                decision["reason"].as_str().unwrap_or_default().to_owned(),
                kinds.map(|event| event["kind"].as_str().unwrap_or_default().to_owned()).collect(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &[&str])]) -> Vec<(String, String, Vec<String>)> {
    rows.iter()
        .map(|(to, reason, kinds)| {
            ((*to).to_owned(), (*reason).to_owned(), kinds.iter().map(|k| (*k).to_owned()).collect())
        })
        .collect()
}

#[test]
fn a_store_written_before_typed_events_loads_and_reads_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let server = Rampart::start_in(
        &[
            "--flags",
            &path("flags.yaml"),
            "--ramps",
            &path("ramp-*.yaml"),
            "--data-dir",
            &path("data"),
            "--admin-insecure-local",
        ],
        &[],
    );

    let paused = get(&format!("{}/admin/v1/ramps/default/checkout-v2", server.admin));
    assert_eq!(paused.status, 200, "{}", paused.text);
    let status = |body: &Value| {
        (
            body["state"].clone(),
            body["reason"].clone(),
            body["by"].clone(),
            body["step"].clone(),
            body["percent"].clone(),
        )
    };
    assert_eq!(
        status(&paused.body),
        (Value::from("Paused"), Value::from("Operator"), Value::from("local"), Value::from(1), Value::from(10.0))
    );
    assert_eq!(
        decisions(&server, "checkout-v2"),
        owned(&[
            ("Ramping", "Baking", &["started"]),
            ("Holding", "NoTraffic", &["holding"]),
            ("Paused", "Operator", &["paused"]),
        ])
    );

    let aborted = get(&format!("{}/admin/v1/ramps/default/search-dry", server.admin));
    assert_eq!(aborted.body["state"], "RolledBack", "{}", aborted.text);
    assert_eq!(aborted.body["reason"], "Aborted");
    assert_eq!(
        decisions(&server, "search-dry"),
        owned(&[
            ("Ramping", "Baking", &["would_started"]),
            ("Holding", "NoTraffic", &["would_holding"]),
            ("RolledBack", "Aborted", &["would_rolled_back"]),
        ])
    );

    // The audit log reads the same actions.
    let audit = get(&format!("{}/admin/v1/audit?limit=100", server.admin));
    assert_eq!(audit.status, 200, "{}", audit.text);
    let actions: Vec<&str> =
        audit.body["entries"].as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["ramp.created", "ramp.paused", "ramp.would_rolled_back"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // And the paused ramp takes commands as before.
    let resumed = rampart_tests::send(
        "POST",
        &format!("{}/admin/v1/ramps/default/checkout-v2/resume", server.admin),
        None,
        None,
        &[],
    );
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_ne!(resumed.body["state"], "Paused");
}
