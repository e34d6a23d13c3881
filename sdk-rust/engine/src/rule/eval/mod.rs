//! Evaluation of the compiled rule tree.
//!
//! Values are `Cow<Value>`: anything read from the context or the tree is
//! borrowed, and only computed values (a `cat`, a sum) are owned. Failures
//! are JavaScript exceptions ([`Throw`]) and end the whole evaluation with
//! `GENERAL`, exactly where flagd's reference evaluator throws.

mod budget;
mod iteration;
mod lookup;

use std::borrow::Cow;

use serde_json::Value;

use super::{Args, Arithmetic, Comparator, Rule};
use crate::Context;
use crate::js::{self, JsResult, Throw};
use crate::limits::value_size;

pub(crate) use budget::Budget;
use iteration::{iterate, reduce};
use lookup::{eval_var, missing};

/// What a rule is evaluated against: the context and what flagd adds to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) context: &'a Context,
    pub(crate) flag_key: &'a str,
    /// The hash state after `flag_key`, when the flag keeps one.
    pub(crate) key_hash: Option<&'a crate::bucket::PrefixHash>,
    /// Unix seconds, for `$flagd.timestamp`.
    pub(crate) now: i64,
    pub(crate) budget: &'a Budget,
}

/// The data `var` reads: the (enriched) context at the top, the current
/// element inside `map`, `filter`, `all`, `some`, `none` and `reduce`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Data<'a> {
    Root,
    Item(&'a Value),
}

pub(crate) type Out<'a> = JsResult<Cow<'a, Value>>;

const NULL: Cow<'static, Value> = Cow::Owned(Value::Null);

fn owned(value: Value) -> Cow<'static, Value> {
    Cow::Owned(value)
}

/// Evaluates a rule that reads nothing from the context (constant
/// folding), within `budget`.
pub(crate) fn evaluate_constant(rule: &Rule, budget: &Budget) -> JsResult<Value> {
    let context = Context::new();
    let env = Env { context: &context, flag_key: "", key_hash: None, now: 0, budget };
    rule.eval(&env, Data::Root).map(Cow::into_owned)
}

impl Rule {
    /// Dispatch only: every operator lives in its own function, and the
    /// rarely used ones are kept out of line so the recursive hot path
    /// (constants, `var`, `if`, comparisons) stays small.
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
        match self {
            Rule::Const(value) => Ok(Cow::Borrowed(value)),
            Rule::Var(var) => eval_var(var, env, data),
            Rule::If(rules) => eval_if(rules, env, data),
            Rule::And(rules) => eval_and_or(rules, false, env, data),
            Rule::Or(rules) => eval_and_or(rules, true, env, data),
            Rule::Not { operand, negate } => {
                let value = operand.eval(env, data)?;
                Ok(owned(Value::Bool(js::truthy(&value) != *negate)))
            }
            Rule::Compare(comparator, rules) => compare(*comparator, rules, env, data).map(|b| owned(Value::Bool(b))),
            Rule::In(args) => eval_in_rule(args, env, data),
            Rule::Affix { starts, args } => eval_affix(*starts, args, env, data),
            Rule::Fractional(fractional) => fractional.eval(env, data),
            Rule::SemVer(semver) => semver.eval(env, data),
            Rule::Array(rules) => eval_array(rules, env, data),
            Rule::Missing(args) => eval_missing(args, env, data),
            Rule::MissingSome(need, options) => eval_missing_some(need, options, env, data),
            Rule::Arithmetic(op, args) => eval_arithmetic(*op, args, env, data),
            Rule::Extreme { max, args } => eval_extreme(*max, args, env, data),
            Rule::Cat { args, skip_null } => eval_cat(args, *skip_null, env, data),
            Rule::Substr(args) => eval_substr(args, env, data),
            Rule::Merge(args) => eval_merge(args, env, data),
            Rule::Iterate { op, selector, mapper, cost } => iterate(*op, selector, mapper, *cost, env, data),
            Rule::Reduce { selector, mapper, initial, cost } => {
                reduce(selector, mapper, initial.as_deref(), *cost, env, data)
            }
        }
    }
}

