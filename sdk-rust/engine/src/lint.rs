//! Targeting that compiles but can never work, found before it is served:
//! a literal result that names no variant of the flag, or an operator
//! given a number of arguments it cannot use. flagd loads such flags and
//! fails each evaluation (`GENERAL`); a strict load (`rampart validate`,
//! the admin API) refuses them, a lenient one (flag files) reports them
//! with file and line and keeps serving as flagd would.

use serde_json::Value;

/// Operators whose literal argument lists have one right length.
const ARITY: [(&str, usize, usize); 5] =
    [("starts_with", 2, 2), ("ends_with", 2, 2), ("sem_ver", 3, 3), ("in", 2, 2), ("substr", 2, 3)];

/// Problems of `targeting` (`$ref`s expanded) for a flag with these
/// variants; empty when none.
pub(crate) fn targeting(logic: &Value, variants: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    results(logic, variants, &mut problems);
    arities(logic, &mut problems, 0);
    problems
}

/// Walks what the targeting returns: literal strings must be variants.
fn results(logic: &Value, variants: &[&str], problems: &mut Vec<String>) {
    match logic {
        Value::String(name) if !variants.contains(&name.as_str()) => problems.push(format!(
            "targeting can return '{name}', which is not one of the flag's variants ({})",
            variants.join(", ")
        )),
        Value::Object(map) if map.len() == 1 => {
            let Some((op, args)) = map.iter().next() else { return };
            match (op.as_str(), args) {
                ("if" | "?:", Value::Array(items)) => {
                    // [c1, r1, c2, r2, …, else]: the results sit at odd
                    // places and at the end when the count is odd.
                    for (index, item) in items.iter().enumerate() {
                        let last = index + 1 == items.len();
                        if index % 2 == 1 || (last && index % 2 == 0 && index > 0) {
                            results(item, variants, problems);
                        }
                    }
                }
                ("fractional", Value::Array(items)) => {
                    for bucket in items {
                        if let Value::Array(bucket) = bucket
                            && let Some(name @ Value::String(_)) = bucket.first()
                        {
                            results(name, variants, problems);
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Operators anywhere in the rule with a literal list of the wrong length.
fn arities(logic: &Value, problems: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match logic {
        Value::Object(map) => {
            for (op, args) in map {
                if let (Some((_, min, max)), Value::Array(items)) = (ARITY.iter().find(|(name, ..)| name == op), args)
                    && !(*min..=*max).contains(&items.len())
                {
                    let wanted = if min == max { min.to_string() } else { format!("{min} to {max}") };
                    problems.push(format!("'{op}' takes {wanted} arguments, found {}", items.len()));
                }
                arities(args, problems, depth + 1);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| arities(item, problems, depth + 1)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_literal_result_must_name_a_variant() {
        let variants = ["on", "off"];
        assert!(targeting(&json!({"if": [{"==": [1, 1]}, "on", "off"]}), &variants).is_empty());
        let problems = targeting(&json!({"if": [{"==": [1, 1]}, "typo", "off"]}), &variants);
        assert_eq!(problems, ["targeting can return 'typo', which is not one of the flag's variants (on, off)"]);
        assert_eq!(targeting(&json!({"if": [true, "on", false, "off", "nope"]}), &variants).len(), 1);
        assert_eq!(targeting(&json!({"fractional": [["on", 50], ["of", 50]]}), &variants).len(), 1);
        // Computed results are not judged here (only at evaluation).
        assert!(targeting(&json!({"var": "variant"}), &variants).is_empty());
        assert!(targeting(&json!({"if": [{"in": ["a", "abc"]}, {"cat": ["o", "n"]}, null]}), &variants).is_empty());
        // Conditions are not results.
        assert!(targeting(&json!({"if": [{"==": [{"var": "x"}, "beta"]}, "on", "off"]}), &variants).is_empty());
    }

    #[test]
    fn operators_need_their_number_of_arguments() {
        let variants = ["on"];
        let problems = targeting(&json!({"if": [{"starts_with": [{"var": "email"}]}, "on", null]}), &variants);
        assert_eq!(problems, ["'starts_with' takes 2 arguments, found 1"]);
        assert!(
            targeting(&json!({"if": [{"starts_with": [{"var": "email"}, "a"]}, "on", null]}), &variants).is_empty()
        );
        assert_eq!(targeting(&json!({"sem_ver": ["1.0.0", ">="]}), &variants).len(), 1);
        assert!(targeting(&json!({"substr": ["abc", 1]}), &variants).is_empty());
    }
}
