//! The admin API's OpenAPI document, and `schemathesis` (from PyPI)
//! fuzzing the API against it with a valid token: no 5xx, no response that
//! violates the document, invalid input rejected, auth never ignored.

use rampart_tests::{FlagDir, Rampart, deps_dir, get, workspace};

#[test]
fn the_document_describes_every_admin_endpoint() {
    let dir = FlagDir::new();
    let flags = dir.write("flags.json", r#"{"flags": {}}"#);
    let server = Rampart::start(&["--flags", &flags]);
    let document = get(&format!("{}/openapi.json", server.admin)).body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = document["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for path in [
        "/admin/v1/environments",
        "/admin/v1/environments/{environment}/flags",
        "/admin/v1/environments/{environment}/flags/{key}",
        "/admin/v1/environments/{environment}/flags/{key}/history",
        "/admin/v1/environments/{environment}/flags/{key}/revert",
        "/admin/v1/environments/{environment}/promote",
        "/admin/v1/audit",
        "/admin/v1/drift",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[test]
fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let token = "schemathesis-token-000001";
    let dir = FlagDir::new();
    let flags = dir.write("flags.yaml", &std::fs::read_to_string(workspace().join("examples/flags.yaml")).unwrap());
    let server = Rampart::start_with_env(&["--flags", &flags], &[("RAMPART_ADMIN_TOKEN", token)]);
    let cli = deps_dir().join("python/bin/schemathesis");
    assert!(cli.is_file(), "schemathesis is missing in {}: run ./scripts/test, which installs it", cli.display());
    let output = std::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/openapi.json", server.admin))
        .args(["--url", &server.admin])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method",
        ])
        .args(["--max-examples", "30", "--seed", "20261126", "--no-color"])
        .env("PYTHONPATH", deps_dir().join("python"))
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.dir.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis failed:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("passed"), "{report}");
    // The server stayed healthy throughout.
    assert_eq!(get(&format!("{}/healthz", server.admin)).status, 200);
}
