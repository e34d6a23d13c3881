//! Hostile rules and documents: small inputs that describe unbounded work.
//! Each must be refused or fail cleanly, quickly, and without spending the
//! memory it describes. The process's allocations are tracked, so the
//! memory bound is asserted, not assumed: an allocation past the cap fails
//! the whole test binary.

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use rampart_engine::{Context, ErrorCode, FlagSet, InputLimits, Limit, Source};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, 1 << 30);

/// Generous for a debug build on a loaded machine; the unbounded versions
/// of these inputs run for minutes or abort.
const QUICK: Duration = Duration::from_secs(3);
/// Peak bytes any test here may reach (all tests of this binary together).
const PEAK: usize = 200 << 20;

fn flag_with(targeting: Value) -> String {
    json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
        "targeting": targeting}}})
    .to_string()
}

fn assert_peak() {
    assert!(ALLOCATOR.max_allocated() < PEAK, "peak allocation {} MiB", ALLOCATOR.max_allocated() >> 20);
}

#[test]
fn a_doubling_reduce_is_refused_when_compiled() {
    // The report's 356-byte rule: forty elements, each doubling the accumulator.
    let rule = json!({"reduce": [{"var": "items"}, {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "xx"]});
    let text = flag_with(json!({"if": [{"reduce": rule["reduce"]}, "b", "a"]}));
    let errors = FlagSet::load(&[Source::json("f.json", &text)]).unwrap_err();
    assert!(errors.to_string().contains("doubles with every element"), "{errors}");
    let lenient = FlagSet::load_lenient(&[Source::json("f.json", &text)]);
    let items: Vec<u32> = (0..40).collect();
    let context = Context::try_from(json!({"items": items})).unwrap();
    let evaluation = lenient.flags.evaluate("f", &context, 0);
    assert_eq!(evaluation.error_code, Some(ErrorCode::ParseError));
}

#[test]
fn a_doubling_the_compiler_cannot_see_runs_out_of_budget() {
    // The accumulator read through a computed path: the static check cannot
    // tell, so the evaluation budget stops it.
    let hidden = json!({"var": {"cat": ["accu", "mulator"]}});
    let rule = json!({"reduce": [{"var": "items"}, {"cat": [hidden, {"var": "accumulator"}]}, "xx"]});
    let text = flag_with(json!({"if": [rule, "b", "a"]}));
    let flags = FlagSet::load(&[Source::json("f.json", &text)]).expect("compiles");
    let items: Vec<u32> = (0..40).collect();
    let context = Context::try_from(json!({"items": items})).unwrap();
    let started = Instant::now();
    let evaluation = flags.evaluate("f", &context, 0);
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(evaluation.error_code, Some(ErrorCode::General));
    assert_eq!(evaluation.limit, Some(Limit::EvaluationBytes));
    assert_peak();
}

#[test]
fn nested_maps_fold_small_and_evaluate_within_budget() {
    let range: Vec<u32> = (0..1000).collect();
    let rule = json!({"map": [range.clone(), {"map": [range.clone(), {"map": [range, {"+": [1, 1]}]}]}]});
    let text = flag_with(json!({"if": [rule, "b", "a"]}));
    let started = Instant::now();
    let flags = FlagSet::load(&[Source::json("f.json", &text)]).expect("compiles");
    assert!(started.elapsed() < QUICK, "compiling took {:?}", started.elapsed());
    let context = Context::new();
    let evaluation = flags.evaluate("f", &context, 0);
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(evaluation.error_code, Some(ErrorCode::General));
    assert!(evaluation.limit.is_some());
    assert_peak();
}

#[test]
fn a_large_context_value_copied_many_times_runs_out_of_budget() {
    let copies: Vec<Value> = (0..2000).map(|_| json!({"var": "big"})).collect();
    let text = flag_with(json!({"if": [{"==": [{"cat": copies}, "x"]}, "b", "a"]}));
    let flags = FlagSet::load(&[Source::json("f.json", &text)]).expect("compiles");
    let context = Context::try_from(json!({"big": "x".repeat(500_000)})).unwrap();
    let started = Instant::now();
    let evaluation = flags.evaluate("f", &context, 0);
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(evaluation.limit, Some(Limit::EvaluationBytes));
    assert_peak();
}

#[test]
fn scanning_a_large_list_inside_a_loop_runs_out_of_steps() {
    // Quadratic: every element of a 50,000-element context array scans a
    // 40,000-entry list written in the rule (a miss every time).
    let list: Vec<String> = (0..40_000).map(|i| format!("other-{i}")).collect();
    let text = flag_with(json!({"if": [{"some": [{"var": "ids"}, {"in": [{"var": ""}, list]}]}, "b", "a"]}));
    let flags = FlagSet::load(&[Source::json("f.json", &text)]).expect("compiles");
    let ids: Vec<String> = (0..50_000).map(|i| format!("id-{i}")).collect();
    let context = Context::try_from(json!({"ids": ids})).unwrap();
    let started = Instant::now();
    let evaluation = flags.evaluate("f", &context, 0);
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(evaluation.limit, Some(Limit::EvaluationSteps));
    // A short context array is fine.
    let context = Context::try_from(json!({"ids": ["id-1", "other-7"]})).unwrap();
    assert_eq!(flags.evaluate("f", &context, 0).variant, Some("b"));
}

#[test]
fn everyday_rules_stay_far_inside_the_budget() {
    // A join over a realistic list, a filter and a fractional split.
    let text = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
        "targeting": {"if": [
            {"in": ["beta", {"reduce": [{"var": "groups"}, {"cat": [{"var": "accumulator"}, ",", {"var": "current"}]}, ""]}]},
            {"fractional": [["a", 50], ["b", 50]]}, "a"]}}}})
    .to_string();
    let flags = FlagSet::load(&[Source::json("f.json", &text)]).expect("compiles");
    let groups: Vec<String> = (0..500).map(|i| format!("group-{i}")).chain(["beta".into()]).collect();
    let context = Context::try_from(json!({"targetingKey": "u1", "groups": groups})).unwrap();
    let evaluation = flags.evaluate("f", &context, 0);
    assert_eq!(evaluation.error_code, None, "{:?}", evaluation.error_message);
}

