//! Metric data points → outcome counts: which points of an OTLP metrics
//! export are ramp evidence, and how many requests each adds.
//!
//! A ramp reads one metric (`guard.otlpMetric`, default
//! `http.server.request.duration`, the request histogram of OpenTelemetry's
//! HTTP semantic conventions): its histogram, exponential histogram or
//! monotonic sum points whose attributes carry `feature_flag.key` (the
//! ramped flag) and `feature_flag.result.variant`. A point's requests
//! failed when it carries `error.type`, or an `http.response.status_code`
//! of 500 or more (errors are their own series, as the conventions make
//! them).
//!
//! Delta points add their count. Cumulative points add what grew since the
//! series' previous point ([`Series`]); a series seen for the first time
//! only sets its baseline (what it counted before is not this step's), and
//! a reset (a smaller value, or a new start time) counts from zero. A
//! point no newer than the series' last (an exporter's retry) adds
//! nothing, so retries never count twice.
//!
//! An explicit-bucket histogram also carries its requests' durations to a
//! latency guard: each bucket's count lands in the ladder slot of its upper
//! bound (`model::latency`; the metric's unit `s` or `ms`, seconds when
//! unsaid, as the conventions say). A bucket bound that is not a ladder
//! bound is rounded up to the next one — a sample in (250 ms, 350 ms] is
//! counted as at most 400 ms — so a ramp's `slowerThan` is exact only when
//! it is one of the app's bucket bounds (OpenTelemetry's default bounds are
//! all on the ladder). Exponential histograms carry no durations yet.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::model::Latency;
use crate::ramp::otlp_selection::Selections;

/// OTLP's `AGGREGATION_TEMPORALITY_CUMULATIVE`.
const CUMULATIVE: i32 = 2;

/// What one data point adds for one ramped flag and variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta<'a> {
    pub flag: &'a str,
    pub variant: &'a str,
    pub failed: bool,
    pub count: u64,
    series: u64,
    time: u64,
    start: u64,
    total: u64,
    /// The durations of `count`'s requests, when the point says (explicit
    /// histograms): a delta, as `count` is.
    pub latency: Latency,
    /// The series' cumulative durations after this point (what the next
    /// cumulative point is compared with).
    durations: Option<Box<Latency>>,
}

/// The last point of one series: (start time, time, cumulative total, and
/// for a histogram its cumulative durations).
type Last = (u64, u64, u64, Option<Box<Latency>>);

/// An explicit-bucket histogram point's counts on the latency ladder.
fn ladder(
    point: &opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint,
    millis_per_unit: f64,
) -> Option<Latency> {
    if point.bucket_counts.is_empty() || point.bucket_counts.len() != point.explicit_bounds.len() + 1 {
        return None;
    }
    let mut latency = Latency::default();
    for (index, count) in point.bucket_counts.iter().enumerate() {
        // The last bucket has no upper bound: slower than the last bound.
        let upper = point.explicit_bounds.get(index).map_or(f64::INFINITY, |bound| bound * millis_per_unit);
        latency.add(Latency::slot_of(upper), *count);
    }
    Some(latency)
}

/// Milliseconds in one unit of a duration metric (`s`: 1000; `ms`: 1;
/// unsaid: seconds, the conventions' unit).
fn millis_per_unit(unit: &str) -> f64 {
    match unit {
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        _ => 1000.0,
    }
}

/// What became of the data points of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointTally {
    /// Points of the ramps' metrics for a ramped flag and variant.
    pub used: u64,
    /// Points of other metrics, flags or without a variant.
    pub ignored: u64,
    /// Points no newer than their series' last (retries).
    pub duplicate: u64,
    /// Cumulative series seen for the first time (a baseline only).
    pub baseline: u64,
    /// New series refused because the series table is full.
    pub series_limit: u64,
}

/// The last point of each series, shared by every export.
#[derive(Debug)]
pub struct Series {
    hasher: RandomState,
    capacity: usize,
    /// Series fingerprint → its last point.
    last: Mutex<HashMap<u64, Last>>,
}

