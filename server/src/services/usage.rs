//! Flag usage: evaluations counted on the hot path (`environment::usage`)
//! flushed to the store once a minute, read back merged with what this
//! replica has not flushed yet, in-process evaluations reported by SDKs,
//! and the flags that are ready to remove.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Services;
use crate::environment::Environment;
use crate::store::StoreError;
use crate::store::usage::{FlagUsage, UsageSource};

/// How often counts go to the store.
pub const FLUSH: Duration = Duration::from_secs(60);
/// Most entries in one SDK report.
pub const MAX_REPORTED: usize = 1_000;
/// Most evaluations one report entry may claim (a minute of a busy process).
pub const MAX_REPORTED_COUNT: u64 = 100_000_000;
/// The longest "for N days" a question about usage may ask (the days kept).
pub const MAX_DAYS: u64 = 30;

/// Flushes every environment's counts every [`FLUSH`], and once more at shutdown.
pub async fn run(services: Services) {
    let mut every = tokio::time::interval(FLUSH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = services.shutdown.cancelled() => {
                flush(&services).await;
                return;
            }
            _ = every.tick() => flush(&services).await,
        }
    }
}

/// Writes what was counted; what the store refuses is kept for the next time.
pub async fn flush(services: &Services) {
    let now = services.clock.now_millis();
    for environment in services.environments.iter() {
        let _flushing = environment.usage.flushing.write().await;
        let counts = environment.usage.take();
        if counts.is_empty() {
            continue;
        }
        match services.store.record_usage(&environment.name, now, counts.clone()).await {
            Ok(()) => services.metrics.usage_flushed(&environment.name, "ok"),
            Err(error) => {
                tracing::warn!(environment = %environment.name, %error, "cannot store flag usage; kept for the next flush");
                services.metrics.usage_flushed(&environment.name, "failed");
                environment.usage.put_back(counts);
            }
        }
    }
}

/// Stored usage with this replica's unflushed counts added: one flag, or
/// every flag with any.
pub async fn read(
    services: &Services,
    environment: &Environment,
    flag: Option<&str>,
) -> Result<BTreeMap<String, FlagUsage>, StoreError> {
    let now = services.clock.now_millis();
    let _consistent = environment.usage.flushing.read().await;
    let mut all: BTreeMap<String, FlagUsage> = services
        .store
        .usage(&environment.name, flag, now)
        .await?
        .into_iter()
        .map(|usage| (usage.flag.clone(), usage))
        .collect();
    for count in environment.usage.pending(flag) {
        let usage = all
            .entry(count.flag.clone())
            .or_insert_with(|| FlagUsage { flag: count.flag.clone(), ..FlagUsage::default() });
        usage.add(&count, now);
    }
    Ok(all)
}

/// Why a flag looks ready to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Removable {
    /// Every evaluation of the last `days` days answered one variant.
    SingleVariant { variant: String },
    /// No evaluation counted in the last `days` days (none at all when `last` is absent).
    NotEvaluated { last: Option<u64> },
    /// Its ramp completed: the treatment serves everyone through the
    /// ramp's split, which the flag still carries until the treatment is
    /// made its default and the ramp file removed.
    RampCompleted { ramp: String },
}

/// A flag that looks ready to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub flag: String,
    pub reason: Removable,
}

/// The flags of `environment` that look ready to remove at `days` (1 to
/// [`MAX_DAYS`]); a flag an active ramp drives is never one.
pub async fn ready_to_remove(
    services: &Services,
    environment: &Environment,
    days: u64,
) -> Result<Vec<Candidate>, StoreError> {
    let days = days.clamp(1, MAX_DAYS);
    let now = services.clock.now_millis();
    let usage = read(services, environment, None).await?;
    let mut ramps: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for entry in services.ramps.entries().into_iter().filter(|e| e.environment == environment.name) {
        let view = services.ramps.glance(&entry).await;
        let completed = matches!(view.run.status, crate::model::Status::Completed);
        if completed || view.run.is_active() || !view.run.status.is_terminal() {
            ramps.insert(view.run.flag.clone(), (view.name.clone(), completed));
        }
    }
    let snapshot = environment.snapshot();
    let mut out = Vec::new();
    for flag in snapshot.flags.iter() {
        let key = flag.key();
        let reason = match (ramps.get(key), usage.get(key)) {
            (Some((ramp, true)), _) => Some(Removable::RampCompleted { ramp: ramp.clone() }),
            (Some((_, false)), _) => None,
            (None, None) => Some(Removable::NotEvaluated { last: None }),
            (None, Some(usage)) if usage.idle_days(now) >= days => {
                Some(Removable::NotEvaluated { last: Some(usage.last) })
            }
            (None, Some(usage)) => single_variant(usage, now, days).map(|variant| Removable::SingleVariant { variant }),
        };
        if let Some(reason) = reason {
            out.push(Candidate { flag: key.to_owned(), reason });
        }
    }
    for reason in ["singleVariant", "notEvaluated", "rampCompleted"] {
        let count = out.iter().filter(|c| c.reason.name() == reason).count();
        services.metrics.removable(&environment.name, reason, count);
    }
    Ok(out)
}

