//! The README's first hour, run as written: its commands name files that
//! exist, its example configuration starts, its promotion, `If-None-Match`
//! and outcome examples do what the text says. A newcomer copies these
//! lines before reading anything else, so they are tested like code.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rampart_tests::{Rampart, output_within, rampart_bin, send, workspace};
use serde_json::{Value, json};

const STAGING_KEY: &str = "staging-key-0001";
const PRODUCTION_KEY: &str = "production-key-0001";
const ADMIN_TOKEN: &str = "readme-admin-token-0123456789";

fn readme() -> String {
    std::fs::read_to_string(workspace().join("README.md")).expect("README.md")
}

/// The commands of the README's `sh` blocks: continuation lines and quoted
/// arguments spanning lines joined.
fn shell_lines(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if !in_shell {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                // A single-quoted argument may span lines.
                if inside_quotes(&pending) {
                    pending.push('\n');
                } else {
                    lines.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    lines
}

/// Whether `text` ends inside a single-quoted string (comments ignored).
fn inside_quotes(text: &str) -> bool {
    let mut quoted = false;
    let mut previous = ' ';
    for line in text.split('\n') {
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                '#' if !quoted && previous.is_whitespace() => break,
                _ => {}
            }
            previous = c;
        }
        previous = ' ';
    }
    quoted
}

/// A shell line's words before its comment, with `rampart` (or `cargo run
/// -p rampart-server --`) removed: the arguments the binary receives.
fn rampart_arguments(line: &str) -> Option<Vec<String>> {
    let command = line.split(" #").next().unwrap_or_default().trim();
    let rest = command
        .strip_prefix("rampart ")
        .or_else(|| command.strip_prefix("cargo run --locked -p rampart-server -- "))?;
    Some(rest.split_whitespace().map(|word| word.trim_matches('\'').to_owned()).collect())
}

/// Expands a `dir/*.ext` pattern relative to the workspace, like a shell.
fn expand(pattern: &str) -> Vec<String> {
    let Some((dir, file)) = pattern.rsplit_once('/').filter(|(_, file)| file.contains('*')) else {
        return vec![pattern.to_owned()];
    };
    let (prefix, suffix) = file.split_once('*').expect("a star");
    let mut matches: Vec<String> = std::fs::read_dir(workspace().join(dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
                .map(|name| format!("{dir}/{name}"))
                .collect()
        })
        .unwrap_or_default();
    matches.sort();
    matches
}

