//! `guard.spans`: which OpenTelemetry spans count as a ramp's outcomes
//! when its evidence arrives over OTLP (`crate::otlp`).
//!
//! A request usually evaluates a flag inside one span per service hop
//! (the server span, client spans to its dependencies, internal spans);
//! counting every span that carries the flag's evaluation event would
//! count one request several times. A ramp therefore names the kind of
//! span that is one request — by default the server span, of any
//! service — and optionally one service.

use serde::{Deserialize, Serialize};

/// The metric OTLP metrics are read from unless a ramp names another:
/// OpenTelemetry's HTTP server request histogram.
pub const DEFAULT_OTLP_METRIC: &str = "http.server.request.duration";

/// The kind of span that counts (OpenTelemetry's `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// A span that handled a request from a remote client.
    #[default]
    Server,
    Client,
    Consumer,
    Producer,
    Internal,
    /// Every span with the event (one sample per span).
    Any,
}

impl SpanKind {
    /// Whether a span of OTLP kind `kind` (the protobuf enum's number:
    /// 1 internal, 2 server, 3 client, 4 producer, 5 consumer) counts.
    pub fn admits(self, kind: i32) -> bool {
        match self {
            SpanKind::Any => true,
            SpanKind::Internal => kind == 1,
            SpanKind::Server => kind == 2,
            SpanKind::Client => kind == 3,
            SpanKind::Producer => kind == 4,
            SpanKind::Consumer => kind == 5,
        }
    }
}

/// Which spans count for a ramp, and when one failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpanSelection {
    pub kind: SpanKind,
    /// Only spans of this `service.name` (resource attribute).
    pub service: Option<String>,
    /// A span failed when its status is `ERROR`, and also, when set, when
    /// its `http.response.status_code` (or the older `http.status_code`)
    /// is 500 or more.
    pub http_server_errors: bool,
    /// A span slower than this failed too (its duration, end − start): a
    /// treatment that answers, but too slowly, is rolled back like one that
    /// errors.
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_millis")]
    pub slower_than: Option<std::time::Duration>,
}

mod optional_millis {
    pub(super) fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }
}

/// `guard.spans` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSpans {
    kind: Option<SpanKind>,
    service: Option<String>,
    http_server_errors: Option<bool>,
    slower_than: Option<String>,
}

impl RawSpans {
    pub(super) fn resolve(&self) -> Result<SpanSelection, String> {
        if self.service.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("guard.spans.service: must not be empty (leave it out for every service)".into());
        }
        let slower_than = match &self.slower_than {
            Some(text) => match crate::time::parse_duration(text) {
                Some(duration) if !duration.is_zero() => Some(duration),
                _ => return Err(format!("guard.spans.slowerThan: '{text}' is not a duration like 300ms or 2s")),
            },
            None => None,
        };
        Ok(SpanSelection {
            kind: self.kind.unwrap_or_default(),
            service: self.service.clone(),
            http_server_errors: self.http_server_errors.unwrap_or(false),
            slower_than,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_otlp_numbers() {
        assert!(SpanKind::Server.admits(2));
        assert!(!SpanKind::Server.admits(1) && !SpanKind::Server.admits(3) && !SpanKind::Server.admits(0));
        assert!(SpanKind::Client.admits(3) && SpanKind::Internal.admits(1));
        assert!(SpanKind::Producer.admits(4) && SpanKind::Consumer.admits(5));
        assert!((0..=5).all(|kind| SpanKind::Any.admits(kind)));
    }

    #[test]
    fn defaults_are_server_spans_of_any_service() {
        let selection = RawSpans::default().resolve().unwrap();
        assert_eq!(
            selection,
            SpanSelection { kind: SpanKind::Server, service: None, http_server_errors: false, slower_than: None }
        );
        let empty = RawSpans { service: Some(" ".into()), ..RawSpans::default() };
        assert!(empty.resolve().unwrap_err().contains("guard.spans.service"));
        let slow = RawSpans { slower_than: Some("300ms".into()), ..RawSpans::default() };
        assert_eq!(slow.resolve().unwrap().slower_than, Some(std::time::Duration::from_millis(300)));
        let bad = RawSpans { slower_than: Some("fast".into()), ..RawSpans::default() };
        assert!(bad.resolve().unwrap_err().contains("slowerThan: 'fast'"));
    }
}
