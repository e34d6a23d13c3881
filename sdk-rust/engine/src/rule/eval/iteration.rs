//! `map`, `filter`, `all`, `some`, `none` and `reduce`: each element
//! visited is charged to the evaluation's budget.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{Data, Env, Out, owned};
use crate::js::{self, JsResult, Throw};
use crate::limits::value_size;
use crate::rule::{Iteration, Rule};

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
pub(super) fn iterate<'a>(
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
pub(super) fn reduce<'a>(
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
