//! An OTLP trace export taken as ramp evidence, whichever transport
//! brought it (see `crate::otlp` for what counts).
//!
//! After the transport checked the key (a reporter key: spans come from
//! servers) and its rate, an export is read for the environment's ramped
//! flags, its spans checked against the dedupe window, summed into
//! outcome counts per flag and variant, and recorded like an outcome
//! report — all or nothing, durably, before the answer. Where the
//! source may not add that much to a young step yet
//! (`ramp::contribution`), the excess is cut off and reported to the
//! exporter as rejected spans (OTLP's partial success, which exporters do
//! not retry): honest traffic is sampled while a step is young, never
//! counted twice, and no export can bring more than the bound.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::Services;
use crate::model::Latency;
use crate::otlp::points;
use crate::otlp::spans::{self, Sample};
use crate::otlp::{ExportError, MAX_SPANS, SpanFate, Taken};
use crate::ramp::contribution::Excess;
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{Origin, Part, RecordError, Report};

/// Rounds of cutting an export down to what its source may add: one per
/// arm it refuses (an export rarely names more than a few ramped flags).
const MAX_ROUNDS: usize = 16;

/// What every OTLP export must pass before it is read: a reporter key
/// (spans come from servers; SDK keys are public) and the key's rate.
pub fn admit(services: &Services, environment: &str, origin: &Origin) -> Result<(), ExportError> {
    if origin.trust == crate::environment::Trust::Public {
        return Err(ExportError::PublicKey);
    }
    services.outcomes.admit(environment, &origin.source, services.clock.now_millis()).map_err(|refused| {
        refused.count(&services.metrics);
        ExportError::Refused(refused)
    })
}

/// Counts an export's spans for the environment's ramps.
pub async fn take_traces(
    services: &Services,
    environment: &str,
    origin: &Origin,
    request: &ExportTraceServiceRequest,
) -> Result<Taken, ExportError> {
    let spans = spans::count(request);
    if spans > MAX_SPANS {
        services.metrics.rejected(crate::limits::Rejection::OtlpSpans);
        return Err(ExportError::TooManySpans { spans, limit: MAX_SPANS });
    }
    let selections = services.ramps.span_selections(environment);
    let (samples, mut tally) = spans::read(request, &selections);
    let taken = count(services, environment, origin, &samples, &mut tally).await;
    for (fate, n) in tally.iter() {
        services.metrics.otlp_spans.with_label_values(&[environment, fate.as_str()]).inc_by(n);
    }
    taken
}

