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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::controller::Controller;
use super::outcome_gate::{OutcomeGate, Refused};
use crate::metrics::Metrics;
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
}

/// What is wrong with a batch's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("at most {MAX_ENTRIES} outcome entries per batch")]
    TooManyEntries,
    #[error("outcomes[{0}]: flag and variant are required")]
    Unnamed(usize),
}

/// Checks a batch's shape; the error names the offending entry.
pub fn check(reports: &[Report]) -> Result<(), BatchError> {
    if reports.len() > MAX_ENTRIES {
        return Err(BatchError::TooManyEntries);
    }
    match reports.iter().position(|report| report.flag.is_empty() || report.variant.is_empty()) {
        Some(index) => Err(BatchError::Unnamed(index)),
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

/// Records a checked batch durably, once its counts are plausible for the
/// ramps they feed (see [`OutcomeGate`]); returns (accepted, ignored)
/// entries.
pub async fn record(
    store: &dyn Store,
    ramps: &Controller,
    gate: &OutcomeGate,
    metrics: &Metrics,
    environment: &str,
    reports: &[Report],
    now: u64,
) -> Result<(usize, usize), RecordError> {
    let second = now / 1000;
    let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    let mut contexts = Vec::new();
    let mut ignored = 0;
    for report in reports {
        if !ramps.counts(environment, &report.flag, &report.variant) {
            ignored += 1;
            continue;
        }
        let total = counts.entry((&report.flag, &report.variant)).or_default();
        total.0 += report.ok;
        total.1 += report.error;
        if let Some(key) = &report.targeting_key {
            // The key itself is not stored: a keyed hash tells contexts apart.
            contexts.push(ContextOutcome {
                flag: report.flag.clone(),
                variant: report.variant.clone(),
                second,
                context: gate.context_id(key),
                error: report.error > 0,
            });
        }
    }
    let (ok, errors) = counts.values().fold((0, 0), |(a, b), (ok, error)| (a + ok, b + error));
    let mut per_flag: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for ((flag, _), (ok, error)) in &counts {
        *per_flag.entry(flag).or_default() += ok + error;
    }
    if let Err(refused) = gate.plausible(environment, &per_flag, second) {
        metrics.rejected(refused.rejection());
        return Err(RecordError::Refused(refused));
    }
    let accepted = reports.len() - ignored;
    if accepted > 0 {
        let counts = counts
            .into_iter()
            .map(|((flag, variant), (ok, error))| OutcomeCount {
                flag: flag.to_owned(),
                variant: variant.to_owned(),
                second,
                ok,
                error,
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

/// Takes a checked batch from a client: records it here, or on a relay
/// appends it to the buffer forwarded upstream (where the ramps are).
pub async fn take(
    services: &crate::services::Services,
    environment: &str,
    reports: &[Report],
) -> Result<(usize, usize), RecordError> {
    let now = services.clock.now_millis();
    if let Some(relay) = &services.relay {
        let forwarder = relay.forwarder.clone();
        let (environment, reports) = (environment.to_owned(), reports.to_vec());
        let taken = tokio::task::spawn_blocking(move || forwarder.accept(&environment, &reports, now))
            .await
            .map_err(|e| StoreError::unavailable("the relay's outcome buffer", e))?;
        return match taken {
            Ok(count) => Ok((count, 0)),
            Err(error @ crate::relay::ForwardError::Full(_)) => {
                services.metrics.rejected(crate::limits::Rejection::RelayOutcomeBuffer);
                Err(StoreError::unavailable("the relay's outcome buffer", error).into())
            }
            Err(error) => Err(StoreError::unavailable("the relay's outcome buffer", error).into()),
        };
    }
    record(&*services.store, &services.ramps, &services.outcomes, &services.metrics, environment, reports, now).await
}
