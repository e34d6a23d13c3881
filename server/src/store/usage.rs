//! Flag usage as stored: evaluations per source and variant by hour (the
//! last [`HOURS_KEPT`] hours) and by day (the last [`DAYS_KEPT`] days),
//! and when the flag was last evaluated — what "evaluations in the last
//! 24 hours / 30 days", "last evaluated" and "ready to remove" are read
//! from.
//!
//! Budget: a flag's record holds at most (`HOURS_KEPT` + `DAYS_KEPT`) ×
//! its variants × 3 sources counters; periods are pruned whenever the
//! flag is counted again, and ignored on reading once out of the window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Hours kept (a day and the hour under way).
pub const HOURS_KEPT: u64 = 25;
/// Days kept (thirty and the day under way).
pub const DAYS_KEPT: u64 = 31;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Where evaluations were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UsageSource {
    /// One flag evaluated by the server (OFREP, flagd gRPC).
    Evaluated,
    /// Every flag answered at once (OFREP bulk, flagd `ResolveAll`): a
    /// client fetched the value, it may never have used it.
    Bulk,
    /// Reported by an SDK that evaluates in process (an SDK key's report:
    /// SDK keys are public, so these are shown apart from the server's own).
    Sdk,
}

impl UsageSource {
    pub const ALL: [UsageSource; 3] = [UsageSource::Evaluated, UsageSource::Bulk, UsageSource::Sdk];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Evaluated => "evaluated",
            UsageSource::Bulk => "bulk",
            UsageSource::Sdk => "sdk",
        }
    }

    fn parse(text: &str) -> Option<UsageSource> {
        UsageSource::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Evaluations of one flag variant from one source, to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub flag: String,
    pub source: UsageSource,
    /// `""`: no variant (a code default or an error).
    pub variant: String,
    pub count: u64,
    /// Unix milliseconds of the last of them.
    pub last: u64,
}

/// The stored periods of one flag: field → evaluations, a field being
/// `h<unix hour>|<source>|<variant>` or `d<unix day>|<source>|<variant>`
/// (the same names in every store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagUsage {
    pub flag: String,
    /// Unix milliseconds of the last evaluation counted.
    pub last: u64,
    pub periods: BTreeMap<String, u64>,
}

/// A field's name for an hour or day.
pub fn field(period: char, index: u64, source: UsageSource, variant: &str) -> String {
    format!("{period}{index}|{}|{variant}", source.as_str())
}

/// The two fields a count at `at` adds to: its hour's and its day's.
pub fn fields_of(count: &UsageCount, at: u64) -> [String; 2] {
    [field('h', at / HOUR_MS, count.source, &count.variant), field('d', at / DAY_MS, count.source, &count.variant)]
}

/// Whether a field is outside the kept window at `now`.
pub fn expired(name: &str, now: u64) -> bool {
    match parse(name) {
        Some(('h', index, _, _)) => index + HOURS_KEPT <= now / HOUR_MS,
        Some(('d', index, _, _)) => index + DAYS_KEPT <= now / DAY_MS,
        _ => true,
    }
}

fn parse(name: &str) -> Option<(char, u64, UsageSource, &str)> {
    let period = name.chars().next()?;
    let mut parts = name[1..].splitn(3, '|');
    let index = parts.next()?.parse().ok()?;
    let source = UsageSource::parse(parts.next()?)?;
    Some((period, index, source, parts.next()?))
}

impl FlagUsage {
    /// Adds `count` (at `at`) and drops what has left the window.
    pub fn add(&mut self, count: &UsageCount, at: u64) {
        for name in fields_of(count, at) {
            let value = self.periods.entry(name).or_default();
            *value = value.saturating_add(count.count);
        }
        self.last = self.last.max(count.last);
        self.periods.retain(|name, _| !expired(name, at));
    }

    /// Evaluations per (source, variant) over the last 24 hours (whole
    /// hours, and the hour under way) at `now`.
    pub fn last_day(&self, now: u64) -> BTreeMap<(UsageSource, String), u64> {
        self.sum('h', now / HOUR_MS, 24)
    }

    /// Evaluations per (source, variant) over the last 30 days (and the day
    /// under way).
    pub fn last_month(&self, now: u64) -> BTreeMap<(UsageSource, String), u64> {
        self.sum('d', now / DAY_MS, 30)
    }

    fn sum(&self, period: char, current: u64, back: u64) -> BTreeMap<(UsageSource, String), u64> {
        let mut out = BTreeMap::new();
        for (name, count) in &self.periods {
            if let Some((p, index, source, variant)) = parse(name)
                && p == period
                && index + back >= current
                && index <= current
            {
                *out.entry((source, variant.to_owned())).or_default() += count;
            }
        }
        out
    }

    /// Days since the last evaluation (server-counted or reported) at `now`.
    pub fn idle_days(&self, now: u64) -> u64 {
        now.saturating_sub(self.last) / DAY_MS
    }

    /// Adds another replica's (or a pending, unflushed) record.
    pub fn merge(&mut self, other: &FlagUsage) {
        for (name, count) in &other.periods {
            *self.periods.entry(name.clone()).or_default() += count;
        }
        self.last = self.last.max(other.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(variant: &str, n: u64, last: u64) -> UsageCount {
        UsageCount { flag: "f".into(), source: UsageSource::Evaluated, variant: variant.into(), count: n, last }
    }

    #[test]
    fn a_day_and_a_month_are_read_from_hours_and_days() {
        let day0 = 20_000 * DAY_MS;
        let mut usage = FlagUsage { flag: "f".into(), ..FlagUsage::default() };
        usage.add(&count("on", 5, day0), day0);
        usage.add(&count("on", 7, day0 + 3 * DAY_MS), day0 + 3 * DAY_MS);
        usage.add(&count("off", 1, day0 + 3 * DAY_MS + HOUR_MS), day0 + 3 * DAY_MS + HOUR_MS);
        let now = day0 + 3 * DAY_MS + 2 * HOUR_MS;
        let on = (UsageSource::Evaluated, "on".to_owned());
        let off = (UsageSource::Evaluated, "off".to_owned());
        assert_eq!(usage.last_day(now).get(&on), Some(&7));
        assert_eq!(usage.last_day(now).get(&off), Some(&1));
        assert_eq!(usage.last_month(now).get(&on), Some(&12));
        assert_eq!(usage.idle_days(now + 10 * DAY_MS), 10);
        // Thirty-one days on, the first day has left the window and the record.
        usage.add(&count("on", 1, day0 + 34 * DAY_MS), day0 + 34 * DAY_MS);
        assert!(!usage.periods.keys().any(|name| name.starts_with(&format!("d{}|", day0 / DAY_MS))));
        assert!(usage.periods.len() <= (HOURS_KEPT + DAYS_KEPT) as usize * 2, "bounded: {:?}", usage.periods);
    }
}
