//! What checking a request's SDK key costs: resolving the presented key to
//! its environment (`Environments::authenticate`), against the SHA-256 of
//! the key that every request paid before the key cache (the previous path
//! was that digest plus a hash lookup). Issue 25's goal: ≤ 100 ns.
//!
//! `cargo bench -p rampart-benches --bench keys`

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_server::cli::ServeArgs;
use rampart_server::config::{KeyDigest, ServerConfig};
use rampart_server::environment::{Environments, Purpose};
use rampart_server::time::Clock;

/// Two environments with 50 SDK keys each.
fn environments(dir: &std::path::Path) -> Environments {
    std::fs::write(dir.join("flags.json"), r#"{"flags":{}}"#).expect("flags");
    let keys = |env: &str| (0..50).map(|i| format!("{{value: {env}-sdk-key-{i:04}}}")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "environments:\n  production:\n    flags: [flags.json]\n    sdkKeys: [{}]\n  staging:\n    flags: [flags.json]\n    sdkKeys: [{}]\n",
        keys("production"),
        keys("staging")
    );
    std::fs::write(dir.join("rampart.yaml"), config).expect("config");
    let args =
        ServeArgs { config: Some(dir.join("rampart.yaml")), data_dir: Some(dir.join("data")), ..Default::default() };
    let config = ServerConfig::resolve(&args, &|_| None).expect("config");
    Environments::load(&config, Default::default(), Clock::system()).expect("environments")
}

fn keys(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let environments = environments(dir.path());
    let key = "production-sdk-key-0042";
    assert!(environments.authenticate(Some(key), Purpose::Evaluate).is_ok());
    let mut group = c.benchmark_group("sdk_key");
    group.bench_function("authenticate (cached)", |b| {
        b.iter(|| environments.authenticate(Some(std::hint::black_box(key)), Purpose::Evaluate).is_ok())
    });
    group.bench_function("sha256 of the key (the previous per-request cost)", |b| {
        b.iter(|| KeyDigest::of(std::hint::black_box(key)))
    });
    group.bench_function("an invalid key (digest, not cached)", |b| {
        b.iter(|| {
            environments.authenticate(Some(std::hint::black_box("not-a-key-000000001")), Purpose::Evaluate).is_err()
        })
    });
    group.finish();
}

criterion_group!(benches, keys);
criterion_main!(benches);
