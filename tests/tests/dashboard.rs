//! The dashboard against the real binary: what the browser shows and does
//! (`tests/browser/dashboard.py`, a real headless Chromium over WebDriver:
//! sign-in and roles, CSRF, the kill switch, inline validation errors, the
//! evaluation console against OFREP, live updates through an advance and
//! a rollback, axe-core on every page, screenshots), and what needs no
//! browser: headers, cookie attributes, the insecure-local and disabled
//! modes, a malformed form.

use std::path::PathBuf;
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, deps_dir, output_within, workspace};

const ADMIN_TOKEN: &str = "dashboard-admin-token-0001";
const READ_TOKEN: &str = "dashboard-read-token-00001";
const STAGING_KEY: &str = "staging-key-0001";
const REPORTER_KEY: &str = "staging-reporter-0001";
const PRODUCTION_KEY: &str = "production-key-0001";

const FLAGS: &str = r#"
flags:
  new-welcome-banner:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
    targeting:
      if:
        - in: [{var: country}, [de, fr]]
        - on
        - fractional: [[on, 10], [off, 90]]
  new-checkout:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
  new-search:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
    metadata: {owner: search-team, description: The rewritten search, tags: "search, q4"}
"#;

const RELEASE: &str = r#"
apiVersion: rampart.dev/v1
kind: Release
metadata: {name: search-release}
spec:
  flag: new-search
  treatment: "on"
  interval: 1s
  guard: {minSamples: 1000}
  stages:
    - environment: staging
      steps: [{percent: 20, hold: 1h}, {percent: 100, hold: 1h}]
    - environment: production
      steps: [{percent: 5, hold: 1h}, {percent: 100, hold: 1h}]
"#;

const RAMP: &str = r#"
apiVersion: rampart.dev/v1
kind: Ramp
metadata:
  name: checkout-v2
spec:
  flag: new-checkout
  treatment: "on"
  salt: dashboard
  interval: 1s
  steps:
    - {percent: 10, hold: 2s}
    - {percent: 50, hold: 2s}
    - {percent: 100, hold: 10m}
  guard:
    minSamples: 40
    absolute: {maxErrorRate: 20%, maxIncrease: 10%}
  windows:
    timezone: Europe/Paris
    allow: ["Mon-Sun 00:00-24:00"]
"#;

fn config(dir: &FlagDir, extra: &str) -> String {
    dir.write("flags.yaml", FLAGS);
    dir.write("ramp.yaml", RAMP);
    dir.write("release.yaml", RELEASE);
    dir.write(
        "rampart.yaml",
        &format!(
            "adminTokens:\n  - {{name: ana, role: admin, env: DASHBOARD_ADMIN}}\n  - {{name: rita, role: read, env: DASHBOARD_READ}}\n\
             environments:\n  staging:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml, release.yaml]\n    sdkKeys: [{{env: STAGING_KEY}}]\n\
             \x20   reporterKeys: [{{value: {REPORTER_KEY}}}]\n\
             \x20 production:\n    protected: true\n    flags: [flags.yaml]\n    ramps: [release.yaml]\n    sdkKeys: [{{env: PRODUCTION_KEY}}]\n{extra}"
        ),
    )
}

