//! Operations: the `rampart health` probe for containers.

use std::process::Command;

use rampart_tests::{FlagDir, Rampart, free_port, rampart_bin};

fn health(args: &[&str]) -> std::process::Output {
    Command::new(rampart_bin())
        .arg("health")
        .args(args)
        .env_remove("RAMPART_ADMIN_URL")
        .output()
        .expect("run rampart health")
}

#[test]
fn the_health_probe_exits_zero_only_when_the_server_answers() {
    let dir = FlagDir::new();
    let flags =
        dir.write("flags.yaml", "flags:\n  f:\n    state: ENABLED\n    variants: {a: 1}\n    defaultVariant: a\n");
    let server = Rampart::start(&["--flags", &flags]);
    assert!(health(&["--url", &server.admin]).status.success());
    assert!(health(&["--url", &server.admin, "--ready"]).status.success());
    let down = health(&["--url", &format!("http://127.0.0.1:{}", free_port()), "--timeout-seconds", "1"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("rampart health"));
}

#[test]
fn every_response_carries_a_request_id() {
    let dir = FlagDir::new();
    let flags =
        dir.write("flags.yaml", "flags:\n  f:\n    state: ENABLED\n    variants: {a: 1}\n    defaultVariant: a\n");
    let server = Rampart::start(&["--flags", &flags]);
    let client = rampart_tests::client();
    let url = format!("{}/ofrep/v1/evaluate/flags/f", server.http);
    let given = client.post(&url).header("x-request-id", "trace-abc_123").body("{}").send().expect("post");
    assert_eq!(given.headers()["x-request-id"], "trace-abc_123");
    let made = client.post(&url).body("{}").send().expect("post");
    let first = made.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let again = client.post(&url).body("{}").send().expect("post");
    assert_ne!(again.headers()["x-request-id"].to_str().expect("ascii"), first, "ids are unique");
    // A hostile id is replaced, not echoed.
    let hostile = client.post(&url).header("x-request-id", "a b<script>").body("{}").send().expect("post");
    assert_ne!(hostile.headers()["x-request-id"], "a b<script>");
}
