//! Small inputs that describe unbounded work, sent to the real binary the
//! way an attacker or a careless operator would: through the admin API,
//! dropped into a watched directory, present at start-up, or handed to
//! `rampart validate`. Each must be refused or answered cleanly, quickly,
//! with the process's memory watched, while everything else keeps serving.

use std::time::{Duration, Instant};

use rampart_tests::{DEADLINE, FlagDir, Rampart, eventually, post, rampart_bin, send};
use serde_json::{Value, json};

const ADMIN: &str = "hostile-admin-token-0001";
const SDK_KEY: &str = "hostile-sdk-key-0001";
/// Generous for a debug build on a loaded two-core machine; the unbounded
/// versions of these inputs take minutes, gigabytes, or the process.
const QUICK: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

fn flag(targeting: Value) -> Value {
    json!({"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a", "targeting": targeting})
}

struct Setup {
    server: Rampart,
    dir: FlagDir,
    data: tempfile::TempDir,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = FlagDir::new();
        dir.write(
            "flags.json",
            r#"{"flags": {"steady": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
        );
        let data = tempfile::tempdir().expect("data dir");
        let server = Setup::start(&dir, data.path(), extra);
        Setup { server, dir, data }
    }

    fn start(dir: &FlagDir, data: &std::path::Path, extra: &str) -> Rampart {
        let config = dir.write(
            "rampart.yaml",
            &format!(
                "environments:\n  production:\n    flags: [flags*.json]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n    \
                 sdkKeyOutcomes: true\n\
                 adminTokens: [{{name: ops, role: admin, value: {ADMIN}}}]\n{extra}"
            ),
        );
        Rampart::start_in(&["--config", &config, "--data-dir", &data.to_string_lossy()], &[])
    }

    fn put(&self, key: &str, body: &Value) -> rampart_tests::Reply {
        send(
            "PUT",
            &format!("{}/admin/v1/environments/production/flags/{key}", self.server.admin),
            Some(ADMIN),
            Some(body),
            &[],
        )
    }

    fn put_raw(&self, key: &str, body: &str) -> rampart_tests::Reply {
        let response = rampart_tests::client()
            .put(format!("{}/admin/v1/environments/production/flags/{key}", self.server.admin))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .expect("PUT");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        rampart_tests::Reply { status, etag: None, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    fn evaluate(&self, key: &str, context: &Value) -> rampart_tests::Reply {
        post(
            &format!("{}/ofrep/v1/evaluate/flags/{key}", self.server.http),
            &json!({"context": context}).to_string(),
            &[("x-api-key", SDK_KEY)],
        )
    }

    fn bulk(&self, context: &Value) -> rampart_tests::Reply {
        post(
            &format!("{}/ofrep/v1/evaluate/flags", self.server.http),
            &json!({"context": context}).to_string(),
            &[("x-api-key", SDK_KEY)],
        )
    }

    fn assert_healthy(&mut self) {
        assert!(self.server.alive(), "the server died; logs: {:#?}", self.server.logs());
        let steady = self.evaluate("steady", &json!({}));
        assert_eq!((steady.status, &steady.body["value"]), (200, &json!(true)), "{}", steady.text);
    }
}

#[test]
fn hostile_rules_through_the_admin_api_are_refused_or_bounded() {
    let mut setup = Setup::new("");
    let before = setup.server.rss();

    // The report's 356-byte rule: refused when compiled.
    let doubling = flag(json!({"if": [{"reduce": [{"var": "items"},
        {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "xx"]}, "b", "a"]}));
    let refused = setup.put("doubling", &doubling);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("doubles with every element"), "{}", refused.text);

    // The same doubling hidden behind a computed path: stored, and its
    // evaluation runs out of budget instead of memory.
    let hidden = flag(json!({"if": [{"reduce": [{"var": "items"},
        {"cat": [{"var": {"cat": ["accu", "mulator"]}}, {"var": "accumulator"}]}, "xx"]}, "b", "a"]}));
    assert_eq!(setup.put("hidden", &hidden).status, 201);
    // The report's folding bomb: three nested maps over a thousand elements.
    let range: Vec<u32> = (0..1000).collect();
    let folding = flag(
        json!({"if": [{"map": [range.clone(), {"map": [range.clone(), {"map": [range, {"+": [1, 1]}]}]}]}, "b", "a"]}),
    );
    let started = Instant::now();
    assert_eq!(setup.put("folding", &folding).status, 201);
    assert!(started.elapsed() < QUICK, "storing took {:?}", started.elapsed());

    let items: Vec<u32> = (0..40).collect();
    let context = json!({"items": items});
    for key in ["hidden", "folding"] {
        let started = Instant::now();
        let answer = setup.evaluate(key, &context);
        assert!(started.elapsed() < QUICK, "{key} took {:?}", started.elapsed());
        assert_eq!((answer.status, answer.body["errorCode"].as_str()), (400, Some("GENERAL")), "{}", answer.text);
    }
    let started = Instant::now();
    let bulk = setup.bulk(&context);
    assert_eq!(bulk.status, 200);
    assert!(started.elapsed() < QUICK, "bulk took {:?}", started.elapsed());
    let growth = setup.server.rss().saturating_sub(before);
    assert!(growth < 150 * MIB, "memory grew by {} MiB", growth / MIB);
    assert!(setup.server.metric(r#"rampart_limit_rejections_total{limit="evaluation_bytes"}"#) >= 1.0);
    setup.assert_healthy();

    // Leniency: a key given twice, a key that is not the path's, nesting.
    let twice = r#"{"state": "ENABLED", "state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"}"#;
    let answer = setup.put_raw("twice", twice);
    assert_eq!((answer.status, answer.body["error"]["code"].as_str()), (422, Some("INVALID_FLAG")), "{}", answer.text);
    assert!(answer.text.contains("duplicate key 'state'"), "{}", answer.text);
    let mut deep = json!({"var": "x"});
    for _ in 0..80 {
        deep = json!({"!": deep});
    }
    let answer = setup.put("deep", &flag(deep));
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("nested more than 64 levels"), "{}", answer.text);
    let mut deeper = json!(1);
    for _ in 0..120 {
        deeper = json!([deeper]);
    }
    let answer = setup.put_raw("deeper", &json!({"state": "ENABLED", "variants": {"a": deeper}}).to_string());
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("nests more than 100 levels"), "{}", answer.text);
    let large = json!({"state": "ENABLED", "variants": {"a": "x".repeat(300 << 10)}, "defaultVariant": "a"});
    let answer = setup.put("large", &large);
    assert_eq!((answer.status, answer.body["error"]["code"].as_str()), (413, Some("DEFINITION_TOO_LARGE")));

    // Restarting with the stored flags is not a crash loop.
    let Setup { server, dir, data } = setup;
    server.kill();
    let mut setup = Setup { server: Setup::start(&dir, data.path(), ""), dir, data };
    let answer = setup.evaluate("hidden", &context);
    assert_eq!(answer.body["errorCode"], "GENERAL");
    setup.assert_healthy();
}

/// Ten evaluators, each an `or` of ten references to the previous: 10^10
/// nodes described in under 2 KB.
fn ref_bomb() -> String {
    let mut evaluators = serde_json::Map::new();
    evaluators.insert("e0".into(), json!({"==": [{"var": "x"}, 1]}));
    for level in 1..10 {
        evaluators.insert(format!("e{level}"), json!({"or": vec![json!({"$ref": format!("e{}", level - 1)}); 10]}));
    }
    json!({"$evaluators": evaluators, "flags": {"bomb": flag(json!({"if": [{"$ref": "e9"}, "b", "a"]}))}}).to_string()
}

#[test]
fn a_ref_bomb_is_refused_by_validate_reload_and_start_up() {
    let bomb = ref_bomb();
    assert!(bomb.len() < 2048, "{} bytes", bomb.len());
    let mut setup = Setup::new("");
    let path = setup.dir.write("bomb.json", &bomb);

    // validate: quick, names the flag and the limit.
    let started = Instant::now();
    let output = std::process::Command::new(rampart_bin()).args(["validate", &path]).output().expect("validate");
    assert!(started.elapsed() < QUICK, "validate took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("flag 'bomb'") && report.contains("more than the limit of 50000"), "{report}");

    // Dropped next to the served files: the reload is refused, the server lives.
    let before = setup.server.rss();
    let bomb_copy = setup.dir.write("flags-bomb.json", &bomb);
    eventually(DEADLINE, || {
        setup
            .server
            .find_log(|entry| entry["file"].as_str() == Some(bomb_copy.as_str()))
            .ok_or_else(|| "no rejection logged yet".to_owned())
    });
    assert!(setup.server.metric(r#"rampart_limit_rejections_total{limit="rule_nodes"}"#) >= 1.0);
    assert!(setup.server.rss().saturating_sub(before) < 100 * MIB);
    setup.assert_healthy();

    // Present at start-up: no abort. Served leniently (the default), the
    // bomb answers PARSE_ERROR and the other flags serve; strictly, a clear
    // refusal.
    let Setup { server, dir, data } = setup;
    server.kill();
    let config = dir.path("rampart.yaml").to_string_lossy().into_owned();
    let data_dir = data.path().to_string_lossy().into_owned();
    let started = Instant::now();
    let lenient = Rampart::start_in(&["--config", &config, "--data-dir", &data_dir], &[]);
    assert!(started.elapsed() < QUICK, "start-up took {:?}", started.elapsed());
    assert!(lenient.metric(r#"rampart_limit_rejections_total{limit="rule_nodes"}"#) >= 1.0);
    let evaluate = |flag: &str| {
        send(
            "POST",
            &format!("{}/ofrep/v1/evaluate/flags/{flag}", lenient.http),
            None,
            Some(&json!({"context": {}})),
            &[("Authorization", &format!("Bearer {SDK_KEY}"))],
        )
    };
    let bomb = evaluate("bomb");
    assert_eq!((bomb.status, &bomb.body["errorCode"]), (400, &json!("PARSE_ERROR")), "{}", bomb.text);
    assert_eq!(evaluate("steady").status, 200);
    lenient.kill();

    let started = Instant::now();
    let mut command = std::process::Command::new(rampart_bin());
    command
        .args(["serve", "--config", &config, "--data-dir", &data_dir, "--strict-flags"])
        .args(["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0", "--sync-addr", "127.0.0.1:0"]);
    let output = rampart_tests::output_within(command, DEADLINE);
    assert!(started.elapsed() < QUICK, "start-up took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("more than the limit of 50000"));
}

#[test]
fn flag_files_over_the_byte_limit_keep_the_last_good_set() {
    let mut setup = Setup::new("limits:\n  flagFileBytes: 100000\n");
    let before = setup.server.rss();
    let flags: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("f{i}"), json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"})))
        .collect();
    let big = json!({"flags": flags}).to_string();
    assert!(big.len() > 1_000_000);
    let big_path = setup.dir.write("flags-big.json", &big);
    eventually(DEADLINE, || {
        setup
            .server
            .find_log(|entry| {
                entry["file"].as_str() == Some(big_path.as_str())
                    && entry["message"].as_str().is_some_and(|m| m.contains("limits.flagFileBytes"))
            })
            .ok_or_else(|| "no rejection logged yet".to_owned())
    });
    assert!(setup.server.metric(r#"rampart_limit_rejections_total{limit="document_bytes"}"#) >= 1.0);
    assert_eq!(setup.server.metric(r#"rampart_config_last_reload_success{environment="production"}"#), 0.0);
    assert!(setup.server.rss().saturating_sub(before) < 50 * MIB);
    assert_eq!(setup.evaluate("f1", &json!({})).status, 404, "none of the big file is served");
    setup.assert_healthy();

    // validate with the default limit (64 MiB): a larger file is refused without being read.
    let huge = setup.dir.path("huge.json");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(70 << 20).expect("sparse 70 MiB file");
    let started = Instant::now();
    let output = std::process::Command::new(rampart_bin())
        .args(["validate", &huge.to_string_lossy()])
        .output()
        .expect("validate");
    assert!(started.elapsed() < Duration::from_secs(5), "validate took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("limits.flagFileBytes"));
}

#[test]
#[cfg(unix)]
fn symlink_loops_in_a_ramps_glob_neither_hang_nor_stop_reloads() {
    let dir = FlagDir::new();
    dir.write("flags.yaml", "flags:\n  f:\n    state: ENABLED\n    variants: {a: 1, b: 2}\n    defaultVariant: a\n");
    let ramps = dir.path("ramps");
    std::fs::create_dir_all(&ramps).expect("ramps dir");
    std::os::unix::fs::symlink(&ramps, ramps.join("self")).expect("link");
    std::os::unix::fs::symlink(ramps.join("other"), ramps.join("loop")).expect("link");
    std::os::unix::fs::symlink(ramps.join("loop"), ramps.join("other")).expect("link");
    let started = Instant::now();
    let server = Rampart::start(&[
        "--flags",
        &dir.path("flags.yaml").to_string_lossy(),
        "--ramps",
        &format!("{}/**/*.yaml", ramps.display()),
    ]);
    assert!(started.elapsed() < QUICK, "start-up took {:?}", started.elapsed());
    let before = server.rss();
    dir.write("flags.yaml", "flags:\n  f:\n    state: ENABLED\n    variants: {a: 1, b: 2}\n    defaultVariant: b\n");
    eventually(DEADLINE, || {
        let answer = post(&format!("{}/ofrep/v1/evaluate/flags/f", server.http), "{}", &[]);
        if answer.body["value"] == 2 { Ok(()) } else { Err(answer.text) }
    });
    assert!(server.rss().saturating_sub(before) < 50 * MIB);
}

#[test]
fn each_put_answers_with_the_version_it_wrote() {
    // Concurrent writers, as fast as they can: this test is about versions,
    // not the write rate.
    let setup = Setup::new("limits:\n  historyVersionsPerFlag: 1000\n  adminWritesPerSecond: 100000\n");
    let url = format!("{}/admin/v1/environments/production/flags/contested", setup.server.admin);
    let answers: Vec<(u64, String)> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let url = url.clone();
                scope.spawn(move || {
                    (0..50)
                        .map(|round| {
                            let value = format!("w{writer}-r{round}");
                            let body = json!({"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"});
                            let reply = send("PUT", &url, Some(ADMIN), Some(&body), &[]);
                            assert!(reply.status == 200 || reply.status == 201, "{}", reply.text);
                            let version = reply.body["version"].as_u64().expect("version");
                            let etag = reply.etag.expect("etag");
                            assert_eq!(etag, format!("\"v{version}\""));
                            assert_eq!(reply.body["definition"]["variants"]["v"], value.as_str(), "{}", reply.text);
                            (version, value)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers.into_iter().flat_map(|w| w.join().expect("writer")).collect()
    });
    let history = send("GET", &format!("{url}/history?limit=1000"), Some(ADMIN), None, &[]);
    let written: std::collections::BTreeMap<u64, String> = history.body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["definition"]["variants"]["v"].as_str().unwrap().to_owned()))
        .collect();
    for (version, value) in answers {
        assert_eq!(written.get(&version), Some(&value), "the answer named v{version}");
    }
}

#[test]
fn history_is_paged_capped_and_retained() {
    let setup =
        Setup::new("limits:\n  historyVersionsPerFlag: 5\n  responseBytes: 65536\n  adminWritesPerSecond: 100000\n");
    let url = format!("{}/admin/v1/environments/production/flags/wide", setup.server.admin);
    for round in 0..8 {
        let body = json!({"state": "ENABLED", "variants": {"v": format!("{round}{}", "x".repeat(24_000))}, "defaultVariant": "v"});
        assert!(send("PUT", &url, Some(ADMIN), Some(&body), &[]).status < 300);
    }
    // Five kept (4..=8); a 64 KiB page holds two of them (each version
    // carries its definition, about 24 KB; the change in words quotes
    // large values only in part).
    let first = send("GET", &format!("{url}/history"), Some(ADMIN), None, &[]);
    let versions: Vec<u64> =
        first.body["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [4, 5], "{} bytes", first.text.len());
    assert_eq!(first.body["next"], 5);
    let second = send("GET", &format!("{url}/history?after=5&limit=2"), Some(ADMIN), None, &[]);
    let versions: Vec<u64> =
        second.body["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [6, 7]);
    let last = send("GET", &format!("{url}/history?after=7"), Some(ADMIN), None, &[]);
    assert_eq!(last.body["next"], Value::Null);
    // A pruned version cannot be reverted to.
    let revert = send("POST", &format!("{url}/revert"), Some(ADMIN), Some(&json!({"version": 2})), &[]);
    assert_eq!((revert.status, revert.body["error"]["code"].as_str()), (404, Some("VERSION_NOT_FOUND")));
    // The audit log pages by size too (entries quote large values only in
    // part, so it takes a few hundred of them to fill a page).
    let many = format!("{}/admin/v1/environments/production/flags/many", setup.server.admin);
    for round in 0..400 {
        let body = json!({"state": "ENABLED", "variants": {"v": format!("{round}{}", "y".repeat(200))}, "defaultVariant": "v"});
        assert!(send("PUT", &many, Some(ADMIN), Some(&body), &[]).status < 300);
    }
    let audit = send("GET", &format!("{}/admin/v1/audit?limit=1000", setup.server.admin), Some(ADMIN), None, &[]);
    assert!(audit.text.len() < 2 * 65536, "{} bytes", audit.text.len());
    assert!(
        audit.body["next"].is_u64(),
        "{} bytes, {} entries",
        audit.text.len(),
        audit.body["entries"].as_array().map_or(0, Vec::len)
    );
    assert!(setup.server.metric(r#"rampart_limit_rejections_total{limit="response_bytes"}"#) >= 1.0);
}

mod generated_bodies {
    //! Generated request bodies — JSON of every shape, and text that is not
    //! JSON — against OFREP and the admin API: always a 2xx or 4xx with a
    //! JSON body, never a 5xx, and the server keeps serving.

    use proptest::prelude::*;

    use super::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,20}".prop_map(Value::from),
            prop_oneof![Just("ENABLED"), Just("DISABLED"), Just("state"), Just("variants"), Just("targetingKey")]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("state".to_owned()),
                        Just("variants".to_owned()),
                        Just("defaultVariant".to_owned()),
                        Just("targeting".to_owned()),
                        Just("context".to_owned()),
                        Just("key".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            json_value().prop_map(|v| v.to_string()),
            json_value().prop_map(|v| json!({"context": v}).to_string()),
            json_value().prop_map(|v| json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": v}).to_string()),
            "\\PC{0,60}",
        ]
    }

    #[test]
    fn generated_bodies_never_get_a_server_error() {
        let mut setup = Setup::new("");
        let client = rampart_tests::client();
        let mut runner =
            proptest::test_runner::TestRunner::new(ProptestConfig { cases: 150, ..ProptestConfig::default() });
        runner
            .run(&body(), |text| {
                for (method, url, auth) in [
                    (
                        "POST",
                        format!("{}/ofrep/v1/evaluate/flags/steady", setup.server.http),
                        ("x-api-key", SDK_KEY.to_owned()),
                    ),
                    (
                        "POST",
                        format!("{}/ofrep/v1/evaluate/flags", setup.server.http),
                        ("x-api-key", SDK_KEY.to_owned()),
                    ),
                    (
                        "PUT",
                        format!("{}/admin/v1/environments/production/flags/generated", setup.server.admin),
                        ("authorization", format!("Bearer {ADMIN}")),
                    ),
                    ("POST", format!("{}/v1/outcomes", setup.server.http), ("x-api-key", SDK_KEY.to_owned())),
                ] {
                    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                    let response =
                        client.request(method, &url).header(auth.0, &auth.1).body(text.clone()).send().expect("answer");
                    let status = response.status().as_u16();
                    let answer = response.text().unwrap_or_default();
                    prop_assert!(status < 500, "{url} answered {status} to {text:?}: {answer}");
                    prop_assert!(
                        (200..300).contains(&status) || serde_json::from_str::<Value>(&answer).is_ok(),
                        "{url}: a {status} without a JSON body: {answer:?}"
                    );
                }
                Ok(())
            })
            .expect("no server errors");
        setup.assert_healthy();
    }
}
