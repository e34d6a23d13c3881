//! Evaluation of the compiled rule tree.
//!
//! Values are `Cow<Value>`: anything read from the context or the tree is
//! borrowed, and only computed values (a `cat`, a sum) are owned. Failures
//! are JavaScript exceptions ([`Throw`]) and end the whole evaluation with
//! `GENERAL`, exactly where flagd's reference evaluator throws.

use std::borrow::Cow;
use std::cell::Cell;

use serde_json::{Map, Value};

use super::{Args, Arithmetic, Comparator, FlagdProperty, Iteration, Rule, Var, VarPath};
use crate::Context;
use crate::js::{self, JsResult, Throw};
use crate::limits::{self, Limit, value_size};

/// What a rule is evaluated against: the context and what flagd adds to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) context: &'a Context,
    pub(crate) flag_key: &'a str,
    /// Unix seconds, for `$flagd.timestamp`.
    pub(crate) now: i64,
    pub(crate) budget: &'a Budget,
}

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
    fn copy<'v>(&self, value: Cow<'v, Value>) -> JsResult<Value> {
        if let Cow::Borrowed(value) = &value {
            self.bytes(value_size(value))?;
        }
        Ok(value.into_owned())
    }
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
    let env = Env { context: &context, flag_key: "", now: 0, budget };
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
        (Value::String(text), Value::String(affix)) => {
            Value::Bool(if starts { text.starts_with(affix.as_str()) } else { text.ends_with(affix.as_str()) })
        }
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

#[inline(always)]
fn eval_var<'a>(var: &'a Var, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    let found = match &var.path {
        VarPath::Whole => Some(whole(env, data)?),
        VarPath::Static { segments, flagd } => match (data, flagd, &segments[..]) {
            (Data::Root, Some(property), _) => flagd_property(*property, env),
            // The common case, `{"var": "email"}`: one map lookup.
            (Data::Root, None, [key]) => env.context.get(key).map(Cow::Borrowed),
            _ => lookup(env, data, segments.iter().map(String::as_str)),
        },
        VarPath::Dynamic(rule) => {
            let path = rule.eval(env, data)?;
            match path.as_ref() {
                Value::Null => Some(whole(env, data)?),
                other => {
                    let text = js::to_string(other);
                    if text.is_empty() {
                        Some(whole(env, data)?)
                    } else {
                        let segments = super::compile::split_path(&text);
                        if matches!(data, Data::Root) && segments[0] == "$flagd" {
                            let property = match (segments.len(), segments.get(1).map(String::as_str)) {
                                (1, _) => FlagdProperty::Object,
                                (2, Some("flagKey")) => FlagdProperty::FlagKey,
                                (2, Some("timestamp")) => FlagdProperty::Timestamp,
                                _ => FlagdProperty::Unknown,
                            };
                            flagd_property(property, env)
                        } else {
                            match lookup(env, data, segments.iter().map(String::as_str)) {
                                Some(found) => Some(owned(env.budget.copy(found)?)),
                                None => None,
                            }
                        }
                    }
                }
            }
        }
    };
    // json-logic-engine compiles `var` to `path ?? default`, so a null value
    // also takes the default.
    match found {
        Some(value) if !value.is_null() => Ok(value),
        _ => match &var.default {
            Some(default) => default.eval(env, data),
            None => Ok(NULL),
        },
    }
}

/// `{"var": ""}`: the current element, or a copy of the whole context
/// (charged to the budget).
fn whole<'a>(env: &Env<'a>, data: Data<'a>) -> JsResult<Cow<'a, Value>> {
    Ok(match data {
        Data::Item(item) => Cow::Borrowed(item),
        Data::Root => {
            let mut context = env.context.to_map();
            context.insert("$flagd".to_owned(), flagd_object(env));
            let context = Value::Object(context);
            env.budget.bytes(value_size(&context))?;
            owned(context)
        }
    })
}

fn flagd_object(env: &Env<'_>) -> Value {
    let mut map = Map::new();
    map.insert("flagKey".to_owned(), Value::String(env.flag_key.to_owned()));
    map.insert("timestamp".to_owned(), Value::from(env.now));
    Value::Object(map)
}

fn flagd_property<'a>(property: FlagdProperty, env: &Env<'a>) -> Option<Cow<'a, Value>> {
    match property {
        FlagdProperty::Object => Some(owned(flagd_object(env))),
        FlagdProperty::FlagKey => Some(owned(Value::String(env.flag_key.to_owned()))),
        FlagdProperty::Timestamp => Some(owned(Value::from(env.now))),
        FlagdProperty::Unknown => None,
    }
}

/// Walks a path through objects (by key) and arrays (by index). As in
/// JavaScript, the last step may also read a string's character or the
/// `length` of a string or array.
fn lookup<'a, 's>(env: &Env<'a>, data: Data<'a>, segments: impl Iterator<Item = &'s str>) -> Option<Cow<'a, Value>> {
    let mut segments = segments.peekable();
    let mut current = match data {
        Data::Item(item) => item,
        Data::Root => env.context.get(segments.next()?)?,
    };
    while let Some(segment) = segments.next() {
        match step(current, segment) {
            Some(next) => current = next,
            None if segments.peek().is_none() => return derived_property(current, segment).map(owned),
            None => return None,
        }
    }
    Some(Cow::Borrowed(current))
}

fn derived_property(value: &Value, segment: &str) -> Option<Value> {
    match (value, segment) {
        (Value::Array(items), "length") => Some(Value::from(items.len())),
        (Value::String(text), "length") => Some(Value::from(text.encode_utf16().count())),
        (Value::String(text), index) => {
            let index = index.parse::<usize>().ok()?;
            text.chars().nth(index).map(|c| Value::String(c.to_string()))
        }
        _ => None,
    }
}

fn step<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    }
}

