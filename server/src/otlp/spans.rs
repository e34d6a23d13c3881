//! Spans → samples: which spans of an OTLP trace export are ramp
//! evidence, and what each says.
//!
//! A span counts for a ramped flag when it carries the flag's evaluation
//! event — OpenFeature's OpenTelemetry hooks add `feature_flag.evaluation`
//! with `feature_flag.key` and `feature_flag.result.variant` to the active
//! span (older hooks: `feature_flag` with `feature_flag.variant`; the
//! JavaScript `SpanHook` makes a child span of that name instead, which
//! counts for its parent in the same export) — and is
//! of the kind (and service) the ramp's `guard.spans` names. One span is
//! one sample per flag however often the flag was evaluated in it (the
//! first evaluation's variant). It failed when its status is `ERROR`, or,
//! where the ramp says so, its HTTP status is 5xx or it took longer than
//! `guard.spans.slowerThan`.
//!
//! Reading is bounded: at most [`MAX_EVENTS_SCANNED`] events of a span and
//! [`MAX_ATTRIBUTES_SCANNED`] attributes of an event or resource are looked
//! at, so a span stuffed with thousands of them costs no more than a
//! normal one (the body's size bounds the rest).

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::SpanFate;
use crate::ramp::otlp_selection::Selections;

/// Events of one span looked at for flag evaluations.
pub const MAX_EVENTS_SCANNED: usize = 128;
/// Attributes of one event, span or resource looked at.
pub const MAX_ATTRIBUTES_SCANNED: usize = 128;

/// The OTLP status code `STATUS_CODE_ERROR`.
const STATUS_ERROR: i32 = 2;

/// A span's identity: a retried export repeats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId {
    pub trace: [u8; 16],
    pub span: [u8; 8],
}

/// One span's evidence for one ramped flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub id: SpanId,
    pub flag: &'a str,
    pub variant: &'a str,
    pub failed: bool,
    /// The evaluation's `feature_flag.context.id`, for ramps that count
    /// targeting keys.
    pub context: Option<&'a str>,
    pub duration_nanos: u64,
}

/// What became of every span of an export, before deduplication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; SpanFate::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, fate: SpanFate, n: u64) {
        self.counts[fate as usize] += n;
    }

    pub fn get(&self, fate: SpanFate) -> u64 {
        self.counts[fate as usize]
    }

    pub fn spans(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Moves `n` spans from one fate to another (a sample found to be a
    /// duplicate, or rejected, after it was read as used).
    pub fn reclassify(&mut self, from: SpanFate, to: SpanFate, n: u64) {
        let n = n.min(self.get(from));
        self.counts[from as usize] -= n;
        self.counts[to as usize] += n;
    }

    pub fn iter(&self) -> impl Iterator<Item = (SpanFate, u64)> + '_ {
        SpanFate::ALL.iter().map(|fate| (*fate, self.get(*fate))).filter(|(_, n)| *n > 0)
    }
}

