//! `rampart ramp status|pause|resume|promote|abort|approve|wait ENV/NAME`:
//! a running server's ramps from the command line, for people and CI/CD
//! steps. The admin API's URL and token come from `--url`/`--token` or
//! `RAMPART_ADMIN_URL`/`RAMPART_ADMIN_TOKEN`; `--json` prints the server's
//! answers as they are.
//!
//! Exit codes ([`crate::exit`]): 0 done (for `wait`: the target reached);
//! 1 the server refused (unknown ramp, role, a command that does not apply);
//! 2 the server could not be reached; and for `wait`: 3 the ramp rolled
//! back, 4 it stopped where only a person can move it on (paused, awaiting
//! approval), 5 the timeout passed first.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin_client::{AdminClient, Failure, report};
use crate::cli::{RampActionArgs, RampTarget, RampWaitArgs, ReleaseTarget, ReleaseWaitArgs, Until};
use crate::exit;

/// One ramp of a running server.
struct Api {
    admin: AdminClient,
    /// `/admin/v1/ramps/{environment}/{name}`.
    path: String,
    environment: String,
    name: String,
}

impl Api {
    fn new(target: &RampTarget) -> Result<Api, Failure> {
        let (environment, name) = target
            .ramp
            .split_once('/')
            .filter(|(e, n)| !e.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| Failure(exit::PROBLEMS, format!("'{}': expected ENV/NAME", target.ramp)))?;
        Ok(Api {
            admin: AdminClient::new(&target.url, target.token.as_deref())?,
            path: format!("/admin/v1/ramps/{environment}/{name}"),
            environment: environment.to_owned(),
            name: name.to_owned(),
        })
    }

    fn status(&self) -> Result<Value, Failure> {
        self.admin.get(&self.path)
    }
}

/// `rampart ramp status ENV/NAME`.
pub fn status(target: &RampTarget) -> ExitCode {
    report("ramp status", Api::new(target).and_then(|api| api.status()).map(|status| show(&status, target.json)))
}

/// `rampart ramp pause|resume|promote|abort|approve ENV/NAME`.
pub fn command(action: &str, args: &RampActionArgs) -> ExitCode {
    let answer = Api::new(&args.target).and_then(|api| {
        let mut body = json!({});
        if let Some(reason) = &args.reason {
            body["reason"] = json!(reason);
        }
        api.admin.post(&format!("{}/{action}", api.path), &body)
    });
    report(&format!("ramp {action}"), answer.map(|status| show(&status, args.target.json)))
}

/// `rampart ramp wait ENV/NAME --until … --timeout …`.
pub fn wait(args: &RampWaitArgs) -> ExitCode {
    let api = match Api::new(&args.target) {
        Ok(api) => api,
        Err(failure) => return report("ramp wait", Err(failure)),
    };
    let how = Watch { command: "ramp wait", json: args.target.json, timeout: args.timeout, interval: args.interval };
    watch(
        how,
        || api.status(),
        |status| progress(&api, status),
        |status| {
            let state = status["state"].as_str().unwrap_or("");
            let percent = status["percent"].as_f64().unwrap_or(0.0);
            let reached = match args.until {
                Until::Completed => state == "Completed",
                Until::Percent(target) => state == "Completed" || (percent >= target && state != "RolledBack"),
            };
            if reached {
                Look::Reached
            } else if state == "RolledBack" {
                Look::RolledBack
            } else if state == "Paused" || status["reason"] == "AwaitingApproval" {
                Look::NeedsOperator
            } else {
                Look::Waiting
            }
        },
    )
}

/// What one look at a ramp or release means for `wait`.
enum Look {
    Reached,
    RolledBack,
    NeedsOperator,
    Waiting,
}

/// How `wait` looks: which command, how long and how often.
struct Watch<'a> {
    command: &'a str,
    json: bool,
    timeout: Duration,
    interval: Duration,
}

/// Looks until `judge` says the wait is over or the timeout passes,
/// printing a line (or the status as JSON) whenever the line changes. A
/// server that cannot be reached is retried until the deadline: a server
/// restarting under a rollout is not the answer.
fn watch(
    how: Watch<'_>,
    fetch: impl Fn() -> Result<Value, Failure>,
    line_of: impl Fn(&Value) -> String,
    judge: impl Fn(&Value) -> Look,
) -> ExitCode {
    let command = how.command;
    let deadline = Instant::now() + how.timeout;
    let mut last = String::new();
    loop {
        let status = match fetch() {
            Ok(status) => status,
            Err(Failure(code, message)) if code == exit::UNREACHABLE && Instant::now() < deadline => {
                eprintln!("rampart {command}: {message}; retrying");
                std::thread::sleep(how.interval);
                continue;
            }
            Err(failure) => return report(command, Err(failure)),
        };
        let line = line_of(&status);
        if line != last {
            if how.json {
                println_json(&status);
            } else {
                println_text(&line);
            }
            last.clone_from(&line);
        }
        match judge(&status) {
            Look::Reached => return ExitCode::SUCCESS,
            Look::RolledBack => {
                eprintln!("rampart {command}: rolled back: {line}");
                return ExitCode::from(exit::ROLLED_BACK);
            }
            Look::NeedsOperator => {
                eprintln!("rampart {command}: needs a person: {line}");
                return ExitCode::from(exit::NEEDS_OPERATOR);
            }
            Look::Waiting => {}
        }
        if Instant::now() + how.interval > deadline {
            eprintln!("rampart {command}: timed out after {:?}: {line}", how.timeout);
            return ExitCode::from(exit::TIMED_OUT);
        }
        std::thread::sleep(how.interval);
    }
}