/// JsonLogic `missing`: the keys whose path is absent. A path is absent
/// when a step meets a falsy value or an undefined property (a present
/// `null` counts as present), as in json-logic-engine.
fn missing<'v>(keys: impl Iterator<Item = &'v Value>, env: &Env<'_>, data: Data<'_>) -> Value {
    let absent = keys
        .filter(|key| {
            let path = super::compile::split_path(&js::to_string(key));
            if matches!(data, Data::Root) && path[0] == "$flagd" {
                let known = matches!(path.get(1).map(String::as_str), None | Some("flagKey" | "timestamp"));
                return !(known && path.len() <= 2);
            }
            let mut segments = path.iter();
            let mut current = match data {
                Data::Item(item) => item,
                Data::Root => match segments.next().and_then(|first| env.context.get(first)) {
                    Some(value) => value,
                    None => return true,
                },
            };
            for segment in segments {
                if !js::truthy_js(current) {
                    return true;
                }
                match step(current, segment) {
                    Some(next) => current = next,
                    None => return true,
                }
            }
            false
        })
        .cloned()
        .collect();
    Value::Array(absent)
}

fn eval_if<'a>(rules: &'a [Rule], env: &Env<'a>, data: Data<'a>) -> Out<'a> {
    match rules {
        [] => Ok(NULL),
        [only] => only.eval(env, data),
        _ => {
            let mut pairs = rules.chunks_exact(2);
            for pair in pairs.by_ref() {
                let condition = pair[0].eval(env, data)?;
                if js::truthy(&condition) {
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

fn elements<'a>(selector: &'a Rule, env: &Env<'a>, data: Data<'a>) -> JsResult<Cow<'a, [Value]>> {
    Ok(match selector.eval(env, data)? {
        Cow::Borrowed(Value::Array(items)) => Cow::Borrowed(items.as_slice()),
        Cow::Owned(Value::Array(items)) => Cow::Owned(items),
        other if !js::truthy_js(&other) => Cow::Owned(Vec::new()),
        _ => return Err(Throw("expected an array to iterate over")),
    })
}

/// `map`, `filter`, `all`, `some`, `none`: each element visited costs as
/// many steps as the mapper has operators (`cost`).
#[inline(never)]
fn iterate<'a>(
    op: Iteration,
    selector: &'a Rule,
    mapper: &'a Rule,
    cost: u64,
    env: &Env<'a>,
    data: Data<'a>,
) -> Out<'a> {
    let items = elements(selector, env, data)?;
    let apply = |item: &Value| -> JsResult<Value> {
        env.budget.steps(cost)?;
        let mapped = mapper.eval(env, Data::Item(item))?;
        env.budget.bytes(16)?;
        env.budget.copy(mapped)
    };
    let test = |item: &Value| -> JsResult<bool> {
        env.budget.steps(cost)?;
        let result = mapper.eval(env, Data::Item(item))?;
        Ok(js::truthy(&result))
    };
    let result = match op {
        Iteration::Map => Value::Array(items.iter().map(apply).collect::<JsResult<_>>()?),
        Iteration::Filter => {
            let mut kept = Vec::new();
            for item in items.iter() {
                if test(item)? {
                    env.budget.bytes(value_size(item))?;
                    kept.push(item.clone());
                }
            }
            Value::Array(kept)
        }
        Iteration::All => {
            let mut all = !items.is_empty();
            for item in items.iter() {
                if !test(item)? {
                    all = false;
                    break;
                }
            }
            Value::Bool(all)
        }
        Iteration::Some | Iteration::None => {
            let mut some = false;
            for item in items.iter() {
                if test(item)? {
                    some = true;
                    break;
                }
            }
            Value::Bool(some == (op == Iteration::Some))
        }
    };
    Ok(owned(result))
}

/// `reduce`: each element costs as many steps as the mapper has operators,
/// and each new accumulator its size in bytes, so an accumulator that grows
/// (let alone doubles) runs out of budget instead of memory.
#[inline(never)]
fn reduce<'a>(
    selector: &'a Rule,
    mapper: &'a Rule,
    initial: Option<&'a Rule>,
    cost: u64,
    env: &Env<'a>,
    data: Data<'a>,
) -> Out<'a> {
    let items = elements(selector, env, data)?;
    let mut items = items.iter();
    let mut accumulator = match initial {
        Some(initial) => env.budget.copy(initial.eval(env, data)?)?,
        None => items.next().cloned().ok_or(Throw("'reduce' of an empty array with no initial value"))?,
    };
    check_flat(&accumulator)?;
    for item in items {
        env.budget.steps(cost)?;
        env.budget.bytes(value_size(item))?;
        let mut scope = Map::new();
        scope.insert("accumulator".to_owned(), accumulator);
        scope.insert("current".to_owned(), item.clone());
        let scope = Value::Object(scope);
        // An operator charged what it built; a value it passed through is copied here.
        accumulator = env.budget.copy(mapper.eval(env, Data::Item(&scope))?)?;
        check_flat(&accumulator)?;
    }
    Ok(owned(accumulator))
}

/// json-logic-engine refuses accumulators that nest arrays or objects.
fn check_flat(value: &Value) -> JsResult<()> {
    let nested = match value {
        Value::Array(items) => items.iter().any(|v| v.is_array() || v.is_object()),
        Value::Object(map) => map.values().any(|v| v.is_array() || v.is_object()),
        _ => false,
    };
    if nested { Err(Throw("'reduce' accumulator nests arrays or objects")) } else { Ok(()) }
}
