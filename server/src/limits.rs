//! Every bound the server puts on what clients and files may cost, in one
//! place, with its default and its `limits:` key in `rampart.yaml`
//! (docs/limits.md lists them all, with the engine's own).
//!
//! ```yaml
//! limits:
//!   flagFileBytes: 67108864          # one environment's flag files together
//!   flagFileNodes: 4000000           # their values, after $ref expansion
//!   flagDefinitionBytes: 262144      # one API-owned flag's definition
//!   bodyReadTimeoutSeconds: 10       # a request body must arrive within this
//!   connectionsPerListener: 10000    # open connections on each listener
//!   handshakeTimeoutSeconds: 10      # gRPC: the HTTP/2 preface must arrive within this
//!   historyVersionsPerFlag: 200      # versions kept per API-owned flag
//!   auditRetentionDays: 400          # audit entries kept
//!   responseBytes: 8388608           # one page of history or audit
//!   globFiles: 10000                 # files one set of patterns may match
//!   outcomeCountPerEntry: 100000     # ok + error in one outcome entry
//!   outcomeReportsPerSecond: 200     # outcome requests per key (burst: twice this)
//!   outcomesPerClientPerMinute: 60   # SDK-key reports: one client address, per ramped variant
//!   outcomesPerContextPerMinute: 60  # one targeting key, per ramped flag
//!   outcomeSourceWindowSeconds: 60   # what one reporter key or relay adds is bounded per this window
//!   adminWritesPerSecond: 50         # flag writes per admin token (burst: twice this)
//! ```

use std::time::Duration;

/// Most top-level fields an evaluation context may have, on every
/// transport. Rules read a handful; a huge context is a mistake or an
/// attack, and costs every lookup.
pub const MAX_CONTEXT_FIELDS: usize = 1000;

use rampart_engine::InputLimits;
use serde::Deserialize;

/// The server's limits, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// An environment's flag files together (and what `rampart validate`
    /// reads): bytes, and values after `$ref` expansion.
    pub flag_files: InputLimits,
    /// One API-owned flag's definition, as JSON.
    pub definition_bytes: usize,
    /// How long a request body may take to arrive once the headers have.
    pub body_read_timeout: Duration,
    /// Open connections per listener; more wait in the kernel's backlog.
    pub connections_per_listener: usize,
    /// Whether `connections_per_listener` was configured (a configured
    /// value that does not fit the descriptor limit is worth a warning; the
    /// default is fitted quietly).
    pub connections_configured: bool,
    /// How long a gRPC connection may take to send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Versions kept per API-owned flag (the newest); older ones are
    /// pruned when a flag is written.
    pub history_versions: usize,
    /// Audit entries older than this are pruned.
    pub audit_retention: Duration,
    /// Most bytes of one history or audit page; a page ends early (with
    /// `next`) rather than exceed it.
    pub response_bytes: usize,
    /// Files one environment's flag or ramp patterns may match.
    pub glob_files: usize,
    /// `ok + error` of one outcome entry.
    pub outcome_count_per_entry: u64,
    /// Outcome requests per second per key, with a burst of twice this.
    pub outcome_reports_per_second: u32,
    /// Outcomes one client address may report with an SDK key for one
    /// ramped variant in a minute (more once the step's evidence is large:
    /// see `ramp::contribution`).
    pub outcomes_per_client_per_minute: u64,
    /// Outcomes one targeting key may account for, for one ramped flag, in
    /// a minute: one user cannot be thousands of users.
    pub outcomes_per_context_per_minute: u64,
    /// The window over which what one reporter key or relay adds to a
    /// ramped arm is bounded (`ramp::contribution`): a minute, so no key
    /// can bring a young step's `minSamples` within one.
    pub outcome_source_window: Duration,
    /// Flag writes per second per admin token (burst twice this): with
    /// `flagDefinitionBytes`, how fast one token can grow the store.
    pub admin_writes_per_second: u32,
    /// Most bytes of one OTLP export, as sent and after gzip is undone.
    pub otlp_body_bytes: usize,
    /// Span fingerprints per generation of the OTLP dedupe window (two
    /// generations, about 20 bytes each): at least `otlp::MAX_SPANS`.
    pub otlp_dedupe_spans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flag_files: InputLimits::default(),
            definition_bytes: 256 << 10,
            body_read_timeout: Duration::from_secs(10),
            connections_per_listener: 10_000,
            connections_configured: false,
            handshake_timeout: Duration::from_secs(10),
            history_versions: 200,
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            response_bytes: 8 << 20,
            glob_files: 10_000,
            outcome_count_per_entry: 100_000,
            outcome_reports_per_second: 200,
            outcomes_per_client_per_minute: 60,
            outcomes_per_context_per_minute: 60,
            outcome_source_window: Duration::from_secs(60),
            admin_writes_per_second: 50,
            otlp_body_bytes: 8 << 20,
            otlp_dedupe_spans: 1_000_000,
        }
    }
}

