//! The JsonLogic table: every operator, its coercions and its bad input,
//! against `tests/fixtures/rules.json` (shared with the differential test
//! against flagd's reference evaluator).

use rampart_engine::{CompiledRule, Context};
use serde_json::Value;

#[test]
fn rule_table() {
    let table: Value = serde_json::from_str(include_str!("fixtures/rules.json")).expect("valid fixture");
    let cases = table["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let rule = &case["rule"];
        let context = Context::from(case["data"].as_object().cloned().unwrap_or_default());
        let flag_key = case.get("flagKey").and_then(Value::as_str).unwrap_or("flag");
        let now = case.get("now").and_then(Value::as_i64).unwrap_or(1_700_000_000);
        let got = match CompiledRule::compile(rule) {
            Err(message) => format!("compile error: {message}"),
            Ok(compiled) => match compiled.evaluate(&context, flag_key, now) {
                Ok(value) => format!("result: {value}"),
                Err(message) => format!("throws: {message}"),
            },
        };
        let ok = if case.get("compileError").is_some() {
            got.starts_with("compile error")
        } else if case.get("throws").is_some() {
            got.starts_with("throws")
        } else {
            got == format!("result: {}", case["result"])
        };
        if !ok {
            failures.push(format!("{rule} with {} → {got}, expected {case}", case["data"]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