/// One line of progress: where the ramp is and what it waits for.
fn progress(api: &Api, status: &Value) -> String {
    let state = status["state"].as_str().unwrap_or("?");
    let reason = status["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    let percent = status["percent"].as_f64().unwrap_or(0.0);
    let steps = status["steps"].as_array().map_or(0, Vec::len);
    let step = status["step"].as_u64().unwrap_or(0);
    let missing = status["evidence"]["missingToAdvance"]
        .as_array()
        .and_then(|m| m.first())
        .and_then(Value::as_str)
        .map(|m| format!(": waiting for {m}"))
        .unwrap_or_default();
    format!("{}/{}: {state}{reason} at {percent}% (step {step} of {steps}){missing}", api.environment, api.name)
}

#[allow(clippy::print_stdout)] // a command's report
fn println_json(value: &Value) {
    println!("{value}");
}

#[allow(clippy::print_stdout)] // a command's report
fn println_text(line: &str) {
    println!("{line}");
}

/// Prints a ramp status, in words or as JSON.
#[allow(clippy::print_stdout)] // a command's report
fn show(status: &Value, as_json: bool) {
    if as_json {
        println_json(status);
        return;
    }
    let field = |name: &str| status[name].as_str().unwrap_or("-").to_owned();
    let reason = status["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    println!("{}/{}: {}{reason}", field("environment"), field("name"), field("state"));
    println!("  flag {} — {} against {}", field("flag"), field("treatment"), field("control"));
    let steps: Vec<String> =
        status["steps"].as_array().into_iter().flatten().filter_map(Value::as_f64).map(|p| format!("{p}%")).collect();
    println!(
        "  at {}% (step {} of {}: {})",
        status["percent"].as_f64().unwrap_or(0.0),
        status["step"].as_u64().unwrap_or(0),
        steps.len(),
        steps.join(" → ")
    );
    let evidence = &status["evidence"];
    if evidence.is_object() {
        let arm = |name: &str| {
            format!(
                "{} errors of {}",
                evidence[name]["errors"].as_u64().unwrap_or(0),
                evidence[name]["exposures"].as_u64().unwrap_or(0)
            )
        };
        println!("  treatment {}; control {}", arm("treatment"), arm("control"));
        for missing in evidence["missingToAdvance"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            println!("  to advance: {missing}");
        }
    }
}

/// The release's status from the server.
fn release(target: &ReleaseTarget) -> Result<Value, Failure> {
    AdminClient::new(&target.server.url, target.server.token.as_deref())?
        .get(&format!("/admin/v1/releases/{}", target.name))
}

/// One line: where the release stands.
fn release_line(status: &Value) -> String {
    let stages = status["stages"].as_array().cloned().unwrap_or_default();
    let at = status["stage"].as_u64().unwrap_or(1) as usize;
    let stage = stages.get(at.saturating_sub(1)).cloned().unwrap_or(Value::Null);
    let reason = stage["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    format!(
        "{}: {}, stage {at} of {} ({}): {}{reason} at {}%",
        status["name"].as_str().unwrap_or("?"),
        status["state"].as_str().unwrap_or("?"),
        stages.len(),
        stage["environment"].as_str().unwrap_or("?"),
        stage["state"].as_str().unwrap_or("?"),
        stage["percent"].as_f64().unwrap_or(0.0)
    )
}

/// `rampart release status NAME`.
pub fn release_status(target: &ReleaseTarget) -> ExitCode {
    report(
        "release status",
        release(target).map(|status| {
            if target.json {
                println_json(&status);
                return;
            }
            println_text(&release_line(&status));
            for stage in status["stages"].as_array().into_iter().flatten() {
                println_text(&format!(
                    "  {:<12} {:<10} {:>6}%  ramp {}",
                    stage["environment"].as_str().unwrap_or("?"),
                    stage["state"].as_str().unwrap_or("?"),
                    stage["percent"].as_f64().unwrap_or(0.0),
                    stage["ramp"].as_str().unwrap_or("?")
                ));
            }
        }),
    )
}

/// `rampart release wait NAME --timeout …`.
pub fn release_wait(args: &ReleaseWaitArgs) -> ExitCode {
    let how = Watch { command: "release wait", json: args.target.json, timeout: args.timeout, interval: args.interval };
    watch(
        how,
        || release(&args.target),
        release_line,
        |status| {
            let at = status["stage"].as_u64().unwrap_or(1) as usize;
            let stage = &status["stages"][at.saturating_sub(1)];
            match status["state"].as_str() {
                Some("Completed") => Look::Reached,
                Some("Halted") => Look::RolledBack,
                _ if stage["state"] == "Paused" || stage["reason"] == "AwaitingApproval" => Look::NeedsOperator,
                _ => Look::Waiting,
            }
        },
    )
}