impl Limits {
    /// Raises the process's open-file limit to what it may (the hard
    /// limit) and returns it: the descriptor budget `capacity` shares
    /// between the listeners.
    pub fn descriptors(&self) -> u64 {
        raise_descriptor_limit()
    }

    /// `connectionsPerListener` when it was configured: the most one
    /// listener may hold (otherwise the descriptor budget decides).
    pub fn listener_cap(&self) -> Option<usize> {
        self.connections_configured.then_some(self.connections_per_listener)
    }
}

#[cfg(unix)]
fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

#[cfg(not(unix))]
fn raise_descriptor_limit() -> u64 {
    u64::MAX
}

/// The `limits:` section of `rampart.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LimitsFile {
    flag_file_bytes: Option<usize>,
    flag_file_nodes: Option<usize>,
    flag_definition_bytes: Option<usize>,
    body_read_timeout_seconds: Option<f64>,
    connections_per_listener: Option<usize>,
    handshake_timeout_seconds: Option<f64>,
    history_versions_per_flag: Option<usize>,
    audit_retention_days: Option<u64>,
    response_bytes: Option<usize>,
    glob_files: Option<usize>,
    outcome_count_per_entry: Option<u64>,
    outcome_reports_per_second: Option<u32>,
    outcomes_per_client_per_minute: Option<u64>,
    outcomes_per_context_per_minute: Option<u64>,
    outcome_source_window_seconds: Option<f64>,
    admin_writes_per_second: Option<u32>,
    otlp_body_bytes: Option<usize>,
    otlp_dedupe_spans: Option<usize>,
}

