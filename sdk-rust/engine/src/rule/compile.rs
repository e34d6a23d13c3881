//! JsonLogic → [`Rule`].
//!
//! Only the operators flagd's schema allows are accepted; anything else is
//! a compile error, which makes the flag answer `PARSE_ERROR` (and makes a
//! strict load reject the set). Sub-trees that do not depend on the context
//! are evaluated here once; one that can only fail is a compile error too,
//! as it is in flagd's reference evaluator.

use serde_json::{Map, Value};

use super::eval::{self, Budget};
use super::{Args, Arithmetic, Comparator, FlagdProperty, Iteration, Rule, Var, VarPath};
use crate::limits::{FOLD_BYTES, FOLD_TOTAL_BYTES, Limit, MAX_RULE_DEPTH, MAX_RULE_NODES, value_size};
use crate::rule::ops::{fractional::Fractional, semver::SemVer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileError {
    pub(crate) message: String,
    /// The limit the rule exceeded, when that is the problem.
    pub(crate) limit: Option<Limit>,
}

type Result<T> = std::result::Result<T, CompileError>;

fn error<T>(message: impl Into<String>) -> Result<T> {
    Err(CompileError { message: message.into(), limit: None })
}

/// Steps one constant expression may take while it is folded.
const FOLD_STEPS: u64 = 10_000;

/// Compiles one targeting rule.
pub(crate) fn compile(logic: &Value) -> Result<Rule> {
    Compiler { nodes: 0, folded_bytes: 0 }.rule(logic, 0)
}

struct Compiler {
    nodes: usize,
    /// Bytes of constants folded so far in this rule.
    folded_bytes: u64,
}

impl Compiler {
    fn rule(&mut self, logic: &Value, depth: usize) -> Result<Rule> {
        if depth > MAX_RULE_DEPTH {
            return Err(CompileError {
                message: format!("targeting is nested more than {MAX_RULE_DEPTH} levels deep"),
                limit: Some(Limit::RuleDepth),
            });
        }
        self.nodes += 1;
        if self.nodes > MAX_RULE_NODES {
            return Err(CompileError {
                message: format!("targeting has more than {MAX_RULE_NODES} nodes"),
                limit: Some(Limit::RuleNodes),
            });
        }
        match logic {
            Value::Array(items) => {
                let rules = items.iter().map(|item| self.rule(item, depth + 1)).collect::<Result<Vec<_>>>()?;
                Ok(constant_array(rules))
            }
            Value::Object(map) => match map.len() {
                0 => Ok(Rule::Const(Value::Object(Map::new()))),
                1 => {
                    let (op, data) = map.iter().next().expect("one entry");
                    if op == "$ref" {
                        return error(format!("$ref to unknown evaluator {data}"));
                    }
                    let rule = self.operation(op, data, depth)?;
                    self.fold(rule)
                }
                _ => {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    error(format!("an operation must have exactly one operator, found {{{}}}", keys.join(", ")))
                }
            },
            other => Ok(Rule::Const(other.clone())),
        }
    }

    fn operation(&mut self, op: &str, data: &Value, depth: usize) -> Result<Rule> {
        let depth = depth + 1;
        Ok(match op {
            "var" => Rule::Var(self.var(data, depth)?),
            "missing" => Rule::Missing(self.args(data, depth)?),
            "missing_some" => {
                let [need, options] = self.fixed::<2>(op, data, depth)?;
                Rule::MissingSome(Box::new(need), Box::new(options))
            }
            "if" => Rule::If(self.list(op, data, depth)?),
            "and" => Rule::And(self.list(op, data, depth)?),
            "or" => Rule::Or(self.list(op, data, depth)?),
            "!" | "!!" => {
                let operand = match data {
                    Value::Array(items) => match items.first() {
                        Some(first) => self.rule(first, depth)?,
                        None => Rule::Const(Value::Null),
                    },
                    other => self.rule(other, depth)?,
                };
                Rule::Not { operand: Box::new(operand), negate: op == "!" }
            }
            "==" | "!=" | "===" | "!==" | "<" | "<=" | ">" | ">=" => {
                let comparator = match op {
                    "==" => Comparator::Eq,
                    "!=" => Comparator::Ne,
                    "===" => Comparator::StrictEq,
                    "!==" => Comparator::StrictNe,
                    "<" => Comparator::Lt,
                    "<=" => Comparator::Le,
                    ">" => Comparator::Gt,
                    _ => Comparator::Ge,
                };
                let operands = self.list(op, data, depth)?;
                if operands.len() < 2 {
                    return error(format!("'{op}' needs at least two arguments, found {}", operands.len()));
                }
                Rule::Compare(comparator, operands)
            }
            "+" | "-" | "*" | "/" | "%" => {
                let arithmetic = match op {
                    "+" => Arithmetic::Add,
                    "-" => Arithmetic::Subtract,
                    "*" => Arithmetic::Multiply,
                    "/" => Arithmetic::Divide,
                    _ => Arithmetic::Remainder,
                };
                Rule::Arithmetic(arithmetic, self.args(data, depth)?)
            }
            "max" | "min" => Rule::Extreme { max: op == "max", args: self.args(data, depth)? },
            "in" => Rule::In(self.args(data, depth)?),
            "cat" => {
                let args = self.args(data, depth)?;
                let skip_null = matches!(args, Args::Spread(_)) || args.all_const();
                Rule::Cat { args, skip_null }
            }
            "substr" => Rule::Substr(self.args(data, depth)?),
            "merge" => Rule::Merge(self.args(data, depth)?),
            "map" | "filter" | "all" | "some" | "none" => {
                let op = match op {
                    "map" => Iteration::Map,
                    "filter" => Iteration::Filter,
                    "all" => Iteration::All,
                    "some" => Iteration::Some,
                    _ => Iteration::None,
                };
                let [selector, mapper] = self.fixed::<2>("iteration", data, depth)?;
                let cost = mapper.operators();
                Rule::Iterate { op, selector: Box::new(selector), mapper: Box::new(mapper), cost }
            }
            "reduce" => {
                if let Some(mapper) = data.as_array().and_then(|parts| parts.get(1)) {
                    refuse_doubling(mapper)?;
                }
                let mut parts = self.list_between(data, 2, 3, depth)?.into_iter();
                let selector = parts.next().expect("two");
                let mapper = parts.next().expect("two");
                Rule::Reduce {
                    cost: mapper.operators(),
                    selector: Box::new(selector),
                    mapper: Box::new(mapper),
                    initial: parts.next().map(Box::new),
                }
            }
            "fractional" => Rule::Fractional(Box::new(Fractional::compile(self.args(data, depth)?))),
            "sem_ver" => Rule::SemVer(Box::new(SemVer::compile(self.args(data, depth)?))),
            "starts_with" | "ends_with" => Rule::Affix { starts: op == "starts_with", args: self.args(data, depth)? },
            unknown => return error(format!("unknown operator '{unknown}'")),
        })
    }

    /// Arguments of an eager operator: a literal list, a single literal
    /// (one argument), or one expression whose array result is the list.
    fn args(&mut self, data: &Value, depth: usize) -> Result<Args> {
        match data {
            Value::Array(items) => {
                Ok(Args::List(items.iter().map(|item| self.rule(item, depth)).collect::<Result<_>>()?))
            }
            Value::Object(map) if !map.is_empty() => Ok(Args::Spread(Box::new(self.rule(data, depth)?))),
            other => Ok(Args::List(vec![self.rule(other, depth)?])),
        }
    }

    /// Arguments of a lazy operator, which must be a literal list.
    fn list(&mut self, op: &str, data: &Value, depth: usize) -> Result<Vec<Rule>> {
        match data {
            Value::Array(items) => items.iter().map(|item| self.rule(item, depth)).collect(),
            _ => error(format!("'{op}' expects an array of arguments")),
        }
    }

    fn list_between(&mut self, data: &Value, min: usize, max: usize, depth: usize) -> Result<Vec<Rule>> {
        match data {
            Value::Array(items) if (min..=max).contains(&items.len()) => {
                items.iter().map(|item| self.rule(item, depth)).collect()
            }
            _ => error(format!("expects an array of {min} to {max} arguments")),
        }
    }

    fn fixed<const N: usize>(&mut self, op: &str, data: &Value, depth: usize) -> Result<[Rule; N]> {
        let rules = match data {
            Value::Array(items) if items.len() == N => self.list(op, data, depth)?,
            _ => return error(format!("'{op}' expects an array of {N} arguments")),
        };
        Ok(rules.try_into().unwrap_or_else(|_| unreachable!("length checked")))
    }

    fn var(&mut self, data: &Value, depth: usize) -> Result<Var> {
        let (path, default) = match data {
            Value::Array(items) => match items.as_slice() {
                [] => (&Value::Null, None),
                [path] => (path, None),
                [path, default] => (path, Some(default)),
                _ => return error("'var' expects a path and an optional default"),
            },
            other => (other, None),
        };
        let path = match path {
            Value::Null => VarPath::Whole,
            Value::String(text) => static_path(text),
            Value::Number(n) => static_path(&n.to_string()),
            Value::Object(_) => VarPath::Dynamic(Box::new(self.rule(path, depth)?)),
            other => return error(format!("'var' path must be a string or a number, found {other}")),
        };
        let default = default.map(|d| self.rule(d, depth).map(Box::new)).transpose()?;
        Ok(Var { path, default })
    }
}

/// Splits a `var` path the way json-logic-engine does: on `.`, with `\.`
/// for a literal dot and `\\` for a backslash.
pub(crate) fn split_path(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('.' | '/' | '\\')) => {
                    current.push(next);
                    chars.next();
                }
                _ => current.push('\\'),
            },
            '.' => parts.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    parts.push(current);
    parts
}