impl Rule {
    /// Whether the rule's value is truthy, without building the value
    /// where the operator answers a boolean (comparisons, `in`, affixes,
    /// `!`, `and`/`or` of those): what `if` needs of its conditions. Throws
    /// exactly where [`Rule::eval`] would.
    pub(crate) fn test<'a>(&'a self, env: &Env<'a>, data: Data<'a>) -> JsResult<bool> {
        match self {
            Rule::Compare(comparator, rules) => compare(*comparator, rules, env, data),
            Rule::Not { operand, negate } => Ok(operand.test(env, data)? != *negate),
            Rule::And(rules) => {
                for rule in rules {
                    if !rule.test(env, data)? {
                        return Ok(false);
                    }
                }
                Ok(!rules.is_empty())
            }
            Rule::Or(rules) => {
                for rule in rules {
                    if rule.test(env, data)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::In(args) => match pair(args, env, data)? {
                Some((needle, haystack)) => eval_in(Some(&needle), Some(&haystack), env.budget),
                None => Ok(js::truthy(eval_in_spread(args, env, data)?.as_ref())),
            },
            Rule::Affix { starts, args } => match pair(args, env, data)? {
                Some((text, affix)) => Ok(match (text.as_ref(), affix.as_ref()) {
                    (Value::String(text), Value::String(affix)) => crate::text::has_affix(text, affix, *starts),
                    _ => false,
                }),
                None => Ok(js::truthy(self.eval(env, data)?.as_ref())),
            },
            _ => Ok(js::truthy(self.eval(env, data)?.as_ref())),
        }
    }
}

fn eval_and_or<'a>(rules: &'a [Rule], or: bool, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let mut last = NULL;
    for rule in rules {
        last = rule.eval(env, data)?;
        if js::truthy(&last) == or {
            break;
        }
    }
    Ok(last)
}

fn eval_in_rule<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    if let Some((needle, haystack)) = pair(args, env, data)? {
        return eval_in(Some(&needle), Some(&haystack), env.budget).map(|b| owned(Value::Bool(b)));
    }
    eval_in_spread(args, env, data)
}

#[inline(never)]
fn eval_in_spread<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    eval_in(values.get(0), values.get(1), env.budget).map(|b| owned(Value::Bool(b)))
}

fn eval_affix<'a>(starts: bool, args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let test = |text: &Value, affix: &Value| match (text, affix) {
        (Value::String(text), Value::String(affix)) => Value::Bool(crate::text::has_affix(text, affix, starts)),
        _ => Value::Null,
    };
    if let Some((text, affix)) = pair(args, env, data)? {
        return Ok(owned(test(&text, &affix)));
    }
    affix_spread(args, test, env, data)
}

#[inline(never)]
fn affix_spread<'a>(args: &'a Args, test: impl Fn(&Value, &Value) -> Value, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    Ok(owned(match (values.len(), values.get(0), values.get(1)) {
        (2, Some(text), Some(affix)) => test(text, affix),
        _ => Value::Null,
    }))
}

#[inline(never)]
fn eval_array<'a>(rules: &'a [Rule], env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    env.budget.bytes(16 * rules.len() as u64)?;
    let values = rules.iter().map(|r| env.budget.copy(r.eval(env, data)?)).collect::<JsResult<_>>()?;
    Ok(owned(Value::Array(values)))
}

#[inline(never)]
fn eval_missing<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    env.budget.steps(values.len() as u64)?;
    Ok(owned(missing(values.iter(), env, data)))
}

#[inline(never)]
fn eval_missing_some<'a>(need: &'a Rule, options: &'a Rule, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let need = need.eval(env, data)?;
    let options = options.eval(env, data)?;
    let Value::Array(options) = options.as_ref() else {
        return Err(Throw("'missing_some' expects an array of keys"));
    };
    env.budget.steps(options.len() as u64)?;
    let missing = missing(options.iter(), env, data);
    let found = options.len() - missing.as_array().map_or(0, Vec::len);
    let enough = js::js_cmp(&Value::from(found), &need).is_some_and(|o| o.is_ge());
    Ok(owned(if enough { Value::Array(Vec::new()) } else { missing }))
}

#[inline(never)]
fn eval_arithmetic<'a>(op: Arithmetic, args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    arithmetic(op, &Values::of(args, env, data)?).map(owned)
}

#[inline(never)]
fn eval_extreme<'a>(max: bool, args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    let mut best: Option<&Value> = None;
    for value in values.iter() {
        let Value::Number(n) = value else {
            return Err(Throw("'max' and 'min' accept only numbers"));
        };
        let better = best.is_none_or(|b| {
            let (candidate, current) = (js::as_f64(n), b.as_f64().unwrap_or(f64::NAN));
            if max { candidate > current } else { candidate < current }
        });
        if better {
            best = Some(value);
        }
    }
    best.cloned().map(owned).ok_or(Throw("'max' and 'min' need at least one number"))
}

