//! Engine evaluation cost, in ns per evaluation.
//!
//! `cargo bench -p rampart-benches --bench engine`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_benches::benchmark_flags;
use serde_json::json;

fn engine(c: &mut Criterion) {
    let flags = benchmark_flags();
    // A context that falls through all three clauses to the split.
    let context = json!({
        "targetingKey": "user-48213",
        "email": "someone@example.com",
        "country": "FR",
        "plan": "free",
        "appVersion": "2.5.1"
    });
    let context = &rampart_engine::Context::try_from(context).expect("object");
    let now = 1_700_000_000;

    let mut group = c.benchmark_group("evaluate");
    for key in ["static", "three-clauses-and-split", "three-way-split", "semver"] {
        group.bench_function(key, |b| b.iter(|| black_box(flags.evaluate(black_box(key), context, now).variant)));
    }
    group.bench_function("bulk-100", |b| {
        b.iter(|| {
            let mut chosen = 0usize;
            for flag in flags.iter() {
                chosen += usize::from(flag.evaluate(black_box(context), now).variant.is_some());
            }
            black_box(chosen)
        })
    });
    group.finish();

    // Flags under a 25 % ramp, as the server serves them: the JsonLogic
    // form streamed, evaluated natively (`Flag::with_exposure`); the same
    // flags compiled from that JsonLogic alone for comparison (`json-…`).
    let document: serde_json::Value = serde_json::from_str(&rampart_benches::benchmark_document()).expect("json");
    let exposure = rampart_engine::ramp::Exposure {
        treatment: "on".into(),
        control: "off".into(),
        salt: "bench".into(),
        basis_points: 2500,
    };
    let plain = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    let flags =
        [("ramped-static", plain), ("ramped-three-clauses", document["flags"]["three-clauses-and-split"].clone())];
    let mut native = Vec::new();
    let mut json_form = Vec::new();
    for (key, definition) in flags {
        let flag = rampart_engine::Flag::compile(key, definition, "bench.json").expect("valid");
        native.push(std::sync::Arc::new(flag.with_exposure(&exposure).expect("ramped")));
        let ramped = rampart_engine::ramp::ramped_definition(key, &flag.definition(), &exposure);
        let json_key = format!("json-{key}");
        json_form
            .push(std::sync::Arc::new(rampart_engine::Flag::compile(&json_key, ramped, "bench.json").expect("valid")));
    }
    let ramped =
        rampart_engine::FlagSet::from_flags(native.into_iter().chain(json_form), Default::default()).expect("set");
    let mut group = c.benchmark_group("evaluate-ramped-25%");
    for key in ["ramped-static", "ramped-three-clauses", "json-ramped-static", "json-ramped-three-clauses"] {
        group.bench_function(key, |b| b.iter(|| black_box(ramped.evaluate(black_box(key), context, now).variant)));
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