async fn count(
    services: &Services,
    environment: &str,
    origin: &Origin,
    samples: &[Sample<'_>],
    tally: &mut spans::Tally,
) -> Result<Taken, ExportError> {
    if samples.is_empty() {
        return Ok(Taken::default());
    }
    let now = services.clock.now_millis();
    let ids: Vec<spans::SpanId> = samples.iter().map(|sample| sample.id).collect();
    let (fresh, reservation) = services
        .otlp_dedupe
        .reserve(environment, &ids, now, &services.metrics)
        .map_err(|full| ExportError::DedupeFull { retry_after: full.retry_after })?;
    let duplicates = fresh.iter().filter(|new| !**new).count() as u64;
    tally.reclassify(SpanFate::Used, SpanFate::Duplicate, duplicates);
    let fresh = samples.iter().zip(&fresh).filter(|(_, new)| **new).map(|(sample, _)| sample);
    let reports = summed(fresh);
    if reports.is_empty() {
        return Ok(Taken::default()); // every span was a duplicate
    }
    let total: u64 = reports.iter().map(|r| r.ok + r.error).sum();
    let recorded = record_cut(services, environment, origin, reports, "spans", now).await?;
    match recorded {
        Recorded::Counted { rejected, not_arms, message } => {
            tally.reclassify(SpanFate::Used, SpanFate::NotAnArm, not_arms);
            tally.reclassify(SpanFate::Used, SpanFate::Rejected, rejected);
            reservation.commit();
            Ok(Taken { rejected, message })
        }
        Recorded::Nothing { message } => {
            // Every span is rejected; none is remembered.
            tally.reclassify(SpanFate::Used, SpanFate::Rejected, total);
            drop(reservation);
            Ok(Taken { rejected: total, message: Some(message) })
        }
    }
}

/// What became of a batch of outcome counts cut to what its source may add.
pub(crate) enum Recorded {
    /// Counted, less `rejected` outcomes (and `not_arms`, acknowledged
    /// and dropped).
    Counted { rejected: u64, not_arms: u64, message: Option<String> },
    /// Nothing could be counted now.
    Nothing { message: String },
}

/// Records `reports` like an outcome report; where the source may not add
/// that much to a step now, cuts the refused arm to its allowance and
/// tries again (at most [`MAX_ROUNDS`] times).
pub(crate) async fn record_cut(
    services: &Services,
    environment: &str,
    origin: &Origin,
    mut reports: Vec<Report>,
    what: &str,
    now: u64,
) -> Result<Recorded, ExportError> {
    let mut rejected = 0u64;
    let mut message = None;
    for _ in 0..MAX_ROUNDS {
        if reports.is_empty() {
            break; // all cut
        }
        services.outcomes.check_counts(origin.trust, &reports).map_err(|refused| {
            refused.count(&services.metrics);
            ExportError::Refused(refused)
        })?;
        let parts = [Part { second: now / 1000, reports: &reports }];
        match super::outcomes::take(services, environment, origin, &parts).await {
            Ok((_, _)) => {
                let not_arms = not_arms(services, environment, &reports);
                return Ok(Recorded::Counted { rejected, not_arms, message });
            }
            Err(RecordError::Refused(Refused::Excess { flag, variant, excess })) => {
                let cut = cut(&mut reports, &flag, variant.as_deref(), excess);
                if cut == 0 {
                    break;
                }
                rejected += cut;
                message = Some(format!(
                    "{rejected} {what} not counted: more than this reporter key may add to ramp evidence for \
                     '{flag}' now (docs/limits.md#outcome-reports)"
                ));
            }
            Err(RecordError::Refused(refused)) => return Err(ExportError::Refused(refused)),
            Err(RecordError::Store(error)) => return Err(ExportError::Store(error)),
        }
    }
    Ok(Recorded::Nothing {
        message: message.unwrap_or_else(|| format!("no {what} could be counted as ramp evidence now")),
    })
}

/// Counts an export's metric data points for the environment's ramps
/// (see `otlp::points`).
pub async fn take_metrics(
    services: &Services,
    environment: &str,
    origin: &Origin,
    request: &ExportMetricsServiceRequest,
) -> Result<Taken, ExportError> {
    let points = points::count(request);
    if points > MAX_SPANS {
        services.metrics.rejected(crate::limits::Rejection::OtlpSpans);
        return Err(ExportError::TooManyPoints { points, limit: MAX_SPANS });
    }
    let selections = services.ramps.span_selections(environment);
    let (deltas, tally) = services.otlp_series.read(environment, request, &selections);
    let count = |result: &str, n: u64| {
        services.metrics.otlp_points.with_label_values(&[environment, result]).inc_by(n);
    };
    for (result, n) in [
        ("used", tally.used),
        ("ignored", tally.ignored),
        ("duplicate", tally.duplicate),
        ("baseline", tally.baseline),
        ("series_limit", tally.series_limit),
    ] {
        if n > 0 {
            count(result, n);
        }
    }
    // Per flag, variant and latency slot (none: requests whose durations
    // the point did not say).
    let mut counts: BTreeMap<(&str, &str, Option<usize>), (u64, u64)> = BTreeMap::new();
    for delta in deltas.iter().filter(|delta| delta.count > 0) {
        let mut add = |slot: Option<usize>, n: u64| {
            let entry = counts.entry((delta.flag, delta.variant, slot)).or_default();
            if delta.failed {
                entry.1 += n;
            } else {
                entry.0 += n;
            }
        };
        for (slot, n) in delta.latency.slots() {
            add(Some(slot), n);
        }
        let untimed = delta.count.saturating_sub(delta.latency.total());
        if untimed > 0 {
            add(None, untimed);
        }
    }
    let reports: Vec<Report> = counts
        .into_iter()
        .map(|((flag, variant, slot), (ok, error))| Report {
            flag: flag.to_owned(),
            variant: variant.to_owned(),
            ok,
            error,
            targeting_key: None,
            duration_ms: slot.map(Latency::representative_millis),
        })
        .collect();
    if reports.is_empty() {
        services.otlp_series.commit(&deltas); // baselines
        return Ok(Taken::default());
    }
    let now = services.clock.now_millis();
    match record_cut(services, environment, origin, reports, "requests", now).await? {
        Recorded::Counted { rejected, message, .. } => {
            services.otlp_series.commit(&deltas);
            // OTLP counts rejected data points; requests were cut, not
            // points: the message says how many (the exporter must not retry).
            let _ = rejected;
            Ok(Taken { rejected: 0, message })
        }
        // Not remembered: a cumulative series' next point brings these
        // requests again (delayed, not lost); delta points' are dropped.
        Recorded::Nothing { message } => Ok(Taken { rejected: 0, message: Some(message) }),
    }
}

/// (flag, variant, context, latency slot).
type SampleKey<'a> = (&'a str, &'a str, Option<&'a str>, usize);