/// Runs `rampart` with exactly the given variables of ours (none inherited
/// from the caller's shell can change what the README promises).
fn run_rampart(arguments: &[String], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(rampart_bin());
    command.args(arguments).current_dir(workspace());
    for (key, _) in std::env::vars() {
        if key.starts_with("RAMPART_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    output_within(command, Duration::from_secs(30))
}

#[test]
fn the_readme_says_how_to_get_rampart_and_every_subcommand_it_uses_exists() {
    let readme = readme();
    assert!(readme.contains("cargo install --locked --path server"), "the README says how to install `rampart`");
    let manifest = std::fs::read_to_string(workspace().join("server/Cargo.toml")).expect("server manifest");
    assert!(manifest.contains("name = \"rampart\""), "`cargo install --path server` installs a binary named rampart");
    // Without --locked cargo re-resolves every dependency and builds a
    // binary from versions the tests never ran.
    for line in shell_lines(&readme) {
        let cargo =
            line.starts_with("cargo run") || line.starts_with("cargo install") || line.starts_with("cargo build");
        assert!(!cargo || line.contains("--locked"), "a README command builds without --locked: {line}");
    }
    for words in ["`cargo install --locked", "first `cargo run` answers after", "build-essential"] {
        assert!(readme.contains(words), "the README says how long the first build takes and what it needs: {words}");
    }
    assert!(readme.contains("./data"), "the README says where state lives");
    assert!(
        readme.contains("needs\nroot") || readme.contains("needs root"),
        "the README says ./scripts/test needs root"
    );

    let mut subcommands: Vec<Vec<String>> = shell_lines(&readme)
        .iter()
        .filter_map(|line| rampart_arguments(line))
        .map(|arguments| {
            // `ramp replay`: a subcommand with its own subcommand.
            let depth = if arguments.first().map(String::as_str) == Some("ramp") { 2 } else { 1 };
            arguments.into_iter().take(depth).collect()
        })
        .collect();
    subcommands.sort();
    subcommands.dedup();
    let names: Vec<String> = subcommands.iter().map(|words| words.join(" ")).collect();
    for expected in ["validate", "serve", "promote", "ramp replay"] {
        assert!(names.iter().any(|name| name == expected), "the README shows `rampart {expected}`; found {names:?}");
    }
    for words in subcommands {
        let mut arguments = words.clone();
        arguments.push("--help".into());
        let output = run_rampart(&arguments, &[]);
        assert!(
            output.status.success(),
            "`rampart {}` is not a command: {}",
            words.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_validate_command_in_the_readme_names_real_files_and_passes() {
    let commands: Vec<Vec<String>> = shell_lines(&readme())
        .iter()
        .filter_map(|line| rampart_arguments(line))
        .filter(|arguments| arguments.first().map(String::as_str) == Some("validate"))
        .collect();
    assert!(!commands.is_empty(), "the README shows `rampart validate`");
    for command in commands {
        let mut arguments = vec!["validate".to_owned()];
        for pattern in &command[1..] {
            let files = expand(pattern);
            assert!(!files.is_empty(), "`{pattern}` in the README's `rampart validate` matches no file");
            for file in &files {
                assert!(workspace().join(file).is_file(), "`{file}` in the README does not exist");
            }
            arguments.extend(files);
        }
        let output = run_rampart(&arguments, &[]);
        assert!(
            output.status.success(),
            "`rampart {}` fails on the shipped examples: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn the_example_configuration_serves_staging_and_production_and_the_readme_promotion_works() {
    let config = workspace().join("examples/rampart.yaml");
    assert!(readme().contains("examples/rampart.yaml"), "the README uses the example configuration");
    let config = config.to_string_lossy().into_owned();

    // A key named by `env:` must be set: the server says which one is missing.
    let output =
        run_rampart(&["serve".into(), "--config".into(), config.clone()], &[("RAMPART_STAGING_SDK_KEY", STAGING_KEY)]);
    assert_eq!(output.status.code(), Some(64), "a missing SDK key variable is a configuration error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("RAMPART_PRODUCTION_SDK_KEY"));

    let server = Rampart::start_with_env(
        &["--config", &config],
        &[
            ("RAMPART_STAGING_SDK_KEY", STAGING_KEY),
            ("RAMPART_PRODUCTION_SDK_KEY", PRODUCTION_KEY),
            ("RAMPART_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let ready = send("GET", &format!("{}/readyz", server.admin), None, None, &[]);
    assert_eq!(ready.status, 200, "{}", ready.text);
    for environment in ["staging", "production"] {
        assert!(ready.text.contains(environment), "readyz lists {environment}: {}", ready.text);
    }

    let evaluate = |key: Option<&str>, flag: &str| {
        let authorization = key.map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &str)> = authorization.iter().map(|value| ("Authorization", value.as_str())).collect();
        send(
            "POST",
            &format!("{}/ofrep/v1/evaluate/flags/{flag}", server.http),
            None,
            Some(&json!({"context": {"targetingKey": "user-42"}})),
            &headers,
        )
    };
    assert_eq!(evaluate(Some(STAGING_KEY), "new-checkout").status, 200, "the README's evaluation with the staging key");
    assert_eq!(evaluate(None, "new-checkout").status, 401, "several environments: a request without a key");

    // The README's promotion: create in staging, dry-run, promote one flag.
    let admin = format!("{}/admin/v1", server.admin);
    let created = send(
        "PUT",
        &format!("{admin}/environments/staging/flags/dark-mode"),
        Some(ADMIN_TOKEN),
        Some(&json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"})),
        &[],
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(evaluate(Some(PRODUCTION_KEY), "dark-mode").status, 404, "not in production before the promotion");

    let promotions: Vec<Vec<String>> = shell_lines(&readme())
        .iter()
        .filter_map(|line| rampart_arguments(line))
        .filter(|arguments| arguments.first().map(String::as_str) == Some("promote"))
        .collect();
    assert_eq!(promotions.len(), 2, "the README shows a dry run and a promotion");
    for promotion in promotions {
        let mut arguments = promotion.clone();
        arguments.extend(["--admin-url".to_owned(), server.admin.clone()]);
        let output = run_rampart(&arguments, &[("RAMPART_ADMIN_TOKEN", ADMIN_TOKEN)]);
        assert!(
            output.status.success(),
            "`rampart {}`: {}{}",
            promotion.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(printed.contains("dark-mode"), "`rampart {}` names the flag: {printed}", promotion.join(" "));
    }
    let promoted = evaluate(Some(PRODUCTION_KEY), "dark-mode");
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(promoted.body["value"], true);
}

#[test]
fn the_readme_shows_if_none_match_and_a_second_poll_gets_304() {
    let readme = readme();
    assert!(
        shell_lines(&readme)
            .iter()
            .any(|line| line.contains("If-None-Match") && line.contains("/ofrep/v1/evaluate/flags")),
        "the README shows the If-None-Match request"
    );
    let flags = workspace().join("examples/flags.yaml").to_string_lossy().into_owned();
    let server = Rampart::start(&["--flags", &flags]);
    let url = format!("{}/ofrep/v1/evaluate/flags", server.http);
    let body = json!({"context": {"targetingKey": "user-42"}});
    let first = send("POST", &url, None, Some(&body), &[]);
    assert_eq!(first.status, 200);
    let etag = first.etag.expect("bulk answers carry an ETag");
    let second = send("POST", &url, None, Some(&body), &[("If-None-Match", &etag)]);
    assert_eq!(second.status, 304, "the README's second request");
}

/// The README's outcome report, as JSON.
fn readme_outcome_report(readme: &str) -> Value {
    let line = shell_lines(readme)
        .into_iter()
        .find(|line| line.contains("/v1/outcomes") && line.contains("-d '"))
        .expect("the README posts outcomes with curl");
    let body = line.split("-d '").nth(1).and_then(|rest| rest.split('\'').next()).expect("a quoted body");
    serde_json::from_str(body).unwrap_or_else(|error| panic!("the README's outcome body is not JSON ({error}): {body}"))
}

/// The first step's percent in a ramp file.
fn first_step_percent(ramp: &Path) -> f64 {
    let text = std::fs::read_to_string(ramp).expect("ramp file");
    text.split("percent:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c == ',' || c == '}' || c.is_whitespace()).find(|word| !word.is_empty()))
        .and_then(|word| word.parse().ok())
        .expect("a first step with a percent")
}

#[test]
fn the_readme_outcome_example_reports_both_variants_in_the_first_steps_proportion() {
    let report = readme_outcome_report(&readme());
    let ramp = workspace().join("examples/ramps/search-v2.yaml");
    let percent = first_step_percent(&ramp);
    let requests = |variant: &str| -> f64 {
        report["outcomes"]
            .as_array()
            .expect("an outcomes list")
            .iter()
            .filter(|entry| entry["flag"] == "search-engine" && entry["variant"] == variant)
            .map(|entry| entry["ok"].as_f64().unwrap_or(0.0) + entry["error"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let (treatment, control) = (requests("vector"), requests("classic"));
    assert!(treatment > 0.0 && control > 0.0, "the report has both variants: {report}");
    let share = 100.0 * treatment / (treatment + control);
    assert!(
        (share - percent).abs() <= 1.0,
        "the report's treatment share {share:.1}% matches the first step's {percent}% (otherwise the sample-ratio check holds the ramp)"
    );

    // And the quick-start server with the example ramp accepts it.
    let flags = workspace().join("examples/flags.yaml").to_string_lossy().into_owned();
    let ramps = workspace().join("examples/ramps/*.yaml").to_string_lossy().into_owned();
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramps]);
    let posted = send("POST", &format!("{}/v1/outcomes", server.http), None, Some(&report), &[]);
    assert!(posted.status == 200 || posted.status == 202, "{} {}", posted.status, posted.text);
}

/// The README's CI/CD commands, run as written against the server its
/// ramp section starts on `examples/` (only the wait's `--timeout 2h`
/// is shortened: the example's first step holds 30 minutes).
#[test]
fn the_readme_ci_cd_commands_run_as_written_against_the_examples() {
    let readme = readme();
    let start = readme.find("### Ramps in a CI/CD pipeline").expect("the README's CI/CD section");
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let lines = shell_lines(section);
    let flags = workspace().join("examples/flags.yaml").to_string_lossy().into_owned();
    let ramps = workspace().join("examples/ramps/*.yaml").to_string_lossy().into_owned();
    let server = Rampart::start(&["--flags", &flags, "--ramps", &ramps, "--admin-insecure-local"]);
    // As a reader would: the ramp has started (its first check) before they pause it.
    rampart_tests::eventually(Duration::from_secs(90), || {
        let ramp = send("GET", &format!("{}/admin/v1/ramps/default/search-v2", server.admin), None, None, &[]);
        if ramp.body["state"].as_str().is_some_and(|state| state != "Pending") { Ok(()) } else { Err(ramp.text) }
    });
    let exported = tempfile::tempdir().expect("a folder for the export");
    let mut ran = Vec::new();
    for line in &lines {
        if let Some(path) = line.strip_prefix("curl -s localhost:8014") {
            let path = path.split_whitespace().next().expect("a path");
            let reply = send("GET", &format!("{}{path}", server.admin), None, None, &[]);
            assert_eq!(reply.status, 200, "{line}: {}", reply.text);
            assert!(
                ["pass", "fail", "pending"].contains(&reply.body["verdict"].as_str().unwrap_or("")),
                "{}",
                reply.text
            );
            ran.push("verdict".to_owned());
            continue;
        }
        let mut arguments = rampart_arguments(line).unwrap_or_else(|| panic!("not a rampart command: {line}"));
        let depth = if arguments[0] == "ramp" { 2 } else { 1 };
        let name = arguments[..depth].join(" ");
        if name == "ramp wait" {
            let timeout = arguments.iter().position(|a| a == "--timeout").expect("a timeout") + 1;
            arguments[timeout] = "1s".into();
        }
        // A quoted reason is one argument, as the shell passes it.
        if let Some(reason) = arguments.iter().position(|a| a == "--reason") {
            let words: Vec<String> = arguments.drain(reason + 1..).collect();
            arguments.push(words.join(" ").trim_matches('"').to_owned());
        }
        let mut command = Command::new(rampart_bin());
        command.args(&arguments).env("RAMPART_ADMIN_URL", &server.admin).env_remove("RAMPART_ADMIN_TOKEN");
        command.current_dir(if name == "export" { exported.path().to_path_buf() } else { workspace() });
        let output = output_within(command, Duration::from_secs(30));
        let expected = if name == "ramp wait" { 5 } else { 0 }; // 5: timed out, the step holds
        assert_eq!(
            output.status.code(),
            Some(expected),
            "`{line}`: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ran.push(name);
    }
    assert!(exported.path().join("exported/default-api.json").is_file(), "export created its folder and file");
    for expected in ["ramp plan", "diff", "ramp pause", "ramp resume", "ramp wait", "export", "verdict"] {
        assert!(ran.iter().any(|name| name == expected), "the CI/CD block runs `{expected}`: {ran:?}");
    }
}
