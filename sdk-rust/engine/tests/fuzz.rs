//! Property test: generated flag documents and JsonLogic rules — well
//! formed or not, benign or hostile — compile and evaluate without a panic,
//! each evaluation within a time bound, and the whole run within a memory
//! bound (tracked by the allocator).
//!
//! A short run is part of the test suite. A longer one:
//! `PROPTEST_CASES=20000 cargo test --release -p rampart-engine --test fuzz`
//! (see docs/limits.md).

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use proptest::prelude::*;
use rampart_engine::{Context, FlagSet, Source};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, 1 << 30);

const OPERATORS: &[&str] = &[
    "==",
    "!=",
    "===",
    "!==",
    "<",
    "<=",
    ">",
    ">=",
    "!",
    "!!",
    "and",
    "or",
    "if",
    "in",
    "cat",
    "substr",
    "merge",
    "+",
    "-",
    "*",
    "/",
    "%",
    "max",
    "min",
    "map",
    "filter",
    "all",
    "some",
    "none",
    "reduce",
    "missing",
    "missing_some",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
    "var",
];

fn literal() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9.@]{0,12}".prop_map(Value::from),
        Just(json!("accumulator")),
        Just(json!("current")),
        Just(json!("1.2.3")),
        // Large arrays, the raw material of expensive rules.
        (0usize..2000).prop_map(|n| Value::Array((0..n).map(Value::from).collect())),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        literal(),
        prop_oneof![
            Just("email"),
            Just("age"),
            Just("items"),
            Just("accumulator"),
            Just("current"),
            Just(""),
            Just("$flagd.flagKey")
        ]
        .prop_map(|path| json!({"var": path})),
    ];
    leaf.prop_recursive(6, 200, 6, |inner| {
        (prop::sample::select(OPERATORS), prop::collection::vec(inner.clone(), 0..5), inner).prop_map(
            |(op, args, single)| {
                // Sometimes a single argument, as JsonLogic allows.
                if args.len() == 1 { json!({ op: single }) } else { json!({ op: args }) }
            },
        )
    })
}

fn context() -> impl Strategy<Value = Value> {
    (
        "[a-z]{0,8}@(example\\.com|other\\.org)",
        -10i64..120,
        prop::collection::vec(0i64..100, 0..300),
        prop::option::of("[a-z0-9-]{1,10}"),
    )
        .prop_map(|(email, age, items, key)| {
            let mut context = json!({"email": email, "age": age, "items": items});
            if let Some(key) = key {
                context["targetingKey"] = json!(key);
            }
            context
        })
}

fn document() -> impl Strategy<Value = (String, Vec<String>)> {
    (prop::collection::vec(rule(), 1..4), prop::collection::vec(rule(), 0..3), any::<bool>()).prop_map(
        |(targetings, evaluators, disabled)| {
            let mut flags = serde_json::Map::new();
            let mut keys = Vec::new();
            for (index, targeting) in targetings.into_iter().enumerate() {
                let key = format!("flag-{index}");
                let targeting = if index == 0 && !evaluators.is_empty() {
                    json!({"if": [{"$ref": "e0"}, "a", targeting]})
                } else {
                    targeting
                };
                flags.insert(
                    key.clone(),
                    json!({"state": if disabled && index == 1 { "DISABLED" } else { "ENABLED" },
                        "variants": {"a": "a", "b": "b", "true": "t", "false": "f"},
                        "defaultVariant": "a", "targeting": targeting}),
                );
                keys.push(key);
            }
            let evaluators: serde_json::Map<String, Value> =
                evaluators.into_iter().enumerate().map(|(i, rule)| (format!("e{i}"), rule)).collect();
            (json!({"$evaluators": evaluators, "flags": flags}).to_string(), keys)
        },
    )
}

/// One evaluation may take this long in a debug build on a loaded machine;
/// the budget bounds it to a few milliseconds in a release build.
const EVALUATION_BOUND: Duration = Duration::from_secs(2);

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compile_and_evaluate_never_panic_and_stay_bounded((text, keys) in document(), contexts in prop::collection::vec(context(), 1..4)) {
        let compiled = FlagSet::load_lenient(&[Source::json("fuzz.json", &text)]);
        for context in contexts {
            let context = Context::try_from(context).expect("object");
            for key in &keys {
                let started = Instant::now();
                let evaluation = compiled.flags.evaluate(key, &context, 1_700_000_000);
                let elapsed = started.elapsed();
                prop_assert!(elapsed < EVALUATION_BOUND, "{key} took {elapsed:?}: {text}");
                // Every failure is reported as an evaluation, never a panic.
                prop_assert!(evaluation.error_code.is_some() || evaluation.error_message.is_none());
            }
        }
        prop_assert!(ALLOCATOR.max_allocated() < 256 << 20, "peak {} MiB", ALLOCATOR.max_allocated() >> 20);
    }

    #[test]
    fn yaml_and_json_documents_parse_within_budget(text in "[-a-z0-9:{}\\[\\],\" \n&*!|>]{0,400}") {
        // Arbitrary text: an error or a flag set, never a panic.
        let _ = FlagSet::load_lenient(&[Source::yaml("fuzz.yaml", &text)]);
        let _ = FlagSet::load_lenient(&[Source::json("fuzz.json", &text)]);
    }
}