fn static_path(text: &str) -> VarPath {
    if text.is_empty() {
        return VarPath::Whole;
    }
    let segments = split_path(text);
    let flagd = (segments[0] == "$flagd").then(|| match segments.get(1).map(String::as_str) {
        None => FlagdProperty::Object,
        Some("flagKey") if segments.len() == 2 => FlagdProperty::FlagKey,
        Some("timestamp") if segments.len() == 2 => FlagdProperty::Timestamp,
        Some(_) => FlagdProperty::Unknown,
    });
    VarPath::Static { segments: segments.into_boxed_slice(), flagd }
}

fn constant_array(rules: Vec<Rule>) -> Rule {
    if rules.iter().all(|rule| rule.as_const().is_some()) {
        let values = rules
            .into_iter()
            .map(|rule| match rule {
                Rule::Const(value) => value,
                _ => unreachable!("checked above"),
            })
            .collect();
        Rule::Const(Value::Array(values))
    } else {
        Rule::Array(rules)
    }
}

impl Compiler {
    /// Evaluates a rule once when nothing in it depends on the context and
    /// its value is small: a constant larger than [`FOLD_BYTES`] (or one
    /// past the rule's [`FOLD_TOTAL_BYTES`]) stays an expression, computed
    /// at evaluation under the evaluation's budget, so a short rule can
    /// never fold into a huge tree.
    fn fold(&mut self, rule: Rule) -> Result<Rule> {
        if !is_context_free(&rule) {
            return Ok(rule);
        }
        let room = FOLD_BYTES.min(FOLD_TOTAL_BYTES - self.folded_bytes);
        let budget = Budget::new(FOLD_STEPS, room);
        match eval::evaluate_constant(&rule, &budget) {
            Ok(value) => {
                let size = value_size(&value);
                if size > room {
                    return Ok(rule);
                }
                self.folded_bytes += size;
                Ok(Rule::Const(value))
            }
            Err(_) if budget.exceeded().is_some() => Ok(rule),
            Err(thrown) => error(format!("this expression always fails: {}", thrown.0)),
        }
    }
}

