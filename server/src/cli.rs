//! Command-line interface. Every `serve` option can also come from an
//! environment variable (`RAMPART_…`), so containers need no arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, for supervisors and scripts (the values of `crate::exit`).
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   validate found problems; health found the server unhealthy; a command failed
  2   invalid command line
  64  invalid configuration, or an invalid flag or ramp file (fix it; nothing was started)
  65  the store holds records this version cannot read (restore it, or run the version that wrote it)
  69  the store cannot be opened or reached (retry; Redis down, data directory not writable)
  70  an internal failure, or a failure while serving
  71  a listener's address cannot be bound (in use, or not this host's)";

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "Feature flags and progressive delivery, flagd- and OFREP-compatible",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Run as a relay of another Rampart (`--upstream URL --environment
    /// NAME`, token in RAMPART_RELAY_TOKEN): no flags of its own, serves
    /// every protocol from what the upstream sends, keeps it in --cache-dir.
    Relay(Box<ServeArgs>),
    /// Check flag files the way the server loads them; exit 1 with one line
    /// per problem if any is invalid.
    Validate(ValidateArgs),
    /// Copy API-owned flags from one environment to another on a running
    /// server, as one audited change (see the diff first with --dry-run).
    Promote(PromoteArgs),
    /// Ramp tools.
    #[command(subcommand)]
    Ramp(RampCommand),
    /// Release pipelines (`kind: Release`) of a running server.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// What would change on a running server if these flag and ramp files
    /// were what an environment serves, in words (for a pull request).
    Diff(DiffArgs),
    /// Write an environment's API-owned flags as a flagd flag file, to move
    /// them into git.
    Export(ExportArgs),
    /// Probe a running server for container health checks: exit 0 when
    /// `/healthz` (or, with --ready, `/readyz`) answers 200, 1 otherwise.
    Health(HealthArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's operator listener.
    #[arg(long, env = "RAMPART_ADMIN_URL", default_value = "http://127.0.0.1:8014")]
    pub url: String,
    /// Check readiness (every environment serving) instead of liveness.
    #[arg(long)]
    pub ready: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Subcommand)]
pub enum RampCommand {
    /// Run a Prometheus-guarded ramp's decisions over past data and print
    /// what would have happened, to tune a guard before it acts.
    Replay(ReplayArgs),
    /// Show a ramp of a running server: state, step, percent, evidence.
    Status(RampTarget),
    /// Stop a ramp advancing (its guards keep running).
    Pause(RampActionArgs),
    /// Let a paused ramp advance again, from the same step.
    Resume(RampActionArgs),
    /// Move a ramp to its next step now (the `admin` role).
    Promote(RampActionArgs),
    /// Roll a ramp back to 0 % (the `admin` role).
    Abort(RampActionArgs),
    /// Grant the approval the current step waits for.
    Approve(RampActionArgs),
    /// Plan a ramp file at a given traffic before running it: per step,
    /// when it can advance, the smallest regression its guard catches, and
    /// settings that cannot be met.
    Plan(RampPlanArgs),
    /// Wait until a ramp completes or reaches a percent, printing progress:
    /// exit 0 when reached, 3 rolled back, 4 paused or awaiting approval,
    /// 5 timed out (1 refused, 2 unreachable). For CI/CD steps.
    Wait(RampWaitArgs),
}

#[derive(Debug, Args)]
pub struct RampPlanArgs {
    /// The ramp file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Evaluations reporting outcomes, e.g. `1000/min`, `20/s`, `50000/h`.
    #[arg(long, value_parser = per_second)]
    pub traffic: f64,
    /// The control's error rate, e.g. `0.1%` or `0.001`.
    #[arg(long, value_parser = fraction)]
    pub baseline_error: f64,
}

fn per_second(text: &str) -> Result<f64, String> {
    let (count, unit) = text.split_once('/').unwrap_or((text, "s"));
    let seconds = match unit {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(format!("'{text}': expected a rate such as 1000/min, 20/s or 50000/h")),
    };
    count
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c >= 0.0)
        .map(|c| c / seconds)
        .ok_or_else(|| format!("'{text}': expected a rate such as 1000/min, 20/s or 50000/h"))
}

fn fraction(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    };
    value
        .ok()
        .filter(|v| (0.0..1.0).contains(v))
        .ok_or_else(|| format!("'{text}': expected an error rate such as 0.1% or 0.001"))
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Show a release: its state and each stage's ramp.
    Status(ReleaseTarget),
    /// Wait until a release completes, printing progress: exit 0 completed,
    /// 3 halted (a stage rolled back), 4 a stage is paused or awaits
    /// approval, 5 timed out (1 refused, 2 unreachable).
    Wait(ReleaseWaitArgs),
}

