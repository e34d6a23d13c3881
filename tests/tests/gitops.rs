//! The GitOps round trip against the real binary: `rampart diff` names
//! what deploying files would change (flags created, changed in words,
//! deleted, clashing with API-owned ones; ramps edited), and `rampart
//! export` writes API-owned flags as a flag file that loads.

use std::process::Command;
use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, output_within, rampart_bin, send};
use serde_json::json;

/// With flag-set metadata, which the ramp's overlay merges into the flag
/// it serves (diff must compare like with like).
const FLAGS: &str = "metadata:\n  flagSetId: shop\n  version: \"1\"\nflags:\n  checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"off\"\n  search:\n    state: ENABLED\n    variants: { old: old, new: new }\n    defaultVariant: old\n";

fn ramp(revision: u64, steps: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{name: checkout-ramp}}\nspec:\n  flag: checkout\n  treatment: \"on\"\n  revision: {revision}\n  interval: 1h\n  steps: [{steps}]\n"
    )
}

fn rampart(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(rampart_bin());
    command.args(args).env_remove("RAMPART_ADMIN_TOKEN");
    let output = output_within(command, Duration::from_secs(60));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn diff_names_every_change_and_export_writes_api_flags_that_load() {
    let served = FlagDir::new();
    let flags = served.write("flags.yaml", FLAGS);
    let ramps = served.write("ramp.yaml", &ramp(1, "{percent: 5, hold: 1h}, {percent: 100, hold: 1h}"));
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramps, "--admin-insecure-local"]);
    let put = send(
        "PUT",
        &format!("{}/admin/v1/environments/default/flags/banner", server.admin),
        None,
        Some(&json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "b"})),
        &[],
    );
    assert!(put.status == 201 || put.status == 200, "{}", put.text);

    // The ramp runs (its overlay serves the flag): the files as served
    // still diff clean, or every pull request under a ramp would fail.
    rampart_tests::eventually(Duration::from_secs(30), || {
        let ramp = send("GET", &format!("{}/admin/v1/ramps/default/checkout-ramp", server.admin), None, None, &[]);
        if ramp.body["percent"].as_f64() > Some(0.0) { Ok(()) } else { Err(ramp.text) }
    });
    // The files as served: nothing to say.
    let (code, out, err) = rampart(&["diff", &flags, &ramps, "--url", &server.admin, "--exit-code"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no changes"), "{out}");

    // A pull request: checkout's default changes, search goes, promo comes,
    // banner clashes with the API-owned flag, the ramp gets a new ladder.
    let pr = FlagDir::new();
    let changed = pr.write(
        "flags.yaml",
        "flags:\n  checkout:\n    state: ENABLED\n    variants: { \"on\": true, \"off\": false }\n    defaultVariant: \"on\"\n  promo:\n    state: DISABLED\n    variants: { x: 1, y: 2 }\n    defaultVariant: x\n  banner:\n    state: ENABLED\n    variants: { a: A }\n    defaultVariant: a\n",
    );
    let edited = pr.write("ramp.yaml", &ramp(2, "{percent: 10, hold: 1h}, {percent: 100, hold: 1h}"));
    let (code, out, err) = rampart(&["diff", &changed, &edited, "--url", &server.admin, "--exit-code"]);
    assert_eq!(code, Some(1), "--exit-code with changes: {out}{err}");
    for expected in [
        "- flag `checkout`: defaultVariant: off → on",
        "- flag `promo`: created",
        "- flag `search`: deleted",
        "- flag `banner`: **conflict**",
        "- ramp `checkout-ramp`: steps 5% → 100% → 10% → 100%; revision 1 → 2",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Invalid files are refused with their file and line, before the server is asked.
    let broken = pr.write("broken.yaml", "flags:\n  x:\n    state: MAYBE\n");
    let (code, _, err) = rampart(&["diff", &broken, "--url", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("broken.yaml"), "{err}");

    // Export: the API-owned flag only, in a file that loads.
    // Into a folder that does not exist yet: export creates it.
    let exported = pr.path("flags/new/exported.json");
    let (code, out, err) =
        rampart(&["export", "default", "--url", &server.admin, "-o", exported.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(0), "{out}{err}");
    let text = std::fs::read_to_string(&exported).expect("written");
    let document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        document["flags"].as_object().map(|f| f.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["banner".to_owned()])
    );
    assert_eq!(document["flags"]["banner"]["defaultVariant"], "b");
    let (code, out, err) = rampart(&["validate", exported.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Unreachable server: exit 2.
    assert_eq!(rampart(&["export", "default", "--url", "http://127.0.0.1:9"]).0, Some(2));
}