/// Samples summed into outcome counts per flag, variant, (for ramps
/// counting targeting keys) context and latency slot (a span's duration
/// on the ladder of `model::latency`, for latency guards).
fn summed<'a>(samples: impl Iterator<Item = &'a Sample<'a>>) -> Vec<Report> {
    let mut counts: BTreeMap<SampleKey<'a>, (u64, u64)> = BTreeMap::new();
    for sample in samples {
        let slot = Latency::slot_of(sample.duration_nanos as f64 / 1e6);
        let entry = counts.entry((sample.flag, sample.variant, sample.context, slot)).or_default();
        if sample.failed {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    counts
        .into_iter()
        .map(|((flag, variant, context, slot), (ok, error))| Report {
            flag: flag.to_owned(),
            variant: variant.to_owned(),
            ok,
            error,
            targeting_key: context.map(str::to_owned),
            duration_ms: Some(Latency::representative_millis(slot)),
        })
        .collect()
}

/// Cuts the refused arm down to what is allowed, keeping its error share;
/// returns how many outcomes were cut.
fn cut(reports: &mut Vec<Report>, flag: &str, variant: Option<&str>, excess: Excess) -> u64 {
    let before: u64 = reports.iter().map(|r| r.ok + r.error).sum();
    match excess {
        Excess::Source { allowed } | Excess::Client { allowed } => {
            let arm = |r: &Report| r.flag == flag && variant.is_none_or(|v| r.variant == v);
            let total: u64 = reports.iter().filter(|r| arm(r)).map(|r| r.ok + r.error).sum();
            if total > 0 {
                for report in reports.iter_mut().filter(|r| arm(r)) {
                    let (ok, error) = (report.ok, report.error);
                    // Each entry keeps its share of the allowance, rounded down.
                    let keep = ((ok + error) as u128 * allowed as u128 / total as u128) as u64;
                    let keep_errors = (error as u128 * keep as u128 / (ok + error).max(1) as u128) as u64;
                    report.error = keep_errors;
                    report.ok = keep - keep_errors;
                }
            }
        }
        // Which targeting key went over is not said: the flag's
        // per-context outcomes of this export are not counted.
        Excess::Context { .. } => reports.retain(|r| r.flag != flag || r.targeting_key.is_none()),
    }
    reports.retain(|r| r.ok + r.error > 0);
    before - reports.iter().map(|r| r.ok + r.error).sum::<u64>()
}

/// Outcomes of variants the ramp does not compare (acknowledged, not
/// counted).
fn not_arms(services: &Services, environment: &str, reports: &[Report]) -> u64 {
    reports
        .iter()
        .filter(|r| services.ramps.arm(environment, &r.flag, &r.variant).is_none())
        .map(|r| r.ok + r.error)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(variant: &str, ok: u64, error: u64) -> Report {
        Report { flag: "search".into(), variant: variant.into(), ok, error, targeting_key: None, duration_ms: None }
    }

    #[test]
    fn a_cut_keeps_the_allowance_and_the_error_share() {
        let mut reports = vec![report("new", 900, 100), report("old", 500, 0)];
        let cut = cut(&mut reports, "search", Some("new"), Excess::Source { allowed: 200 });
        assert_eq!(cut, 800);
        assert_eq!((reports[0].ok, reports[0].error), (180, 20), "10 % errors before and after");
        assert_eq!((reports[1].ok, reports[1].error), (500, 0), "the other arm is untouched");
        let cut = super::cut(&mut reports, "search", Some("old"), Excess::Source { allowed: 0 });
        assert_eq!(cut, 500);
        assert_eq!(reports.len(), 1, "an arm allowed nothing is left out");
    }

    #[test]
    fn a_context_excess_leaves_out_the_flags_per_context_outcomes() {
        let mut reports = vec![
            Report { targeting_key: Some("u1".into()), ..report("new", 1, 0) },
            Report { targeting_key: Some("u2".into()), ..report("new", 0, 1) },
            Report { flag: "other".into(), targeting_key: Some("u1".into()), ..report("new", 1, 0) },
        ];
        assert_eq!(cut(&mut reports, "search", None, Excess::Context { allowed: 0 }), 2);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].flag, "other");
    }

    #[test]
    fn samples_sum_per_flag_variant_and_context() {
        let id = spans::SpanId { trace: [1; 16], span: [1; 8] };
        let sample =
            |variant, failed, context| Sample { id, flag: "search", variant, failed, context, duration_nanos: 0 };
        let samples = [
            sample("new", false, None),
            sample("new", true, None),
            sample("old", false, None),
            sample("new", false, Some("u1")),
        ];
        let reports = summed(samples.iter());
        let shape: Vec<(&str, u64, u64, Option<&str>)> =
            reports.iter().map(|r| (r.variant.as_str(), r.ok, r.error, r.targeting_key.as_deref())).collect();
        assert_eq!(shape, [("new", 1, 1, None), ("new", 1, 0, Some("u1")), ("old", 1, 0, None)]);
    }
}
