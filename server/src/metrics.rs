//! Prometheus metrics: one registry, owned by the server and passed to the
//! parts that record into it (no globals, so tests can run servers side by
//! side). Labels are bounded: environments, reasons, routes and status
//! codes — never flag keys from requests or targeting keys.

use std::collections::HashMap;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use rampart_engine::Reason;

use crate::limits::OutcomeRefusal;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per environment, per reason (indexed by `Reason::index`), resolved
    /// once so the evaluation path only increments an atomic.
    evaluations: HashMap<String, Vec<IntCounter>>,
    pub http_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub config_version: IntGaugeVec,
    pub config_flags: IntGaugeVec,
    pub config_last_reload_ok: IntGaugeVec,
    pub config_flag_errors: IntGaugeVec,
    pub ramp_percent: GaugeVec,
    pub ramp_state: IntGaugeVec,
    pub ramp_transitions: IntCounterVec,
    pub outcomes: IntCounterVec,
    /// Outcome reports refused before they were acknowledged, by reason.
    pub outcomes_refused: IntCounterVec,
    /// Spans received over OTLP, by what became of them (`otlp::SpanFate`).
    pub otlp_spans: IntCounterVec,
    /// Metric data points received over OTLP, by what became of them.
    pub otlp_points: IntCounterVec,
    /// OpenFeature `track` events, by result: accepted (a conversion guard
    /// counts the event), ignored.
    pub conversions: IntCounterVec,
    /// Flag usage flushes and SDK usage reports.
    pub usage: IntCounterVec,
    /// Flags that look ready to remove, by reason (the last read).
    pub removable: IntGaugeVec,
    /// OTLP export requests, by signal and answer.
    pub otlp_exports: IntCounterVec,
    /// The OTLP dedupe window moved on: on time, or early because it was full.
    pub otlp_dedupe_rotations: IntCounterVec,
    /// Connections each listener may hold (`capacity`), holds, and refused.
    pub listener_capacity: IntGaugeVec,
    pub listener_connections: IntGaugeVec,
    pub listener_refused: IntCounterVec,
    /// Alertmanager alerts received, by what they did.
    pub alerts: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_outbox: IntGauge,
    pub store_up: IntGauge,
    pub replication_resyncs: IntCounterVec,
    pub ramp_leader: IntGaugeVec,
    pub ramp_fenced_writes: IntCounterVec,
    /// Inputs refused (or cut off) by a limit, by limit name.
    pub limit_rejections: IntCounterVec,
    /// On a relay: whether each environment's upstream stream is up, and
    /// for how long the served configuration has gone without it.
    relay_connected: IntGaugeVec,
    relay_staleness: GaugeVec,
    relay_cache_failures: IntCounter,
    relay_outcomes_forwarded: IntCounter,
    relay_outcomes_quarantined: IntCounter,
    relay_outcome_buffer: IntGauge,
    /// On an upstream: relay subscriptions accepted, by relay and environment.
    relay_subscriptions: IntCounterVec,
}

