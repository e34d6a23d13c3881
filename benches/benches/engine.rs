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
}

criterion_group!(benches, engine);
criterion_main!(benches);
