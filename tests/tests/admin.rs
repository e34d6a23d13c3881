//! The admin API against the real binary: every endpoint, role and error
//! path, optimistic concurrency, file ownership and the kill switch,
//! history and revert, audit, promotion, drift, propagation to OFREP.

use std::sync::{Arc, Barrier};

use rampart_tests::{DEADLINE, FlagDir, Rampart, Reply, eventually, post, rampart_bin, send};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-000000000001";
const WRITER: &str = "writer-token-00000000001";
const READER: &str = "reader-token-00000000001";
const PROD_KEY: &str = "prod-sdk-key-1";
const STAGING_KEY: &str = "staging-sdk-key-1";

const FILE_FLAGS: &str =
    "flags:\n  checkout:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: on\n";

struct Setup {
    server: Rampart,
    dir: FlagDir,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_extra("")
    }

    fn with_extra(extra: &str) -> Setup {
        let dir = FlagDir::new();
        dir.write("production.yaml", FILE_FLAGS);
        dir.write("staging.yaml", FILE_FLAGS);
        let config = dir.write(
            "rampart.yaml",
            &format!(
                "environments:\n  production:\n    flags: [production.yaml]\n    sdkKeys: [{{value: {PROD_KEY}}}]\n  staging:\n    flags: [staging.yaml]\n    sdkKeys: [{{value: {STAGING_KEY}}}]\nadminTokens:\n  - {{name: ana, role: admin, value: {ADMIN}}}\n  - {{name: ci-bot, role: write, value: {WRITER}}}\n  - {{name: dashboard, role: read, value: {READER}}}\n{extra}"
            ),
        );
        Setup { server: Rampart::start(&["--config", &config]), dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin/v1{path}", self.server.admin)
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        send(method, &self.url(path), Some(token), body.as_ref(), &[])
    }

    fn evaluate(&self, key: &str, flag: &str) -> Reply {
        post(&format!("{}/ofrep/v1/evaluate/flags/{flag}", self.server.http), "{}", &[("x-api-key", key)])
    }
}

fn flag(value: &str) -> Value {
    json!({"state": "ENABLED", "variants": {"a": value, "b": "other"}, "defaultVariant": "a"})
}

fn error_code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error body: {}", reply.text))
}

#[test]
fn tokens_and_roles() {
    let setup = Setup::new();
    let path = "/environments/production/flags";

    let none = send("GET", &setup.url(path), None, None, &[]);
    assert_eq!((none.status, error_code(&none)), (401, "UNAUTHORIZED"));
    assert!(none.body["error"]["message"].as_str().unwrap().contains("Bearer"));
    let wrong = setup.call("GET", path, "not-a-token-at-all-000", None);
    assert_eq!((wrong.status, error_code(&wrong)), (401, "UNAUTHORIZED"));
    // SDK keys cannot call the admin API.
    assert_eq!(setup.call("GET", path, PROD_KEY, None).status, 401);

    assert_eq!(setup.call("GET", path, READER, None).status, 200);
    let forbidden = setup.call("PUT", "/environments/production/flags/x", READER, Some(flag("v")));
    assert_eq!((forbidden.status, error_code(&forbidden)), (403, "FORBIDDEN"));
    assert!(forbidden.body["error"]["message"].as_str().unwrap().contains("dashboard"));
    assert_eq!(setup.call("PUT", "/environments/production/flags/x", WRITER, Some(flag("v"))).status, 201);
    assert_eq!(setup.call("DELETE", "/environments/production/flags/x", ADMIN, None).status, 204);

    // Admin tokens cannot evaluate.
    let reply = post(
        &format!("{}/ofrep/v1/evaluate/flags/checkout", setup.server.http),
        "{}",
        &[("authorization", &format!("Bearer {ADMIN}"))],
    );
    assert_eq!(reply.status, 403);

    // Unknown admin paths need a token too, then say what is unknown.
    assert_eq!(send("GET", &setup.url("/nope"), None, None, &[]).status, 401);
    let unknown = setup.call("GET", "/nope", READER, None);
    assert_eq!((unknown.status, error_code(&unknown)), (404, "NOT_FOUND"));

    // Secrets never reach the logs.
    let logs = serde_json::to_string(&setup.server.logs()).unwrap();
    for secret in [ADMIN, WRITER, READER, PROD_KEY, STAGING_KEY] {
        assert!(!logs.contains(secret), "{secret} logged");
    }
}

