//! Dashboard pages rendered on the server, against their budgets: the
//! flags page of an environment with 1,000 flags under 50 ms (and 10,000),
//! and the ramp page of a 12-hour run of one-minute checks (720 points,
//! four charts) under 100 ms — and of a week of them (1,440 points seven
//! minutes apart: the controller thins a run to 1,440).
//!
//! `cargo bench -p rampart-benches --bench dashboard`

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_server::dashboard_bench::{FlagsPage, RampPage};

fn pages(c: &mut Criterion) {
    let mut group = c.benchmark_group("dashboard");
    let flags = FlagsPage::new(1000);
    group.bench_function("flags page, 1000 flags", |b| b.iter(|| flags.render()));
    let flags = FlagsPage::new(10_000);
    group.bench_function("flags page, 10000 flags", |b| b.iter(|| flags.render()));
    let ramp = RampPage::new(720);
    group.bench_function("ramp page, 720 checks", |b| b.iter(|| ramp.render()));
    let week = RampPage::spaced(1440, 7);
    group.bench_function("ramp page, a week of checks", |b| b.iter(|| week.render()));
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
