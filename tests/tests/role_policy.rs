//! One role policy for the admin API and the dashboard: for every action,
//! each credential — a read, write or admin token, a relay token, an SDK
//! key, nothing — is allowed on both surfaces or on neither, and the answer
//! is the documented table (docs/security: `read` reads, `write` changes
//! flags and holds ramps back, `admin` promotes across environments and
//! moves, aborts or restarts ramps; a relay token does none of it, nor an
//! alerts token, which only posts alerts: `tests/tests/alerts.rs`).

use rampart_tests::{FlagDir, Rampart, client};
use serde_json::json;

const SDK_KEY: &str = "production-sdk-key-01";
const STAGING_KEY: &str = "staging-sdk-key-0001";
const TOKENS: [(&str, &str, &str); 5] = [
    ("reader", "read", "policy-read-token-0123456789"),
    ("writer", "write", "policy-write-token-0123456789"),
    ("boss", "admin", "policy-admin-token-0123456789"),
    ("edge", "relay", "policy-relay-token-0123456789"),
    ("siren", "alerts", "policy-alerts-token-0123456789"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Nobody,
    Read,
    Write,
    Admin,
}

/// What a credential may do, as the documentation says.
fn role_of(credential: &str) -> Role {
    match credential {
        "read" => Role::Read,
        "write" => Role::Write,
        "admin" => Role::Admin,
        _ => Role::Nobody,
    }
}

struct Action {
    name: &'static str,
    needs: Role,
    /// Admin API: method, path, JSON body.
    api: (&'static str, String, Option<serde_json::Value>),
    /// Dashboard: GET a page (None) or POST a form (Some(fields)); path.
    ui: Option<(String, Option<Fields>)>,
}

/// A form's fields.
type Fields = Vec<(&'static str, String)>;

fn actions(tag: &str) -> Vec<Action> {
    let flag = "/environments/production/flags/api-flag";
    let definition = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    let mut list = vec![
        Action {
            name: "read",
            needs: Role::Read,
            api: ("GET", "/admin/v1/environments/production/flags".into(), None),
            ui: Some(("/ui/environments/production/flags".into(), None)),
        },
        Action {
            name: "write a flag",
            needs: Role::Write,
            api: ("PUT", format!("/admin/v1/environments/production/flags/api-{tag}"), Some(definition.clone())),
            ui: Some((
                "/ui/environments/production/new-flag".into(),
                Some(vec![("key", format!("ui-{tag}")), ("definition", definition.to_string())]),
            )),
        },
        Action {
            name: "switch a flag",
            needs: Role::Write,
            api: ("PATCH", format!("/admin/v1{flag}"), Some(json!({"state": "ENABLED"}))),
            ui: Some((format!("/ui{flag}/state"), Some(vec![("state", "ENABLED".into())]))),
        },
        Action {
            name: "revert a flag",
            needs: Role::Write,
            api: ("POST", format!("/admin/v1{flag}/revert"), Some(json!({"version": 1}))),
            ui: Some((format!("/ui{flag}/revert"), Some(vec![("version", "1".into())]))),
        },
        Action {
            name: "promote a flag into another environment",
            needs: Role::Admin,
            api: (
                "POST",
                "/admin/v1/environments/production/promote".into(),
                Some(json!({"to": "staging", "flags": ["api-flag"], "dryRun": true})),
            ),
            ui: Some((format!("/ui{flag}/promote"), Some(vec![("to", "staging".into())]))),
        },
        Action {
            name: "delete a flag",
            needs: Role::Write,
            api: ("DELETE", format!("/admin/v1/environments/production/flags/api-{tag}"), None),
            ui: None,
        },
    ];
    for (command, needs) in [
        ("pause", Role::Write),
        ("resume", Role::Write),
        ("approve", Role::Write),
        ("promote", Role::Admin),
        ("abort", Role::Admin),
        ("restart", Role::Admin),
    ] {
        list.push(Action {
            name: command,
            needs,
            api: ("POST", format!("/admin/v1/ramps/production/checkout-v2/{command}"), None),
            ui: Some((format!("/ui/ramps/production/checkout-v2/{command}"), Some(vec![("reason", String::new())]))),
        });
    }
    list
}

/// A form body, every byte but letters and digits percent-encoded.
fn form(fields: &[(&str, String)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    fields.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

/// A dashboard session: its cookie and form token, if the credential may
/// sign in.
fn sign_in(server: &Rampart, token: Option<&str>) -> Option<(String, String)> {
    let http =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let answer = http
        .post(format!("{}/ui/sign-in", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token.unwrap_or("").to_owned()), ("next", "/ui/".to_owned())]))
        .send()
        .expect("sign-in");
    let cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("rampart_session="))?
        .split(';')
        .next()?
        .to_owned();
    let page = http.get(format!("{}/ui/", server.admin)).header("cookie", &cookie).send().expect("page");
    let text = page.text().expect("text");
    let start = text.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let csrf = text[start..].split('"').next()?.to_owned();
    Some((cookie, csrf))
}

#[test]
fn every_action_is_allowed_on_both_surfaces_or_on_neither() {
    let dir = FlagDir::new();
    dir.write("flags.yaml", "flags:\n  checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n");
    dir.write(
        "ramp.yaml",
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: checkout-v2}\nspec:\n  flag: checkout\n  \
         treatment: \"on\"\n  interval: 1h\n  steps: [{percent: 5, hold: 1h}, {percent: 100, hold: 1h}]\n",
    );
    let tokens: String = TOKENS
        .iter()
        .map(|(name, role, value)| {
            let scope = if *role == "relay" { ", environments: [production]" } else { "" };
            format!("  - {{name: {name}, role: {role}, value: {value}{scope}}}\n")
        })
        .collect();
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n  \
             staging:\n    flags: [flags.yaml]\n    sdkKeys: [{{value: {STAGING_KEY}}}]\nadminTokens:\n{tokens}"
        ),
    );
    let server = Rampart::start(&["--config", &config]);
    let admin = TOKENS[2].2;
    let api = |method: &str, path: &str, token: Option<&str>, body: Option<&serde_json::Value>| -> u16 {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client().request(method, format!("{}{path}", server.admin));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        request.send().expect("answer").status().as_u16()
    };
    // An API-owned flag with two versions (revert, promote, switch).
    let definition = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    assert_eq!(api("PUT", "/admin/v1/environments/production/flags/api-flag", Some(admin), Some(&definition)), 201);
    let second = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    assert_eq!(api("PUT", "/admin/v1/environments/production/flags/api-flag", Some(admin), Some(&second)), 200);

    let ui_client =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut credentials: Vec<(&str, Option<&str>)> =
        TOKENS.iter().map(|(_, role, value)| (*role, Some(*value))).collect();
    credentials.push(("sdk key", Some(SDK_KEY)));
    credentials.push(("nothing", None));
    let mut disagreements = Vec::new();
    for (credential, token) in credentials {
        let session = sign_in(&server, token);
        let tag = credential.replace(' ', "-");
        for action in actions(&tag) {
            let expected = role_of(credential) >= action.needs;
            let status = api(action.api.0, &action.api.1, token, action.api.2.as_ref());
            let api_allowed = status != 401 && status != 403;
            if api_allowed != expected {
                disagreements
                    .push(format!("API {} with {credential}: {status}, expected allowed={expected}", action.name));
            }
            let Some((path, fields)) = action.ui else { continue };
            let ui_allowed = match &session {
                None => false,
                Some((cookie, csrf)) => {
                    let url = format!("{}{path}", server.admin);
                    let answer = match fields {
                        None => ui_client.get(url).header("cookie", cookie).send(),
                        Some(mut fields) => {
                            fields.push(("csrf", csrf.clone()));
                            ui_client
                                .post(url)
                                .header("cookie", cookie)
                                .header("content-type", "application/x-www-form-urlencoded")
                                .body(form(&fields))
                                .send()
                        }
                    };
                    let status = answer.expect("dashboard").status().as_u16();
                    status != 401 && status != 403 && !(300..400).contains(&status) || status == 303
                }
            };
            if ui_allowed != expected || ui_allowed != api_allowed {
                disagreements.push(format!(
                    "dashboard {} with {credential}: allowed={ui_allowed}, API allowed={api_allowed}, expected {expected}",
                    action.name
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
