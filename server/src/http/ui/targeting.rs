//! Targeting rules read aloud: flagd's JsonLogic as indented rules
//! ("if country is one of [de, fr] → variant on"), for people reviewing a
//! flag. The raw JSON is shown next to it; this is a reading aid, bounded
//! in depth and size so a huge rule cannot make a huge page.

use maud::{Markup, html};
use serde_json::Value;

/// Deeper rules are shown as JSON from here on.
const MAX_DEPTH: usize = 12;
/// Longest literal shown inline.
const MAX_LITERAL: usize = 120;

/// The rule as nested lists.
pub(crate) fn readable(rule: &Value) -> Markup {
    html! { ul.rules { (node(rule, 0)) } }
}

fn node(rule: &Value, depth: usize) -> Markup {
    if depth >= MAX_DEPTH {
        return html! { li { code { (literal(rule)) } } };
    }
    match operation(rule) {
        Some(("if", args)) => html! {
            @for (index, pair) in args.chunks(2).enumerate() {
                @if pair.len() == 2 {
                    li {
                        strong { @if index == 0 { "if " } @else { "else if " } } (expression(&pair[0], depth))
                        ul { (outcome(&pair[1], depth + 1)) }
                    }
                } @else {
                    li { strong { "otherwise" } ul { (outcome(&pair[0], depth + 1)) } }
                }
            }
        },
        _ => outcome(rule, depth),
    }
}

/// What a branch yields: a variant name, a split, or a nested rule.
fn outcome(rule: &Value, depth: usize) -> Markup {
    match (rule, operation(rule)) {
        (Value::String(variant), _) => html! { li { "→ variant " code { (variant) } } },
        (Value::Null, _) => html! { li { "→ the default variant" } },
        (_, Some(("if", _))) => node(rule, depth),
        (_, Some(("fractional", args))) => html! { li { (fractional(args, depth)) } },
        _ => html! { li { "→ " (expression(rule, depth)) } },
    }
}

fn fractional(args: &[Value], depth: usize) -> Markup {
    let (by, buckets) = match args.first() {
        Some(first) if !first.is_array() => (Some(first), &args[1..]),
        _ => (None, args),
    };
    html! {
        "split "
        @if let Some(by) = by { "by " (expression(by, depth + 1)) " " } @else { "by the targeting key " }
        ul {
            @for bucket in buckets {
                @if let Some([variant, weight]) = bucket.as_array().map(Vec::as_slice) {
                    li { code { (literal(variant)) } " weight " (literal(weight)) }
                } @else {
                    li { code { (literal(bucket)) } }
                }
            }
        }
    }
}

/// A condition or value, inline.
fn expression(rule: &Value, depth: usize) -> String {
    if depth >= MAX_DEPTH {
        return literal(rule);
    }
    let Some((op, args)) = operation(rule) else { return literal(rule) };
    let arg = |index: usize| args.get(index).map(|a| expression(a, depth + 1)).unwrap_or_else(|| "?".into());
    let joined = |word: &str| args.iter().map(|a| expression(a, depth + 1)).collect::<Vec<_>>().join(word);
    match op {
        "var" => match args.first() {
            Some(Value::String(name)) if name.is_empty() => "the value".into(),
            Some(Value::String(name)) => name.clone(),
            _ => literal(rule),
        },
        "==" | "===" => format!("{} is {}", arg(0), arg(1)),
        "!=" | "!==" => format!("{} is not {}", arg(0), arg(1)),
        "<" | "<=" | ">" | ">=" => format!("{} {op} {}", arg(0), arg(1)),
        "and" => format!("({})", joined(" and ")),
        "or" => format!("({})", joined(" or ")),
        "!" => format!("not {}", arg(0)),
        "!!" => format!("{} is set", arg(0)),
        "in" => format!("{} is in {}", arg(0), arg(1)),
        "starts_with" => format!("{} starts with {}", arg(0), arg(1)),
        "ends_with" => format!("{} ends with {}", arg(0), arg(1)),
        "sem_ver" => format!("version {} {} {}", arg(0), args.get(1).map(literal).unwrap_or_default(), arg(2)),
        "$ref" => format!("the shared rule {}", arg(0)),
        "cat" => format!("the text of {}", joined(" + ")),
        _ => format!("{op}({})", joined(", ")),
    }
}

/// The operation of a JsonLogic node: its one key and its arguments.
fn operation(rule: &Value) -> Option<(&str, &[Value])> {
    let object = rule.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let (op, args) = object.iter().next()?;
    Some((op.as_str(), args.as_array().map_or(std::slice::from_ref(args), Vec::as_slice)))
}

fn literal(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > MAX_LITERAL {
        format!("{}…", text.chars().take(MAX_LITERAL).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn rules_read_as_words() {
        let rule = json!({"if": [
            {"in": [{"var": "country"}, ["de", "fr"]]}, "on",
            {"starts_with": [{"var": "email"}, "ops@"]}, {"fractional": [["on", 10], ["off", 90]]},
            "off"
        ]});
        let text = super::readable(&rule).into_string();
        assert!(text.contains("if </strong>country is in [&quot;de&quot;,&quot;fr&quot;]"), "{text}");
        assert!(text.contains("variant <code>on</code>"), "{text}");
        assert!(text.contains("email starts with &quot;ops@&quot;"), "{text}");
        assert!(text.contains("split by the targeting key"), "{text}");
        assert!(text.contains("otherwise"), "{text}");
    }

    #[test]
    fn deep_rules_stop_at_the_depth_bound() {
        let mut rule = json!("on");
        for _ in 0..200 {
            rule = json!({"if": [{"var": "x"}, rule, "off"]});
        }
        let text = super::readable(&rule).into_string();
        assert!(text.len() < 200_000, "bounded: {} bytes", text.len());
    }
}
