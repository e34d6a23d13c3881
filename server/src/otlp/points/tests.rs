use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;
use crate::ramp::otlp_selection::{FlagSpans, Selections};

const DELTA: i32 = 1;
const METRIC: &str = "http.server.request.duration";

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn attributes(variant: &str, status: i64) -> Vec<KeyValue> {
    vec![
        text("feature_flag.key", "search"),
        text("feature_flag.result.variant", variant),
        KeyValue {
            key: "http.response.status_code".into(),
            value: Some(AnyValue { value: Some(Value::IntValue(status)) }),
            ..Default::default()
        },
    ]
}

fn histogram(temporality: i32, points: Vec<(&str, i64, u64, u64, u64)>) -> Metric {
    Metric {
        name: METRIC.into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: temporality,
            data_points: points
                .into_iter()
                .map(|(variant, status, start, time, count)| HistogramDataPoint {
                    attributes: attributes(variant, status),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn export(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![text("service.name", "api")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn ramped() -> Selections {
    Selections::new(HashMap::from([(
        "search".to_owned(),
        FlagSpans { selection: Default::default(), per_context: false, metric: METRIC.to_owned() },
    )]))
}

/// (variant, failed, count) of each delta.
fn shape(deltas: &[Delta<'_>]) -> Vec<(String, bool, u64)> {
    deltas.iter().map(|d| (d.variant.to_owned(), d.failed, d.count)).collect()
}

#[test]
fn delta_points_add_their_count_and_a_retry_adds_nothing() {
    let series = Series::new(100);
    let request =
        export(vec![histogram(DELTA, vec![("new", 200, 0, 10, 40), ("new", 503, 0, 10, 4), ("old", 200, 0, 10, 50)])]);
    let (deltas, tally) = series.read("production", &request, &ramped());
    assert_eq!(
        shape(&deltas),
        [("new".into(), false, 40), ("new".into(), true, 4), ("old".into(), false, 50)],
        "a 5xx status is an error"
    );
    assert_eq!(tally.used, 3);
    // Not committed (the export was not counted): the retry counts.
    let (again, _) = series.read("production", &request, &ramped());
    assert_eq!(again.len(), 3);
    series.commit(&again);
    let (retried, tally) = series.read("production", &request, &ramped());
    assert!(retried.is_empty());
    assert_eq!(tally.duplicate, 3);
    // The next interval's points count.
    let next = export(vec![histogram(DELTA, vec![("new", 200, 10, 20, 7)])]);
    let (deltas, _) = series.read("production", &next, &ramped());
    assert_eq!(shape(&deltas), [("new".into(), false, 7)]);
}

#[test]
fn cumulative_points_count_what_grew_from_a_baseline_and_survive_a_reset() {
    let series = Series::new(100);
    let at = |time, count| export(vec![histogram(CUMULATIVE, vec![("new", 200, 5, time, count)])]);
    let read = |request: &ExportMetricsServiceRequest| {
        let (deltas, tally) = series.read("production", request, &ramped());
        let counts = deltas.iter().map(|d| d.count).collect::<Vec<_>>();
        series.commit(&deltas);
        (counts, tally)
    };
    let (counts, tally) = read(&at(10, 1_000));
    assert_eq!((counts, tally.baseline), (vec![0], 1), "what it counted before is not this step's");
    assert_eq!(read(&at(20, 1_030)).0, [30]);
    assert_eq!(read(&at(20, 1_030)).1.duplicate, 1, "a retry");
    assert_eq!(read(&at(30, 12)).0, [12], "a smaller total: the process restarted");
    let restarted = export(vec![histogram(CUMULATIVE, vec![("new", 200, 99, 40, 20)])]);
    assert_eq!(read(&restarted).0, [20], "a new start time: counted from zero");
    // Two points of one series in one export count once each, in order.
    let both = export(vec![histogram(CUMULATIVE, vec![("new", 200, 99, 50, 25), ("new", 200, 99, 60, 31)])]);
    assert_eq!(read(&both).0, [5, 6]);
}

#[test]
fn only_the_ramps_metric_flag_and_monotonic_counts_are_read() {
    let series = Series::new(100);
    let other_name = Metric {
        name: "feature_flag.evaluation_requests_total".into(),
        ..histogram(DELTA, vec![("new", 200, 0, 1, 9)])
    };
    let gauge = Metric {
        name: METRIC.into(),
        data: Some(Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] })),
        ..Default::default()
    };
    let sum = |monotonic| Metric {
        name: METRIC.into(),
        data: Some(Data::Sum(Sum {
            aggregation_temporality: DELTA,
            is_monotonic: monotonic,
            data_points: vec![NumberDataPoint {
                attributes: vec![
                    text("feature_flag.key", "search"),
                    text("feature_flag.result.variant", "new"),
                    text("error.type", "timeout"),
                ],
                time_unix_nano: 3,
                value: Some(Number::AsInt(6)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut unramped = histogram(DELTA, vec![("new", 200, 0, 1, 9)]);
    if let Some(Data::Histogram(h)) = &mut unramped.data {
        h.data_points[0].attributes[0] = text("feature_flag.key", "other-flag");
    }
    let request = export(vec![other_name, gauge, sum(false), sum(true), unramped]);
    let (deltas, tally) = series.read("production", &request, &ramped());
    assert_eq!(shape(&deltas), [("new".into(), true, 6)], "error.type is an error");
    assert_eq!((tally.used, tally.ignored), (1, 4));
    assert_eq!(count(&request), 5);
}

#[test]
fn the_series_table_is_bounded() {
    let series = Series::new(2);
    let request =
        export(vec![histogram(DELTA, vec![("new", 200, 0, 1, 1), ("new", 500, 0, 1, 1), ("old", 200, 0, 1, 1)])]);
    let (deltas, tally) = series.read("production", &request, &ramped());
    assert_eq!((deltas.len(), tally.series_limit), (2, 1));
    series.commit(&deltas);
    assert_eq!(series.len(), 2);
}

/// A histogram point with explicit buckets (bounds in the metric's unit).
fn bucketed(temporality: i32, unit: &str, bounds: Vec<f64>, points: Vec<(u64, Vec<u64>)>) -> Metric {
    Metric {
        name: METRIC.into(),
        unit: unit.into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: temporality,
            data_points: points
                .into_iter()
                .map(|(time, bucket_counts)| HistogramDataPoint {
                    attributes: attributes("new", 200),
                    start_time_unix_nano: 1,
                    time_unix_nano: time,
                    count: bucket_counts.iter().sum(),
                    bucket_counts,
                    explicit_bounds: bounds.clone(),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

#[test]
fn histogram_buckets_carry_their_durations_on_the_ladder() {
    use crate::model::Latency;
    let series = Series::new(100);
    // Cumulative, in seconds: the first point is a baseline, the second
    // adds what grew in each bucket.
    let first = export(vec![bucketed(2, "s", vec![0.1, 0.3, 1.0], vec![(10, vec![5, 3, 1, 0])])]);
    let (deltas, _) = series.read("prod", &first, &ramped());
    assert!(deltas[0].latency.is_empty(), "a baseline adds nothing");
    series.commit(&deltas);
    let second = export(vec![bucketed(2, "s", vec![0.1, 0.3, 1.0], vec![(20, vec![8, 5, 4, 1])])]);
    let (deltas, _) = series.read("prod", &second, &ramped());
    let mut expected = Latency::default();
    expected.add(Latency::slot_of(100.0), 3);
    expected.add(Latency::slot_of(300.0), 2);
    expected.add(Latency::slot_of(1000.0), 3);
    expected.add(Latency::slot_of(f64::INFINITY), 1);
    assert_eq!((deltas[0].count, deltas[0].latency), (9, expected));
    assert_eq!(deltas[0].latency.slower_than(300), 4);
    // Delta, in milliseconds, a bound off the ladder: rounded up to 400 ms.
    let off = export(vec![bucketed(1, "ms", vec![350.0], vec![(30, vec![6, 2])])]);
    let fresh = Series::new(100);
    let (deltas, _) = fresh.read("prod", &off, &ramped());
    let mut expected = Latency::default();
    expected.add(Latency::slot_of(400.0), 6);
    expected.add(Latency::slot_of(f64::INFINITY), 2);
    assert_eq!(deltas[0].latency, expected);
    // Counts that do not add up to the point's count carry no durations.
    let mut broken = bucketed(1, "s", vec![0.1], vec![(40, vec![1, 1])]);
    if let Some(Data::Histogram(h)) = &mut broken.data {
        h.data_points[0].count = 5;
    }
    let broken = export(vec![broken]);
    let (deltas, _) = fresh.read("prod", &broken, &ramped());
    assert_eq!((deltas[0].count, deltas[0].latency.is_empty()), (5, true));
}
