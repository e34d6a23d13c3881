//! The `rampart` binary: parses the command line and hands over to the
//! library. Exit codes are in `rampart_server::exit` and `rampart --help`.

use std::process::ExitCode;

use clap::Parser;
use rampart_server::cli::{Cli, Command, RampCommand};
use rampart_server::config::ServerConfig;
use rampart_server::{Server, StartupError, exit, promote, telemetry, validate};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than the system allocator, with its background threads
/// on (see `main`): pages freed by a burst (a reload of 100,000 flags,
/// thousands of stream clients leaving) go back to the system after the
/// decay time whichever thread freed them and whether or not that thread
/// allocates again — glibc's arenas keep most of such memory, and mimalloc
/// (used before) returned it only when the owning thread next collected,
/// so an idle server kept ~40 MiB more after each reload of 100,000 flags
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Freed pages go back to the system from jemalloc's own threads, after
    // its decay time, whichever thread freed them.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args.files, args.config.as_deref()),
        Command::Serve(args) => serve(*args, false),
        Command::Relay(args) => serve(*args, true),
        Command::Promote(args) => promote::run(&args),
        Command::Ramp(command) => ramp(command),
        Command::Diff(args) => rampart_server::gitops::diff(&args),
        Command::Release(rampart_server::cli::ReleaseCommand::Status(args)) => {
            rampart_server::ramp_client::release_status(&args)
        }
        Command::Release(rampart_server::cli::ReleaseCommand::Wait(args)) => {
            rampart_server::ramp_client::release_wait(&args)
        }
        Command::Export(args) => rampart_server::gitops::export(&args),
        Command::Health(args) => health(&args),
    }
}

/// `rampart ramp …`: offline tools and a running server's ramps.
fn ramp(command: RampCommand) -> ExitCode {
    use rampart_server::ramp_client;
    match command {
        RampCommand::Replay(args) => rampart_server::commands::ramp_replay::run(&args),
        RampCommand::Status(target) => ramp_client::status(&target),
        RampCommand::Pause(args) => ramp_client::command("pause", &args),
        RampCommand::Resume(args) => ramp_client::command("resume", &args),
        RampCommand::Promote(args) => ramp_client::command("promote", &args),
        RampCommand::Abort(args) => ramp_client::command("abort", &args),
        RampCommand::Approve(args) => ramp_client::command("approve", &args),
        RampCommand::Wait(args) => ramp_client::wait(&args),
        RampCommand::Plan(args) => rampart_server::commands::ramp_plan::run(&args),
    }
}

/// `rampart health`: one GET, for container probes (no shell or curl needed in the image).
fn health(args: &rampart_server::cli::HealthArgs) -> ExitCode {
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let client =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(args.timeout_seconds)).build();
    match client.and_then(|c| c.get(&url).send()) {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("rampart health: {url} answered {}", response.status());
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("rampart health: {url}: {error}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: rampart_server::cli::ServeArgs, relay: bool) -> ExitCode {
    let config = match ServerConfig::resolve(&args, &|name| std::env::var(name).ok()) {
        Ok(config) if relay && config.relay.is_none() => {
            eprintln!("rampart relay: name the upstream with --upstream URL (or upstream: in --config)");
            return ExitCode::from(exit::CONFIG);
        }
        Ok(config) => config,
        Err(error) => {
            eprintln!("rampart: invalid configuration: {error}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let _telemetry = telemetry::init(config.log_format, &config.log_filter, config.otlp_export.as_ref());
    actix_web::rt::System::new().block_on(async move {
        let shutdown = CancellationToken::new();
        // Handlers first: a signal during start-up must stop us cleanly.
        let signals = rampart_server::cancel_on_signal(shutdown.clone());
        let bound = match Server::new(config).await.and_then(Server::bind) {
            Ok(bound) => bound,
            Err(StartupError::Flags(failures) | StartupError::Ramps(failures)) => {
                for (environment, errors) in failures {
                    for error in errors.iter() {
                        eprintln!("rampart: environment '{environment}': {error}");
                    }
                }
                eprintln!("rampart: invalid configuration: the files above are invalid; nothing was started");
                return ExitCode::from(exit::CONFIG);
            }
            Err(error) => {
                eprintln!("rampart: {error}; nothing was started");
                return ExitCode::from(error.exit_code());
            }
        };
        actix_web::rt::spawn(signals);
        match bound.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("rampart: {error}");
                ExitCode::from(exit::SOFTWARE)
            }
        }
    })
}
