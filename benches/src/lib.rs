//! Benchmarks of Rampart: criterion benches of the engine and the SDK in
//! `benches/`, server load scripts in `load/` (around `wrk`), and the
//! stream propagation benchmark in `src/bin/propagation.rs`.
//!
//! This library holds the flag sets the benchmarks share.

use rampart_engine::{FlagSet, Source};
use serde_json::{Map, Value, json};

/// Flags for the engine benchmarks: a static flag, three targeting clauses
/// followed by a `fractional` split, a three-way split, a `sem_ver` rule,
/// and 96 more mixed flags for bulk evaluation (100 in all), as a flagd
/// document.
pub fn benchmark_document() -> String {
    let mut flags = Map::new();
    flags.insert(
        "static".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    );
    flags.insert(
        "three-clauses-and-split".into(),
        json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [
                {"ends_with": [{"var": "email"}, "@rampart.dev"]}, "on",
                {"in": [{"var": "country"}, ["NO", "SE", "DK"]]}, "off",
                {"==": [{"var": "plan"}, "enterprise"]}, "on",
                {"fractional": [["on", 25], ["off", 75]]}
            ]}
        }),
    );
    flags.insert(
        "three-way-split".into(),
        json!({
            "state": "ENABLED",
            "variants": {"red": "red", "green": "green", "blue": "blue"},
            "defaultVariant": "red",
            "targeting": {"fractional": [["red", 34], ["green", 33], ["blue", 33]]}
        }),
    );
    flags.insert(
        "semver".into(),
        json!({
            "state": "ENABLED",
            "variants": {"new": true, "old": false},
            "defaultVariant": "old",
            "targeting": {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", "2.4.0"]}, "new", "old"]}
        }),
    );
    for i in 0..96 {
        flags.insert(format!("bulk-{i:02}"), bulk_flag(i));
    }
    json!({"flags": flags}).to_string()
}

/// The benchmark flags, compiled.
pub fn benchmark_flags() -> FlagSet {
    let document = benchmark_document();
    FlagSet::load(&[Source::json("bench.json", &document)]).expect("benchmark flags are valid")
}

fn bulk_flag(i: usize) -> Value {
    match i % 3 {
        0 => json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        1 => json!({
            "state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
            "targeting": {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "b"]}
        }),
        _ => json!({
            "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"fractional": [["a", 50], ["b", 50]]}
        }),
    }
}
