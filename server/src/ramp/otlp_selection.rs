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
    /// The ramp counts targeting keys (`unit: context`): a span's
    /// `feature_flag.context.id` is reported with it.
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
                per_context: spec.guard.unit == Unit::Context,
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