impl Series {
    pub fn new(capacity: usize) -> Series {
        Series { hasher: RandomState::new(), capacity: capacity.max(1), last: Mutex::default() }
    }

    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads an export's points for the ramped flags. Nothing is
    /// remembered until [`Series::commit`]: an export that is not counted
    /// leaves the series as they were, so its retry counts.
    pub fn read<'a>(
        &self,
        environment: &str,
        request: &'a ExportMetricsServiceRequest,
        ramped: &Selections,
    ) -> (Vec<Delta<'a>>, PointTally) {
        let mut deltas = Vec::new();
        let mut tally = PointTally::default();
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Points of this export read so far, by series: a series may send
        // several points in one export.
        let mut pending: HashMap<u64, Last> = HashMap::new();
        for resource_metrics in &request.resource_metrics {
            let resource = resource_metrics.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
            let resource_id = self.hasher.hash_one((environment, attributes_key(resource)));
            for metric in resource_metrics.scope_metrics.iter().flat_map(|scope| &scope.metrics) {
                let Some(data) = &metric.data else { continue };
                let unit = millis_per_unit(&metric.unit);
                type Point<'p> = (&'p [KeyValue], u64, u64, u64, Option<Latency>);
                let points: Vec<Point<'_>> = match data {
                    Data::Histogram(h) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            (
                                p.attributes.as_slice(),
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                p.count,
                                ladder(p, unit),
                            )
                        })
                        .collect(),
                    Data::ExponentialHistogram(h) => h
                        .data_points
                        .iter()
                        .map(|p| (p.attributes.as_slice(), p.start_time_unix_nano, p.time_unix_nano, p.count, None))
                        .collect(),
                    Data::Sum(sum) if sum.is_monotonic => sum
                        .data_points
                        .iter()
                        .map(|p| (p.attributes.as_slice(), p.start_time_unix_nano, p.time_unix_nano, number(p), None))
                        .collect(),
                    _ => {
                        tally.ignored += data_points(data);
                        continue;
                    }
                };
                let cumulative = temporality(data) == CUMULATIVE;
                for (attributes, start, time, value, durations) in points {
                    let flag = string(attributes, "feature_flag.key");
                    let rules = flag.and_then(|flag| ramped.get(flag));
                    let variant = string(attributes, "feature_flag.result.variant").filter(|v| !v.is_empty());
                    let (Some(flag), Some(rules), Some(variant)) = (flag, rules, variant) else {
                        tally.ignored += 1;
                        continue;
                    };
                    if rules.metric != metric.name {
                        tally.ignored += 1;
                        continue;
                    }
                    let series = self.hasher.hash_one((resource_id, &metric.name, attributes_key(attributes)));
                    let previous = pending.get(&series).or_else(|| last.get(&series)).cloned();
                    if previous.as_ref().is_some_and(|(_, last_time, _, _)| time <= *last_time) {
                        tally.duplicate += 1;
                        continue;
                    }
                    if previous.is_none() && last.len() + pending.len() >= self.capacity {
                        tally.series_limit += 1;
                        continue;
                    }
                    let durations = durations.filter(|d| d.total() == value);
                    pending.insert(series, (start, time, value, durations.map(Box::new)));
                    let (count, latency) = match (cumulative, previous) {
                        (false, _) => (value, durations.unwrap_or_default()),
                        (true, None) => {
                            tally.baseline += 1;
                            (0, Latency::default())
                        }
                        // A reset: a new start, or a smaller total.
                        (true, Some((last_start, _, last_total, _))) if start != last_start || value < last_total => {
                            (value, durations.unwrap_or_default())
                        }
                        (true, Some((_, _, last_total, last_durations))) => {
                            let grown = match (durations, last_durations) {
                                (Some(now), Some(before)) => now.minus(&before).unwrap_or_default(),
                                _ => Latency::default(),
                            };
                            (value - last_total, grown)
                        }
                    };
                    tally.used += 1;
                    deltas.push(Delta {
                        flag,
                        variant,
                        failed: failed(attributes),
                        count,
                        series,
                        time,
                        start,
                        total: value,
                        latency,
                        durations: durations.map(Box::new),
                    });
                }
            }
        }
        (deltas, tally)
    }

    /// The export was counted: its points are each series' latest. When
    /// the table is full, points of new series are not remembered.
    pub fn commit(&self, deltas: &[Delta<'_>]) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for delta in deltas {
            if last.len() >= self.capacity && !last.contains_key(&delta.series) {
                continue;
            }
            let entry = last.entry(delta.series).or_insert((delta.start, 0, 0, None));
            if delta.time > entry.1 {
                *entry = (delta.start, delta.time, delta.total, delta.durations.clone());
            }
        }
    }
}

/// A series' identity from its attributes, in any order.
fn attributes_key(attributes: &[KeyValue]) -> Vec<(&str, String)> {
    let mut key: Vec<(&str, String)> = attributes
        .iter()
        .take(super::spans::MAX_ATTRIBUTES_SCANNED)
        .map(|kv| (kv.key.as_str(), format!("{:?}", kv.value)))
        .collect();
    key.sort_unstable();
    key
}

fn string<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    let value = attributes.iter().take(super::spans::MAX_ATTRIBUTES_SCANNED).find(|kv| kv.key == key)?;
    match value.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text),
        _ => None,
    }
}

/// `error.type` set, or an HTTP status of 500 or more.
fn failed(attributes: &[KeyValue]) -> bool {
    if string(attributes, "error.type").is_some_and(|e| !e.is_empty()) {
        return true;
    }
    let status = attributes
        .iter()
        .take(super::spans::MAX_ATTRIBUTES_SCANNED)
        .find(|kv| kv.key == "http.response.status_code" || kv.key == "http.status_code")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref());
    match status {
        Some(any_value::Value::IntValue(code)) => *code >= 500,
        Some(any_value::Value::StringValue(code)) => code.parse::<i64>().is_ok_and(|code| code >= 500),
        _ => false,
    }
}

/// A sum point's value as a count (doubles are rounded down; negative or
/// not finite: nothing).
fn number(point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match point.value {
        Some(Value::AsInt(n)) => u64::try_from(n).unwrap_or(0),
        Some(Value::AsDouble(x)) if x.is_finite() && x >= 0.0 => x as u64,
        _ => 0,
    }
}

fn temporality(data: &Data) -> i32 {
    match data {
        Data::Histogram(h) => h.aggregation_temporality,
        Data::ExponentialHistogram(h) => h.aggregation_temporality,
        Data::Sum(s) => s.aggregation_temporality,
        _ => 0,
    }
}

fn data_points(data: &Data) -> u64 {
    (match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }) as u64
}

/// The number of data points in an export (its budget is checked first).
pub fn count(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter_map(|m| m.data.as_ref())
        .map(|data| data_points(data) as usize)
        .sum()
}

#[cfg(test)]
mod tests;
