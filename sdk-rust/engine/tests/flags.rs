//! The flag table: reasons, error codes, `$ref`, default variants, metadata
//! and typed resolution, against `tests/fixtures/flags.json` (shared with
//! the differential test against flagd's reference evaluator).

use rampart_engine::{Context, Evaluation, FlagSet, Source};
use serde_json::{Map, Value, json};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/flags.json")).expect("valid fixture")
}

fn document_text(fixture: &Value) -> String {
    fixture["document"].to_string()
}

fn describe(evaluation: &Evaluation<'_>) -> Value {
    let mut out = Map::new();
    if let Some(value) = evaluation.value {
        out.insert("value".into(), value.clone());
    }
    if let Some(variant) = evaluation.variant {
        out.insert("variant".into(), json!(variant));
    }
    out.insert("reason".into(), json!(evaluation.reason.as_str()));
    if let Some(code) = evaluation.error_code {
        out.insert("errorCode".into(), json!(code.as_str()));
    }
    Value::Object(out)
}

fn typed(set: &FlagSet, key: &str, kind: &str, context: &Context, now: i64) -> Value {
    let evaluation = set.evaluate(key, context, now);
    macro_rules! narrow {
        ($t:ty) => {{
            let t = evaluation.typed::<$t>(key);
            let mut out = Map::new();
            if let Some(value) = t.value {
                out.insert("value".into(), json!(value));
            }
            if let Some(variant) = t.variant {
                out.insert("variant".into(), json!(variant));
            }
            out.insert("reason".into(), json!(t.reason.as_str()));
            if let Some(code) = t.error_code {
                out.insert("errorCode".into(), json!(code.as_str()));
            }
            Value::Object(out)
        }};
    }
    match kind {
        "bool" => narrow!(bool),
        "string" => narrow!(&str),
        "int" => narrow!(i64),
        // A float that is integral prints like an integer in the fixture
        // (JavaScript has one number type).
        "float" | "number" => {
            let mut out = narrow!(f64);
            if let Some(f) = out.get("value").and_then(Value::as_f64).filter(|f| f.fract() == 0.0) {
                out["value"] = json!(f as i64);
            }
            out
        }
        "object" => narrow!(&Map<String, Value>),
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn flag_table() {
    let fixture = fixture();
    let text = document_text(&fixture);
    let compiled = FlagSet::load_lenient(&[Source::json("fixtures/flags.json", &text)]);
    let set = compiled.flags;
    let mut failures = Vec::new();
    let cases = fixture["cases"].as_array().expect("cases");
    for case in cases {
        let key = case["flag"].as_str().expect("flag");
        let context = Context::from(case.get("context").and_then(Value::as_object).cloned().unwrap_or_default());
        let now = case.get("now").and_then(Value::as_i64).unwrap_or(1_700_000_000);
        let got = match case.get("type").and_then(Value::as_str) {
            Some(kind) => typed(&set, key, kind, &context, now),
            None => describe(&set.evaluate(key, &context, now)),
        };
        let mut expected = Map::new();
        for field in ["value", "variant", "reason", "errorCode"] {
            if let Some(value) = case.get(field) {
                expected.insert(field.into(), value.clone());
            }
        }
        // serde_json keeps 1 and 1.0 apart, as they are on the wire.
        if got != Value::Object(expected.clone()) {
            failures.push(format!("{key} {context:?}: got {got}, expected {}", Value::Object(expected)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn strict_load_names_each_broken_flag() {
    let fixture = fixture();
    let text = document_text(&fixture);
    let errors = FlagSet::load(&[Source::json("fixtures/flags.json", &text)]).expect_err("broken flags reject the set");
    let mut flagged: Vec<&str> = errors.iter().filter_map(|e| e.flag.as_deref()).collect();
    flagged.sort();
    let expected: Vec<&str> =
        fixture["strictErrors"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
    assert_eq!(flagged, expected, "{errors}");
    assert!(errors.iter().all(|e| e.file == "fixtures/flags.json"));
    let text = errors.to_string();
    assert!(text.contains("nonexistent_evaluator"), "{text}");
    assert!(text.contains("unknown operator 'regex_match'"), "{text}");
}

#[test]
fn metadata_merges_flag_over_flag_set() {
    let fixture = fixture();
    let text = document_text(&fixture);
    let set = FlagSet::load_lenient(&[Source::json("f.json", &text)]).flags;
    let context = Context::new();
    for case in fixture["metadataCases"].as_array().expect("list") {
        let key = case["flag"].as_str().expect("flag");
        let evaluation = set.evaluate(key, &context, 0);
        assert_eq!(&Value::Object(evaluation.metadata.clone()), &case["metadata"], "{key}");
    }
    // An unknown flag carries the flag-set metadata.
    assert_eq!(set.evaluate("nope", &context, 0).metadata.get("flagSetId"), Some(&json!("fixtures")));
}
