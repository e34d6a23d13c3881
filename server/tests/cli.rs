//! Black-box tests of the command line: `rampart validate` and the exit
//! codes of `rampart serve` when the configuration is invalid (nothing is
//! bound in those cases, so no ports are needed).

use std::path::Path;
use std::process::{Command, Output};

fn rampart(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .current_dir(dir)
        .env_remove("RAMPART_CONFIG")
        .env_remove("RAMPART_FLAGS")
        .output()
        .expect("run rampart")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const GOOD: &str =
    r#"{"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#;
const BAD_YAML: &str = "flags:\n  b:\n    state: ENABLED\n    variants: {x: 1, y: \"two\"}\n  c:\n    state: SOMETIMES\n    variants: {x: 1}\n";

#[test]
fn validate_accepts_good_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.json"), GOOD).unwrap();
    std::fs::write(dir.path().join("more.yaml"), "flags:\n  m:\n    state: DISABLED\n    variants: {on: true}\n")
        .unwrap();
    let output = rampart(&["validate", "good.json", "*.yaml"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok: 2 flags in 2 files\n");
}

const RAMP: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: a-ramp\nspec:\n  flag: a\n  treatment: \"off\"\n  steps:\n    - { percent: 5, hold: 1h }\n    - { percent: 50, hold: 1h }\n    - { percent: 100, hold: 1h }\n  guard:\n    absolute: { maxErrorRate: 2% }\n";

#[test]
fn validate_checks_ramp_files_against_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.json"), GOOD).unwrap();
    std::fs::write(dir.path().join("ramp.yaml"), RAMP).unwrap();
    let output = rampart(&["validate", "good.json", "ramp.yaml"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok: 1 flags in 1 files, 1 ramp\n");

    // An unknown variant, and percents that go down: file, line, reason.
    let bad = RAMP.replace("treatment: \"off\"", "treatment: \"blue\"").replace("percent: 50", "percent: 2");
    std::fs::write(dir.path().join("ramp.yaml"), bad).unwrap();
    let output = rampart(&["validate", "good.json", "ramp.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("ramp.yaml:10") && errors.contains("strictly increasing"), "{errors}");
    let bad = RAMP.replace("treatment: \"off\"", "treatment: \"blue\"");
    std::fs::write(dir.path().join("ramp.yaml"), bad).unwrap();
    let errors = stderr(&rampart(&["validate", "good.json", "ramp.yaml"], dir.path()));
    assert!(
        errors.contains("ramp.yaml") && errors.contains("treatment 'blue' is not a variant of flag 'a'"),
        "{errors}"
    );
}

#[test]
fn validate_reports_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.json"), GOOD).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), BAD_YAML).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"flags\": {\n  \"x\": }").unwrap();
    let output = rampart(&["validate", "good.json", "bad.yaml", "broken.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("bad.yaml:2: flag 'b': all variants must have the same type"), "{text}");
    assert!(lines[1].starts_with("bad.yaml:5: flag 'c': state must be"), "{text}");
    assert!(lines[2].starts_with("broken.json:2: invalid JSON"), "{text}");
    assert_eq!(lines[3], "3 problems found");
}

#[test]
fn validate_reports_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = rampart(&["validate", "absent.json", "flags/*.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("absent.json: no such file"), "{text}");
    assert!(text.contains("flags/*.yaml: no files match this pattern"), "{text}");
}

#[test]
fn serve_exits_64_on_invalid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), BAD_YAML).unwrap();
    std::fs::write(dir.path().join("rampart.yaml"), "environments:\n  a:\n    flags: [x.json]\n    colour: red\n")
        .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"flags\": {,}}").unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["serve"], "nothing to serve"),
        // By default an invalid flag is served as PARSE_ERROR; a file that
        // is not a flag document at all, or any invalid flag with
        // --strict-flags, refuses start-up.
        (&["serve", "--flags", "bad.yaml", "--strict-flags"], "bad.yaml:2: flag 'b'"),
        (&["serve", "--flags", "broken.json"], "broken.json:1: invalid JSON"),
        (&["serve", "--flags", "missing.json"], "missing.json: no such file"),
        (&["serve", "--config", "rampart.yaml"], "unknown field `colour`"),
        (&["serve", "--flags", "bad.yaml", "--http-addr", "nonsense"], "invalid value 'nonsense'"),
    ];
    for (args, expected) in cases {
        let output = rampart(args, dir.path());
        let text = stderr(&output);
        let code = output.status.code();
        // clap reports its own usage errors with 2; everything else is 64.
        let want = if expected.starts_with("invalid value") { Some(2) } else { Some(64) };
        assert_eq!(code, want, "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}

#[test]
fn environment_variables_configure_serve() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("serve")
        .current_dir(dir.path())
        .env("RAMPART_FLAGS", "one.json,two.json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(text.contains("one.json: no such file") && text.contains("two.json: no such file"), "{text}");
}

#[test]
fn validate_reports_every_ramp_problem_in_one_run_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), GOOD).unwrap();
    // Four problems: a percent above 100, a hold that is not a duration, a
    // flag that does not exist … and (would be) a treatment that is not a variant.
    std::fs::write(
        dir.path().join("ramp.yaml"),
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: search-v2\nspec:\n  flag: nope\n  treatment: \"maybe\"\n  \
         steps:\n    - { percent: 150, hold: 1h }\n    - { percent: 100, hold: soon }\n",
    )
    .unwrap();
    let output = rampart(&["validate", "flags.json", "ramp.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let report = stderr(&output);
    let lines: Vec<&str> = report.lines().filter(|l| l.starts_with("ramp.yaml:")).collect();
    assert!(lines.len() >= 3, "{report}");
    for line in &lines {
        assert!(line.contains("ramp 'search-v2'"), "names the ramp as a ramp: {line}");
        assert!(!line.contains("flag 'search-v2'") && !line.contains("environment ''"), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("ramp.yaml:6:") && l.contains("flag 'nope' does not exist")),
        "{report}"
    );
    assert!(lines.iter().any(|l| l.contains("150")), "{report}");
    assert!(lines.iter().any(|l| l.contains("soon")), "{report}");

    // With the flag fixed, the treatment is checked too, on its line.
    std::fs::write(
        dir.path().join("ramp.yaml"),
        "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata:\n  name: search-v2\nspec:\n  flag: a\n  treatment: \"maybe\"\n  \
         steps:\n    - { percent: 150, hold: 1h }\n",
    )
    .unwrap();
    let report = stderr(&rampart(&["validate", "flags.json", "ramp.yaml"], dir.path()));
    assert!(report.lines().any(|l| l.starts_with("ramp.yaml:7:") && l.contains("treatment 'maybe'")), "{report}");
    assert!(report.contains("150"), "{report}");
}
