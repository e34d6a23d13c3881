//! Outcome reports: the built-in metric source of ramps, shared by
//! `POST /v1/outcomes` and the `rampart.v1` `ReportOutcomes` call.
//!
//! SDKs report how requests served with each variant of a flag went.
//! Counts land in one-second buckets by arrival time and are committed to
//! the store before the report is acknowledged, so an acknowledged batch is
//! never lost, and the controller reads only buckets older than its
//! watermark, so a late batch never makes a closed bucket look clean.
//! Reports for flags without an active ramp, and for variants other than
//! its treatment and control, are acknowledged and dropped (counted as
//! `ignored`), so reports cannot grow the store without bound.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::contribution::{Share, Source};
use super::controller::Controller;
use super::outcome_gate::{OutcomeGate, Refused};
use crate::environment::Trust;
use crate::metrics::Metrics;
use crate::model::Latency;
use crate::store::{ContextOutcome, OutcomeCount, Store, StoreError};

/// Most entries in one batch.
pub const MAX_ENTRIES: usize = 10_000;

/// One entry of a batch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Report {
    pub flag: String,
    pub variant: String,
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub error: u64,
    /// Set for per-context reports (ramps with `unit: context`).
    pub targeting_key: Option<String>,
    /// How long each of this entry's outcomes took, in milliseconds, for
    /// latency guards (`spec.latency`); counted on the ladder of
    /// `model::latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// What is wrong with a batch's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("at most {MAX_ENTRIES} outcome entries per batch")]
    TooManyEntries,
    #[error("outcomes[{0}]: flag and variant are required")]
    Unnamed(usize),
    #[error("outcomes[{0}]: durationMs must be a number of milliseconds, 0 or more")]
    Duration(usize),
}

/// Checks a batch's shape; the error names the offending entry.
pub fn check(reports: &[Report]) -> Result<(), BatchError> {
    if reports.len() > MAX_ENTRIES {
        return Err(BatchError::TooManyEntries);
    }
    if let Some(index) = reports.iter().position(|report| report.flag.is_empty() || report.variant.is_empty()) {
        return Err(BatchError::Unnamed(index));
    }
    match reports.iter().position(|report| report.duration_ms.is_some_and(|d| !(d.is_finite() && d >= 0.0))) {
        Some(index) => Err(BatchError::Duration(index)),
        None => Ok(()),
    }
}

/// Why a batch was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Refused(Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who sent a batch: how far its credential is trusted, and the source
/// its contribution is bounded by.
#[derive(Debug, Clone)]
pub struct Origin {
    pub trust: Trust,
    pub source: Source,
}

impl Origin {
    /// A direct report: a reporter key is its own source; with a public
    /// SDK key the client's address is (everyone holds the key).
    pub fn of(trust: Trust, key: Option<&str>, peer: Option<std::net::IpAddr>) -> Origin {
        let source = match (trust, peer, key) {
            (Trust::Public, Some(address), _) => Source::Client(address),
            (_, _, Some(key)) => Source::Key(crate::config::KeyDigest::of(key)),
            (_, _, None) => Source::Open,
        };
        Origin { trust, source }
    }
}

/// The part of a batch a source sent in one second of its own: a direct
/// report is one part in the second it arrives; a relay forwards the
/// seconds it accepted outcomes in.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub second: u64,
    pub reports: &'a [Report],
}

