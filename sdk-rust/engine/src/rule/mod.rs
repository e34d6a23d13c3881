//! The compiled rule tree.
//!
//! Targeting is JsonLogic. It is compiled once, when a flag set is loaded,
//! into [`Rule`]: operators resolved to enum variants, `var` paths split,
//! constant sub-trees folded, `fractional` weights and `sem_ver` targets
//! pre-parsed. Evaluation then walks the tree without parsing anything and
//! borrows from the context and the tree wherever it can.

mod compile;
pub(crate) mod eval;
pub(crate) mod ops;

pub(crate) use compile::compile;
pub(crate) use eval::{Budget, Env};

use serde_json::Value;

use crate::rule::ops::{fractional::Fractional, semver::SemVer};

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    /// A literal, or a sub-tree folded at compile time.
    Const(Value),
    /// An array literal with at least one non-constant element.
    Array(Vec<Rule>),
    Var(Var),
    Missing(Args),
    MissingSome(Box<Rule>, Box<Rule>),
    If(Vec<Rule>),
    And(Vec<Rule>),
    Or(Vec<Rule>),
    /// `!` (negate = true) and `!!`.
    Not {
        operand: Box<Rule>,
        negate: bool,
    },
    Compare(Comparator, Vec<Rule>),
    Arithmetic(Arithmetic, Args),
    /// `max` (true) and `min` (false).
    Extreme {
        max: bool,
        args: Args,
    },
    In(Args),
    /// `cat`. json-logic-engine skips nulls when it interprets (constant
    /// or spread arguments) but prints "null" in compiled code.
    Cat {
        args: Args,
        skip_null: bool,
    },
    Substr(Args),
    Merge(Args),
    /// `cost`: the mapper's operators, the steps one element costs.
    Iterate {
        op: Iteration,
        selector: Box<Rule>,
        mapper: Box<Rule>,
        cost: u64,
    },
    Reduce {
        selector: Box<Rule>,
        mapper: Box<Rule>,
        initial: Option<Box<Rule>>,
        cost: u64,
    },
    Fractional(Box<Fractional>),
    SemVer(Box<SemVer>),
    /// `starts_with` (true) and `ends_with` (false).
    Affix {
        starts: bool,
        args: Args,
    },
}

/// Arguments of an operator that evaluates them all first. JsonLogic lets
/// a single expression stand for the whole list: when it evaluates to an
/// array, that array is the argument list.
#[derive(Debug, Clone)]
pub(crate) enum Args {
    List(Vec<Rule>),
    Spread(Box<Rule>),
}

#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub(crate) path: VarPath,
    pub(crate) default: Option<Box<Rule>>,
}

#[derive(Debug, Clone)]
pub(crate) enum VarPath {
    /// `{"var": ""}`: the whole data (the context, or the current element
    /// inside `map`/`filter`/…).
    Whole,
    /// A dotted path split at compile time. `flagd` is set when it starts
    /// with `$flagd`, whose properties the evaluator supplies itself.
    Static { segments: Box<[String]>, flagd: Option<FlagdProperty> },
    /// A path computed by a rule.
    Dynamic(Box<Rule>),
}

/// The properties flagd injects into every context as `$flagd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagdProperty {
    /// `$flagd` itself: `{flagKey, timestamp}`.
    Object,
    FlagKey,
    Timestamp,
    /// Anything else under `$flagd`: always null, since flagd replaces a
    /// user-supplied `$flagd`.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    pub(crate) fn is_strict(self) -> bool {
        matches!(self, Comparator::StrictEq | Comparator::StrictNe)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Iteration {
    Map,
    Filter,
    All,
    Some,
    None,
}

impl Rule {
    /// Nodes of the compiled tree (a folded constant is one): what one
    /// evaluation of it costs in steps, as iterations charge it per element.
    pub(crate) fn operators(&self) -> u64 {
        let args = |args: &Args| match args {
            Args::List(rules) => rules.iter().map(Rule::operators).sum::<u64>(),
            Args::Spread(rule) => rule.operators(),
        };
        let all = |rules: &[Rule]| rules.iter().map(Rule::operators).sum::<u64>();
        1 + match self {
            Rule::Const(_) => 0,
            Rule::Array(rules) | Rule::If(rules) | Rule::And(rules) | Rule::Or(rules) | Rule::Compare(_, rules) => {
                all(rules)
            }
            Rule::Var(var) => {
                let path = match &var.path {
                    VarPath::Dynamic(rule) => rule.operators(),
                    _ => 0,
                };
                path + var.default.as_ref().map_or(0, |d| d.operators())
            }
            Rule::MissingSome(need, options) => need.operators() + options.operators(),
            Rule::Not { operand, .. } => operand.operators(),
            Rule::Missing(a)
            | Rule::Arithmetic(_, a)
            | Rule::Extreme { args: a, .. }
            | Rule::In(a)
            | Rule::Cat { args: a, .. }
            | Rule::Substr(a)
            | Rule::Merge(a)
            | Rule::Affix { args: a, .. } => args(a),
            Rule::Iterate { selector, cost, .. } => selector.operators() + cost,
            Rule::Reduce { selector, initial, cost, .. } => {
                selector.operators() + cost + initial.as_ref().map_or(0, |i| i.operators())
            }
            // Their arguments are few and mostly constant.
            Rule::Fractional(_) | Rule::SemVer(_) => 4,
        }
    }

    pub(crate) fn as_const(&self) -> Option<&Value> {
        match self {
            Rule::Const(value) => Some(value),
            _ => None,
        }
    }
}

impl Args {
    pub(crate) fn all_const(&self) -> bool {
        match self {
            Args::List(rules) => rules.iter().all(|r| r.as_const().is_some()),
            Args::Spread(rule) => rule.as_const().is_some(),
        }
    }
}

/// A JsonLogic rule compiled on its own, outside a flag: for tools that
/// test a rule against a context, and for the engine's own tables.
#[derive(Debug)]
pub struct CompiledRule(Rule);

impl CompiledRule {
    /// Compiles a rule (with `$ref`s already expanded).
    pub fn compile(logic: &Value) -> Result<CompiledRule, String> {
        compile(logic).map(CompiledRule).map_err(|error| error.message)
    }

    /// Evaluates the rule as the targeting of flag `flag_key`; `Err` carries
    /// the message of a run-time failure (which makes a flag `GENERAL`).
    pub fn evaluate(&self, context: &crate::Context, flag_key: &str, now: i64) -> Result<Value, String> {
        let budget = Budget::evaluation();
        let env = Env { context, flag_key, key_hash: None, now, budget: &budget };
        self.0.eval(&env, eval::Data::Root).map(std::borrow::Cow::into_owned).map_err(|thrown| thrown.0.to_owned())
    }
}