#[inline(never)]
fn eval_cat<'a>(args: &'a Args, skip_null: bool, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    let mut out = String::new();
    for value in values.iter() {
        if !(skip_null && value.is_null()) {
            let before = out.len();
            // A nested array prints its elements: price it before writing it.
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null) {
                env.budget.bytes(value_size(value))?;
            }
            js::write_string(value, &mut out);
            env.budget.bytes((out.len() - before) as u64)?;
        }
    }
    Ok(owned(Value::String(out)))
}

#[inline(never)]
fn eval_substr<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    if let Some(Value::String(text)) = values.get(0) {
        env.budget.bytes(4 * text.len() as u64)?;
    }
    substr(values.get(0), values.get(1), values.get(2)).map(|s| owned(Value::String(s)))
}

#[inline(never)]
fn eval_merge<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let values = Values::of(args, env, data)?;
    let mut merged = Vec::new();
    for value in values.iter() {
        match value {
            Value::Array(items) => {
                env.budget.steps(items.len() as u64)?;
                env.budget.bytes(value_size(value))?;
                merged.extend(items.iter().cloned());
            }
            other => {
                env.budget.bytes(value_size(other))?;
                merged.push(other.clone());
            }
        }
    }
    Ok(owned(Value::Array(merged)))
}

/// The two evaluated arguments of a two-argument literal list, without
/// building a [`Values`]: the common shape of `in`, `starts_with`, `ends_with`.
#[allow(clippy::type_complexity)]
#[inline(always)]
fn pair<'a>(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> JsResult<Option<(Cow<'a, Value>, Cow<'a, Value>)>> {
    match args {
        Args::List(rules) if rules.len() == 2 => Ok(Some((rules[0].eval(env, data)?, rules[1].eval(env, data)?))),
        _ => Ok(None),
    }
}

/// Evaluated arguments of an eager operator. Up to four are kept inline,
/// because operators with one to three arguments are evaluated on every
/// request and should not allocate.
pub(crate) struct Values<'a> {
    len: usize,
    inline: [Cow<'a, Value>; 4],
    spill: Vec<Cow<'a, Value>>,
}