fn start(dir: &FlagDir, extra: &str) -> Rampart {
    // The browser's live ramp is fed by one reporter: its bound counts per second here.
    let config = config(dir, &format!("{extra}limits:\n  outcomeSourceWindowSeconds: 1\n"));
    Rampart::start_with_env(
        &["--config", &config],
        &[
            ("DASHBOARD_ADMIN", ADMIN_TOKEN),
            ("DASHBOARD_READ", READ_TOKEN),
            ("STAGING_KEY", STAGING_KEY),
            ("PRODUCTION_KEY", PRODUCTION_KEY),
        ],
    )
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Where screenshots of every page go: a test artifact.
fn screenshots() -> PathBuf {
    let dir = workspace().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let dir = FlagDir::new();
    let server = start(&dir, "");
    let python = deps_dir().join("python");
    assert!(
        python.join("selenium").is_dir(),
        "selenium is missing in {}: run ./scripts/test, which installs it",
        python.display()
    );
    let axe = deps_dir().join("node/node_modules/axe-core/axe.min.js");
    assert!(axe.is_file(), "axe-core is missing at {}: run ./scripts/test, which installs it", axe.display());
    for tool in ["chromium", "chromedriver"] {
        let found = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is missing: run ./scripts/test, which installs Debian's chromium and chromium-driver"
        );
    }
    let mut command = std::process::Command::new("python3");
    command
        .arg(workspace().join("tests/browser/dashboard.py"))
        .env("PYTHONPATH", &python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("RAMPART_ADMIN", &server.admin)
        .env("RAMPART_HTTP", &server.http)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("READ_TOKEN", READ_TOKEN)
        .env("SDK_KEY", STAGING_KEY)
        .env("PRODUCTION_SDK_KEY", PRODUCTION_KEY)
        .env("REPORTER_KEY", REPORTER_KEY)
        .env("AXE", &axe)
        .env("SCREENSHOTS", screenshots());
    let output = output_within(command, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("axe-core: no violations on 16 pages at 1440 and 390 px"), "{stdout}");
}

#[test]
fn pages_carry_strict_headers_and_the_session_cookie_is_locked_down() {
    let dir = FlagDir::new();
    let server = start(&dir, "dashboardSecureCookie: true\n");
    let client = no_redirects();
    let page = client.get(format!("{}/ui/", server.admin)).send().expect("overview");
    assert_eq!(page.status(), 303, "no session: to the sign-in form");
    assert_eq!(page.headers()["location"], "/ui/sign-in?next=%2Fui%2F");
    let sign_in = client.get(format!("{}/ui/sign-in", server.admin)).send().expect("sign-in form");
    assert_eq!(sign_in.status(), 200);
    let csp = sign_in.headers()["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(sign_in.headers()["x-frame-options"], "DENY");
    assert_eq!(sign_in.headers()["referrer-policy"], "no-referrer");
    let html = sign_in.text().expect("html");
    assert!(!html.contains("<script>") && !html.contains(" style="), "no inline script or style");

    let signed = client
        .post(format!("{}/ui/sign-in", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}&next=%2Fui%2Framps"))
        .send()
        .expect("sign in");
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/ui/ramps");
    let cookie = signed.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session = cookie.split(';').next().expect("name=value").to_owned();
    let overview = client.get(format!("{}/ui/", server.admin)).header("cookie", &session).send().expect("overview");
    assert_eq!(overview.status(), 200);
    let html = overview.text().expect("html");
    assert!(!html.contains(ADMIN_TOKEN) && !html.contains(STAGING_KEY), "no secrets in pages");

    // An open redirect is not followed after sign-in.
    let outside = client
        .post(format!("{}/ui/sign-in", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}&next=https%3A%2F%2Fevil.example%2F"))
        .send()
        .expect("sign in");
    assert_eq!(outside.headers()["location"], "/ui/");

    // A form without its fields is a 400 page, not a 500.
    let malformed = client
        .post(format!("{}/ui/environments/staging/flags/new-checkout/state", server.admin))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=abc")
        .send()
        .expect("malformed");
    assert_eq!(malformed.status(), 400);

    // A form over the 2 MiB bound is refused before it is parsed.
    let huge = client
        .post(format!("{}/ui/environments/staging/new-flag", server.admin))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("definition={}", "x".repeat((2 << 20) + 100_000)))
        .send()
        .expect("huge form");
    assert_eq!(huge.status(), 413);
    assert!(server.metric("rampart_limit_rejections_total{limit=\"request_body\"}") >= 1.0);
}

#[test]
fn insecure_local_opens_the_dashboard_and_no_tokens_keeps_it_shut() {
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", FLAGS);
    let local = Rampart::start(&["--flags", &flags, "--admin-insecure-local"]);
    let client = no_redirects();
    let page = client.get(format!("{}/ui/", local.admin)).send().expect("overview");
    assert_eq!(page.status(), 200, "no sign-in with --admin-insecure-local");
    let html = page.text().expect("html");
    assert!(html.contains("Signed in as <strong>local</strong> (admin)"), "{html}");
    let form = client.get(format!("{}/ui/sign-in", local.admin)).send().expect("sign-in");
    assert_eq!(form.status(), 303, "nothing to sign in to");

    let shut = Rampart::start(&["--flags", &flags]);
    let page = client.get(format!("{}/ui/", shut.admin)).send().expect("overview");
    assert_eq!(page.status(), 403);
    assert!(page.text().expect("html").contains("The dashboard is off"));
}

/// Signs in with the admin token; the session cookie (`name=value`).
fn sign_in(client: &reqwest::blocking::Client, server: &Rampart) -> String {
    let signed = client
        .post(format!("{}/ui/sign-in", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}&next=%2Fui%2F"))
        .send()
        .expect("sign in");
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().expect("cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

fn page(client: &reqwest::blocking::Client, server: &Rampart, session: &str, path: &str) -> String {
    let response = client.get(format!("{}{path}", server.admin)).header("cookie", session).send().expect("page");
    assert_eq!(response.status(), 200, "{path}");
    response.text().expect("html")
}

#[test]
fn a_release_is_drawn_as_stages_linked_both_ways_and_its_flag_says_who_ramps_it() {
    let dir = FlagDir::new();
    let server = start(&dir, "");
    let client = no_redirects();
    let session = sign_in(&client, &server);
    let staging = page(&client, &server, &session, "/ui/ramps/staging/search-release");
    let production = page(&client, &server, &session, "/ui/ramps/production/search-release");
    assert!(staging.contains("Release search-release"), "{staging}");
    assert!(staging.contains("href=\"/ui/ramps/production/search-release\""), "staging links production");
    assert!(production.contains("href=\"/ui/ramps/staging/search-release\""), "production links staging");
    assert!(production.contains("Production: production"), "the protected environment is marked");
    assert!(production.contains("Pending"), "the later stage waits for the first");
    let ramps = page(&client, &server, &session, "/ui/ramps");
    assert!(
        ramps.contains("production / search-release</a> <span class=\"badge bad\">production</span>"),
        "lists mark production: {ramps}"
    );

    // The flag says who ramps it, in words, instead of the compiled split
    // (once the first stage has started: its first check).
    let flag = rampart_tests::eventually(Duration::from_secs(20), || {
        let flag = page(&client, &server, &session, "/ui/environments/staging/flags/new-search");
        if flag.contains("id=\"ramped-targeting\"") { Ok(flag) } else { Err("the ramp has not started".into()) }
    });
    assert!(flag.contains("href=\"/ui/ramps/staging/search-release\">search-release</a> at 20 %"), "{flag}");
    // The list shows the ramp, the owner, the description and the tags, and finds by them.
    let list = page(&client, &server, &session, "/ui/environments/staging/flags?q=search-team");
    assert!(list.contains("1 of 3 flags"), "search over owners: {list}");
    assert!(list.contains("The rewritten search") && list.contains(">q4<"), "{list}");
    assert!(list.contains("search-release</a> at 20 %"), "{list}");
    let tagged = page(&client, &server, &session, "/ui/environments/staging/flags?tag=q4");
    assert!(tagged.contains("1 of 3 flags"), "{tagged}");
    let sorted = page(&client, &server, &session, "/ui/environments/staging/flags?sort=owner");
    let first_row = sorted.split("<tbody>").nth(1).and_then(|body| body.split("</tr>").next()).expect("a row");
    assert!(first_row.contains("new-search"), "flags with an owner first: {first_row}");
    assert!(sorted.contains("aria-sort=\"ascending\""), "the sorted column says so");
}

#[test]
fn production_refuses_a_dangerous_action_without_the_name_typed() {
    let dir = FlagDir::new();
    let server = start(&dir, "");
    let client = no_redirects();
    let session = sign_in(&client, &server);
    let html = page(&client, &server, &session, "/ui/environments/production/flags");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("csrf");
    assert!(html.contains("data-type-to-confirm=\"new-checkout\""), "the dialog is told what to ask");
    let post = |body: String| {
        client
            .post(format!("{}/ui/environments/production/flags/new-checkout/state", server.admin))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .expect("kill switch")
    };
    for typed in ["", "&typed=new-checkou", "&typed=new-search"] {
        let refused = post(format!("csrf={csrf}&state=DISABLED{typed}"));
        assert_eq!(refused.status(), 400, "typed {typed:?}");
        assert!(refused.text().expect("html").contains("type 'new-checkout'"));
    }
    let evaluate = || {
        let answer: serde_json::Value = reqwest::blocking::Client::new()
            .post(format!("{}/ofrep/v1/evaluate/flags/new-checkout", server.http))
            .bearer_auth(PRODUCTION_KEY)
            .json(&serde_json::json!({"context": {"targetingKey": "u"}}))
            .send()
            .expect("ofrep")
            .json()
            .expect("json");
        answer["reason"].as_str().unwrap_or_default().to_owned()
    };
    assert_ne!(evaluate(), "DISABLED", "nothing changed");
    let done = post(format!("csrf={csrf}&state=DISABLED&typed=new-checkout"));
    assert_eq!(done.status(), 303);
    assert!(done.headers()["set-cookie"].to_str().expect("notice").starts_with("rampart_notice="));
    assert_eq!(evaluate(), "DISABLED");
    // Staging is not protected: the same action needs no name there.
    let staging = client
        .post(format!("{}/ui/environments/staging/flags/new-checkout/state", server.admin))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&state=DISABLED"))
        .send()
        .expect("kill switch");
    assert_eq!(staging.status(), 303);
}
