//! What the server accepts must be able to work: targeting that can never
//! serve (a literal result that is not a variant, an operator with the
//! wrong number of arguments), a release stage in an environment that is
//! not configured, a ramp whose control is not what users get today — each
//! refused by `rampart validate` and the admin API with file, line and
//! reason, while flag files stay lenient as flagd is.

use std::process::Command;
use std::time::Duration;

use rampart_tests::{DEADLINE, FlagDir, Rampart, eventually, output_within, post, rampart_bin, send, workspace};
use serde_json::json;

const TYPO: &str = "flags:\n  banner:\n    state: ENABLED\n    variants: {classic: a, winter: b}\n    defaultVariant: classic\n    \
                    targeting:\n      if: [{\"==\": [{var: tier}, vip]}, wintr, classic]\n";
const ARITY: &str = "flags:\n  dark:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: off\n    \
                     targeting:\n      if: [{starts_with: [{var: email}]}, on, off]\n";

/// `rampart validate ARGS…`: (exit code, stdout and stderr).
fn validate(args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(rampart_bin());
    command.arg("validate").args(args);
    let output = output_within(command, DEADLINE);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn targeting_that_can_never_serve_is_refused_by_validate_and_the_api_and_reported_from_files() {
    let dir = FlagDir::new();
    let typo = dir.write("typo.yaml", TYPO);
    let arity = dir.write("arity.yaml", ARITY);
    let (code, text) = validate(&[&typo]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("typo.yaml:") && text.contains("'wintr', which is not one of the flag's variants"), "{text}");
    let (code, text) = validate(&[&arity]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("'starts_with' takes 2 arguments, found 1"), "{text}");

    // Served from a file, leniently as flagd does: reported with file and
    // line, every evaluation answers as flagd would.
    let server = Rampart::start(&["--flags", &typo, "--admin-insecure-local"]);
    let logged = server.find_log(|e| {
        e["message"].as_str().is_some_and(|m| m.contains("wintr"))
            || e["error"].as_str().is_some_and(|m| m.contains("wintr"))
    });
    assert!(logged.is_some(), "the problem is logged: {:?}", server.logs());
    let evaluated =
        post(&format!("{}/ofrep/v1/evaluate/flags/banner", server.http), r#"{"context": {"targetingKey": "u"}}"#, &[]);
    assert_eq!(evaluated.body["value"], "a", "{}", evaluated.text);

    // The admin API refuses it (422, the engine's message).
    for (key, definition) in [
        (
            "typo",
            json!({"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"if": [true, "c", "a"]}}),
        ),
        (
            "arity",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                          "targeting": {"if": [{"starts_with": [{"var": "email"}]}, "on", "off"]}}),
        ),
    ] {
        let url = format!("{}/admin/v1/environments/default/flags/{key}", server.admin);
        let refused = send("PUT", &url, None, Some(&definition), &[]);
        assert_eq!(refused.status, 422, "{key}: {}", refused.text);
        assert!(
            refused.text.contains("not one of the flag's variants") || refused.text.contains("takes 2 arguments"),
            "{}",
            refused.text
        );
    }
}

#[test]
fn a_release_stage_in_an_unknown_environment_is_refused_by_validate_and_start_up() {
    let dir = FlagDir::new();
    let flags = dir.write(
        "flags.yaml",
        "flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: off\n",
    );
    let release = dir.write(
        "release.yaml",
        "apiVersion: rampart.dev/v1\nkind: Release\nmetadata: {name: r}\nspec:\n  flag: f\n  treatment: \"on\"\n  stages:\n    \
         - environment: staging\n      steps: [{percent: 50, hold: 1h}]\n    - environment: prodution\n      steps: [{percent: 5, hold: 1h}]\n",
    );
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  staging:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: staging-key-0001}]\n  \
         production:\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{value: production-key-01}]\n",
    );
    let (code, text) = validate(&["--config", &config, &flags, &release]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("release.yaml:10") && text.contains("'prodution' is not a configured environment"), "{text}");

    let mut command = Command::new(rampart_bin());
    command.args(["serve", "--config", &config, "--data-dir", &dir.path("data").to_string_lossy()]);
    for flag in ["--http-addr", "--admin-addr", "--grpc-addr", "--sync-addr"] {
        command.args([flag, "127.0.0.1:0"]);
    }
    let output = output_within(command, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("prodution"), "{stderr}");
}

#[test]
fn a_ramp_whose_control_nobody_is_served_is_refused_and_the_shipped_examples_validate() {
    let dir = FlagDir::new();
    let flags = dir.write(
        "flags.yaml",
        "flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: \"on\"\n",
    );
    let ramp = dir.write(
        "ramp.yaml",
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: r}\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  \
         steps: [{percent: 5, hold: 1h}]\n",
    );
    let (code, text) = validate(&[&flags, &ramp]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("control 'off' is not what the flag serves outside the ramp ('on'"), "{text}");

    // The examples as shipped: the release ramps a flag that serves its control.
    let examples = workspace().join("examples");
    let path = |p: &str| examples.join(p).to_string_lossy().into_owned();
    let (code, text) = validate(&[
        &path("flags.yaml"),
        &path("releases/checkout.yaml"),
        &path("ramps/search-v2.yaml"),
        "--config",
        &path("rampart.yaml"),
    ]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_next_address_with_control_characters_is_refused_and_signs_nobody_in() {
    let dir = FlagDir::new();
    let flags = dir.write(
        "flags.yaml",
        "flags:\n  f:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: \"on\"\n",
    );
    let server =
        Rampart::start_with_env(&["--flags", &flags], &[("RAMPART_ADMIN_TOKEN", "next-test-admin-token-0123456789")]);
    let http =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for next in ["%2Fui%2F%0D%0ASet-Cookie:%20x=1", "%2Fui%2F%0A", "%2Fui%2F%7F"] {
        let answer = http
            .post(format!("{}/ui/sign-in", server.admin))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token=next-test-admin-token-0123456789&next={next}"))
            .send()
            .expect("sign-in");
        assert_eq!(answer.status().as_u16(), 400, "{next}");
        assert!(answer.headers().get("set-cookie").is_none(), "no session for {next}");
    }
    // Failed sign-ins are limited per address.
    let statuses: Vec<u16> = (0..12)
        .map(|_| {
            http.post(format!("{}/ui/sign-in", server.admin))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("token=not-the-token&next=%2Fui%2F")
                .send()
                .expect("sign-in")
                .status()
                .as_u16()
        })
        .collect();
    assert!(statuses.starts_with(&[401; 10]) && statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    eventually(Duration::from_secs(5), || {
        let refused = server.metric("rampart_limit_rejections_total{limit=\"sign_in_attempts\"}");
        if refused >= 2.0 { Ok(()) } else { Err(refused.to_string()) }
    });
}
