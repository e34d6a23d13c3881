//! Reading the data: `var` (static, `$flagd` and dynamic paths), the whole
//! context, and `missing`, with JavaScript's property semantics.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{Data, Env, NULL, Out, owned};
use crate::js::{self, JsResult};
use crate::limits::value_size;
use crate::rule::{FlagdProperty, Var, VarPath};

#[inline(always)]
pub(super) fn eval_var<'a>(var: &'a Var, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
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
                        let segments = crate::rule::compile::split_path(&text);
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
pub(super) fn missing<'v>(keys: impl Iterator<Item = &'v Value>, env: &Env<'_>, data: Data<'_>) -> Value {
    let absent = keys
        .filter(|key| {
            let path = crate::rule::compile::split_path(&js::to_string(key));
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
