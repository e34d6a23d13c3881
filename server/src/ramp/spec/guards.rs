//! `spec.latency` and `spec.conversion`: guards on a proportion other than
//! the error rate, each with its own tolerance, decided by the same
//! mixture SPRT as the error guard (docs/ramps.md, "Latency and conversion
//! guards").

use serde::{Deserialize, Serialize};

use super::raw::Number;
use crate::model::latency::{BOUNDS_MS, Latency};

/// What counts as slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Threshold {
    /// Slower than this many milliseconds (a bound of the latency ladder).
    Fixed { millis: u32 },
    /// Slower than the control arm's p95 over the step so far (the ladder
    /// bound at or above it).
    ControlP95,
}

/// `spec.latency`: the treatment's share of requests slower than the
/// threshold must not exceed the control's by more than `tolerance`
/// (relative).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyGuard {
    pub threshold: Threshold,
    pub tolerance: f64,
    /// After the ramp's false-alarm budget is split among its guards.
    pub confidence: f64,
    /// Read from Prometheus histograms instead of the durations Rampart
    /// receives (`latency.prometheus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<LatencyQueries>,
}

/// `latency.prometheus`: per variant and bucket, the requests no slower
/// than the threshold (a histogram's `_bucket{le="…"}`) and all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LatencyQueries {
    pub within: String,
    pub total: String,
}

/// `spec.conversion`: conversions per exposed user (OpenFeature `track`)
/// must not drop by more than `max_drop` (relative).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionGuard {
    /// The tracking event name that is a conversion.
    pub event: String,
    pub max_drop: f64,
    /// After the ramp's false-alarm budget is split among its guards.
    pub confidence: f64,
    /// Exposed users each arm needs before the guard decides anything.
    pub min_users: u64,
}

/// Users per arm a conversion guard waits for unless the file says.
pub const DEFAULT_MIN_USERS: u64 = 100;

/// `spec.latency` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLatency {
    slower_than: String,
    tolerance: Option<Number>,
    confidence: Option<Number>,
    prometheus: Option<LatencyQueries>,
}

/// `spec.conversion` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConversion {
    event: String,
    max_drop: Option<Number>,
    confidence: Option<Number>,
    min_users: Option<u64>,
}

fn fraction(key: &str, value: Option<&Number>, default: f64) -> Result<f64, String> {
    match value {
        None => Ok(default),
        Some(number) => number.percent().map(|p| p / 100.0).ok_or_else(|| format!("{key}: expected a percentage")),
    }
}

fn confidence(key: &str, value: Option<&Number>) -> Result<f64, String> {
    let confidence = fraction(key, value, super::DEFAULT_RELATIVE_CONFIDENCE)?;
    if !(confidence > 0.5 && confidence <= 0.9999) {
        return Err(format!("{key}: must be above 50% and at most 99.99%"));
    }
    Ok(confidence)
}

impl RawLatency {
    pub(super) fn resolve(&self) -> Result<LatencyGuard, String> {
        let threshold = match self.slower_than.trim() {
            "p95" => Threshold::ControlP95,
            text => {
                let millis = crate::time::parse_duration(text)
                    .and_then(|d| u32::try_from(d.as_millis()).ok())
                    .filter(|millis| *millis > 0)
                    .ok_or_else(|| format!("latency.slowerThan: '{text}' is not a duration like 300ms, or p95"))?;
                if !Latency::is_bound(millis) {
                    let bounds: Vec<String> = BOUNDS_MS.iter().map(|b| format!("{b}ms")).collect();
                    return Err(format!(
                        "latency.slowerThan: {millis}ms is not a bound of the latency ladder (durations are \
                         counted per bound, so only these can be compared exactly): {}",
                        bounds.join(", ")
                    ));
                }
                Threshold::Fixed { millis }
            }
        };
        let tolerance = fraction("latency.tolerance", self.tolerance.as_ref(), super::DEFAULT_TOLERANCE)?;
        if tolerance < 0.0 {
            return Err("latency.tolerance: must not be negative".into());
        }
        if let Some(queries) = &self.prometheus {
            if threshold == Threshold::ControlP95 {
                return Err("latency.prometheus: needs a fixed slowerThan (the bucket its `within` query reads); \
                            p95 is read from durations Rampart receives"
                    .into());
            }
            for (key, query) in [("within", &queries.within), ("total", &queries.total)] {
                super::syntax::check_template(query).map_err(|e| format!("latency.prometheus.{key}: {e}"))?;
                if !query.contains("{{variant}}") && !query.contains("{{ variant }}") {
                    return Err(format!("latency.prometheus.{key}: needs {{{{variant}}}} to compare the arms"));
                }
            }
        }
        Ok(LatencyGuard {
            threshold,
            tolerance,
            confidence: confidence("latency.confidence", self.confidence.as_ref())?,
            prometheus: self.prometheus.clone(),
        })
    }
}