/// Refuses a `reduce` whose step puts the accumulator into one `cat` or
/// `merge` more than once: its result doubles with every element, so forty
/// elements describe a terabyte. (Using it once — appending — is fine.)
fn refuse_doubling(mapper: &Value) -> Result<()> {
    fn accumulator_uses(value: &Value) -> usize {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (op, data) = map.iter().next().expect("one entry");
                let path = match (op.as_str(), data) {
                    ("var", Value::String(path)) => Some(path.as_str()),
                    ("var", Value::Array(items)) => items.first().and_then(Value::as_str),
                    _ => None,
                };
                match path {
                    Some(path) => usize::from(path == "accumulator" || path.starts_with("accumulator.")),
                    None => accumulator_uses(data),
                }
            }
            Value::Object(map) => map.values().map(accumulator_uses).sum(),
            Value::Array(items) => items.iter().map(accumulator_uses).sum(),
            _ => 0,
        }
    }
    fn check(value: &Value) -> Result<()> {
        match value {
            Value::Object(map) => {
                for (op, data) in map {
                    if (op == "cat" || op == "merge") && accumulator_uses(data) > 1 {
                        return Err(CompileError {
                            message: format!(
                                "'reduce' puts its accumulator into one '{op}' more than once, so its result \
                                 doubles with every element; use the accumulator once"
                            ),
                            limit: Some(Limit::EvaluationBytes),
                        });
                    }
                    check(data)?;
                }
                Ok(())
            }
            Value::Array(items) => items.iter().try_for_each(check),
            _ => Ok(()),
        }
    }
    check(mapper)
}