impl Removable {
    /// The reason's name in the API (`singleVariant`, `notEvaluated`, `rampCompleted`).
    pub fn name(&self) -> &'static str {
        match self {
            Removable::SingleVariant { .. } => "singleVariant",
            Removable::NotEvaluated { .. } => "notEvaluated",
            Removable::RampCompleted { .. } => "rampCompleted",
        }
    }
}

/// The one variant every evaluation of the last `days` days answered, if
/// there is exactly one (and the flag was evaluated before those days:
/// a flag younger than the question is no candidate).
fn single_variant(usage: &FlagUsage, now: u64, days: u64) -> Option<String> {
    let day = now / 86_400_000;
    let mut variants = std::collections::BTreeSet::new();
    let mut oldest = u64::MAX;
    for (name, count) in &usage.periods {
        let Some(rest) = name.strip_prefix('d') else { continue };
        let mut parts = rest.splitn(3, '|');
        let (Some(index), Some(_source), Some(variant)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Ok(index) = index.parse::<u64>() else { continue };
        oldest = oldest.min(index);
        if index + days > day && *count > 0 {
            variants.insert(variant.to_owned());
        }
    }
    if oldest + days > day || variants.len() != 1 {
        return None;
    }
    variants.into_iter().next()
}

/// One entry of an SDK's report of its own (in-process) evaluations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    pub flag: String,
    /// Absent: no variant (a code default).
    pub variant: Option<String>,
    pub count: u64,
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportResult {
    pub accepted: usize,
    /// Entries of unknown flags or variants, or of no evaluations.
    pub ignored: usize,
}

/// Why a report is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("a report holds at most {MAX_REPORTED} entries; this one has {0}")]
    TooMany(usize),
    #[error("an entry claims {0} evaluations; at most {MAX_REPORTED_COUNT} per entry")]
    CountTooLarge(u64),
}

/// Counts an SDK's report (`POST /v1/usage`, `rampart.v1` `ReportUsage`):
/// only flags and variants the environment has (a report cannot grow the
/// usage of flags that do not exist), kept apart from the server's own
/// counts (SDK keys are public); `rampart_usage_events_total` says what
/// became of each entry.
pub fn report(
    metrics: &crate::metrics::Metrics,
    environment: &Environment,
    entries: &[Reported],
    now: u64,
) -> Result<ReportResult, ReportError> {
    let counter = |result: &str, n: usize| {
        metrics.usage.with_label_values(&[&environment.name, "report", result]).inc_by(n as u64);
    };
    let refusal = if entries.len() > MAX_REPORTED {
        Some(ReportError::TooMany(entries.len()))
    } else {
        entries.iter().find(|e| e.count > MAX_REPORTED_COUNT).map(|e| ReportError::CountTooLarge(e.count))
    };
    if let Some(refusal) = refusal {
        counter("refused", 1);
        return Err(refusal);
    }
    let snapshot = environment.snapshot();
    let mut accepted = 0;
    for entry in entries {
        let Some(flag) = snapshot.flags.get(&entry.flag) else { continue };
        let known = entry.variant.as_deref().is_none_or(|v| flag.variants().any(|(name, _)| name == v));
        if known && entry.count > 0 {
            environment.usage.count(UsageSource::Sdk, &entry.flag, entry.variant.as_deref(), entry.count, now);
            accepted += 1;
        }
    }
    counter("accepted", accepted);
    counter("ignored", entries.len() - accepted);
    Ok(ReportResult { accepted, ignored: entries.len() - accepted })
}

/// Counts the stored periods as people read them: per source, variant →
/// evaluations, over the last day and the last thirty days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub flag: String,
    /// RFC 3339, or absent when never counted.
    pub last_evaluated: Option<String>,
    pub last_24h: BTreeMap<&'static str, BTreeMap<String, u64>>,
    pub last_30d: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl Summary {
    pub fn of(flag: &str, usage: Option<&FlagUsage>, now: u64) -> Summary {
        let group = |counts: BTreeMap<(UsageSource, String), u64>| {
            let mut out: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
            for ((source, variant), count) in counts {
                let name = if variant.is_empty() { "(no variant)".to_owned() } else { variant };
                *out.entry(source.as_str()).or_default().entry(name).or_default() += count;
            }
            out
        };
        match usage {
            None => Summary { flag: flag.to_owned(), ..Summary::default() },
            Some(usage) => Summary {
                flag: flag.to_owned(),
                last_evaluated: (usage.last > 0).then(|| crate::time::rfc3339(usage.last)),
                last_24h: group(usage.last_day(now)),
                last_30d: group(usage.last_month(now)),
            },
        }
    }
}
