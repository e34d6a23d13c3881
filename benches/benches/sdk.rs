//! SDK local evaluation cost next to the engine's, in ns per evaluation;
//! `sdk, usage counted`: a client with a server to report its usage to
//! (each evaluation also counted for the flag's usage).
//!
//! `cargo bench -p rampart-benches --bench sdk`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_benches::{benchmark_document, benchmark_flags};
use rampart_sdk::{Client, Context};

fn sdk(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("rampart-sdk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flags.json");
    std::fs::write(&path, benchmark_document()).expect("write flags");
    let client = runtime.block_on(async { Client::builder().bootstrap_file(&path).build().expect("client") });
    // A server that is never there: the client serves its bootstrap file
    // and counts usage for a report that waits (its reconnects are rare).
    let counting = runtime.block_on(async {
        Client::builder()
            .bootstrap_file(&path)
            .endpoint("http://127.0.0.1:9")
            .backoff(std::time::Duration::from_secs(30), std::time::Duration::from_secs(60))
            .build()
            .expect("client")
    });
    let engine = benchmark_flags();
    let context = Context::with_targeting_key("user-48213")
        .with("email", "someone@example.com")
        .with("country", "FR")
        .with("plan", "free")
        .with("appVersion", "2.5.1");

    let mut group = c.benchmark_group("three-clauses-and-split");
    group.bench_function("engine", |b| {
        b.iter(|| {
            black_box(engine.resolve::<bool>(black_box("three-clauses-and-split"), &context, 1_700_000_000).value)
        })
    });
    group.bench_function("sdk", |b| {
        b.iter(|| black_box(client.bool_value(black_box("three-clauses-and-split"), &context, false)))
    });
    group.bench_function("sdk, usage counted", |b| {
        b.iter(|| black_box(counting.bool_value(black_box("three-clauses-and-split"), &context, false)))
    });
    group.finish();
    let mut group = c.benchmark_group("static");
    group.bench_function("engine", |b| {
        b.iter(|| black_box(engine.resolve::<bool>(black_box("static"), &context, 0).value))
    });
    group.bench_function("sdk", |b| b.iter(|| black_box(client.bool_value(black_box("static"), &context, false))));
    group.bench_function("sdk, usage counted", |b| {
        b.iter(|| black_box(counting.bool_value(black_box("static"), &context, false)))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, sdk);
criterion_main!(benches);
