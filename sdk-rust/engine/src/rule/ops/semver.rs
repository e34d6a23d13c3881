//! flagd's `sem_ver`: `{"sem_ver": [version, operator, target]}`.
//!
//! Operators `=`, `!=`, `<`, `<=`, `>`, `>=`, `^` (same major) and `~` (same
//! major and minor). Versions may carry a `v`/`V` prefix; partial versions
//! (`"1"`, `"1.2"`, or the number `1.2`) are completed with zeros; build
//! metadata is ignored and a prerelease sorts before its release. Anything
//! unparsable makes the operator return null.

use std::borrow::Cow;
use std::cmp::Ordering;

use semver::Version;
use serde_json::Value;

use crate::js;
use crate::rule::eval::{Data, Out, Values};
use crate::rule::{Args, Env};

#[derive(Debug, Clone)]
pub(crate) struct SemVer {
    args: Args,
    /// Operator and target parsed at compile time when both are constants.
    fixed: Option<(Option<Operator>, Option<Version>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    SameMajor,
    SameMinor,
}

impl Operator {
    fn parse(value: &Value) -> Option<Operator> {
        Some(match js::to_string(value).as_str() {
            "=" => Operator::Eq,
            "!=" => Operator::Ne,
            "<" => Operator::Lt,
            "<=" => Operator::Le,
            ">" => Operator::Gt,
            ">=" => Operator::Ge,
            "^" => Operator::SameMajor,
            "~" => Operator::SameMinor,
            _ => return None,
        })
    }

    fn holds(self, left: &Version, right: &Version) -> bool {
        let order = (left.major, left.minor, left.patch)
            .cmp(&(right.major, right.minor, right.patch))
            .then_with(|| left.pre.cmp(&right.pre));
        match self {
            Operator::Eq => order == Ordering::Equal,
            Operator::Ne => order != Ordering::Equal,
            Operator::Lt => order == Ordering::Less,
            Operator::Le => order != Ordering::Greater,
            Operator::Gt => order == Ordering::Greater,
            Operator::Ge => order != Ordering::Less,
            Operator::SameMajor => left.major == right.major,
            Operator::SameMinor => left.major == right.major && left.minor == right.minor,
        }
    }
}

impl SemVer {
    pub(crate) fn compile(args: Args) -> SemVer {
        let fixed = match &args {
            Args::List(rules) if rules.len() == 3 => match (rules[1].as_const(), rules[2].as_const()) {
                (Some(op), Some(target)) => Some((Operator::parse(op), parse_version(target))),
                _ => None,
            },
            _ => None,
        };
        SemVer { args, fixed }
    }

    /// Whether the result depends on nothing but constants.
    pub(crate) fn is_constant(&self) -> bool {
        self.args.all_const()
    }

    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>, data: Data<'a>) -> Out<'a> {
        let result = match (&self.args, &self.fixed) {
            (Args::List(rules), Some((operator, target))) => {
                let version = rules[0].eval(env, data)?;
                match (operator, target, parse_version(&version)) {
                    (Some(operator), Some(target), Some(version)) => Some(operator.holds(&version, target)),
                    _ => None,
                }
            }
            _ => {
                let values = Values::of(&self.args, env, data)?;
                match (values.len(), values.get(0), values.get(1), values.get(2)) {
                    (3, Some(version), Some(operator), Some(target)) => {
                        match (parse_version(version), Operator::parse(operator), parse_version(target)) {
                            (Some(version), Some(operator), Some(target)) => Some(operator.holds(&version, &target)),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
        };
        Ok(Cow::Owned(result.map_or(Value::Null, Value::Bool)))
    }
}

/// Parses a version the way flagd's JavaScript core does: strip one `v`/`V`,
/// then strict SemVer, then complete a purely numeric `major[.minor]`.
fn parse_version(value: &Value) -> Option<Version> {
    let text: Cow<'_, str> = match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(_) => Cow::Owned(js::to_string(value)),
        _ => return None,
    };
    let stripped = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let trimmed = stripped.trim();
    let trimmed = trimmed.strip_prefix('v').unwrap_or(trimmed);
    if let Ok(version) = Version::parse(trimmed) {
        return Some(version);
    }
    let mut parts = stripped.split('.');
    let major = numeric(parts.next()?)?;
    let minor = match parts.next() {
        Some(minor) => numeric(minor)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Version::new(major, minor, 0))
}

fn numeric(part: &str) -> Option<u64> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(version: Value, op: &str, target: &str) -> Option<bool> {
        let operator = Operator::parse(&json!(op))?;
        Some(operator.holds(&parse_version(&version)?, &parse_version(&json!(target))?))
    }

    #[test]
    fn operators() {
        assert_eq!(check(json!("2.0.0"), "=", "2.0.0"), Some(true));
        assert_eq!(check(json!("2.1.0"), ">", "2.0.0"), Some(true));
        assert_eq!(check(json!("2.0.0-alpha"), "<", "2.0.0"), Some(true));
        assert_eq!(check(json!("1.0.0-alpha"), "<", "1.0.0-beta"), Some(true));
        assert_eq!(check(json!("1.0.0-alpha.2"), "<", "1.0.0-alpha.10"), Some(true));
        assert_eq!(check(json!("3.0.1"), "~", "3.0.0"), Some(true));
        assert_eq!(check(json!("3.1.0"), "~", "3.0.0"), Some(false));
        assert_eq!(check(json!("3.1.0"), "^", "3.0.0"), Some(true));
        assert_eq!(check(json!("4.0.0"), "^", "3.0.0"), Some(false));
        assert_eq!(check(json!("1.0.0"), "!=", "1.0.1"), Some(true));
        assert_eq!(check(json!("1.0.0"), "<=", "1.0.0"), Some(true));
        assert_eq!(check(json!("1.0.0"), ">=", "1.0.1"), Some(false));
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(check(json!("v1.0.0"), "=", "1.0.0"), Some(true));
        assert_eq!(check(json!("V1.0.0"), "=", "v1.0.0"), Some(true));
        assert_eq!(check(json!("1.5.0"), "^", "1"), Some(true));
        assert_eq!(check(json!("1.2"), "=", "1.2.0"), Some(true));
        assert_eq!(check(json!(1.2), "=", "1.2.0"), Some(true));
        assert_eq!(check(json!(2), "=", "2.0.0"), Some(true));
        assert_eq!(check(json!("1.0.0+other"), "=", "1.0.0+build"), Some(true));
    }

    #[test]
    fn invalid_is_none() {
        assert_eq!(check(json!("2.0.0.0"), "=", "2.0.0"), None);
        assert_eq!(check(json!("not-a-version"), "=", "2.0.0"), None);
        assert_eq!(check(json!("1.0.0"), "===", "1.0.0"), None);
        assert_eq!(check(json!(true), "=", "1.0.0"), None);
        assert_eq!(check(json!("01.0.0"), "=", "1.0.0"), None);
    }
}
