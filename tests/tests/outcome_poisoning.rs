//! Outcome reports are untrusted: SDK keys ship inside client apps. Forged
//! reports are refused by size, rate and plausibility, a forged excess of
//! treatment errors holds the ramp instead of rolling it back, and an
//! environment with reporter keys takes outcomes from those alone.

use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, post, send};
use serde_json::{Value, json};

const SDK_KEY: &str = "public-sdk-key-00001";
const REPORTER_KEY: &str = "server-reporter-key-001";
const FLAGS: &str = "flags:\n  checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n";
const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: checkout-v2}\nspec:\n  flag: checkout\n  \
                    treatment: \"on\"\n  interval: 1s\n  steps:\n    - {percent: 50, hold: 1h}\n    - {percent: 100, hold: 1h}\n  \
                    guard:\n    minSamples: 10\n    absolute: {maxErrorRate: 5%}\n";

fn start(reporters: &str) -> (Rampart, FlagDir) {
    let dir = FlagDir::new();
    dir.write("flags.yaml", FLAGS);
    dir.write("ramp.yaml", RAMP);
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n    sdkKeys: [{{value: {SDK_KEY}}}]\n{reporters}\
             limits:\n  outcomeReportsPerSecond: 5\n  outcomeCountPerEntry: 10000\n"
        ),
    );
    (Rampart::start(&["--config", &config, "--admin-insecure-local"]), dir)
}

fn report(server: &Rampart, key: &str, outcomes: &Value) -> rampart_tests::Reply {
    post(&format!("{}/v1/outcomes", server.http), &json!({"outcomes": outcomes}).to_string(), &[("x-api-key", key)])
}

fn status(server: &Rampart) -> Value {
    send("GET", &format!("{}/admin/v1/ramps/production/checkout-v2", server.admin), None, None, &[]).body
}

fn entry(variant: &str, ok: u64, error: u64) -> Value {
    json!({"flag": "checkout", "variant": variant, "ok": ok, "error": error})
}

#[test]
fn forged_outcomes_are_refused_or_held_never_acted_on() {
    let (server, _dir) = start("");
    // Past the step's first (partial, uncounted) second.
    eventually(Duration::from_secs(30), || {
        let status = status(&server);
        let started = status["state"] != "Pending" && status["evidence"]["buckets"].as_u64() >= Some(2);
        if started { Ok(()) } else { Err(status.to_string()) }
    });

    // The report's poison: 10,000 entries of a billion errors each.
    let poison: Vec<Value> = (0..10_000).map(|_| entry("on", 1_000_000_000, 1_000_000_000)).collect();
    let refused = report(&server, SDK_KEY, &Value::Array(poison));
    assert_eq!(refused.status, 400, "{}", &refused.text[..refused.text.len().min(300)]);
    assert!(refused.text.contains("limits.outcomeCountPerEntry"));

    // Within the entry limit, but a hundred thousand errors out of nowhere.
    let sudden: Vec<Value> = (0..10).map(|_| entry("on", 0, 10_000)).collect();
    let implausible = report(&server, SDK_KEY, &Value::Array(sudden));
    assert_eq!((implausible.status, implausible.body["error"]["code"].as_str()), (422, Some("OUTCOMES_IMPLAUSIBLE")));

    // The most one request may bring: counted, but its sample ratio
    // (treatment only, at a 50% split) marks it as forged.
    let forged = report(&server, SDK_KEY, &json!([entry("on", 0, 10_000)]));
    assert_eq!(forged.status, 200, "{}", forged.text);
    let held = eventually(Duration::from_secs(30), || {
        let status = status(&server);
        if status["reason"] == "SampleRatioMismatch" { Ok(status) } else { Err(status.to_string()) }
    });
    assert_eq!((held["state"].as_str(), held["percent"].as_f64()), (Some("Holding"), Some(50.0)));

    // A burst of requests from one key runs into its rate.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(report(&server, SDK_KEY, &json!([entry("off", 1, 0)])).status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    for limit in ["outcome_count", "outcome_implausible", "outcome_rate"] {
        assert!(server.metric(&format!("rampart_limit_rejections_total{{limit=\"{limit}\"}}")) >= 1.0, "{limit}");
    }
    assert_ne!(status(&server)["state"], "RolledBack");
}

#[test]
fn with_reporter_keys_only_they_report_outcomes() {
    let (server, _dir) = start(&format!("    reporterKeys: [{{value: {REPORTER_KEY}}}]\n"));
    let public = report(&server, SDK_KEY, &json!([entry("on", 1, 0)]));
    assert_eq!((public.status, public.body["error"]["code"].as_str()), (403, Some("FORBIDDEN")));
    assert!(public.text.contains("reporter keys"));
    let reporter = report(&server, REPORTER_KEY, &json!([entry("on", 1, 0)]));
    assert_eq!(reporter.status, 200, "{}", reporter.text);
    // A reporter key is not an SDK key: it cannot evaluate.
    let evaluate =
        post(&format!("{}/ofrep/v1/evaluate/flags/checkout", server.http), "{}", &[("x-api-key", REPORTER_KEY)]);
    assert_eq!(evaluate.status, 401);
}