impl Metrics {
    pub fn new<'a>(environments: impl IntoIterator<Item = &'a str>) -> Metrics {
        let registry = Registry::new_custom(Some("rampart".into()), None).expect("valid prefix");
        let evaluations_vec = IntCounterVec::new(
            Opts::new("evaluations_total", "Flag evaluations, by environment and reason"),
            &["environment", "reason"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency, by listener, route and status")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["listener", "route", "status"],
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Flag file reloads, by environment and result (ok, unchanged, failed)"),
            &["environment", "result"],
        )
        .expect("valid metric");
        let config_version = IntGaugeVec::new(
            Opts::new("config_version", "Version of the flag configuration being served"),
            &["environment"],
        )
        .expect("valid metric");
        let config_flags =
            IntGaugeVec::new(Opts::new("config_flags", "Flags being served"), &["environment"]).expect("valid metric");
        let config_last_reload_ok = IntGaugeVec::new(
            Opts::new("config_last_reload_success", "1 when the last reload succeeded, 0 when the files are invalid"),
            &["environment"],
        )
        .expect("valid metric");
        let config_flag_errors = IntGaugeVec::new(
            Opts::new("config_flag_errors", "Flags in the files that cannot be used and answer PARSE_ERROR"),
            &["environment"],
        )
        .expect("valid metric");
        let ramp_percent = GaugeVec::new(
            Opts::new("ramp_percent", "Current exposure of each ramp's treatment, in percent"),
            &["environment", "ramp"],
        )
        .expect("valid metric");
        let ramp_state = IntGaugeVec::new(
            Opts::new("ramp_state", "1 for the state each ramp is in, 0 for the others"),
            &["environment", "ramp", "state"],
        )
        .expect("valid metric");
        let ramp_transitions = IntCounterVec::new(
            Opts::new("ramp_transitions_total", "Ramp transitions, by event and reason"),
            &["environment", "ramp", "event", "reason"],
        )
        .expect("valid metric");
        let outcomes = IntCounterVec::new(
            Opts::new("outcomes_total", "Outcome reports received for ramped flags, by result (ok, error, ignored)"),
            &["environment", "result"],
        )
        .expect("valid metric");
        let outcomes_refused = IntCounterVec::new(
            Opts::new(
                "outcomes_refused_total",
                "Outcome reports refused before they were acknowledged, by reason (docs/limits.md#outcome-reports)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in OutcomeRefusal::ALL {
            outcomes_refused.with_label_values(&[reason.as_str()]);
        }
        let otlp_spans = IntCounterVec::new(
            Opts::new(
                "otlp_spans_total",
                "Spans received over OTLP, by result: used as ramp evidence, or why not (docs/otlp.md)",
            ),
            &["environment", "result"],
        )
        .expect("valid metric");
        let otlp_points = IntCounterVec::new(
            Opts::new(
                "otlp_points_total",
                "Metric data points received over OTLP, by result: used, ignored, duplicate, baseline, series_limit",
            ),
            &["environment", "result"],
        )
        .expect("valid metric");
        let conversions = IntCounterVec::new(
            Opts::new("track_events_total", "OpenFeature track events, by result: accepted, ignored"),
            &["environment", "result"],
        )
        .expect("valid metric");
        let usage = IntCounterVec::new(
            Opts::new(
                "usage_events_total",
                "Flag usage: flushes to the store (event flush, result ok or failed) and SDK reports (event report, \
                 result accepted or ignored entries)",
            ),
            &["environment", "event", "result"],
        )
        .expect("valid metric");
        let removable = IntGaugeVec::new(
            Opts::new(
                "flags_ready_to_remove",
                "Flags that look ready to remove at the last reading, by reason: singleVariant, notEvaluated, \
                 rampCompleted",
            ),
            &["environment", "reason"],
        )
        .expect("valid metric");
        let otlp_exports = IntCounterVec::new(
            Opts::new(
                "otlp_exports_total",
                "OTLP export requests, by signal and result (accepted, partial, or why refused)",
            ),
            &["signal", "result"],
        )
        .expect("valid metric");
        let otlp_dedupe_rotations = IntCounterVec::new(
            Opts::new(
                "otlp_dedupe_rotations_total",
                "The OTLP span dedupe window moved on, by reason (window: on time; full: early, the window is shorter)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let listener_capacity = IntGaugeVec::new(
            Opts::new(
                "listener_connection_capacity",
                "Connections each listener may hold: its guaranteed share plus the shared descriptor budget \
                 (docs/limits.md#connections-and-streams)",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let listener_connections =
            IntGaugeVec::new(Opts::new("listener_connections", "Connections each listener holds now"), &["listener"])
                .expect("valid metric");
        let listener_refused = IntCounterVec::new(
            Opts::new(
                "listener_connections_refused_total",
                "Connections refused at once because the listener was full",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let alerts = IntCounterVec::new(
            Opts::new(
                "alerts_total",
                "Alertmanager alerts received (POST /admin/v1/alerts), by result: paused, rolled_back, unchanged, \
                 recorded (resolved), unmatched (no ramp named), too_many (notification refused)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new("webhook_deliveries_total", "Ramp webhook attempts, by result (delivered, failed, dropped)"),
            &["result"],
        )
        .expect("valid metric");
        let webhook_outbox =
            IntGauge::new("webhook_outbox_pending", "Ramp webhooks waiting in the outbox").expect("valid metric");
        let store_up =
            IntGauge::new("store_up", "1 while the store answers, 0 while it does not (writes fail with 503)")
                .expect("valid metric");
        let replication_resyncs = IntCounterVec::new(
            Opts::new(
                "replication_resyncs_total",
                "Full reads of an environment from the shared store after a missed change or reconnect",
            ),
            &["environment"],
        )
        .expect("valid metric");
        let ramp_leader = IntGaugeVec::new(
            Opts::new("ramp_leader", "1 when this replica holds the ramp's lease and drives it"),
            &["environment", "ramp"],
        )
        .expect("valid metric");
        let ramp_fenced_writes = IntCounterVec::new(
            Opts::new(
                "ramp_fenced_writes_total",
                "Ramp state writes rejected because this replica's lease token was stale",
            ),
            &["environment", "ramp"],
        )
        .expect("valid metric");
        let limit_rejections = IntCounterVec::new(
            Opts::new("limit_rejections_total", "Inputs refused or cut off by a limit (see docs/limits.md), by limit"),
            &["limit"],
        )
        .expect("valid metric");
        let relay_connected = IntGaugeVec::new(
            Opts::new("relay_upstream_connected", "On a relay: 1 while the environment's upstream stream is up"),
            &["environment"],
        )
        .expect("valid metric");
        let relay_staleness = GaugeVec::new(
            Opts::new(
                "relay_staleness_seconds",
                "On a relay: seconds since the upstream was last heard while it is away (0 while connected)",
            ),
            &["environment"],
        )
        .expect("valid metric");
        let relay_cache_failures =
            IntCounter::new("relay_cache_write_failures_total", "On a relay: cache writes that failed")
                .expect("valid metric");
        let relay_outcomes_quarantined = IntCounter::new(
            "relay_outcomes_quarantined_total",
            "On a relay: buffer files or lines that could not be read or were refused for good, moved aside \
             (outcomes/quarantine/) instead of blocking the buffer",
        )
        .expect("valid metric");
        let relay_outcomes_forwarded = IntCounter::new(
            "relay_outcomes_forwarded_total",
            "On a relay: aggregated outcome entries acknowledged by the upstream",
        )
        .expect("valid metric");
        let relay_outcome_buffer = IntGauge::new(
            "relay_outcome_buffer_bytes",
            "On a relay: bytes of accepted outcomes not yet acknowledged by the upstream",
        )
        .expect("valid metric");
        let relay_subscriptions = IntCounterVec::new(
            Opts::new("relay_subscriptions_total", "Relay subscriptions accepted, by relay token name and environment"),
            &["relay", "environment"],
        )
        .expect("valid metric");
        for rejection in crate::limits::Rejection::ALL
            .into_iter()
            .chain(rampart_engine::Limit::ALL.into_iter().map(crate::limits::Rejection::Engine))
        {
            limit_rejections.with_label_values(&[rejection.as_str()]);
        }
        let build = IntGauge::with_opts(
            Opts::new("build_info", "Build information").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build.set(1);
        for collector in [
            Box::new(evaluations_vec.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_version.clone()),
            Box::new(config_flags.clone()),
            Box::new(config_last_reload_ok.clone()),
            Box::new(config_flag_errors.clone()),
            Box::new(ramp_percent.clone()),
            Box::new(ramp_state.clone()),
            Box::new(ramp_transitions.clone()),
            Box::new(outcomes.clone()),
            Box::new(outcomes_refused.clone()),
            Box::new(otlp_spans.clone()),
            Box::new(otlp_points.clone()),
            Box::new(conversions.clone()),
            Box::new(usage.clone()),
            Box::new(removable.clone()),
            Box::new(otlp_exports.clone()),
            Box::new(otlp_dedupe_rotations.clone()),
            Box::new(listener_capacity.clone()),
            Box::new(listener_connections.clone()),
            Box::new(listener_refused.clone()),
            Box::new(alerts.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_outbox.clone()),
            Box::new(store_up.clone()),
            Box::new(replication_resyncs.clone()),
            Box::new(ramp_leader.clone()),
            Box::new(ramp_fenced_writes.clone()),
            Box::new(limit_rejections.clone()),
            Box::new(relay_connected.clone()),
            Box::new(relay_staleness.clone()),
            Box::new(relay_cache_failures.clone()),
            Box::new(relay_subscriptions.clone()),
            Box::new(relay_outcomes_forwarded.clone()),
            Box::new(relay_outcomes_quarantined.clone()),
            Box::new(relay_outcome_buffer.clone()),
            Box::new(build),
        ] {
            registry.register(collector).expect("metrics are registered once");
        }
        let evaluations = environments
            .into_iter()
            .map(|environment| {
                let counters =
                    Reason::ALL.iter().map(|r| evaluations_vec.with_label_values(&[environment, r.as_str()])).collect();
                (environment.to_owned(), counters)
            })
            .collect();
        Metrics {
            registry,
            evaluations,
            http_duration,
            config_reloads,
            config_version,
            config_flags,
            config_last_reload_ok,
            config_flag_errors,
            ramp_percent,
            ramp_state,
            ramp_transitions,
            outcomes,
            outcomes_refused,
            otlp_spans,
            otlp_points,
            conversions,
            usage,
            removable,
            otlp_exports,
            otlp_dedupe_rotations,
            listener_capacity,
            listener_connections,
            listener_refused,
            alerts,
            webhook_deliveries,
            webhook_outbox,
            store_up,
            replication_resyncs,
            ramp_leader,
            ramp_fenced_writes,
            limit_rejections,
            relay_connected,
            relay_staleness,
            relay_cache_failures,
            relay_subscriptions,
            relay_outcomes_forwarded,
            relay_outcomes_quarantined,
            relay_outcome_buffer,
        }
    }

    /// On a relay: one environment's link to its upstream.
    pub fn relay_upstream(&self, environment: &str, connected: bool, staleness_seconds: f64) {
        self.relay_connected.with_label_values(&[environment]).set(i64::from(connected));
        self.relay_staleness.with_label_values(&[environment]).set(staleness_seconds);
    }

    pub fn relay_outcomes_quarantined(&self) {
        self.relay_outcomes_quarantined.inc();
    }

    pub fn relay_outcomes_forwarded(&self, entries: u64) {
        self.relay_outcomes_forwarded.inc_by(entries);
    }

    pub fn relay_outcome_buffer(&self, bytes: u64) {
        self.relay_outcome_buffer.set(bytes as i64);
    }

    pub fn relay_cache_failure(&self) {
        self.relay_cache_failures.inc();
    }

    /// On an upstream: a relay subscribed to an environment.
    pub fn relay_subscribed(&self, relay: &str, environment: &str) {
        self.relay_subscriptions.with_label_values(&[relay, environment]).inc();
    }

    /// Counts an outcome report refused before it was acknowledged (and
    /// the limit it hit, if one did).
    pub fn refused_outcome(&self, reason: OutcomeRefusal, rejection: Option<crate::limits::Rejection>) {
        self.outcomes_refused.with_label_values(&[reason.as_str()]).inc();
        if let Some(rejection) = rejection {
            self.rejected(rejection);
        }
    }

    /// Counts an input refused by a limit.
    pub fn rejected(&self, rejection: crate::limits::Rejection) {
        self.rejected_many(rejection, 1);
    }

    /// Counts `n` inputs refused by a limit.
    pub fn rejected_many(&self, rejection: crate::limits::Rejection, n: u64) {
        if n > 0 {
            self.limit_rejections.with_label_values(&[rejection.as_str()]).inc_by(n);
        }
    }

    /// Counts the limits among a flag set's load errors.
    pub fn rejected_load(&self, errors: &[rampart_engine::LoadError]) {
        for limit in errors.iter().filter_map(|e| e.limit) {
            self.rejected(crate::limits::Rejection::Engine(limit));
        }
    }

    /// A ramp's current state and exposure.
    pub fn ramp(&self, environment: &str, ramp: &str, state: &str, percent: f64) {
        self.ramp_percent.with_label_values(&[environment, ramp]).set(percent);
        for name in crate::model::Status::NAMES {
            self.ramp_state.with_label_values(&[environment, ramp, name]).set(i64::from(name == state));
        }
    }

    pub fn evaluated(&self, environment: &str, reason: Reason) {
        if let Some(counters) = self.evaluations.get(environment) {
            counters[reason.index()].inc();
        }
    }

    /// A flush of flag usage to the store.
    pub fn usage_flushed(&self, environment: &str, result: &str) {
        self.usage.with_label_values(&[environment, "flush", result]).inc();
    }

    /// How many flags the last reading found ready to remove for `reason`.
    pub fn removable(&self, environment: &str, reason: &str, count: usize) {
        self.removable.with_label_values(&[environment, reason]).set(count as i64);
    }

    /// The configuration an environment now serves.
    pub fn serving(&self, environment: &str, snapshot: &crate::snapshot::Snapshot) {
        self.config_version.with_label_values(&[environment]).set(snapshot.version as i64);
        self.config_flags.with_label_values(&[environment]).set(snapshot.flags.len() as i64);
        self.config_flag_errors.with_label_values(&[environment]).set(snapshot.problems.len() as i64);
    }

    pub fn reloaded(&self, environment: &str, result: &str) {
        self.config_reloads.with_label_values(&[environment, result]).inc();
        self.config_last_reload_ok.with_label_values(&[environment]).set(i64::from(result != "failed"));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
