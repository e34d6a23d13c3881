//! OpenTelemetry as ramp evidence: the OTLP receiver's transport-neutral
//! part: what counts, the budgets, the dedupe window. `services::otlp`
//! counts an export; `http::otlp` is the OTLP/HTTP endpoint.
//!
//! An app instrumented with OpenTelemetry and OpenFeature's OpenTelemetry
//! hook already says, on every request span, which variant of a flag it
//! served and whether the request failed. Exported to Rampart with a
//! reporter key, those spans become the same per-second outcome counts as
//! outcome reports (`ramp::outcomes`), through the same trust rules: the
//! key's rate, the per-request and per-source bounds relative to the
//! step's evidence (`ramp::contribution`), and, for `unit: context`
//! ramps, the per-targeting-key bound.
//!
//! Budgets (docs/limits.md#otlp): the body (`limits.otlpBodyBytes`,
//! compressed and decompressed), [`MAX_SPANS`] spans per export, the
//! events and attributes read per span (`spans`), and the dedupe window
//! (`limits.otlpDedupeSpans`), which keeps a retried export from counting
//! twice.

pub mod dedupe;
pub mod points;
pub mod spans;

/// Most spans (or metric data points) in one export request; more is
/// refused as too large (exporters send 512 spans by default, the
/// Collector's batch processor 8,192).
pub const MAX_SPANS: usize = 20_000;

/// Metric series whose last point is remembered (cumulative totals,
/// retries): about 40 bytes each. Points of further series are ignored
/// and counted (`rampart_otlp_points_total{result="series_limit"}`).
pub const MAX_SERIES: usize = 100_000;

/// What became of a received span (the `result` label of
/// `rampart_otlp_spans_total`). Ordered: a span with several flag events
/// takes the latest fate in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpanFate {
    /// No evaluation event of a flag under a ramp (most spans).
    NoRampedFlag,
    /// The event is there but the span is not of the kind or service the
    /// ramp counts (`guard.spans`).
    NotSelected,
    /// The event names no variant (an evaluation that failed).
    NoVariant,
    /// Counted as ramp evidence.
    Used,
    /// Trace or span id of the wrong length, or zero.
    InvalidId,
    /// Already counted (an exporter's retry).
    Duplicate,
    /// A variant the ramp does not compare (neither treatment nor control).
    NotAnArm,
    /// More than the source may add to the step now: not counted, and
    /// reported to the exporter as rejected (partial success).
    Rejected,
}

impl SpanFate {
    pub const ALL: [SpanFate; 8] = [
        SpanFate::NoRampedFlag,
        SpanFate::NotSelected,
        SpanFate::NoVariant,
        SpanFate::Used,
        SpanFate::InvalidId,
        SpanFate::Duplicate,
        SpanFate::NotAnArm,
        SpanFate::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpanFate::NoRampedFlag => "no_ramped_flag",
            SpanFate::NotSelected => "not_selected",
            SpanFate::NoVariant => "no_variant",
            SpanFate::Used => "used",
            SpanFate::InvalidId => "invalid_id",
            SpanFate::Duplicate => "duplicate",
            SpanFate::NotAnArm => "not_an_arm",
            SpanFate::Rejected => "rejected",
        }
    }
}

/// Why an export was refused as a whole (nothing of it counted).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the export is not valid {format}: {message}")]
    Malformed { format: &'static str, message: String },
    #[error("the export has {spans} spans; at most {limit} per request")]
    TooManySpans { spans: usize, limit: usize },
    #[error("the export has {points} data points; at most {limit} per request")]
    TooManyPoints { points: usize, limit: usize },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported content encoding '{0}' (use gzip or none)")]
    Encoding(String),
    #[error("unsupported content type '{0}' (use application/x-protobuf or application/json)")]
    ContentType(String),
    #[error("OTLP needs a reporter key: SDK keys are public and may not send spans")]
    PublicKey,
    #[error("{0}")]
    Refused(crate::ramp::outcome_gate::Refused),
    #[error("the span dedupe window is full; retry in {} s", retry_after.as_secs())]
    DedupeFull { retry_after: std::time::Duration },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ExportError {
    /// The `result` label of `rampart_otlp_exports_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ExportError::Malformed { .. } => "malformed",
            ExportError::TooManySpans { .. } | ExportError::TooManyPoints { .. } | ExportError::TooLarge { .. } => {
                "too_large"
            }
            ExportError::Encoding(_) | ExportError::ContentType(_) => "unsupported",
            ExportError::PublicKey => "public_key",
            ExportError::Refused(_) => "refused",
            ExportError::DedupeFull { .. } => "dedupe_full",
            ExportError::Store(_) => "store",
        }
    }

    /// Whether the exporter should send the same data again later (OTLP:
    /// 429/503 over HTTP, `UNAVAILABLE`/`RESOURCE_EXHAUSTED` with retry
    /// info over gRPC).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ExportError::Refused(refused) => refused.retry_after(),
            ExportError::DedupeFull { retry_after } => Some(*retry_after),
            ExportError::Store(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// What the exporter is told of an export that was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// Spans not counted because their source may not add that much to
    /// the step now (OTLP's partial success: the exporter must not retry
    /// them).
    pub rejected: u64,
    pub message: Option<String>,
}
