//! flagd's `fractional`: sticky weighted buckets.
//!
//! `{"fractional": [bucketBy?, [variant, weight?], …]}`. All arguments are
//! evaluated first (variants and weights may be expressions). When the first
//! argument is a string it is the bucketing value; otherwise the value is
//! the flag key followed by the targeting key. A `null` first argument is
//! dropped and the default used, as Go flagd does (the JavaScript core
//! returns null there). The hash and the walk over cumulative integer
//! weights are flagd's v2 algorithm, in [`crate::bucket`].
//!
//! Buckets written as constants — nearly always the case — are parsed once
//! at compile time, so evaluation hashes and walks a slice.

use std::borrow::Cow;

use serde_json::Value;

use crate::bucket;
use crate::js;
use crate::rule::eval::{Data, Out, Values};
use crate::rule::{Args, Env, Rule};

/// Largest total weight flagd accepts (Go's `math.MaxInt32`).
const MAX_TOTAL_WEIGHT: u64 = i32::MAX as u64;

#[derive(Debug, Clone)]
pub(crate) enum Fractional {
    /// Every argument is a constant — nearly always — so how to bucket and
    /// the buckets are settled at compile time and nothing else is kept.
    Constant {
        /// A constant bucketing value; `None`: the flag key and the
        /// targeting key.
        by: Option<String>,
        /// `None` where flagd would reject the buckets (null).
        buckets: Option<Buckets>,
    },
    /// Some argument is computed when evaluated.
    Computed {
        args: Args,
        /// Buckets from the second argument on, when they are constant:
        /// used when the first argument is a bucketing value.
        tail: Option<Option<Buckets>>,
    },
}

/// Parsed buckets; `None` where flagd would reject them (the operator then
/// returns null).
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    variants: Box<[Value]>,
    weights: Box<[u64]>,
}

impl Fractional {
    pub(crate) fn compile(args: Args) -> Fractional {
        if let Args::List(rules) = &args {
            let constants: Option<Vec<&Value>> = rules.iter().map(Rule::as_const).collect();
            if let Some(constants) = constants {
                return match constants.first() {
                    Some(Value::String(key)) => Fractional::Constant {
                        by: Some(key.clone()),
                        buckets: Buckets::parse(constants[1..].iter().copied()),
                    },
                    Some(Value::Null) => {
                        Fractional::Constant { by: None, buckets: Buckets::parse(constants[1..].iter().copied()) }
                    }
                    // No arguments: null, as flagd.
                    None => Fractional::Constant { by: None, buckets: None },
                    Some(_) => Fractional::Constant { by: None, buckets: Buckets::parse(constants.into_iter()) },
                };
            }
            let tail: Option<Vec<&Value>> = rules.iter().skip(1).map(Rule::as_const).collect();
            let tail = tail.map(|values| Buckets::parse(values.into_iter()));
            return Fractional::Computed { args, tail };
        }
        Fractional::Computed { args, tail: None }
    }

    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
        let (args, tail) = match self {
            Fractional::Constant { by, buckets } => {
                let Some(buckets) = buckets else { return Ok(null()) };
                let hash = match by {
                    Some(key) => Some(bucket::hash(&[key.as_str()])),
                    None => default_hash(env),
                };
                return Ok(hash.and_then(|h| buckets.choose(h)).map_or_else(null, Cow::Borrowed));
            }
            Fractional::Computed { args, tail } => (args, tail),
        };
        let Args::List(rules) = args else {
            let values = Values::of(args, env, data)?;
            let Some(first) = values.get(0) else { return Ok(null()) };
            return Ok(match first {
                Value::String(key) => {
                    choose_owned(Buckets::parse(values.iter().skip(1)), bucket::hash(&[key.as_str()]))
                }
                Value::Null => choose_owned(Buckets::parse(values.iter().skip(1)), default_hash(env)),
                _ => choose_owned(Buckets::parse(values.iter()), default_hash(env)),
            });
        };
        let Some(first_rule) = rules.first() else { return Ok(null()) };
        let first = first_rule.eval(env, data)?;
        let (hash, buckets) = match first.as_ref() {
            Value::String(key) => (Some(bucket::hash(&[key.as_str()])), tail.as_ref()),
            Value::Null => (default_hash(env), tail.as_ref()),
            // The first argument is computed, so not all are constant.
            _ => (default_hash(env), None),
        };
        match buckets {
            Some(Some(buckets)) => Ok(hash.and_then(|h| buckets.choose(h)).map_or_else(null, Cow::Borrowed)),
            Some(None) => Ok(null()),
            None => {
                let skip = usize::from(matches!(first.as_ref(), Value::String(_) | Value::Null));
                let mut values = Vec::with_capacity(rules.len());
                values.push(first);
                for rule in &rules[1..] {
                    values.push(rule.eval(env, data)?);
                }
                Ok(choose_owned(Buckets::parse(values.iter().skip(skip).map(AsRef::as_ref)), hash))
            }
        }
    }
}

fn null<'a>() -> Cow<'a, Value> {
    Cow::Owned(Value::Null)
}

fn choose_owned<'a>(buckets: Option<Buckets>, hash: impl Into<Option<u32>>) -> Cow<'a, Value> {
    match (buckets, hash.into()) {
        (Some(buckets), Some(hash)) => buckets.choose(hash).cloned().map_or_else(null, Cow::Owned),
        _ => null(),
    }
}

/// Hash of `flagKey + targetingKey`; `None` without a targeting key.
fn default_hash(env: &Env<'_>) -> Option<u32> {
    match env.context.get(crate::TARGETING_KEY)? {
        Value::String(key) if !key.is_empty() => Some(match env.key_hash {
            Some(prefix) => prefix.of(key),
            None => bucket::hash(&[env.flag_key, key]),
        }),
        other if js::truthy_js(other) => Some(bucket::hash(&[env.flag_key, &js::to_string(other)])),
        _ => None,
    }
}

impl Buckets {
    fn parse<'v>(entries: impl Iterator<Item = &'v Value>) -> Option<Buckets> {
        let mut variants = Vec::new();
        let mut weights = Vec::new();
        for entry in entries {
            let Value::Array(parts) = entry else { return None };
            let (variant, weight) = match parts.as_slice() {
                [variant] => (variant, 1),
                [variant, Value::Number(weight)] => {
                    let weight = js::as_f64(weight);
                    if weight.fract() != 0.0 || !weight.is_finite() {
                        return None;
                    }
                    (variant, if weight < 0.0 { 0 } else { weight.min(u64::MAX as f64) as u64 })
                }
                _ => return None,
            };
            if !matches!(variant, Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null) {
                return None;
            }
            variants.push(variant.clone());
            weights.push(weight);
        }
        let total = weights.iter().try_fold(0u64, |sum, w| sum.checked_add(*w))?;
        (total <= MAX_TOTAL_WEIGHT).then_some(Buckets { variants: variants.into(), weights: weights.into() })
    }

    fn choose(&self, hash: u32) -> Option<&Value> {
        bucket::pick(hash, self.weights.iter().copied()).map(|index| &self.variants[index])
    }
}
