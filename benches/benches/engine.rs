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

    // Flags under a 25 % ramp, compiled exactly as the server serves them.
    let document: serde_json::Value = serde_json::from_str(&rampart_benches::benchmark_document()).expect("json");
    let exposure = rampart_engine::ramp::Exposure {
        treatment: "on".into(),
        control: "off".into(),
        salt: "bench".into(),
        basis_points: 2500,
    };
    let plain = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    let ramped = json!({"flags": {
        "ramped-static": rampart_engine::ramp::ramped_definition("ramped-static", &plain, &exposure),
        "ramped-three-clauses": rampart_engine::ramp::ramped_definition(
            "ramped-three-clauses", &document["flags"]["three-clauses-and-split"], &exposure),
    }})
    .to_string();
    let ramped = rampart_engine::FlagSet::load(&[rampart_engine::Source::json("ramped.json", &ramped)]).expect("valid");
    let mut group = c.benchmark_group("evaluate-ramped-25%");
    for key in ["ramped-static", "ramped-three-clauses"] {
        group.bench_function(key, |b| b.iter(|| black_box(ramped.evaluate(black_box(key), context, now).variant)));
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
