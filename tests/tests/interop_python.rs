//! A real OpenFeature client: the PyPI packages `openfeature-sdk` and
//! `openfeature-provider-ofrep` resolving every flag type through Rampart.

use rampart_tests::{FlagDir, Rampart, python_command, run_with_input, workspace};
use serde_json::{Value, json};

const FLAGS: &str = r#"
flags:
  dark-mode:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
    targeting:
      if: [{ends_with: [{var: email}, "@rampart.dev"]}, on]
  banner:
    state: ENABLED
    variants: {classic: "Welcome", winter: "Winter sale"}
    defaultVariant: classic
    targeting:
      if: [{in: [{var: country}, [NO, SE]]}, winter]
  page-size:
    state: ENABLED
    variants: {small: 10, large: 50}
    defaultVariant: small
    targeting:
      fractional: [[small, 50], [large, 50]]
  ratio:
    state: ENABLED
    variants: {none: 0, half: 0.5, all: 1}
    defaultVariant: all
    targeting:
      if: [{"==": [{var: tier}, gold]}, half]
  theme:
    state: ENABLED
    variants:
      light: {background: white, compact: false}
      dark: {background: black, compact: true}
    defaultVariant: light
  retired:
    state: DISABLED
    variants: {on: true, off: false}
    defaultVariant: on
  unset:
    state: ENABLED
    variants: {on: true, off: false}
"#;

fn resolve(server: &Rampart, headers: &Value, requests: Value) -> Vec<Value> {
    let mut command = python_command(&workspace().join("tests/interop/ofrep_client.py"));
    command.arg(&server.http).arg(headers.to_string());
    let output = run_with_input(command, &requests.to_string());
    serde_json::from_str::<Vec<Value>>(&output).expect("client output")
}

#[test]
fn python_ofrep_provider_resolves_every_type() {
    let dir = FlagDir::new();
    let path = dir.write("flags.yaml", FLAGS);
    let server = Rampart::start(&["--flags", &path]);
    let results = resolve(
        &server,
        &json!({}),
        json!([
            {"type": "bool", "flag": "dark-mode", "default": false, "targetingKey": "u1", "attributes": {"email": "a@rampart.dev"}},
            {"type": "bool", "flag": "dark-mode", "default": true, "targetingKey": "u2", "attributes": {"email": "b@example.com"}},
            {"type": "string", "flag": "banner", "default": "none", "attributes": {"country": "NO"}},
            {"type": "int", "flag": "page-size", "default": 0, "targetingKey": "user-1"},
            {"type": "float", "flag": "ratio", "default": 9.5, "attributes": {"tier": "gold"}},
            {"type": "float", "flag": "ratio", "default": 9.5},
            {"type": "object", "flag": "theme", "default": {}},
            {"type": "bool", "flag": "retired", "default": false},
            {"type": "bool", "flag": "unset", "default": true},
            {"type": "bool", "flag": "missing", "default": true},
            {"type": "int", "flag": "banner", "default": 7}
        ]),
    );
    let expected = [
        json!({"value": true, "variant": "on", "reason": "TARGETING_MATCH", "errorCode": null}),
        json!({"value": false, "variant": "off", "reason": "DEFAULT", "errorCode": null}),
        json!({"value": "Winter sale", "variant": "winter", "reason": "TARGETING_MATCH", "errorCode": null}),
        json!({"value": 10, "variant": "small", "reason": "TARGETING_MATCH", "errorCode": null}),
        json!({"value": 0.5, "variant": "half", "reason": "TARGETING_MATCH", "errorCode": null}),
        // 1 is served as 1.0, so a float client accepts it.
        json!({"value": 1.0, "variant": "all", "reason": "DEFAULT", "errorCode": null}),
        json!({"value": {"background": "white", "compact": false}, "variant": "light", "reason": "STATIC", "errorCode": null}),
        // Disabled and default-less flags: the code default, with the reason.
        json!({"value": false, "variant": null, "reason": "DISABLED", "errorCode": null}),
        json!({"value": true, "variant": null, "reason": "DEFAULT", "errorCode": null}),
        json!({"value": true, "variant": null, "reason": "ERROR", "errorCode": "FLAG_NOT_FOUND"}),
        json!({"value": 7, "variant": null, "reason": "ERROR", "errorCode": "TYPE_MISMATCH"}),
    ];
    assert_eq!(results.len(), expected.len());
    for (index, (got, want)) in results.iter().zip(expected.iter()).enumerate() {
        assert_eq!(got, want, "request {index}");
    }
}

#[test]
fn python_ofrep_provider_sends_the_sdk_key() {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    let config = dir.write(
        "rampart.yaml",
        "environments:\n  production:\n    flags: [flags.yaml]\n    sdkKeys: [{value: python-key-1}]\n",
    );
    let server = Rampart::start(&["--config", &config]);
    let request = json!([{"type": "string", "flag": "banner", "default": "none", "attributes": {"country": "SE"}}]);

    let with_key = resolve(&server, &json!({"Authorization": "Bearer python-key-1"}), request.clone());
    assert_eq!(with_key[0]["value"], "Winter sale");
    let without = resolve(&server, &json!({}), request);
    assert_eq!((&without[0]["value"], &without[0]["errorCode"]), (&json!("none"), &json!("GENERAL")));
}