#[test]
fn admin_api_is_off_without_tokens_unless_insecure_local() {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FILE_FLAGS);
    let server = Rampart::start(&["--flags", &flags]);
    let reply = send("GET", &format!("{}/admin/v1/environments", server.admin), None, None, &[]);
    assert_eq!((reply.status, error_code(&reply)), (503, "ADMIN_DISABLED"));
    assert!(server.find_log(|e| e["message"].as_str().is_some_and(|m| m.contains("admin API is off"))).is_some());

    let local = Rampart::start(&["--flags", &flags, "--admin-insecure-local"]);
    let reply = send("GET", &format!("{}/admin/v1/environments", local.admin), None, None, &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["environments"][0]["name"], "default");

    // Refused on a non-loopback admin address: exit 64 before binding.
    let mut command = std::process::Command::new(rampart_bin());
    command.args(["serve", "--flags", &flags, "--admin-insecure-local", "--admin-addr", "0.0.0.0:0"]);
    let output = rampart_tests::output_within(command, DEADLINE);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));

    // With a token still exported, the flag would be silently ignored (every
    // local call a 401): refused, naming the way out.
    let mut command = std::process::Command::new(rampart_bin());
    command
        .args(["serve", "--flags", &flags, "--admin-insecure-local"])
        .env("RAMPART_ADMIN_TOKEN", "an-exported-admin-token-0123456789");
    let output = rampart_tests::output_within(command, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("unset RAMPART_ADMIN_TOKEN"), "{stderr}");
}

#[test]
fn create_replace_delete_with_preconditions() {
    let setup = Setup::new();
    let path = "/environments/production/flags/banner";

    let created = setup.call("PUT", path, WRITER, Some(flag("hello")));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.etag.as_deref(), Some("\"v1\""));
    assert_eq!(created.body["source"], "api");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["updatedBy"], "ci-bot");
    // Live for evaluation on the next request, in that environment only.
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["value"], "hello");
    assert_eq!(setup.evaluate(STAGING_KEY, "banner").status, 404);
    // And the serving metrics say so (version 1 was the files alone).
    assert_eq!(setup.server.metric(r#"rampart_config_version{environment="production"}"#), 2.0);
    assert_eq!(setup.server.metric(r#"rampart_config_flags{environment="production"}"#), 2.0);

    let got = setup.call("GET", path, READER, None);
    assert_eq!((got.status, got.etag.as_deref()), (200, Some("\"v1\"")));
    assert_eq!(got.body["definition"], flag("hello"));

    let updated = send("PUT", &setup.url(path), Some(WRITER), Some(&flag("hi")), &[("if-match", "\"v1\"")]);
    assert_eq!((updated.status, updated.etag.as_deref()), (200, Some("\"v2\"")));
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["value"], "hi");

    let stale = send("PUT", &setup.url(path), Some(WRITER), Some(&flag("late")), &[("if-match", "\"v1\"")]);
    assert_eq!((stale.status, error_code(&stale)), (412, "PRECONDITION_FAILED"));
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["value"], "hi");

    // Replacing with the same content is not a new version.
    let same = setup.call("PUT", path, WRITER, Some(flag("hi")));
    assert_eq!((same.status, same.etag.as_deref()), (200, Some("\"v2\"")));

    // The kill switch on an API flag is a new version.
    let disabled = setup.call("PATCH", path, WRITER, Some(json!({"state": "DISABLED"})));
    assert_eq!((disabled.status, disabled.etag.as_deref()), (200, Some("\"v3\"")));
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["reason"], "DISABLED");

    let stale_delete = send("DELETE", &setup.url(path), Some(WRITER), None, &[("if-match", "\"v2\"")]);
    assert_eq!(stale_delete.status, 412);
    let deleted = send("DELETE", &setup.url(path), Some(WRITER), None, &[("if-match", "\"v3\"")]);
    assert_eq!(deleted.status, 204);
    assert_eq!(setup.call("GET", path, READER, None).status, 404);
    assert_eq!(setup.evaluate(PROD_KEY, "banner").status, 404);
    let again = setup.call("DELETE", path, WRITER, None);
    assert_eq!((again.status, error_code(&again)), (404, "FLAG_NOT_FOUND"));

    // Re-creating continues the version count.
    let recreated = setup.call("PUT", path, WRITER, Some(flag("back")));
    assert_eq!((recreated.status, recreated.etag.as_deref()), (201, Some("\"v5\"")));
}