/// The number of spans in an export (its size budget is checked on it
/// before anything is read).
pub fn count(request: &ExportTraceServiceRequest) -> usize {
    request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// Reads the samples of an export for the environment's ramped flags.
pub fn read<'a>(request: &'a ExportTraceServiceRequest, ramped: &Selections) -> (Vec<Sample<'a>>, Tally) {
    let mut samples = Vec::new();
    let mut tally = Tally::default();
    // Evaluations recorded as child spans (OpenFeature's JavaScript
    // `SpanHook`: a span named `feature_flag.evaluation` with the flag in
    // its attributes) count for their parent, when the parent is in the
    // same export: by parent span id, at most MAX_EVENTS_SCANNED each.
    let mut children: HashMap<&[u8], Vec<Evaluated<'_>>> = HashMap::new();
    if !ramped.is_empty() {
        for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            if span.name == "feature_flag.evaluation"
                && !span.parent_span_id.is_empty()
                && let Some(evaluated) = evaluated_attributes(&span.attributes, "feature_flag.result.variant")
            {
                let list = children.entry(span.parent_span_id.as_slice()).or_default();
                if list.len() < MAX_EVENTS_SCANNED {
                    list.push(evaluated);
                }
            }
        }
    }
    for resource_spans in &request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|resource| string_attribute(&resource.attributes, "service.name"));
        for span in resource_spans.scope_spans.iter().flat_map(|scope| &scope.spans) {
            if ramped.is_empty() {
                tally.add(SpanFate::NoRampedFlag, 1);
                continue;
            }
            let mut fate = SpanFate::NoRampedFlag;
            let first = samples.len();
            let from_events = span.events.iter().take(MAX_EVENTS_SCANNED).filter_map(evaluation);
            let from_children = children.get(span.span_id.as_slice()).into_iter().flatten().copied();
            for (flag, variant, context) in from_events.chain(from_children) {
                let Some(rules) = ramped.get(flag) else { continue };
                if samples[first..].iter().any(|sample: &Sample<'_>| sample.flag == flag) {
                    continue; // one sample per flag and span
                }
                if !rules.selection.kind.admits(span.kind)
                    || rules.selection.service.as_deref().is_some_and(|wanted| service != Some(wanted))
                {
                    fate = fate.max(SpanFate::NotSelected);
                    continue;
                }
                let Some(variant) = variant else {
                    fate = fate.max(SpanFate::NoVariant);
                    continue;
                };
                let Some(id) = span_id(&span.trace_id, &span.span_id) else {
                    fate = fate.max(SpanFate::InvalidId);
                    break;
                };
                let errored = span.status.as_ref().is_some_and(|status| status.code == STATUS_ERROR);
                let duration_nanos = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano);
                let slow =
                    rules.selection.slower_than.is_some_and(|limit| u128::from(duration_nanos) > limit.as_nanos());
                let failed =
                    errored || slow || (rules.selection.http_server_errors && http_server_error(&span.attributes));
                samples.push(Sample {
                    id,
                    flag,
                    variant,
                    failed,
                    context: context.filter(|_| rules.per_context),
                    duration_nanos,
                });
                fate = SpanFate::Used;
            }
            if fate == SpanFate::InvalidId {
                samples.truncate(first);
            }
            tally.add(fate, 1);
        }
    }
    (samples, tally)
}

/// One evaluation: the flag, the variant served (if any), the targeting key.
type Evaluated<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// A flag evaluation event's flag, variant and targeting key.
fn evaluation(event: &opentelemetry_proto::tonic::trace::v1::span::Event) -> Option<Evaluated<'_>> {
    let variant_key = match event.name.as_str() {
        "feature_flag.evaluation" => "feature_flag.result.variant",
        "feature_flag" => "feature_flag.variant",
        _ => return None,
    };
    evaluated_attributes(&event.attributes, variant_key)
}

fn evaluated_attributes<'a>(attributes: &'a [KeyValue], variant_key: &str) -> Option<Evaluated<'a>> {
    let flag = string_attribute(attributes, "feature_flag.key")?;
    let variant = string_attribute(attributes, variant_key).filter(|v| !v.is_empty());
    let context = string_attribute(attributes, "feature_flag.context.id").filter(|c| !c.is_empty());
    Some((flag, variant, context))
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .take(MAX_ATTRIBUTES_SCANNED)
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value: &AnyValue| value.value.as_ref())
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(text) => Some(text),
        _ => None,
    }
}

/// `http.response.status_code` (or the older `http.status_code`) ≥ 500.
fn http_server_error(attributes: &[KeyValue]) -> bool {
    let status =
        attribute(attributes, "http.response.status_code").or_else(|| attribute(attributes, "http.status_code"));
    match status {
        Some(any_value::Value::IntValue(code)) => *code >= 500,
        Some(any_value::Value::StringValue(code)) => code.parse::<i64>().is_ok_and(|code| code >= 500),
        _ => false,
    }
}

/// A span's ids, when they have OTLP's lengths and are not all zero.
fn span_id(trace: &[u8], span: &[u8]) -> Option<SpanId> {
    let trace: [u8; 16] = trace.try_into().ok()?;
    let span: [u8; 8] = span.try_into().ok()?;
    (trace != [0; 16] && span != [0; 8]).then_some(SpanId { trace, span })
}

#[cfg(test)]
mod tests;
