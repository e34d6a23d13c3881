//! Every admin endpoint against every role, driven by the OpenAPI document:
//! an operation missing from the table below fails the test, so a new
//! endpoint cannot ship without a decided role.
//!
//! | role | may |
//! |---|---|
//! | read | every GET |
//! | write | change flags (create, replace, kill switch, delete, revert); pause, resume, approve ramps |
//! | admin | promote between environments; promote, abort, restart ramps |
//! | alerts | post Alertmanager alerts, nothing else (as `write` may) |

use std::collections::BTreeMap;

use rampart_tests::{FlagDir, Rampart, send};
use serde_json::json;

const READ: &str = "read-token-0000000000001";
const WRITE: &str = "write-token-000000000001";
const ADMIN: &str = "admin-token-000000000001";

/// (method, OpenAPI path, action for the ramp command) → least role.
fn table() -> BTreeMap<(&'static str, &'static str, &'static str), &'static str> {
    let e = "/admin/v1/environments/{environment}";
    let r = "/admin/v1/ramps/{environment}/{name}";
    let leaked = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut table = BTreeMap::from([
        (("GET", "/admin/v1/environments", ""), "read"),
        (("GET", leaked(format!("{e}/flags")), ""), "read"),
        (("GET", leaked(format!("{e}/flags/{{key}}")), ""), "read"),
        (("PUT", leaked(format!("{e}/flags/{{key}}")), ""), "write"),
        (("PATCH", leaked(format!("{e}/flags/{{key}}")), ""), "write"),
        (("DELETE", leaked(format!("{e}/flags/{{key}}")), ""), "write"),
        (("GET", leaked(format!("{e}/flags/{{key}}/history")), ""), "read"),
        (("GET", leaked(format!("{e}/flags/{{key}}/usage")), ""), "read"),
        (("GET", leaked(format!("{e}/ready-to-remove")), ""), "read"),
        (("POST", leaked(format!("{e}/flags/{{key}}/revert")), ""), "write"),
        (("POST", leaked(format!("{e}/promote")), ""), "admin"),
        (("GET", "/admin/v1/audit", ""), "read"),
        (("GET", "/admin/v1/drift", ""), "read"),
        (("GET", "/admin/v1/ramps", ""), "read"),
        (("GET", r, ""), "read"),
        (("GET", leaked(format!("{r}/history")), ""), "read"),
        (("GET", leaked(format!("{r}/explain")), ""), "read"),
        (("GET", leaked(format!("{r}/verdict")), ""), "read"),
        (("GET", "/admin/v1/releases", ""), "read"),
        (("GET", "/admin/v1/releases/{name}", ""), "read"),
        (("GET", "/admin/v1/releases/{name}/history", ""), "read"),
        // Also the narrow `alerts` role (tests/tests/alerts.rs).
        (("POST", "/admin/v1/alerts", ""), "write"),
    ]);
    for (action, role) in [
        ("pause", "write"),
        ("resume", "write"),
        ("approve", "write"),
        ("promote", "admin"),
        ("abort", "admin"),
        ("restart", "admin"),
    ] {
        table.insert(("POST", leaked(format!("{r}/{{action}}")), action), role);
    }
    table
}

fn rank(role: &str) -> u8 {
    match role {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn every_endpoint_enforces_its_role() {
    let dir = FlagDir::new();
    dir.write(
        "flags.yaml",
        "flags:\n  search:\n    state: ENABLED\n    variants: {old: false, new: true}\n    defaultVariant: old\n",
    );
    dir.write(
        "ramp.yaml",
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: search-ramp}\nspec:\n  flag: search\n  treatment: new\n  \
         interval: 1h\n  steps: [{percent: 5, hold: 1h}, {percent: 100, hold: 1h}]\n  guard: {minSamples: 10}\n",
    );
    dir.write("staging.yaml", "flags: {}\n");
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    sdkKeys: [{{value: production-sdk-key-0001}}]\n  \
             staging:\n    flags: [staging.yaml]\n    sdkKeys: [{{value: staging-sdk-key-00001}}]\nadminTokens:\n  \
             - {{name: reader, role: read, value: {READ}}}\n  - {{name: writer, role: write, value: {WRITE}}}\n  \
             - {{name: root, role: admin, value: {ADMIN}}}\n"
        ),
    );
    let server = Rampart::start(&["--config", &config]);
    let document = send("GET", &format!("{}/openapi.json", server.admin), None, None, &[]).body;
    let table = table();
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let actions: Vec<&str> = if path.ends_with("{action}") {
                table.keys().filter(|(m, p, _)| *m == method && p == path).map(|(_, _, a)| *a).collect()
            } else {
                vec![""]
            };
            assert!(!actions.is_empty(), "{method} {path} is not in the role table");
            for action in actions {
                let key = table
                    .keys()
                    .find(|(m, p, a)| *m == method && p == path && *a == action)
                    .unwrap_or_else(|| panic!("{method} {path} is not in the role table"));
                documented.push(*key);
            }
        }
    }
    for key in table.keys() {
        assert!(documented.contains(key), "{key:?} is in the table but not in the OpenAPI document");
    }
    assert_eq!(documented.len(), table.len());
    for (method, path, action) in documented {
        let needed = table[&(method, path, action)];
        let url = format!(
            "{}{}",
            server.admin,
            path.replace("{environment}", "production")
                .replace("{key}", "search")
                .replace("{name}", "search-ramp")
                .replace("{action}", action)
        );
        let body = match (method, path.rsplit('/').next().unwrap_or_default()) {
            ("PUT", _) => Some(json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"})),
            ("PATCH", _) => Some(json!({"state": "DISABLED"})),
            ("POST", "revert") => Some(json!({"version": 1})),
            ("POST", "promote") if path.contains("environments") => Some(json!({"to": "staging", "dryRun": true})),
            _ => None,
        };
        let anonymous = send(method, &url, None, body.as_ref(), &[]);
        assert_eq!(anonymous.status, 401, "{method} {url} without a token: {}", anonymous.text);
        for (token, role) in [(READ, "read"), (WRITE, "write"), (ADMIN, "admin")] {
            let reply = send(method, &url, Some(token), body.as_ref(), &[]);
            if rank(role) < rank(needed) {
                assert_eq!(reply.status, 403, "{method} {url} as {role} (needs {needed}): {}", reply.text);
                assert_eq!(reply.body["error"]["code"], "FORBIDDEN");
            } else {
                assert!(
                    reply.status != 401 && reply.status != 403 && reply.status < 500,
                    "{method} {url} as {role} (needs {needed}) answered {}: {}",
                    reply.status,
                    reply.text
                );
            }
        }
    }
}