#[test]
fn bad_requests_get_clear_errors() {
    let setup = Setup::with_extra("maxApiFlags: 2\n");
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        ("PUT", "/environments/nowhere/flags/x", Some(flag("v")), 404, "ENVIRONMENT_NOT_FOUND"),
        ("PUT", "/environments/production/flags/bad%20key", Some(flag("v")), 400, "BAD_REQUEST"),
        ("PUT", "/environments/production/flags/x", Some(json!([1, 2])), 400, "BAD_REQUEST"),
        (
            "PUT",
            "/environments/production/flags/x",
            Some(json!({"key": "y", "state": "ENABLED", "variants": {"a": 1}})),
            422,
            "KEY_MISMATCH",
        ),
        (
            "PUT",
            "/environments/production/flags/x",
            Some(json!({"key": 5, "state": "ENABLED", "variants": {"a": 1}})),
            422,
            "KEY_MISMATCH",
        ),
        (
            "PUT",
            "/environments/production/flags/x",
            Some(json!({"state": "ON", "variants": {"a": 1}})),
            422,
            "INVALID_FLAG",
        ),
        (
            "PUT",
            "/environments/production/flags/x",
            Some(json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"nope": []}})),
            422,
            "INVALID_FLAG",
        ),
        ("PATCH", "/environments/production/flags/checkout", Some(json!({"state": "MAYBE"})), 400, "BAD_REQUEST"),
        (
            "PATCH",
            "/environments/production/flags/checkout",
            Some(json!({"state": "DISABLED", "extra": 1})),
            400,
            "BAD_REQUEST",
        ),
        ("PATCH", "/environments/production/flags/ghost", Some(json!({"state": "DISABLED"})), 404, "FLAG_NOT_FOUND"),
        ("GET", "/environments/production/flags/ghost", None, 404, "FLAG_NOT_FOUND"),
        ("GET", "/environments/production/flags/ghost/history", None, 404, "FLAG_NOT_FOUND"),
        ("GET", "/audit?since=yesterday", None, 400, "BAD_REQUEST"),
        ("GET", "/audit?limit=0", None, 400, "BAD_REQUEST"),
        ("GET", "/audit?colour=red", None, 400, "BAD_REQUEST"),
    ];
    for (method, path, body, status, code) in cases {
        let reply = setup.call(method, path, ADMIN, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{method} {path}");
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    // An invalid flag names what is wrong.
    let invalid = setup.call(
        "PUT",
        "/environments/production/flags/x",
        ADMIN,
        Some(json!({"state": "ON", "variants": {"a": 1}})),
    );
    assert_eq!(invalid.body["error"]["details"][0]["flag"], "x");
    assert!(invalid.body["error"]["details"][0]["message"].as_str().unwrap().contains("state must be"));
    // Malformed JSON says where.
    let raw = rampart_tests::client()
        .put(setup.url("/environments/production/flags/x"))
        .bearer_auth(ADMIN)
        .body("{\"state\": ")
        .send()
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().unwrap();
    assert_eq!(body["error"]["details"]["line"], 1);
    // Too large.
    let huge = json!({"state": "ENABLED", "variants": {"a": "x".repeat(1_100_000)}});
    let reply = setup.call("PUT", "/environments/production/flags/x", ADMIN, Some(huge));
    assert_eq!((reply.status, error_code(&reply)), (413, "PAYLOAD_TOO_LARGE"));
    // The flag-count limit.
    assert_eq!(setup.call("PUT", "/environments/production/flags/one", ADMIN, Some(flag("1"))).status, 201);
    assert_eq!(setup.call("PUT", "/environments/production/flags/two", ADMIN, Some(flag("2"))).status, 201);
    let over = setup.call("PUT", "/environments/production/flags/three", ADMIN, Some(flag("3")));
    assert_eq!((over.status, error_code(&over)), (422, "LIMIT_REACHED"));
    // Nothing invalid was stored or served.
    assert_eq!(setup.evaluate(PROD_KEY, "x").status, 404);
}

#[test]
fn file_owned_flags_accept_only_the_kill_switch() {
    let setup = Setup::new();
    let path = "/environments/production/flags/checkout";

    let refused = setup.call("PUT", path, ADMIN, Some(flag("v")));
    assert_eq!((refused.status, error_code(&refused)), (409, "FILE_OWNED"));
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("production.yaml"));
    assert_eq!(setup.call("DELETE", path, ADMIN, None).status, 409);
    let revert = setup.call("POST", &format!("{path}/revert"), ADMIN, Some(json!({"version": 1})));
    assert_eq!(revert.status, 404);

    let off = setup.call("PATCH", path, WRITER, Some(json!({"state": "DISABLED"})));
    assert_eq!(off.status, 200, "{}", off.text);
    assert_eq!((off.body["source"].as_str(), off.body["state"].as_str()), (Some("file"), Some("DISABLED")));
    assert_eq!(off.body["override"]["by"], "ci-bot");
    assert_eq!(setup.evaluate(PROD_KEY, "checkout").body["reason"], "DISABLED");
    assert_eq!(setup.evaluate(STAGING_KEY, "checkout").body["value"], true);

    // The override survives a reload of the file.
    setup.dir.write("production.yaml", &FILE_FLAGS.replace("defaultVariant: on", "defaultVariant: off"));
    eventually(DEADLINE, || {
        let reply = setup.call("GET", path, READER, None);
        if reply.body["definition"]["defaultVariant"] == "off" { Ok(reply) } else { Err(reply.text) }
    });
    assert_eq!(setup.evaluate(PROD_KEY, "checkout").body["reason"], "DISABLED");

    let drift = setup.call("GET", "/drift", READER, None);
    let production =
        drift.body["environments"].as_array().unwrap().iter().find(|e| e["name"] == "production").unwrap().clone();
    assert_eq!(production["overrides"][0]["flag"], "checkout");
    assert_eq!(production["overrides"][0]["fileState"], "ENABLED");
    assert_eq!(production["overrides"][0]["state"], "DISABLED");
    assert_eq!(production["overrides"][0]["by"], "ci-bot");

    // Setting the file's own state removes the override.
    let on = setup.call("PATCH", path, ADMIN, Some(json!({"state": "ENABLED"})));
    assert_eq!((on.status, &on.body["override"]), (200, &Value::Null));
    assert_eq!(setup.evaluate(PROD_KEY, "checkout").body["value"], false);
    let drift = setup.call("GET", "/drift", READER, None);
    assert!(
        drift.body["environments"].as_array().unwrap().iter().all(|e| e["overrides"].as_array().unwrap().is_empty())
    );

    let audit = setup.call("GET", "/audit?flag=checkout", READER, None);
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["disable", "enable"]);
}

