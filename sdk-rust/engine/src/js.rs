//! JavaScript value semantics over JSON values.
//!
//! flagd's targeting language is JsonLogic, and its reference evaluator
//! (`@openfeature/flagd-core`, built on `json-logic-engine`) runs it with
//! JavaScript's coercions: `"1" == 1`, `null < 18`, `[]` is falsy, numbers
//! print without a trailing `.0`. Providers that evaluate in-process must
//! agree with the server bit for bit, so these rules are reproduced here in
//! one place rather than approximated in each operator.

use std::cmp::Ordering;
use std::fmt::Write;

use serde_json::{Number, Value};

/// A JavaScript exception raised while evaluating a rule; the flag
/// evaluation then fails with `GENERAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Throw(pub(crate) &'static str);

pub(crate) type JsResult<T> = Result<T, Throw>;

/// json-logic-engine's truthiness: JavaScript's, except that empty arrays
/// and empty plain objects are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => {
            let f = as_f64(n);
            f != 0.0 && !f.is_nan()
        }
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

pub(crate) fn as_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// JavaScript's `+value` for the operands arithmetic accepts. Arrays and
/// objects throw (json-logic-engine's `precoerceNumber`); strings may give
/// NaN, which the caller rejects.
pub(crate) fn to_number(value: &Value) -> JsResult<f64> {
    match value {
        Value::Null => Ok(0.0),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Ok(as_f64(n)),
        Value::String(s) => Ok(parse_number(s)),
        Value::Array(_) | Value::Object(_) => Err(Throw("an array or object is not a number")),
    }
}

/// JavaScript's `Number(string)`.
pub(crate) fn parse_number(text: &str) -> f64 {
    let s = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if s.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = s.strip_prefix(prefix) {
            return if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
                digits.chars().fold(0.0, |acc, c| acc * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64)
            } else {
                f64::NAN
            };
        }
    }
    match s {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return f64::NAN;
    }
    s.parse::<f64>().unwrap_or(f64::NAN)
}

/// A finite number as a JSON value: integral values stay integers (so they
/// print as `3`, not `3.0`); NaN and infinities throw, as every arithmetic
/// operator of json-logic-engine does.
pub(crate) fn number(f: f64) -> JsResult<Value> {
    if !f.is_finite() {
        return Err(Throw("arithmetic result is not a finite number"));
    }
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number).ok_or(Throw("arithmetic result is not a finite number"))
}

/// JavaScript's `Number.prototype.toString()`.
pub(crate) fn write_number(f: f64, out: &mut String) {
    if f == 0.0 {
        out.push('0');
    } else if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if (1e-6..1e21).contains(&f.abs()) {
        let _ = write!(out, "{f}");
    } else {
        let formatted = format!("{f:e}");
        match formatted.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                let _ = write!(out, "{mantissa}e+{exponent}");
            }
            _ => out.push_str(&formatted),
        }
    }
}

/// JavaScript's `String(value)`: what `cat`, `in` on strings and the
/// variant lookup see.
pub(crate) fn write_string(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_json_number(n, out),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                // Array.prototype.join renders null and undefined as "".
                if !item.is_null() {
                    write_string(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

fn write_json_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        write_number(as_f64(n), out);
    }
}

pub(crate) fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_string(value, &mut out);
    out
}

/// `a === b`. Arrays and objects are compared by identity in JavaScript;
/// two evaluated values are never the same object, so they are unequal.
pub(crate) fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => as_f64(x) == as_f64(y),
        (Value::String(x), Value::String(y)) => crate::text::same(x, y),
        _ => false,
    }
}

/// `a == b` for primitives (the comparators reject arrays and objects
/// before they get here).
pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => crate::text::same(x, y),
        _ => match (to_number(a), to_number(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
    }
}