/// True when the rule's value cannot depend on the context: its operands
/// are constants and it reads neither the context nor the flag key.
fn is_context_free(rule: &Rule) -> bool {
    let all = |rules: &[Rule]| rules.iter().all(|r| r.as_const().is_some());
    match rule {
        Rule::Const(_) => false,
        Rule::Var(_) | Rule::Missing(_) | Rule::MissingSome(..) | Rule::Fractional(_) | Rule::Array(_) => false,
        Rule::If(rules) | Rule::And(rules) | Rule::Or(rules) | Rule::Compare(_, rules) => all(rules),
        Rule::Not { operand, .. } => operand.as_const().is_some(),
        Rule::Arithmetic(_, args)
        | Rule::Extreme { args, .. }
        | Rule::In(args)
        | Rule::Cat { args, .. }
        | Rule::Substr(args)
        | Rule::Merge(args)
        | Rule::Affix { args, .. } => args.all_const(),
        Rule::Iterate { selector, mapper, .. } => selector.as_const().is_some() && mapper.as_const().is_some(),
        Rule::Reduce { selector, mapper, initial, .. } => {
            selector.as_const().is_some()
                && mapper.as_const().is_some()
                && initial.as_ref().is_none_or(|i| i.as_const().is_some())
        }
        Rule::SemVer(semver) => semver.is_constant(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile_err(logic: Value) -> String {
        compile(&logic).unwrap_err().message
    }

    #[test]
    fn splits_paths_with_escapes() {
        assert_eq!(split_path("a.b"), ["a", "b"]);
        assert_eq!(split_path("a\\.b.c"), ["a.b", "c"]);
        assert_eq!(split_path("a."), ["a", ""]);
    }

    #[test]
    fn folds_constants() {
        assert!(matches!(compile(&json!({"+": [1, 2]})).unwrap(), Rule::Const(v) if v == json!(3)));
        assert!(matches!(compile(&json!({"if": [true, "a", "b"]})).unwrap(), Rule::Const(v) if v == json!("a")));
        assert!(matches!(compile(&json!({"var": "x"})).unwrap(), Rule::Var(_)));
    }

    #[test]
    fn rejects_what_flagd_rejects() {
        assert!(compile_err(json!({"nope": [1]})).contains("unknown operator 'nope'"));
        assert!(compile_err(json!({"==": [1, 2], "!=": [1, 2]})).contains("exactly one operator"));
        assert!(compile_err(json!({"$ref": "missing"})).contains("unknown evaluator"));
        assert!(compile_err(json!({"/": [1, 0]})).contains("always fails"));
        assert!(compile_err(json!({"if": "x"})).contains("expects an array"));
        assert!(compile_err(json!({"<": [1]})).contains("at least two"));
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut logic = json!({"var": "x"});
        for _ in 0..MAX_RULE_DEPTH + 1 {
            logic = json!({"!": [logic]});
        }
        assert!(compile_err(logic).contains("nested more than"));
    }

    #[test]
    fn refuses_a_doubling_reduce() {
        let doubling =
            json!({"reduce": [{"var": "items"}, {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "x"]});
        assert!(compile_err(doubling).contains("doubles with every element"));
        let nested = json!({"reduce": [[1, 2], {"merge": [{"var": "accumulator"}, [{"var": ["accumulator.0"]}]]}, []]});
        assert!(compile_err(nested).contains("doubles"));
        // Appending once is the common join idiom, and fine.
        let join = json!({"reduce": [{"var": "items"}, {"if": [{"==": [{"var": "accumulator"}, ""]},
            {"var": "current"}, {"cat": [{"var": "accumulator"}, ",", {"var": "current"}]}]}, ""]});
        assert!(compile(&join).is_ok());
    }

    #[test]
    fn folds_only_small_constants() {
        let range: Vec<u32> = (0..1000).collect();
        // 1,000 × 1,000 elements: too large to fold, kept as an expression.
        let nested = json!({"map": [range.clone(), {"map": [range.clone(), {"+": [1, 1]}]}]});
        let started = std::time::Instant::now();
        let rule = compile(&nested).unwrap();
        assert!(matches!(rule, Rule::Iterate { .. }), "{rule:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // The inner map (1,000 twos) is small enough to fold.
        let Rule::Iterate { mapper, .. } = rule else { unreachable!() };
        assert!(matches!(*mapper, Rule::Const(Value::Array(ref items)) if items.len() == 1000));
        // Three levels deep, as in the report: compiles at once, evaluation is bounded.
        let triple = json!({"map": [range.clone(), {"map": [range.clone(), {"map": [range, {"+": [1, 1]}]}]}]});
        assert!(compile(&triple).is_ok());
    }
}