#[derive(Debug, Args)]
pub struct ReleaseTarget {
    /// The release's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the server's answers as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseWaitArgs {
    #[command(flatten)]
    pub target: ReleaseTarget,
    /// How long to wait at most, e.g. `30m`, `2h`.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub timeout: std::time::Duration,
    /// How often to look, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub interval: std::time::Duration,
}

/// A running server's admin API.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's operator (admin) listener.
    #[arg(long, env = "RAMPART_ADMIN_URL", default_value = "http://127.0.0.1:8014")]
    pub url: String,
    /// An admin token with the role `read`.
    #[arg(long, env = "RAMPART_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The environment's flag and ramp files (all of them: flags the server
    /// has from files and these lack would be deleted).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The environment to compare with.
    #[arg(long, default_value = "default")]
    pub environment: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Exit 1 when something would change (as `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The environment whose API-owned flags to export.
    #[arg(value_name = "ENV")]
    pub environment: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// A ramp of a running server.
#[derive(Debug, Args)]
pub struct RampTarget {
    /// The ramp, as ENVIRONMENT/NAME.
    #[arg(value_name = "ENV/NAME")]
    pub ramp: String,
    /// The server's operator (admin) listener.
    #[arg(long, env = "RAMPART_ADMIN_URL", default_value = "http://127.0.0.1:8014")]
    pub url: String,
    /// An admin token (`read` for status and wait, `write` or `admin` for commands).
    #[arg(long, env = "RAMPART_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's answers as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RampActionArgs {
    #[command(flatten)]
    pub target: RampTarget,
    /// Why, for the audit log and the ramp's timeline.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RampWaitArgs {
    #[command(flatten)]
    pub target: RampTarget,
    /// `completed`, or `percent:N` (reached at N % or more).
    #[arg(long, default_value = "completed")]
    pub until: Until,
    /// How long to wait at most, e.g. `30m`, `2h`.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub timeout: std::time::Duration,
    /// How often to look, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub interval: std::time::Duration,
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    Completed,
    /// At least this percent (or completed).
    Percent(f64),
}

impl std::str::FromStr for Until {
    type Err = String;

    fn from_str(text: &str) -> Result<Until, String> {
        if text == "completed" {
            return Ok(Until::Completed);
        }
        let percent = text
            .strip_prefix("percent:")
            .and_then(|p| p.trim_end_matches('%').parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p));
        percent.map(Until::Percent).ok_or_else(|| format!("'{text}': expected completed or percent:N (0-100)"))
    }
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::time::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}': expected a duration such as 90s, 30m or 2h"))
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The ramp file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Flag files, to resolve the control variant when the ramp does not name it.
    #[arg(long, value_name = "PATH")]
    pub flags: Vec<String>,
    /// Prometheus HTTP API (unless the ramp names one).
    #[arg(long, env = "RAMPART_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Start of the replay (RFC 3339).
    #[arg(long)]
    pub from: String,
    /// End of the replay (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// The environment name used in query templates.
    #[arg(long, default_value = "default")]
    pub environment: String,
    /// One JSON object per decision instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment to copy from.
    #[arg(long)]
    pub from: String,
    /// The environment to copy into.
    #[arg(long)]
    pub to: String,
    /// A flag to copy (repeat for several); all API-owned flags when absent.
    #[arg(long = "flag", value_name = "KEY")]
    pub flags: Vec<String>,
    /// Show what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The server's admin listener.
    #[arg(long, env = "RAMPART_ADMIN_URL", default_value = "http://127.0.0.1:8014")]
    pub admin_url: String,
    /// An admin token with the role `admin` (promotion changes another environment).
    #[arg(long, env = "RAMPART_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Server configuration file (environments, SDK keys, listeners).
    #[arg(long, env = "RAMPART_CONFIG", value_name = "FILE", conflicts_with = "flags")]
    pub config: Option<PathBuf>,

    /// Flag file or glob, served as the environment `default` with open
    /// evaluation. Repeat for several (the variable takes a comma-separated list).
    #[arg(long, env = "RAMPART_FLAGS", value_name = "PATH", value_delimiter = ',')]
    pub flags: Vec<String>,

    /// Ramp file or glob for the `default` environment of --flags. Repeat
    /// for several (the variable takes a comma-separated list).
    #[arg(long, env = "RAMPART_RAMPS", value_name = "PATH", value_delimiter = ',', requires = "flags")]
    pub ramps: Vec<String>,

    /// Address of the application listener (OFREP).
    #[arg(long, env = "RAMPART_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Address of the gRPC evaluation listener (flagd evaluation v1 and v2).
    #[arg(long, env = "RAMPART_GRPC_ADDR", value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,

    /// Address of the gRPC sync listener (flagd sync, Rampart sync).
    #[arg(long, env = "RAMPART_SYNC_ADDR", value_name = "ADDR")]
    pub sync_addr: Option<SocketAddr>,

    /// Address of the OTLP/HTTP receiver (`POST /v1/traces`: spans as ramp
    /// evidence; conventionally port 4318). Off unless set.
    #[arg(long, env = "RAMPART_OTLP_HTTP_ADDR", value_name = "ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,

    /// Address of the OTLP/gRPC receiver (the Collector's `TraceService`;
    /// conventionally port 4317). Off unless set.
    #[arg(long, env = "RAMPART_OTLP_GRPC_ADDR", value_name = "ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,

    /// Export Rampart's own traces to this OTLP/HTTP collector (e.g.
    /// http://127.0.0.1:4318); headers from OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long, env = "RAMPART_OTLP_EXPORT", value_name = "URL")]
    pub otlp_export: Option<String>,

    /// Seconds between keep-alive messages on streams (flagd uses 20).
    #[arg(long, env = "RAMPART_HEARTBEAT_SECONDS", value_name = "SECONDS")]
    pub heartbeat_seconds: Option<u64>,

    /// Address of the operator listener (/healthz, /readyz, /metrics).
    #[arg(long, env = "RAMPART_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = "RAMPART_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, as RUST_LOG (e.g. `info`, `rampart_server=debug`).
    #[arg(long, env = "RAMPART_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Directory of the embedded store (flags created through the admin API,
    /// their history, the audit log).
    #[arg(long, env = "RAMPART_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// YAML file of admin tokens: `tokens: [{name, role: read|write|admin|relay, env|sha256|value}]`.
    /// A single admin token can also come from RAMPART_ADMIN_TOKEN.
    #[arg(long, env = "RAMPART_ADMIN_TOKENS", value_name = "FILE")]
    pub admin_tokens: Option<PathBuf>,

    /// Refuse a flag-file change as a whole when any flag in it is invalid
    /// (the last good set keeps serving). By default, as flagd does, an
    /// invalid flag answers PARSE_ERROR and every other flag is served.
    #[arg(long, env = "RAMPART_STRICT_FLAGS")]
    pub strict_flags: bool,

    /// Serve the admin API without tokens, treating every caller as admin.
    /// Only allowed when the admin listener is on a loopback address.
    #[arg(long, env = "RAMPART_ADMIN_INSECURE_LOCAL")]
    pub admin_insecure_local: bool,

    /// Mark the dashboard's session cookie Secure: set it when operators
    /// reach the admin listener over HTTPS (e.g. behind a TLS proxy).
    #[arg(long, env = "RAMPART_DASHBOARD_SECURE_COOKIE")]
    pub dashboard_secure_cookie: bool,

    /// Prometheus HTTP API (e.g. http://127.0.0.1:9090) for ramps whose
    /// guard queries Prometheus.
    #[arg(long, env = "RAMPART_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// Worker threads per HTTP listener, and of the gRPC runtime (default:
    /// the CPUs this process may run on).
    #[arg(long, env = "RAMPART_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Share state with other replicas through Redis instead of the
    /// embedded store: `redis://host:6379/0`, or `rediss://…` for TLS.
    /// The password is best given in RAMPART_REDIS_PASSWORD.
    #[arg(long, env = "RAMPART_REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the CA that signed Redis's certificate (with rediss://).
    #[arg(long, env = "RAMPART_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Prefix of every Redis key and channel (default `rampart`).
    #[arg(long, env = "RAMPART_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// Seconds a replica's lease on a ramp lasts without renewal: how long
    /// a ramp waits for another replica after its driver dies (default 15).
    #[arg(long, env = "RAMPART_RAMP_LEASE_SECONDS", value_name = "SECONDS")]
    pub ramp_lease_seconds: Option<f64>,

    /// Relay mode: the upstream Rampart's sync listener (e.g.
    /// http://primary:8015) to follow instead of serving flag files. The
    /// relay token comes from RAMPART_RELAY_TOKEN.
    #[arg(long, env = "RAMPART_UPSTREAM", value_name = "URL", conflicts_with = "flags")]
    pub upstream: Option<String>,

    /// Relay mode: an environment to follow (repeat for several; the
    /// variable takes a comma-separated list).
    #[arg(long = "environment", env = "RAMPART_RELAY_ENVIRONMENTS", value_name = "NAME", value_delimiter = ',')]
    pub relay_environments: Vec<String>,

    /// Relay mode: where the last configuration received is kept, so a
    /// restart without the upstream still serves (default `relay-cache`).
    #[arg(long, env = "RAMPART_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Flag files (JSON or YAML), ramp files (`kind: Ramp`) or globs. Ramps
    /// are checked against the flags given with them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// The server's configuration: release stages must then name its
    /// environments (a typo would otherwise end a pipeline early).
    #[arg(long, value_name = "rampart.yaml")]
    pub config: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