/// JavaScript's abstract relational comparison for primitives: strings
/// compare by UTF-16 code units, everything else as numbers (NaN compares
/// as unordered).
pub(crate) fn js_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return Some(x.encode_utf16().cmp(y.encode_utf16()));
    }
    let x = to_number(a).ok()?;
    let y = to_number(b).ok()?;
    x.partial_cmp(&y)
}

fn is_string_or_null(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Null)
}

fn is_nan_number(value: &Value) -> JsResult<bool> {
    Ok(to_number(value)?.is_nan())
}

/// json-logic-engine's `compareCheck(item, prev)`: the coercion a loose
/// comparator applies to its right operand. Two strings (or nulls) compare
/// as they are; otherwise both sides must be numeric, and `null` on one
/// side against a falsy value on the other is made comparable.
pub(crate) fn compare_check<'v>(item: &'v Value, prev: &Value) -> JsResult<CheckedOperand<'v>> {
    if is_string_or_null(item) && is_string_or_null(prev) {
        return Ok(CheckedOperand::Same(item));
    }
    if is_nan_number(item)? && !prev.is_null() {
        return Err(Throw("comparison of a value that is not a number"));
    }
    if is_nan_number(prev)? {
        return Err(Throw("comparison of a value that is not a number"));
    }
    if prev.is_null() && !truthy_js(item) {
        return Ok(CheckedOperand::Null);
    }
    if item.is_null() && !truthy_js(prev) {
        return Ok(CheckedOperand::Zero);
    }
    Ok(CheckedOperand::Same(item))
}

/// The right operand of a loose comparison after `compare_check`.
#[derive(Debug)]
pub(crate) enum CheckedOperand<'v> {
    Same(&'v Value),
    Null,
    Zero,
}

static NULL: Value = Value::Null;

impl CheckedOperand<'_> {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Value) -> R) -> R {
        match self {
            CheckedOperand::Same(value) => f(value),
            CheckedOperand::Null => f(&NULL),
            CheckedOperand::Zero => f(&Value::from(0)),
        }
    }
}

/// Plain JavaScript truthiness (`!!value`), where `[]` and `{}` are true.
/// Only the comparators' coercion uses it; JsonLogic's own truthiness is
/// [`truthy`].
pub(crate) fn truthy_js(value: &Value) -> bool {
    match value {
        Value::Array(_) | Value::Object(_) => true,
        other => truthy(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_like_javascript() {
        let cases = [
            (3.0, "3"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (123456789012.0, "123456789012"),
        ];
        for (value, expected) in cases {
            let mut out = String::new();
            write_number(value, &mut out);
            assert_eq!(out, expected, "{value}");
        }
    }

    #[test]
    fn strings_parse_like_javascript() {
        assert_eq!(parse_number(" 12 "), 12.0);
        assert_eq!(parse_number(""), 0.0);
        assert_eq!(parse_number("0x10"), 16.0);
        assert_eq!(parse_number("1e3"), 1000.0);
        assert_eq!(parse_number("-Infinity"), f64::NEG_INFINITY);
        assert!(parse_number("abc").is_nan());
        assert!(parse_number("inf").is_nan());
        assert!(parse_number("1_0").is_nan());
    }

    #[test]
    fn string_conversion() {
        assert_eq!(to_string(&json!([1, null, [2, "a"], true])), "1,,2,a,true");
        assert_eq!(to_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(to_string(&json!(2.50)), "2.5");
    }

    #[test]
    fn truthiness() {
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!(""), json!([]), json!({})] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for truthy_value in [json!(true), json!(-1), json!("0"), json!([0]), json!({"a": null})] {
            assert!(truthy(&truthy_value), "{truthy_value}");
        }
    }

    #[test]
    fn utf16_order_for_strings() {
        // U+FF61 sorts after U+1F600 in UTF-16 (surrogates are 0xD8xx) but before it in UTF-8.
        assert_eq!(js_cmp(&json!("\u{ff61}"), &json!("\u{1f600}")), Some(Ordering::Greater));
    }
}
