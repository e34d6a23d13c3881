//! The ramped flags an OTLP export (spans or metrics) is read for, and how: built once per
//! export from the controller's running ramps, so reading spans takes no
//! lock.

use std::collections::HashMap;

use super::spec::spans::SpanSelection;
use super::spec::{MetricSource, RampSpec, Unit};

/// How spans count for one ramped flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSpans {
    pub selection: SpanSelection,
    /// The ramp counts targeting keys (`unit: context`), or its conversion
    /// guard needs the exposed ones: a span's `feature_flag.context.id` is
    /// reported with it.
    pub per_context: bool,
    /// The metric whose data points count (`guard.otlpMetric`).
    pub metric: String,
}

impl FlagSpans {
    /// A ramp's span rules; `None` when its evidence comes from elsewhere
    /// (Prometheus).
    pub fn of(spec: &RampSpec) -> Option<FlagSpans> {
        match spec.guard.source {
            MetricSource::Builtin => Some(FlagSpans {
                selection: spec.guard.spans.clone(),
                per_context: spec.guard.unit == Unit::Context || spec.conversion.is_some(),
                metric: spec.guard.otlp_metric.clone(),
            }),
            MetricSource::Prometheus(_) => None,
        }
    }
}

/// Every ramped flag of one environment that spans may count for.
#[derive(Debug, Clone, Default)]
pub struct Selections {
    flags: HashMap<String, FlagSpans>,
}

impl Selections {
    pub fn new(flags: HashMap<String, FlagSpans>) -> Selections {
        Selections { flags }
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    pub fn get(&self, flag: &str) -> Option<&FlagSpans> {
        self.flags.get(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> RampSpec {
        let text = format!(
            "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {{name: r}}\nspec:\n  flag: f\n  treatment: \"on\"\n  \
             control: \"off\"\n  steps:\n    - {{percent: 50, hold: 1h}}\n{extra}"
        );
        crate::ramp::spec::parse("r.yaml", &text).expect("spec")
    }

    #[test]
    fn spans_carry_their_targeting_key_where_contexts_or_conversions_count() {
        let per_context = |extra: &str| FlagSpans::of(&spec(extra)).expect("outcome evidence").per_context;
        assert!(!per_context(""));
        assert!(per_context("  guard: {unit: context}\n"));
        assert!(per_context("  conversion: {event: checkout}\n"), "exposed users are the spans' keys");
    }
}