/// Records a checked batch durably, once what it adds is within the
/// bounds of its source and targeting keys (see
/// [`super::contribution`]); nothing is counted when any part is
/// refused. Outcomes land in the second they arrive. Returns (accepted,
/// ignored) entries.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    store: &dyn Store,
    ramps: &Controller,
    gate: &OutcomeGate,
    metrics: &Metrics,
    environment: &str,
    origin: &Origin,
    parts: &[Part<'_>],
    now: u64,
) -> Result<(usize, usize), RecordError> {
    let second = now / 1000;
    // Until the commit lands (or the report is refused), this second is not
    // read as closed: registered before the first await.
    let _writing = ramps.writing(environment, second);
    let mut counts: BTreeMap<(&str, &str), (u64, u64, Latency)> = BTreeMap::new();
    let mut per_context: HashMap<(&str, u64), u64> = HashMap::new();
    let mut contexts = Vec::new();
    let mut groups = Vec::with_capacity(parts.len());
    let (mut accepted, mut ignored) = (0, 0);
    for part in parts {
        let mut shares: BTreeMap<(&str, &str), Share<'_>> = BTreeMap::new();
        for report in part.reports {
            let Some(arm) = ramps.arm(environment, &report.flag, &report.variant) else {
                ignored += 1;
                continue;
            };
            accepted += 1;
            let count = report.ok.saturating_add(report.error);
            let share = shares.entry((&report.flag, &report.variant)).or_insert(Share {
                flag: &report.flag,
                variant: &report.variant,
                arm,
                count: 0,
            });
            share.count = share.count.saturating_add(count);
            let total = counts.entry((&report.flag, &report.variant)).or_default();
            total.0 = total.0.saturating_add(report.ok);
            total.1 = total.1.saturating_add(report.error);
            if let Some(duration) = report.duration_ms {
                total.2.add(Latency::slot_of(duration), count);
            }
            if let Some(key) = &report.targeting_key {
                // The key itself is not stored: a keyed hash tells contexts apart.
                let context = gate.context_id(key);
                *per_context.entry((&report.flag, context)).or_default() += count;
                contexts.push(ContextOutcome {
                    flag: report.flag.clone(),
                    variant: report.variant.clone(),
                    second,
                    context,
                    error: report.error > 0,
                });
            }
        }
        groups.push((part.second, shares.into_values().collect::<Vec<_>>()));
    }
    let refused = gate
        .contributions
        .admit(environment, &origin.source, &groups, now)
        .and_then(|()| gate.contributions.admit_contexts(environment, &per_context, now))
        .map_err(|(flag, variant, excess)| Refused::Excess { flag, variant, excess });
    if let Err(refused) = refused {
        if let Refused::Excess { flag, .. } = &refused {
            ramps.note_refused(environment, flag, refused.reason().as_str());
        }
        refused.count(metrics);
        return Err(RecordError::Refused(refused));
    }
    let (ok, errors) = counts.values().fold((0, 0), |(a, b), (ok, error, _)| (a + ok, b + error));
    if accepted > 0 {
        let counts = counts
            .into_iter()
            .map(|((flag, variant), (ok, error, latency))| OutcomeCount {
                flag: flag.to_owned(),
                variant: variant.to_owned(),
                second,
                ok,
                error,
                latency,
            })
            .collect();
        store.record_outcomes(environment, counts, contexts).await?;
    }
    let metric = |result: &str, n: u64| metrics.outcomes.with_label_values(&[environment, result]).inc_by(n);
    metric("ok", ok);
    metric("error", errors);
    metric("ignored", ignored as u64);
    Ok((accepted, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(duration_ms: Option<f64>) -> Report {
        Report { flag: "f".into(), variant: "on".into(), ok: 1, error: 0, targeting_key: None, duration_ms }
    }

    #[test]
    fn a_duration_is_a_number_of_milliseconds_zero_or_more() {
        assert_eq!(check(&[report(None), report(Some(0.0)), report(Some(250.5))]), Ok(()));
        assert_eq!(check(&[report(None), report(Some(-1.0))]), Err(BatchError::Duration(1)));
        assert_eq!(check(&[report(Some(f64::INFINITY))]), Err(BatchError::Duration(0)));
        let parsed: Report =
            serde_json::from_str(r#"{"flag":"f","variant":"on","ok":3,"durationMs":120}"#).expect("durationMs");
        assert_eq!(parsed.duration_ms, Some(120.0));
    }
}
