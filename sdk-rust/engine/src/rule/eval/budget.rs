//! What one evaluation may spend, charged by the operators whose work
//! grows with their data.

use std::borrow::Cow;
use std::cell::Cell;

use serde_json::Value;

use crate::js::{JsResult, Throw};
use crate::limits::{self, Limit, value_size};

/// What one evaluation may still spend: steps and bytes built (see
/// [`crate::limits`]). Only operators whose work grows with their data
/// charge it, so the common operators (`var`, `if`, comparisons,
/// `fractional`) cost nothing extra.
#[derive(Debug)]
pub(crate) struct Budget {
    steps: Cell<u64>,
    bytes: Cell<u64>,
    /// Set when the evaluation failed because the budget ran out.
    exceeded: Cell<Option<Limit>>,
}

const OUT_OF_STEPS: &str = "the rule took more steps than an evaluation may (see the engine's limits)";
const OUT_OF_BYTES: &str = "the rule built more data than an evaluation may (see the engine's limits)";

impl Budget {
    pub(crate) fn new(steps: u64, bytes: u64) -> Budget {
        Budget { steps: Cell::new(steps), bytes: Cell::new(bytes), exceeded: Cell::new(None) }
    }

    pub(crate) fn evaluation() -> Budget {
        Budget::new(limits::EVALUATION_STEPS, limits::EVALUATION_BYTES)
    }

    /// Which limit ended the evaluation, if one did.
    pub(crate) fn exceeded(&self) -> Option<Limit> {
        self.exceeded.get()
    }

    #[inline]
    pub(crate) fn steps(&self, steps: u64) -> JsResult<()> {
        let left = self.steps.get();
        if steps > left {
            self.exceeded.set(Some(Limit::EvaluationSteps));
            return Err(Throw(OUT_OF_STEPS));
        }
        self.steps.set(left - steps);
        Ok(())
    }

    #[inline]
    pub(crate) fn bytes(&self, bytes: u64) -> JsResult<()> {
        let left = self.bytes.get();
        if bytes > left {
            self.exceeded.set(Some(Limit::EvaluationBytes));
            return Err(Throw(OUT_OF_BYTES));
        }
        self.bytes.set(left - bytes);
        Ok(())
    }

    /// Charges the copy of `value` and returns it owned.
    pub(super) fn copy<'v>(&self, value: Cow<'v, Value>) -> JsResult<Value> {
        if let Cow::Borrowed(value) = &value {
            self.bytes(value_size(value))?;
        }
        Ok(value.into_owned())
    }
}