impl<'a> Values<'a> {
    pub(crate) fn of(args: &'a Args, env: &Env<'a>, data: Data<'a>) -> JsResult<Values<'a>> {
        let mut values = Values { len: 0, inline: [NULL, NULL, NULL, NULL], spill: Vec::new() };
        match args {
            Args::List(rules) => {
                for rule in rules {
                    values.push(rule.eval(env, data)?);
                }
            }
            Args::Spread(rule) => match rule.eval(env, data)? {
                Cow::Borrowed(Value::Array(items)) => items.iter().for_each(|item| values.push(Cow::Borrowed(item))),
                Cow::Owned(Value::Array(items)) => items.into_iter().for_each(|item| values.push(Cow::Owned(item))),
                single => values.push(single),
            },
        }
        Ok(values)
    }

    fn push(&mut self, value: Cow<'a, Value>) {
        if self.len < self.inline.len() {
            self.inline[self.len] = value;
        } else {
            self.spill.push(value);
        }
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Value> {
        if index >= self.len {
            None
        } else if index < self.inline.len() {
            Some(&self.inline[index])
        } else {
            Some(&self.spill[index - self.inline.len()])
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Value> {
        (0..self.len).filter_map(|index| self.get(index))
    }
}

fn eval_if<'a>(rules: &'a [Rule], env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    match rules {
        [] => Ok(NULL),
        [only] => only.eval(env, data),
        _ => {
            let mut pairs = rules.chunks_exact(2);
            for pair in pairs.by_ref() {
                if pair[0].test(env, data)? {
                    return pair[1].eval(env, data);
                }
            }
            match pairs.remainder() {
                [otherwise] => otherwise.eval(env, data),
                _ => Ok(NULL),
            }
        }
    }
}

/// Comparators, including the chained `between` form: each operand is
/// compared with the (coerced) one before it, stopping at the first false.
fn compare<'a>(comparator: Comparator, rules: &'a [Rule], env: &Env<'a>, data: Data<'a>) -> JsResult<bool> {
    let Some((first, rest)) = rules.split_first() else { return Ok(false) };
    let mut previous = first.eval(env, data)?;
    for (index, rule) in rest.iter().enumerate() {
        let current = rule.eval(env, data)?;
        let last = index + 1 == rest.len();
        if comparator.is_strict() {
            if js::strict_eq(&previous, &current) != (comparator == Comparator::StrictEq) {
                return Ok(false);
            }
            previous = current;
        } else {
            let checked = js::compare_check(&current, &previous)?;
            if !checked.with(|right| loose(comparator, &previous, right)) {
                return Ok(false);
            }
            // Only a chain (`between`) needs the coerced operand again.
            if !last {
                let next = checked.with(|right| right.clone());
                previous = owned(next);
            }
        }
    }
    Ok(true)
}

fn loose(comparator: Comparator, left: &Value, right: &Value) -> bool {
    use std::cmp::Ordering::*;
    match comparator {
        Comparator::Eq => js::loose_eq(left, right),
        Comparator::Ne => !js::loose_eq(left, right),
        Comparator::Lt => js::js_cmp(left, right) == Some(Less),
        Comparator::Le => matches!(js::js_cmp(left, right), Some(Less | Equal)),
        Comparator::Gt => js::js_cmp(left, right) == Some(Greater),
        Comparator::Ge => matches!(js::js_cmp(left, right), Some(Greater | Equal)),
        Comparator::StrictEq | Comparator::StrictNe => unreachable!("strict comparators are handled by the caller"),
    }
}

fn arithmetic(op: Arithmetic, values: &Values<'_>) -> JsResult<Value> {
    let mut numbers = values.iter().map(js::to_number);
    let result = match op {
        Arithmetic::Add => numbers.try_fold(0.0, |sum, n| n.map(|n| sum + n))?,
        Arithmetic::Multiply => numbers.try_fold(1.0, |product, n| n.map(|n| product * n))?,
        Arithmetic::Subtract => {
            let first = numbers.next().ok_or(Throw("'-' needs at least one argument"))??;
            if values.len() == 1 {
                -first
            } else {
                numbers.try_fold(first, |difference, n| n.map(|n| difference - n))?
            }
        }
        Arithmetic::Divide => {
            let first = numbers.next().ok_or(Throw("'/' needs at least one argument"))??;
            let (mut quotient, divisors) =
                if values.len() == 1 { (1.0, vec![Ok(first)]) } else { (first, numbers.collect()) };
            for divisor in divisors {
                let divisor = divisor?;
                if divisor == 0.0 || divisor.is_nan() {
                    return Err(Throw("division by zero"));
                }
                quotient /= divisor;
            }
            quotient
        }
        Arithmetic::Remainder => {
            if values.len() < 2 {
                return Err(Throw("'%' needs two arguments"));
            }
            let first = numbers.next().ok_or(Throw("'%' needs two arguments"))??;
            numbers.try_fold(first, |remainder, n| n.map(|n| remainder % n))?
        }
    };
    if result.is_nan() {
        return Err(Throw("arithmetic on a value that is not a number"));
    }
    js::number(result)
}

/// `(haystack || []).includes(needle)`; scanning an array costs a step per
/// element.
fn eval_in(needle: Option<&Value>, haystack: Option<&Value>, budget: &Budget) -> JsResult<bool> {
    let Some(haystack) = haystack.filter(|h| js::truthy_js(h)) else {
        return Ok(false);
    };
    match haystack {
        Value::Array(items) => {
            budget.steps(items.len() as u64)?;
            Ok(needle.is_some_and(|needle| items.iter().any(|item| js::strict_eq(item, needle))))
        }
        Value::String(text) => {
            let needle = needle.map_or_else(|| "undefined".to_owned(), js::to_string);
            Ok(text.contains(needle.as_str()))
        }
        _ => Err(Throw("'in' needs an array or a string to search")),
    }
}

/// JavaScript's `String.prototype.substr(from, length)`, with JsonLogic's
/// negative length meaning "stop that many characters before the end".
fn substr(text: Option<&Value>, from: Option<&Value>, length: Option<&Value>) -> JsResult<String> {
    let Some(Value::String(text)) = text else {
        return Err(Throw("'substr' needs a string"));
    };
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len() as f64;
    let start = {
        let start = to_integer(from);
        if start < 0.0 { (size + start).max(0.0) } else { start.min(size) }
    };
    let end = match length {
        None => size,
        Some(length) => {
            let length_number = js::to_number(length).unwrap_or(f64::NAN);
            if length_number < 0.0 {
                (size + to_integer(Some(length))).max(start)
            } else {
                (start + to_integer(Some(length)).max(0.0)).min(size)
            }
        }
    };
    Ok(chars[start as usize..end.max(start) as usize].iter().collect())
}

/// JavaScript's ToIntegerOrInfinity, for `substr`'s positions.
fn to_integer(value: Option<&Value>) -> f64 {
    let number = value.map(|v| js::to_number(v).unwrap_or(f64::NAN)).unwrap_or(0.0);
    if number.is_nan() { 0.0 } else { number.trunc() }
}