impl LimitsFile {
    /// The limits, each checked against a sane range.
    pub(crate) fn resolve(&self) -> Result<Limits, String> {
        let d = Limits::default();
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            name: &str,
            value: Option<T>,
            default: T,
            low: T,
            high: T,
        ) -> Result<T, String> {
            match value {
                None => Ok(default),
                Some(v) if v >= low && v <= high => Ok(v),
                Some(v) => Err(format!("limits.{name} must be between {low} and {high}, not {v}")),
            }
        }
        let seconds = |name: &str, value: Option<f64>, default: Duration| -> Result<Duration, String> {
            match value {
                None => Ok(default),
                Some(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
                Some(s) => Err(format!("limits.{name} must be between 0.1 and 3600, not {s}")),
            }
        };
        Ok(Limits {
            flag_files: InputLimits {
                max_bytes: within("flagFileBytes", self.flag_file_bytes, d.flag_files.max_bytes, 1 << 10, 4 << 30)?,
                max_nodes: within("flagFileNodes", self.flag_file_nodes, d.flag_files.max_nodes, 100, 1 << 30)?,
            },
            definition_bytes: within(
                "flagDefinitionBytes",
                self.flag_definition_bytes,
                d.definition_bytes,
                1 << 10,
                64 << 20,
            )?,
            body_read_timeout: seconds("bodyReadTimeoutSeconds", self.body_read_timeout_seconds, d.body_read_timeout)?,
            connections_per_listener: within(
                "connectionsPerListener",
                self.connections_per_listener,
                d.connections_per_listener,
                1,
                1 << 20,
            )?,
            connections_configured: self.connections_per_listener.is_some(),
            handshake_timeout: seconds("handshakeTimeoutSeconds", self.handshake_timeout_seconds, d.handshake_timeout)?,
            history_versions: within(
                "historyVersionsPerFlag",
                self.history_versions_per_flag,
                d.history_versions,
                1,
                1_000_000,
            )?,
            audit_retention: Duration::from_secs(
                within("auditRetentionDays", self.audit_retention_days, 400, 1, 100 * 365)? * 24 * 3600,
            ),
            response_bytes: within("responseBytes", self.response_bytes, d.response_bytes, 64 << 10, 1 << 30)?,
            glob_files: within("globFiles", self.glob_files, d.glob_files, 1, 10_000_000)?,
            outcome_count_per_entry: within(
                "outcomeCountPerEntry",
                self.outcome_count_per_entry,
                d.outcome_count_per_entry,
                1,
                1_000_000_000,
            )?,
            outcome_reports_per_second: within(
                "outcomeReportsPerSecond",
                self.outcome_reports_per_second,
                d.outcome_reports_per_second,
                1,
                1_000_000,
            )?,
            outcomes_per_client_per_minute: within(
                "outcomesPerClientPerMinute",
                self.outcomes_per_client_per_minute,
                d.outcomes_per_client_per_minute,
                1,
                1_000_000,
            )?,
            outcomes_per_context_per_minute: within(
                "outcomesPerContextPerMinute",
                self.outcomes_per_context_per_minute,
                d.outcomes_per_context_per_minute,
                1,
                1_000_000,
            )?,
            outcome_source_window: seconds(
                "outcomeSourceWindowSeconds",
                self.outcome_source_window_seconds,
                d.outcome_source_window,
            )?,
            admin_writes_per_second: within(
                "adminWritesPerSecond",
                self.admin_writes_per_second,
                d.admin_writes_per_second,
                1,
                100_000,
            )?,
            otlp_body_bytes: within("otlpBodyBytes", self.otlp_body_bytes, d.otlp_body_bytes, 64 << 10, 1 << 30)?,
            // A generation holds at least one whole export (`otlp::MAX_SPANS`).
            otlp_dedupe_spans: within(
                "otlpDedupeSpans",
                self.otlp_dedupe_spans,
                d.otlp_dedupe_spans,
                20_000,
                100_000_000,
            )?,
        })
    }
}

/// Why something was refused, as the `limit` label of
/// Why an outcome report was refused before it was acknowledged: the
/// `reason` label of `rampart_outcomes_refused_total` (docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeRefusal {
    /// An SDK key, where the environment takes reports from reporter keys only.
    SdkKey,
    EntryCount,
    RequestCount,
    Rate,
    /// An SDK-key report whose entry is not one outcome.
    SdkKeyCounts,
    /// An SDK-key report whose entry names no targeting key.
    SdkKeyWithoutTargetingKey,
    /// More than one reporter key or relay may add to an arm per window.
    SourceVolume,
    /// More than one client address may add to an arm per minute.
    ClientVolume,
    /// More than one targeting key may account for per minute.
    ContextVolume,
}

impl OutcomeRefusal {
    pub const ALL: [OutcomeRefusal; 9] = [
        OutcomeRefusal::SdkKey,
        OutcomeRefusal::EntryCount,
        OutcomeRefusal::RequestCount,
        OutcomeRefusal::Rate,
        OutcomeRefusal::SdkKeyCounts,
        OutcomeRefusal::SdkKeyWithoutTargetingKey,
        OutcomeRefusal::SourceVolume,
        OutcomeRefusal::ClientVolume,
        OutcomeRefusal::ContextVolume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeRefusal::SdkKey => "sdk_key",
            OutcomeRefusal::EntryCount => "entry_count",
            OutcomeRefusal::RequestCount => "request_count",
            OutcomeRefusal::Rate => "rate",
            OutcomeRefusal::SdkKeyCounts => "sdk_key_counts",
            OutcomeRefusal::SdkKeyWithoutTargetingKey => "sdk_key_without_targeting_key",
            OutcomeRefusal::SourceVolume => "source_volume",
            OutcomeRefusal::ClientVolume => "client_volume",
            OutcomeRefusal::ContextVolume => "context_volume",
        }
    }
}

