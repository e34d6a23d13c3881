//! When a ramp may *advance* (`windows` in docs/ramps.md): weekly allow rules
//! and blackout dates in a named time zone. Rollback ignores windows.
//! Holds are measured in UTC milliseconds elsewhere, so a DST change never
//! shortens or lengthens one; only the wall-clock window edges move with it.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindows {
    timezone: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    blackout: Vec<String>,
}

/// Parsed windows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Windows {
    pub timezone: String,
    #[serde(skip)]
    allow: Vec<Rule>,
    #[serde(skip)]
    blackout: Vec<(Date, Date)>,
    /// The rules as written, for display.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight, `start < end ≤ 1440`.
    start: u16,
    end: u16,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// What is wrong with a `windows:` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("unknown day '{0}' (use Mon … Sun)")]
    UnknownDay(String),
    #[error("'{0}' is not HH:MM")]
    NotHoursMinutes(String),
    #[error("'{0}' is not a time of day")]
    NotATimeOfDay(String),
    #[error("'{0}': expected e.g. \"Mon-Thu 09:00-16:00\"")]
    NotARule(String),
    #[error("'{0}': expected a time range like 09:00-16:00")]
    NotARange(String),
    #[error("'{0}': the window closes before it opens (overnight windows: write two rules)")]
    ClosesBeforeItOpens(String),
    #[error("'{text}' is not a date (YYYY-MM-DD): {reason}")]
    NotADate { text: String, reason: String },
    #[error("blackout '{0}' ends before it starts")]
    BlackoutBackwards(String),
    #[error("unknown time zone '{zone}': {reason}")]
    UnknownTimeZone { zone: String, reason: String },
    #[error("the windows never open")]
    NeverOpen,
}

fn day(name: &str) -> Result<usize, WindowError> {
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(name)).ok_or_else(|| WindowError::UnknownDay(name.to_owned()))
}

fn minutes(text: &str) -> Result<u16, WindowError> {
    let not_hh_mm = || WindowError::NotHoursMinutes(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(not_hh_mm)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| not_hh_mm())?, m.parse().map_err(|_| not_hh_mm())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(WindowError::NotATimeOfDay(text.to_owned()));
    }
    Ok(h * 60 + m)
}

fn rule(text: &str) -> Result<Rule, WindowError> {
    let (days_text, times) = text.trim().split_once(' ').ok_or_else(|| WindowError::NotARule(text.to_owned()))?;
    let mut days = [false; 7];
    for part in days_text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    let (start, end) = times.trim().split_once('-').ok_or_else(|| WindowError::NotARange(text.to_owned()))?;
    let (start, end) = (minutes(start)?, minutes(end)?);
    if start >= end {
        return Err(WindowError::ClosesBeforeItOpens(text.to_owned()));
    }
    Ok(Rule { days, start, end })
}

fn blackout(text: &str) -> Result<(Date, Date), WindowError> {
    let date = |t: &str| {
        t.trim().parse::<Date>().map_err(|e| WindowError::NotADate { text: t.to_owned(), reason: e.to_string() })
    };
    let (from, to) = match text.split_once('/') {
        Some((from, to)) => (date(from)?, date(to)?),
        None => (date(text)?, date(text)?),
    };
    if to < from {
        return Err(WindowError::BlackoutBackwards(text.to_owned()));
    }
    Ok((from, to))
}

impl Windows {
    pub fn parse(raw: &RawWindows) -> Result<Windows, WindowError> {
        let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
        jiff::tz::db()
            .get(&timezone)
            .map_err(|e| WindowError::UnknownTimeZone { zone: timezone.clone(), reason: e.to_string() })?;
        let allow = raw.allow.iter().map(|r| rule(r)).collect::<Result<Vec<_>, _>>()?;
        let blackout = raw.blackout.iter().map(|b| blackout(b)).collect::<Result<Vec<_>, _>>()?;
        if !raw.allow.is_empty() && allow.iter().all(|r| !r.days.iter().any(|d| *d)) {
            return Err(WindowError::NeverOpen);
        }
        Ok(Windows { timezone, allow, blackout, rules: raw.allow.clone() })
    }

    /// Whether advancing is allowed at `now` (unix ms).
    pub fn is_open(&self, now_ms: u64) -> bool {
        let Ok(zone) = jiff::tz::db().get(&self.timezone) else { return false };
        let Ok(instant) = Timestamp::from_millisecond(now_ms as i64) else { return false };
        let local = instant.to_zoned_datetime(zone);
        let date = local.date();
        if self.blackout.iter().any(|(from, to)| *from <= date && date <= *to) {
            return false;
        }
        if self.allow.is_empty() {
            return true;
        }
        let weekday = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.allow.iter().any(|r| r.days[weekday] && r.start <= minute && minute < r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        text.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn windows(allow: &[&str], blackout: &[&str]) -> Windows {
        Windows::parse(&RawWindows {
            timezone: Some("Europe/Paris".into()),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            blackout: blackout.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn weekly_rules_in_the_time_zone() {
        let w = windows(&["Mon-Thu 09:00-16:00"], &[]);
        // Thursday 2026-11-26: Paris is UTC+1 in winter.
        assert!(w.is_open(ms("2026-11-26T14:59:00Z"))); // 15:59 Paris
        assert!(!w.is_open(ms("2026-11-26T15:00:00Z"))); // 16:00 Paris: closed
        assert!(!w.is_open(ms("2026-11-26T07:59:00Z"))); // 08:59 Paris
        assert!(!w.is_open(ms("2026-11-27T10:00:00Z"))); // Friday
        // Summer time: UTC+2.
        assert!(w.is_open(ms("2026-07-02T13:30:00Z"))); // Thursday 15:30 Paris
        assert!(!w.is_open(ms("2026-07-02T14:30:00Z"))); // 16:30 Paris
        let wrap = windows(&["Fri-Mon 10:00-11:00"], &[]);
        assert!(wrap.is_open(ms("2026-11-29T09:30:00Z"))); // Sunday
        assert!(!wrap.is_open(ms("2026-11-25T09:30:00Z"))); // Wednesday
    }

    #[test]
    fn blackouts_and_no_rules() {
        let w = windows(&[], &["2026-12-19/2027-01-04", "2027-05-01"]);
        assert!(w.is_open(ms("2026-12-18T22:59:00Z"))); // 23:59 Paris on the 18th
        assert!(!w.is_open(ms("2026-12-18T23:00:00Z"))); // midnight Paris on the 19th
        assert!(!w.is_open(ms("2027-01-04T12:00:00Z")));
        assert!(w.is_open(ms("2027-01-05T12:00:00Z")));
        assert!(!w.is_open(ms("2027-05-01T12:00:00Z")));
    }

    #[test]
    fn invalid_windows_say_why() {
        let parse = |allow: &str| {
            Windows::parse(&RawWindows { timezone: None, allow: vec![allow.into()], blackout: vec![] }).unwrap_err()
        };
        assert_eq!(parse("Mon-Thu 16:00-09:00"), WindowError::ClosesBeforeItOpens("Mon-Thu 16:00-09:00".into()));
        assert!(parse("Mon-Thu 16:00-09:00").to_string().contains("closes before it opens"));
        assert_eq!(parse("Funday 09:00-10:00"), WindowError::UnknownDay("Funday".into()));
        assert_eq!(parse("Mon 9-10"), WindowError::NotHoursMinutes("9".into()));
        let zone =
            Windows::parse(&RawWindows { timezone: Some("Mars/Olympus".into()), allow: vec![], blackout: vec![] });
        assert!(matches!(zone, Err(WindowError::UnknownTimeZone { .. })));
    }
}