#[test]
fn ref_bombs_are_refused_before_expansion() {
    // Ten evaluators, each an `or` of ten references to the previous: 10^10
    // nodes described in about 2 KB.
    let mut evaluators = serde_json::Map::new();
    evaluators.insert("e0".into(), json!({"==": [{"var": "x"}, 1]}));
    for level in 1..10 {
        let previous = json!({"$ref": format!("e{}", level - 1)});
        evaluators.insert(format!("e{level}"), json!({"or": vec![previous; 10]}));
    }
    let text = json!({"$evaluators": evaluators, "flags": {
        "bomb": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"$ref": "e9"}},
        "fine": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"if": [{"$ref": "e1"}, "b", "a"]}}}})
    .to_string();
    assert!(text.len() < 3000, "{} bytes", text.len());
    let started = Instant::now();
    let errors = FlagSet::load(&[Source::json("bomb.json", &text)]).unwrap_err();
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(errors.len(), 1, "{errors}");
    let error = errors.iter().next().unwrap();
    assert_eq!(error.flag.as_deref(), Some("bomb"));
    assert_eq!(error.limit, Some(Limit::RuleNodes));
    assert!(error.line.is_some(), "{error}");
    // Lenient: the bomb answers PARSE_ERROR, its neighbour works.
    let lenient = FlagSet::load_lenient(&[Source::json("bomb.json", &text)]);
    let context = Context::try_from(json!({"x": 1})).unwrap();
    assert_eq!(lenient.flags.evaluate("bomb", &context, 0).error_code, Some(ErrorCode::ParseError));
    assert_eq!(lenient.flags.evaluate("fine", &context, 0).value, Some(&json!(2)));
    assert_peak();
}

#[test]
fn documents_have_one_budget_for_json_and_yaml() {
    let limits = InputLimits { max_bytes: 10_000, max_nodes: 50 };
    let flags: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("f{i}"), json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"})))
        .collect();
    let json_text = json!({"flags": flags}).to_string();
    let errors = FlagSet::load_with(&[Source::json("f.json", &json_text)], &limits).unwrap_err();
    assert_eq!(errors.iter().next().unwrap().limit, Some(Limit::DocumentNodes), "{errors}");
    let yaml_text: String = std::iter::once("flags:\n".to_owned())
        .chain(
            (0..20)
                .map(|i| format!("  f{i}:\n    state: ENABLED\n    variants: {{on: true}}\n    defaultVariant: on\n")),
        )
        .collect();
    let errors = FlagSet::load_with(&[Source::yaml("f.yaml", &yaml_text)], &limits).unwrap_err();
    assert_eq!(errors.iter().next().unwrap().limit, Some(Limit::DocumentNodes), "{errors}");
    // Bytes: one file over the limit, and files over it together.
    let tight = InputLimits { max_bytes: json_text.len() - 1, max_nodes: 10_000 };
    let errors = FlagSet::load_with(&[Source::json("f.json", &json_text)], &tight).unwrap_err();
    assert_eq!(errors.iter().next().unwrap().limit, Some(Limit::DocumentBytes), "{errors}");
    let pair = InputLimits { max_bytes: json_text.len() + 10, max_nodes: 10_000 };
    let other = r#"{"flags": {"g": {"state": "ENABLED", "variants": {"on": true}}}}"#;
    let errors =
        FlagSet::load_with(&[Source::json("f.json", &json_text), Source::json("g.json", other)], &pair).unwrap_err();
    let error = errors.iter().next().unwrap();
    assert_eq!((error.file.as_str(), error.limit), ("g.json", Some(Limit::DocumentBytes)), "{errors}");
    // Within the limits both load.
    assert_eq!(FlagSet::load_with(&[Source::json("f.json", &json_text)], &InputLimits::default()).unwrap().len(), 20);
}

#[test]
fn duplicate_keys_are_refused_in_json_as_in_yaml() {
    let text = "{\"flags\": {\"f\": {\n  \"state\": \"ENABLED\",\n  \"state\": \"DISABLED\",\n  \"variants\": {\"on\": true}}}}";
    let errors = FlagSet::load(&[Source::json("f.json", text)]).unwrap_err();
    let error = errors.iter().next().unwrap();
    assert!(error.message.contains("duplicate key 'state'"), "{error}");
    assert_eq!(error.line, Some(3));
}
