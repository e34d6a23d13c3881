//! The run's checks over time, for the dashboard's charts: exposure, both
//! arms' error rates with their counts, and the sequential test's evidence
//! against its threshold, one point per controller tick.
//!
//! Kept in memory by the replica that ticks the ramp, bounded by
//! [`MAX_POINTS`]: when full, every other point is dropped and from then on
//! only every second tick is kept (and so on), so the whole run stays
//! drawn at a coarser grain instead of losing its start. A new run starts
//! a new series; after a restart the series starts again (the decision log
//! in the store keeps every transition with its evidence).

use serde::Serialize;

use crate::model::{Evidence, Run};

/// Most points kept per ramp: a 12-hour run of one-minute checks (720)
/// fits whole; two days at that grain fit at half resolution.
pub const MAX_POINTS: usize = 1440;

/// One check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckPoint {
    /// Unix milliseconds.
    pub at: u64,
    /// The exposure the check decided (after an advance: the new step's).
    pub percent: f64,
    /// The step whose evidence the counts are: the step the run was at
    /// when the check began (counts start again at every step).
    pub step: usize,
    pub treatment_exposures: u64,
    pub treatment_errors: u64,
    pub control_exposures: u64,
    pub control_errors: u64,
    pub lambda: Option<f64>,
    pub lambda_threshold: Option<f64>,
    /// The run was rolled back at this check.
    pub rolled_back: bool,
}

impl CheckPoint {
    /// A check that observed `counted_step` and decided `run`.
    pub fn new(run: &Run, counted_step: usize, evidence: &Evidence, at: u64) -> CheckPoint {
        CheckPoint {
            at,
            percent: run.percent(),
            step: counted_step,
            treatment_exposures: evidence.treatment.exposures,
            treatment_errors: evidence.treatment.errors,
            control_exposures: evidence.control.exposures,
            control_errors: evidence.control.errors,
            lambda: evidence.lambda,
            lambda_threshold: evidence.lambda_threshold,
            rolled_back: matches!(run.status, crate::model::Status::RolledBack { .. }),
        }
    }
}

/// The checks of one run.
#[derive(Debug, Clone, Default)]
pub struct CheckSeries {
    run_id: String,
    points: Vec<CheckPoint>,
    /// Keep one tick in `stride`.
    stride: u64,
    seen: u64,
}

impl CheckSeries {
    /// Adds a check of `run_id`; a new run starts a new series.
    pub fn record(&mut self, run_id: &str, point: CheckPoint) {
        if self.run_id != run_id {
            *self = CheckSeries { run_id: run_id.to_owned(), points: Vec::new(), stride: 1, seen: 0 };
        }
        self.seen += 1;
        // The last check before a rollback is always kept: it is the one that matters.
        if !point.rolled_back && !(self.seen - 1).is_multiple_of(self.stride) {
            return;
        }
        if self.points.len() >= MAX_POINTS {
            let mut index = 0;
            self.points.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.stride *= 2;
        }
        self.points.push(point);
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Checks recorded for this run, kept or not: grows with every tick.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn points(&self) -> &[CheckPoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: u64) -> CheckPoint {
        CheckPoint {
            at,
            percent: 5.0,
            step: 0,
            treatment_exposures: at,
            treatment_errors: 0,
            control_exposures: at,
            control_errors: 0,
            lambda: None,
            lambda_threshold: None,
            rolled_back: false,
        }
    }

    #[test]
    fn a_long_run_is_thinned_not_cut() {
        let mut series = CheckSeries::default();
        for at in 0..(MAX_POINTS as u64 * 3) {
            series.record("run-1", point(at));
        }
        let points = series.points();
        assert!(points.len() <= MAX_POINTS, "bounded: {}", points.len());
        assert!(points.len() >= MAX_POINTS / 2, "still detailed: {}", points.len());
        assert_eq!(points[0].at, 0, "the start of the run is kept");
        assert!(points.last().expect("points").at >= MAX_POINTS as u64 * 3 - 4, "and its end");
        assert!(points.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn a_new_run_starts_a_new_series_and_a_rollback_is_always_kept() {
        let mut series = CheckSeries::default();
        for at in 0..(MAX_POINTS as u64 + 1) {
            series.record("run-1", point(at));
        }
        let mut last = point(99_999);
        last.rolled_back = true;
        series.record("run-1", last);
        assert!(series.points().last().expect("points").rolled_back);
        series.record("run-2", point(1));
        assert_eq!((series.run_id(), series.points().len()), ("run-2", 1));
    }
}
