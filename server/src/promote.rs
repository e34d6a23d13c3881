//! `rampart promote`: the promotion endpoint of a running server, from the
//! command line.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::PromoteArgs;

/// Calls `POST /admin/v1/environments/{from}/promote` and prints the
/// changes, one line per flag. Exit 0 on success, 1 when the server
/// refuses, 2 when it cannot be reached.
#[allow(clippy::print_stdout)] // a command's report
pub fn run(args: &PromoteArgs) -> ExitCode {
    let url = format!("{}/admin/v1/environments/{}/promote", args.admin_url.trim_end_matches('/'), args.from);
    let mut body = json!({"to": args.to, "dryRun": args.dry_run});
    if !args.flags.is_empty() {
        body["flags"] = json!(args.flags);
    }
    let client = match reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("rampart promote: {error}");
            return ExitCode::from(2);
        }
    };
    let mut request = client.post(&url).json(&body);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = match request.send() {
        Ok(response) => response,
        Err(error) => {
            eprintln!("rampart promote: cannot reach {}: {error}", args.admin_url);
            return ExitCode::from(2);
        }
    };
    let status = response.status();
    let answer: Value = response.json().unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no details");
        eprintln!("rampart promote: {status}: {message}");
        return ExitCode::from(1);
    }
    let changes = answer["changes"].as_array().cloned().unwrap_or_default();
    for change in &changes {
        let flag = change["flag"].as_str().unwrap_or("?");
        let action = change["action"].as_str().unwrap_or("?");
        let version = change["version"].as_u64().map(|v| format!(" (version {v})")).unwrap_or_default();
        println!("{action:<9} {flag}{version}");
        for line in change["changes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if action != "unchanged" {
                println!("          {line}");
            }
        }
    }
    let changed = changes.iter().filter(|c| c["action"] != "unchanged").count();
    if args.dry_run {
        println!("dry run: {changed} of {} flags would change in '{}'; nothing was written", changes.len(), args.to);
    } else {
        println!("promoted {changed} of {} flags from '{}' to '{}'", changes.len(), args.from, args.to);
    }
    ExitCode::SUCCESS
}