/// `rampart_limit_rejections_total`: stable names, a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// One of the engine's input or evaluation limits.
    Engine(rampart_engine::Limit),
    RequestBody,
    BodyReadTimeout,
    ContextFields,
    DefinitionBytes,
    Connections,
    Handshake,
    StreamBacklog,
    ResponseBytes,
    GlobFiles,
    OutcomeCount,
    OutcomeRate,
    OutcomeImplausible,
    /// A dashboard sign-in ended the oldest session (at `MAX_SESSIONS`).
    DashboardSessions,
    /// A request head over the HTTP library's size or header-count limit.
    RequestHead,
    /// A request head not complete within the head timeout.
    HeadTimeout,
    /// A request that is not valid HTTP/1.1.
    MalformedRequest,
    /// Outcomes refused by a relay whose forwarding buffer is full.
    RelayOutcomeBuffer,
    /// Dashboard sign-ins refused after too many failures.
    SignInAttempts,
    /// Flag writes of one admin token over `adminWritesPerSecond`.
    AdminWrites,
    /// An OTLP export with more than `otlp::MAX_SPANS` spans.
    OtlpSpans,
    /// Targeting keys a latency or conversion guard left out: an arm held
    /// its most users for a step (`ramp::observe::guards`).
    GuardUsers,
    /// A `track` request over `services::track::MAX_EVENTS` events.
    TrackEvents,
    /// A call on a sync connection already holding `SYNC_STREAMS` calls
    /// (`grpc::sync_listener`), refused with `REFUSED_STREAM`.
    StreamCalls,
}

impl Rejection {
    pub const ALL: [Rejection; 23] = [
        Rejection::RequestBody,
        Rejection::BodyReadTimeout,
        Rejection::ContextFields,
        Rejection::DefinitionBytes,
        Rejection::Connections,
        Rejection::Handshake,
        Rejection::StreamBacklog,
        Rejection::ResponseBytes,
        Rejection::GlobFiles,
        Rejection::OutcomeCount,
        Rejection::OutcomeRate,
        Rejection::OutcomeImplausible,
        Rejection::DashboardSessions,
        Rejection::RequestHead,
        Rejection::HeadTimeout,
        Rejection::MalformedRequest,
        Rejection::RelayOutcomeBuffer,
        Rejection::SignInAttempts,
        Rejection::AdminWrites,
        Rejection::OtlpSpans,
        Rejection::GuardUsers,
        Rejection::TrackEvents,
        Rejection::StreamCalls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Engine(limit) => limit.as_str(),
            Rejection::RequestBody => "request_body",
            Rejection::BodyReadTimeout => "body_read_timeout",
            Rejection::ContextFields => "context_fields",
            Rejection::DefinitionBytes => "definition_bytes",
            Rejection::Connections => "connections",
            Rejection::Handshake => "handshake",
            Rejection::StreamBacklog => "stream_backlog",
            Rejection::ResponseBytes => "response_bytes",
            Rejection::GlobFiles => "glob_files",
            Rejection::OutcomeCount => "outcome_count",
            Rejection::OutcomeRate => "outcome_rate",
            Rejection::OutcomeImplausible => "outcome_implausible",
            Rejection::DashboardSessions => "dashboard_sessions",
            Rejection::RequestHead => "request_head",
            Rejection::HeadTimeout => "head_timeout",
            Rejection::MalformedRequest => "malformed_request",
            Rejection::RelayOutcomeBuffer => "relay_outcome_buffer",
            Rejection::SignInAttempts => "sign_in_attempts",
            Rejection::AdminWrites => "admin_writes",
            Rejection::OtlpSpans => "otlp_spans",
            Rejection::GuardUsers => "guard_users",
            Rejection::TrackEvents => "track_events",
            Rejection::StreamCalls => "stream_calls",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(LimitsFile::default().resolve().unwrap(), Limits::default());
        let file: LimitsFile = serde_saphyr::from_str("flagFileBytes: 2048\nbodyReadTimeoutSeconds: 0.5\n").unwrap();
        let limits = file.resolve().unwrap();
        assert_eq!(limits.flag_files.max_bytes, 2048);
        assert_eq!(limits.body_read_timeout, Duration::from_millis(500));
        let bad: LimitsFile = serde_saphyr::from_str("connectionsPerListener: 0\n").unwrap();
        assert!(bad.resolve().unwrap_err().contains("limits.connectionsPerListener must be between"));
        assert!(serde_saphyr::from_str::<LimitsFile>("nope: 1\n").is_err());
    }
}