#[test]
fn history_revert_and_audit() {
    let setup = Setup::new();
    let path = "/environments/staging/flags/theme";
    setup.call("PUT", path, WRITER, Some(flag("light")));
    setup.call("PUT", path, ADMIN, Some(flag("dark")));
    setup.call("PATCH", path, WRITER, Some(json!({"state": "DISABLED"})));

    let history = setup.call("GET", &format!("{path}/history"), READER, None);
    let versions = history.body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(
        versions
            .iter()
            .map(|v| (v["version"].as_u64().unwrap(), v["action"].as_str().unwrap(), v["by"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [(1, "create", "ci-bot"), (2, "update", "ana"), (3, "disable", "ci-bot")]
    );
    assert_eq!(versions[1]["changes"], json!(["variant 'a': \"light\" → \"dark\""]));
    assert_eq!(versions[2]["changes"], json!(["state: ENABLED → DISABLED"]));
    assert!(versions[0]["at"].as_str().unwrap().ends_with('Z'));

    let reverted = setup.call("POST", &format!("{path}/revert"), WRITER, Some(json!({"version": 1})));
    assert_eq!((reverted.status, reverted.body["version"].as_u64()), (200, Some(4)), "{}", reverted.text);
    assert_eq!(reverted.body["definition"], flag("light"));
    assert_eq!(setup.evaluate(STAGING_KEY, "theme").body["value"], "light");
    let history = setup.call("GET", &format!("{path}/history"), READER, None);
    assert_eq!(history.body["versions"][3]["action"], "revert to 1");
    assert_eq!(history.body["versions"][3]["definition"], history.body["versions"][0]["definition"]);

    let missing = setup.call("POST", &format!("{path}/revert"), WRITER, Some(json!({"version": 9})));
    assert_eq!((missing.status, error_code(&missing)), (404, "VERSION_NOT_FOUND"));
    setup.call("DELETE", path, WRITER, None);
    setup.call("PUT", path, WRITER, Some(flag("again")));
    let to_delete = setup.call("POST", &format!("{path}/revert"), WRITER, Some(json!({"version": 5})));
    assert_eq!((to_delete.status, error_code(&to_delete)), (409, "VERSION_DELETED"));

    // The audit log: everything in order, filterable and paged.
    setup.call("PUT", "/environments/production/flags/other", ADMIN, Some(flag("x")));
    let all = setup.call("GET", "/audit", READER, None);
    let entries = all.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 7);
    assert!(entries.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert_eq!(all.body["next"], Value::Null);
    let by_actor = setup.call("GET", "/audit?actor=ana", READER, None);
    assert_eq!(by_actor.body["entries"].as_array().unwrap().len(), 2);
    let by_environment = setup.call("GET", "/audit?environment=production", READER, None);
    assert_eq!(by_environment.body["entries"][0]["flag"], "other");
    let first_page = setup.call("GET", "/audit?limit=3", READER, None);
    assert_eq!(first_page.body["entries"].as_array().unwrap().len(), 3);
    let next = first_page.body["next"].as_u64().unwrap();
    let second_page = setup.call("GET", &format!("/audit?limit=3&after={next}"), READER, None);
    assert_eq!(second_page.body["entries"][0]["seq"].as_u64(), Some(next + 1));
    let future = setup.call("GET", "/audit?since=2100-01-01T00:00:00Z", READER, None);
    assert!(future.body["entries"].as_array().unwrap().is_empty());
    let past = setup.call("GET", "/audit?until=2000-01-01T00:00:00Z", READER, None);
    assert!(past.body["entries"].as_array().unwrap().is_empty());
    let window = setup.call("GET", "/audit?since=1700000000&until=2100-01-01T00:00:00Z", READER, None);
    assert_eq!(window.body["entries"].as_array().unwrap().len(), 7);
}

#[test]
fn concurrent_writers_one_wins_one_gets_412() {
    let setup = Arc::new(Setup::new());
    let path = "/environments/production/flags/contested";
    setup.call("PUT", path, WRITER, Some(flag("v1")));
    for round in 0..10 {
        let etag = setup.call("GET", path, READER, None).etag.unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let (setup, barrier, etag) = (setup.clone(), barrier.clone(), etag.clone());
                std::thread::spawn(move || {
                    let body = flag(&format!("round-{round}-writer-{writer}"));
                    barrier.wait();
                    send("PUT", &setup.url(path), Some(WRITER), Some(&body), &[("if-match", &etag)]).status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
    }
    let history = setup.call("GET", &format!("{path}/history"), READER, None);
    assert_eq!(history.body["versions"].as_array().unwrap().len(), 11);
}

#[test]
fn promotion_with_dry_run() {
    let setup = Setup::new();
    setup.call("PUT", "/environments/staging/flags/new-search", WRITER, Some(flag("fast")));
    setup.call("PUT", "/environments/staging/flags/banner", WRITER, Some(flag("winter")));
    setup.call("PUT", "/environments/staging/flags/same", WRITER, Some(flag("same")));
    setup.call("PUT", "/environments/production/flags/banner", WRITER, Some(flag("summer")));
    setup.call("PUT", "/environments/production/flags/same", WRITER, Some(flag("same")));

    let dry =
        setup.call("POST", "/environments/staging/promote", ADMIN, Some(json!({"to": "production", "dryRun": true})));
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!((dry.body["dryRun"].as_bool(), dry.body["applied"].as_bool()), (Some(true), Some(false)));
    let actions: Vec<(&str, &str)> = dry.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["flag"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("banner", "update"), ("new-search", "create"), ("same", "unchanged")]);
    assert_eq!(dry.body["changes"][0]["changes"], json!(["variant 'a': \"summer\" → \"winter\""]));
    // A dry run changes nothing.
    assert_eq!(setup.evaluate(PROD_KEY, "new-search").status, 404);
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["value"], "summer");

    // The command line shows the same diff.
    let cli = std::process::Command::new(rampart_bin())
        .args(["promote", "--from", "staging", "--to", "production", "--dry-run", "--admin-url", &setup.server.admin])
        .env("RAMPART_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(
        out.contains("update    banner") && out.contains("create    new-search") && out.contains("dry run: 2 of 3"),
        "{out}"
    );

    // Applying one flag from the command line, then the rest through the API.
    let cli = std::process::Command::new(rampart_bin())
        .args([
            "promote",
            "--from",
            "staging",
            "--to",
            "production",
            "--flag",
            "banner",
            "--admin-url",
            &setup.server.admin,
            "--token",
            ADMIN,
        ])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(setup.evaluate(PROD_KEY, "banner").body["value"], "winter");
    assert_eq!(setup.evaluate(PROD_KEY, "new-search").status, 404);

    let applied = setup.call("POST", "/environments/staging/promote", ADMIN, Some(json!({"to": "production"})));
    assert_eq!(applied.body["applied"], true);
    assert_eq!(setup.evaluate(PROD_KEY, "new-search").body["value"], "fast");
    let audit = setup.call("GET", "/audit?environment=production&actor=ana", READER, None);
    let promoted: Vec<&Value> =
        audit.body["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "promote").collect();
    assert_eq!(promoted.len(), 2);
    assert!(promoted[0]["changes"][0].as_str().unwrap().starts_with("promoted from 'staging'"));

    // Refusals: file-owned target, unknown flag, same environment, unknown target.
    setup.call("PATCH", "/environments/staging/flags/checkout", ADMIN, Some(json!({"state": "DISABLED"})));
    let file_owned = setup.call(
        "POST",
        "/environments/staging/promote",
        ADMIN,
        Some(json!({"to": "production", "flags": ["checkout"]})),
    );
    assert_eq!((file_owned.status, error_code(&file_owned)), (409, "SOURCE_FILE_OWNED"));
    let unknown = setup.call(
        "POST",
        "/environments/staging/promote",
        ADMIN,
        Some(json!({"to": "production", "flags": ["nope"]})),
    );
    assert_eq!(unknown.status, 404);
    let same = setup.call("POST", "/environments/staging/promote", ADMIN, Some(json!({"to": "staging"})));
    assert_eq!(same.status, 400);
    let nowhere = setup.call("POST", "/environments/staging/promote", ADMIN, Some(json!({"to": "qa"})));
    assert_eq!((nowhere.status, error_code(&nowhere)), (404, "ENVIRONMENT_NOT_FOUND"));
    // Promotion into another environment needs the admin role.
    for token in [READER, WRITER] {
        let refused = setup.call("POST", "/environments/staging/promote", token, Some(json!({"to": "production"})));
        assert_eq!(refused.status, 403, "{}", refused.text);
    }
}

#[test]
fn environments_listing() {
    let setup = Setup::new();
    setup.call("PUT", "/environments/staging/flags/extra", WRITER, Some(flag("x")));
    let reply = setup.call("GET", "/environments", READER, None);
    let environments = reply.body["environments"].as_array().unwrap();
    assert_eq!(environments.iter().map(|e| e["name"].as_str().unwrap()).collect::<Vec<_>>(), ["production", "staging"]);
    assert_eq!((environments[1]["flags"].as_u64(), environments[1]["apiFlags"].as_u64()), (Some(2), Some(1)));
    let flags = setup.call("GET", "/environments/staging/flags", READER, None);
    assert_eq!(
        flags.body["flags"],
        json!([
            {"key": "checkout", "source": "file", "file": setup.dir.path("staging.yaml").to_string_lossy(), "version": null, "state": "ENABLED", "overridden": false},
            {"key": "extra", "source": "api", "file": null, "version": 1, "state": "ENABLED", "overridden": false}
        ])
    );
}
