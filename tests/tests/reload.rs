//! Hot reload of flag files: valid edits go live, invalid ones are logged
//! with their location while the last good flag set keeps serving, and no
//! request ever sees half a flag set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rampart_tests::{DEADLINE, FlagDir, Rampart, eventually, get, post};
use serde_json::{Value, json};

fn flag(value: &str) -> String {
    format!(
        r#"{{"flags": {{"greeting": {{"state": "ENABLED", "variants": {{"v": "{value}"}}, "defaultVariant": "v"}}}}}}"#
    )
}

fn greeting(server: &Rampart) -> Value {
    post(&format!("{}/ofrep/v1/evaluate/flags/greeting", server.http), "{}", &[]).body["value"].clone()
}

fn version(server: &Rampart) -> u64 {
    get(&format!("{}/readyz", server.admin)).body["environments"]["default"]["version"].as_u64().expect("version")
}

fn metric(server: &Rampart, line_prefix: &str) -> f64 {
    let text = get(&format!("{}/metrics", server.admin)).text;
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn valid_edits_go_live_and_invalid_ones_keep_the_last_good_set() {
    let dir = FlagDir::new();
    let path = dir.write("flags.json", &flag("hello"));
    let server = Rampart::start(&["--flags", &path, "--admin-insecure-local"]);
    assert_eq!(greeting(&server), json!("hello"));

    dir.write("flags.json", &flag("hi"));
    eventually(DEADLINE, || if greeting(&server) == json!("hi") { Ok(()) } else { Err("not reloaded".into()) });
    assert_eq!(version(&server), 2);

    // A broken edit: rejected with file and line, and the old set serves on.
    dir.write("flags.json", "{\"flags\": {\n  \"greeting\": {\"state\": \"ENABLED\",,}\n}}");
    let rejected = eventually(DEADLINE, || {
        server
            .find_log(|entry| entry["message"].as_str().is_some_and(|m| m.starts_with("rejected flag files")))
            .ok_or_else(|| "no rejection logged".to_owned())
    });
    assert_eq!(rejected["file"], path.as_str());
    assert_eq!(rejected["line"], 2);
    assert_eq!(rejected["serving_version"], 2);
    assert_eq!(rejected["level"], "ERROR");
    assert_eq!(greeting(&server), json!("hi"));
    assert_eq!(version(&server), 2);
    assert_eq!(metric(&server, "rampart_config_last_reload_success{environment=\"default\"}"), 0.0);

    // A flag that is invalid in a valid document: as in flagd, that flag
    // answers PARSE_ERROR (logged, naming it) and the others are served.
    dir.write(
        "flags.json",
        r#"{"flags": {"greeting": {"state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "w"}}}"#,
    );
    eventually(DEADLINE, || {
        server
            .find_log(|entry| {
                entry["flag"] == "greeting"
                    && entry["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("answers PARSE_ERROR") && m.contains("defaultVariant 'w'"))
            })
            .ok_or_else(|| "no problem logged".to_owned())
    });
    let broken = post(&format!("{}/ofrep/v1/evaluate/flags/greeting", server.http), "{}", &[]);
    assert_eq!((broken.status, broken.body["errorCode"].as_str()), (400, Some("PARSE_ERROR")));
    assert_eq!(metric(&server, "rampart_config_flag_errors{environment=\"default\"}"), 1.0);
    let invalid = &get(&format!("{}/readyz", server.admin)).body["environments"]["default"]["invalidFlags"][0];
    assert_eq!((invalid["flag"].as_str(), invalid["file"].as_str()), (Some("greeting"), Some(path.as_str())));
    let view = get(&format!("{}/admin/v1/environments/default/flags/greeting", server.admin)).body;
    assert!(view["error"].as_str().is_some_and(|e| e.contains("defaultVariant 'w'")), "{view}");

    // Fixing the file serves the fix.
    dir.write("flags.json", &flag("fixed"));
    eventually(DEADLINE, || if greeting(&server) == json!("fixed") { Ok(()) } else { Err("not reloaded".into()) });
    assert_eq!(version(&server), 4);
    assert_eq!(metric(&server, "rampart_config_flag_errors{environment=\"default\"}"), 0.0);
    assert_eq!(metric(&server, "rampart_config_last_reload_success{environment=\"default\"}"), 1.0);
    assert!(metric(&server, "rampart_config_reloads_total{environment=\"default\",result=\"failed\"}") >= 1.0);

    // Rewriting identical content does not make a new version.
    let unchanged_before =
        metric(&server, "rampart_config_reloads_total{environment=\"default\",result=\"unchanged\"}");
    dir.write("flags.json", &flag("fixed"));
    eventually(DEADLINE, || {
        let now = metric(&server, "rampart_config_reloads_total{environment=\"default\",result=\"unchanged\"}");
        if now > unchanged_before { Ok(()) } else { Err("no reload yet".into()) }
    });
    assert_eq!(version(&server), 4);
}

#[test]
fn strict_flags_refuse_a_file_with_an_invalid_flag() {
    let dir = FlagDir::new();
    let path = dir.write("flags.json", &flag("hello"));
    let server = Rampart::start(&["--flags", &path, "--strict-flags"]);
    dir.write(
        "flags.json",
        r#"{"flags": {"greeting": {"state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "w"},
            "other": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    );
    eventually(DEADLINE, || {
        server
            .find_log(|entry| {
                entry["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("rejected flag files") && m.contains("defaultVariant 'w'"))
            })
            .ok_or_else(|| "no rejection logged".to_owned())
    });
    assert_eq!(greeting(&server), json!("hello"), "the last good set serves on");
    assert_eq!(post(&format!("{}/ofrep/v1/evaluate/flags/other", server.http), "{}", &[]).status, 404);
    // And at start-up such a file is refused.
    let mut command = std::process::Command::new(rampart_tests::rampart_bin());
    command
        .args([
            "serve",
            "--flags",
            &path,
            "--strict-flags",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args(["--grpc-addr", "127.0.0.1:0", "--sync-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path("data"));
    let output = rampart_tests::output_within(command, DEADLINE);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("defaultVariant 'w'"));
}

#[test]
fn new_files_matching_a_glob_are_picked_up() {
    let dir = FlagDir::new();
    dir.write("a.json", &flag("a"));
    let pattern = format!("{}/*.json", dir.dir.path().display());
    let server = Rampart::start(&["--flags", &pattern]);
    let url = format!("{}/ofrep/v1/evaluate/flags/other", server.http);
    assert_eq!(post(&url, "{}", &[]).status, 404);

    dir.write(
        "b.json",
        r#"{"flags": {"other": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    );
    eventually(DEADLINE, || match post(&url, "{}", &[]).status {
        200 => Ok(()),
        status => Err(format!("status {status}")),
    });
    assert_eq!(greeting(&server), json!("a"));

    // A second file defining the same key is rejected as a whole.
    dir.write("c.json", &flag("duplicate"));
    eventually(DEADLINE, || {
        server
            .find_log(|entry| entry["message"].as_str().is_some_and(|m| m.contains("is also defined in")))
            .ok_or_else(|| "no rejection logged".to_owned())
    });
    assert_eq!(greeting(&server), json!("a"));
}

/// Two flags that always change together, in one file: every bulk answer
/// must show them equal, whichever snapshot it was computed from.
#[test]
fn no_request_sees_half_a_flag_set() {
    let pair = |value: &str| {
        format!(
            r#"{{"flags": {{"left": {{"state": "ENABLED", "variants": {{"v": "{value}"}}, "defaultVariant": "v"}},
                "right": {{"state": "ENABLED", "variants": {{"v": "{value}"}}, "defaultVariant": "v"}}}}}}"#
        )
    };
    let dir = FlagDir::new();
    let path = dir.write("pair.json", &pair("v0"));
    let server = Arc::new(Rampart::start(&["--flags", &path]));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let url = format!("{}/ofrep/v1/evaluate/flags", server.http);
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = post(&url, "{}", &[]).body;
                    let flags = body["flags"].as_array().expect("flags").clone();
                    assert_eq!(flags[0]["value"], flags[1]["value"], "torn read: {body}");
                    seen.insert(flags[0]["value"].as_str().expect("value").to_owned());
                }
                seen
            })
        })
        .collect();

    for round in 1..=20 {
        let value = format!("v{round}");
        dir.write("pair.json", &pair(&value));
        // Wait for this version to be served before writing the next, so
        // every round is a real swap under concurrent reads.
        eventually(DEADLINE, || {
            let body = post(&format!("{}/ofrep/v1/evaluate/flags/left", server.http), "{}", &[]).body;
            if body["value"] == json!(value) {
                Ok(())
            } else {
                Err(format!("still {}; logs: {:?}", body["value"], server.logs()))
            }
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for reader in readers {
        seen.extend(reader.join().expect("reader"));
    }
    assert!(seen.len() >= 5, "readers saw too few versions to mean anything: {seen:?}");
    assert_eq!(version(&server), 21);
}
