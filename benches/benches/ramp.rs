//! The ramp controller's decision cost: one tick over a long step's
//! buckets, the mixture SPRT alone, and the exact bounds an explanation
//! needs.
//!
//! `cargo bench -p rampart-benches --bench ramp`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_server::model::{Arm, Pair};
use rampart_server::ramp::decide::decide;
use rampart_server::ramp::evidence::{Observation, explain};
use rampart_server::ramp::spec;
use rampart_server::ramp::stats::{MixtureSprt, SprtSums, clopper_pearson};

const SPEC: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: { name: r }\nspec:\n  flag: f\n  treatment: \"on\"\n  control: \"off\"\n  steps:\n    - { percent: 25, hold: 12h }\n    - { percent: 100, hold: 1h }\n  guard:\n    absolute: { maxErrorRate: 2% }\n";

/// A 12-hour step of one-minute buckets whose split drifts, so no two
/// buckets merge: the worst case for the SPRT.
fn buckets() -> Vec<Pair> {
    (0..720u64)
        .map(|i| Pair {
            treatment: Arm { exposures: 500 + i, errors: i % 3 },
            control: Arm { exposures: 1500 + 2 * i, errors: i % 7 },
        })
        .collect()
}

fn ramp(c: &mut Criterion) {
    let spec = spec::parse("r.yaml", SPEC).expect("spec");
    let mut run = spec.new_run("off", "run".into(), 0);
    run = decide(&run, &spec, &Observation { flag_enabled: true, ..Default::default() }, 0, None).run;
    let observation = Observation {
        buckets: buckets(),
        missing: None,
        flag_enabled: true,
        expected_share: Some(0.25),
        metrics: Vec::new(),
        sprt: None,
        previous_stage_open: false,
        latency: None,
        conversions: None,
    };
    // What the observer keeps between ticks: the sums over the closed
    // buckets, all but the newest.
    let mut kept = SprtSums::new(0.2);
    kept.add(&observation.buckets[..719]);
    let observation_kept = Observation { sprt: Some(kept), ..observation.clone() };
    let now = 6 * 3600 * 1000;
    c.bench_function("decide, 720 buckets", |b| {
        b.iter(|| black_box(decide(black_box(&run), &spec, black_box(&observation), now, None)))
    });
    c.bench_function("decide, 720 buckets, sums kept over 719", |b| {
        b.iter(|| black_box(decide(black_box(&run), &spec, black_box(&observation_kept), now, None)))
    });
    c.bench_function("explain, 720 buckets", |b| {
        b.iter(|| black_box(explain(black_box(&run), &spec, black_box(&observation), now)))
    });
    c.bench_function("mixture SPRT, 720 buckets", |b| {
        b.iter(|| black_box(MixtureSprt::compute(0.2, black_box(&observation.buckets))))
    });
    c.bench_function("Clopper-Pearson, 380 000 trials", |b| {
        b.iter(|| black_box(clopper_pearson(black_box(20), black_box(380_000), 0.975)))
    });
}

criterion_group!(benches, ramp);
criterion_main!(benches);
