//! Acknowledged admin writes survive a crash: write through the API, kill
//! the server with SIGKILL right after the 2xx, restart it on the same data
//! directory, and find every acknowledged write — many times over.

use rampart_tests::{FlagDir, Rampart, post, send};
use serde_json::json;

const TOKEN: &str = "durability-token-0000001";

fn start(config: &str, data: &str) -> Rampart {
    Rampart::start_in(&["--config", config, "--data-dir", data], &[("RAMPART_ADMIN_TOKEN", TOKEN)])
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = FlagDir::new();
    dir.write(
        "flags.yaml",
        "flags:\n  file-flag:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: on\n",
    );
    let config = dir.write("rampart.yaml", "environments:\n  production:\n    flags: [flags.yaml]\n");
    let data = dir.path("data").to_string_lossy().into_owned();

    let rounds = 15;
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let server = start(&config, &data);
        let url = format!("{}/admin/v1/environments/production/flags/flag-{round}", server.admin);
        let definition = json!({"state": "ENABLED", "variants": {"v": round}, "defaultVariant": "v"});
        let reply = send("PUT", &url, Some(TOKEN), Some(&definition), &[]);
        assert_eq!(reply.status, 201, "{}", reply.text);
        acknowledged.push(round);
        // Alternate the file flag's kill switch too (an override, not a version).
        let state = if round % 2 == 0 { "DISABLED" } else { "ENABLED" };
        let patch = format!("{}/admin/v1/environments/production/flags/file-flag", server.admin);
        assert_eq!(send("PATCH", &patch, Some(TOKEN), Some(&json!({"state": state})), &[]).status, 200);
        server.kill();
    }

    let server = start(&config, &data);
    for round in &acknowledged {
        let reply = post(&format!("{}/ofrep/v1/evaluate/flags/flag-{round}", server.http), "{}", &[]);
        assert_eq!(reply.body["value"], json!(round), "flag-{round} lost: {}", reply.text);
    }
    let last_state = if (rounds - 1) % 2 == 0 { "DISABLED" } else { "ENABLED" };
    let reply = send(
        "GET",
        &format!("{}/admin/v1/environments/production/flags/file-flag", server.admin),
        Some(TOKEN),
        None,
        &[],
    );
    assert_eq!(reply.body["state"], last_state);
    let audit = send("GET", &format!("{}/admin/v1/audit?limit=1000", server.admin), Some(TOKEN), None, &[]);
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 2 * rounds, "{}", audit.text);
}