impl RawConversion {
    pub(super) fn resolve(&self) -> Result<ConversionGuard, String> {
        if self.event.trim().is_empty() {
            return Err("conversion.event: name the tracking event that is a conversion".into());
        }
        let max_drop = fraction("conversion.maxDrop", self.max_drop.as_ref(), 0.10)?;
        if !(max_drop > 0.0 && max_drop < 1.0) {
            return Err("conversion.maxDrop: must be above 0% and below 100%".into());
        }
        Ok(ConversionGuard {
            event: self.event.clone(),
            max_drop,
            confidence: confidence("conversion.confidence", self.confidence.as_ref())?,
            min_users: self.min_users.unwrap_or(DEFAULT_MIN_USERS).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(text: &str) -> Result<LatencyGuard, String> {
        RawLatency { slower_than: text.into(), tolerance: None, confidence: None, prometheus: None }.resolve()
    }

    #[test]
    fn a_latency_threshold_is_a_ladder_bound_or_the_controls_p95() {
        assert_eq!(latency("300ms").unwrap().threshold, Threshold::Fixed { millis: 300 });
        assert_eq!(latency("1s").unwrap().threshold, Threshold::Fixed { millis: 1000 });
        assert_eq!(latency("p95").unwrap().threshold, Threshold::ControlP95);
        let off = latency("350ms").unwrap_err();
        assert!(off.contains("350ms is not a bound") && off.contains("300ms, 400ms"), "{off}");
        assert!(latency("soon").unwrap_err().contains("'soon'"));
        let guard = latency("300ms").unwrap();
        assert_eq!((guard.tolerance, guard.confidence), (0.2, 0.99));
        let queries = |within: &str| LatencyQueries { within: within.into(), total: "t{v=\"{{variant}}\"}".into() };
        let from = |text: &str, within: &str| {
            RawLatency {
                slower_than: text.into(),
                tolerance: None,
                confidence: None,
                prometheus: Some(queries(within)),
            }
            .resolve()
        };
        assert!(from("300ms", "b{v=\"{{variant}}\",le=\"0.3\"}").is_ok());
        assert!(from("p95", "b{v=\"{{variant}}\"}").unwrap_err().contains("fixed slowerThan"));
        assert!(from("300ms", "b{le=\"0.3\"}").unwrap_err().contains("needs {{variant}}"));
    }

    #[test]
    fn a_conversion_guard_names_its_event_and_a_drop_below_100_percent() {
        let raw = |event: &str, drop: Option<f64>| RawConversion {
            event: event.into(),
            max_drop: drop.map(Number::Float),
            confidence: None,
            min_users: None,
        };
        let guard = raw("checkout", None).resolve().unwrap();
        assert_eq!((guard.max_drop, guard.min_users), (0.10, DEFAULT_MIN_USERS));
        assert!(raw(" ", None).resolve().unwrap_err().contains("conversion.event"));
        assert!(raw("checkout", Some(100.0)).resolve().unwrap_err().contains("maxDrop"));
    }
}
