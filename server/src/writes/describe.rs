//! "What changed" between two versions of a flag, in words, for history
//! and the audit log.

use serde_json::{Map, Value};

/// One line per changed part of the flag; `old`/`new` are flagd flag
/// definitions (`None`: absent or deleted).
pub fn describe(old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec!["created".into()],
        (Some(_), None) => return vec!["deleted".into()],
        (Some(old), Some(new)) => (old, new),
    };
    let mut out = Vec::new();
    for field in ["state", "defaultVariant"] {
        let (a, b) = (old.get(field), new.get(field));
        if a != b {
            out.push(format!("{field}: {} → {}", show(a), show(b)));
        }
    }
    let empty = Map::new();
    let variants = |v: &Value| v.get("variants").and_then(Value::as_object).cloned().unwrap_or_else(|| empty.clone());
    let (before, after) = (variants(old), variants(new));
    for (name, value) in &after {
        match before.get(name) {
            None => out.push(format!("variant '{name}' added: {}", clip(&value.to_string()))),
            Some(previous) if previous != value => {
                out.push(format!("variant '{name}': {} → {}", clip(&previous.to_string()), clip(&value.to_string())))
            }
            Some(_) => {}
        }
    }
    for name in before.keys().filter(|name| !after.contains_key(*name)) {
        out.push(format!("variant '{name}' removed"));
    }
    for field in ["targeting", "metadata"] {
        if old.get(field) != new.get(field) {
            out.push(format!("{field} changed"));
        }
    }
    out
}

fn show(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => clip(s),
        Some(other) => clip(&other.to_string()),
    }
}

/// Most characters of a value a description quotes: the version itself
/// holds the whole definition, and the description is stored with every
/// version and audit entry (a 250 KB variant must not be copied twice more).
const QUOTED_CHARS: usize = 120;

fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}… ({} characters)", &text[..cut], text.chars().count()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn describes_each_change() {
        let old = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"});
        let new = json!({"state": "DISABLED", "variants": {"a": 1, "b": 3, "c": 4}, "defaultVariant": "b",
                         "targeting": {"if": [true, "c"]}});
        assert_eq!(
            describe(Some(&old), Some(&new)),
            [
                "state: ENABLED → DISABLED",
                "defaultVariant: a → b",
                "variant 'b': 2 → 3",
                "variant 'c' added: 4",
                "targeting changed"
            ]
        );
        assert_eq!(describe(None, Some(&new)), ["created"]);
        assert_eq!(describe(Some(&old), None), ["deleted"]);
        assert!(describe(Some(&old), Some(&old)).is_empty());
    }

    #[test]
    fn large_values_are_quoted_in_part() {
        let wide = |c: &str| json!({"state": "ENABLED", "variants": {"v": c.repeat(250_000)}, "defaultVariant": "v"});
        let lines = describe(Some(&wide("x")), Some(&wide("y")));
        assert_eq!(lines.len(), 1);
        assert!(lines[0].len() < 400 && lines[0].contains("(250002 characters)"), "{}", lines[0]);
    }
}
