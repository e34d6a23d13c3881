//! Rampart's evaluation engine: the one place that decides which variant a
//! context gets. The server and the SDK both embed it, so they can never
//! disagree.
//!
//! # What belongs here
//!
//! Parsing flagd flag definitions (JSON or YAML), compiling their JsonLogic
//! targeting into a typed rule tree once, and evaluating that tree against a
//! context. Everything is pure: no IO, no async, no clock (the caller passes
//! `now`), no logging. Transport types (protobuf, HTTP) never appear here.
//!
//! # Layout
//!
//! - [`source`]: text → JSON document, with line numbers for syntax errors,
//!   `$evaluators`/`$ref` expansion and a best-effort locator for flag keys.
//! - [`compile`](mod@compile): document → [`FlagSet`] (validation + rule compilation).
//! - `rule`: the compiled rule tree and its evaluator; `js` holds the
//!   JavaScript value semantics (truthiness, coercion, equality) that flagd's
//!   reference evaluator uses and that we reproduce bit for bit.
//! - `ops`: flagd's custom operators `fractional` and `sem_ver`.
//! - [`evaluation`]: results — value, variant, [`Reason`], [`ErrorCode`] —
//!   and typed resolution with `TYPE_MISMATCH`.
//! - [`bucket`]: MurmurHash3 bucketing shared by `fractional` and ramps.
//! - [`limits`]: what one input may cost — document size, rule size,
//!   constant folding, and each evaluation's steps and bytes — checked
//!   while the work is done.
//!
//! # Example
//!
//! ```
//! use rampart_engine::{FlagSet, Source, Reason};
//! let text = r#"{"flags": {"new-ui": {"state": "ENABLED",
//!     "variants": {"on": true, "off": false}, "defaultVariant": "off",
//!     "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on"]}}}}"#;
//! let set = FlagSet::load(&[Source::json("flags.json", text)]).unwrap();
//! let ctx = rampart_engine::Context::with_targeting_key("u1").with("email", "a@example.com");
//! let result = set.evaluate("new-ui", &ctx, 1_700_000_000);
//! assert_eq!(result.value, Some(&serde_json::Value::Bool(true)));
//! assert_eq!(result.reason, Reason::TargetingMatch);
//! ```

mod bounded;
pub mod bucket;
pub mod compile;
mod context;
mod error;
pub mod evaluation;
mod flag;
mod flag_set;
mod js;
mod lazy;
pub mod limits;
mod lint;
pub mod ramp;
mod rule;
pub use rule::CompiledRule;
pub mod source;
mod text;

pub use compile::Compiled;
pub use context::{Context, TARGETING_KEY};
pub use error::{LoadError, LoadErrors};
pub use evaluation::{ErrorCode, Evaluation, Reason, Typed, TypedEvaluation, ValueType};
pub use flag::{Flag, FlagState};
pub use flag_set::{FlagSet, Shared};
pub use limits::{InputLimits, Limit};
pub use source::{Format, Source};

/// Flag and flag-set metadata: string, number or boolean values.
pub type Metadata = serde_json::Map<String, serde_json::Value>;
