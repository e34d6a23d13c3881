//! What one admin write costs as an environment grows: a PUT of one
//! API-owned flag (compiled, committed durably to the embedded store,
//! published to the snapshot and the streams) in an environment of N file
//! flags of three shapes (static boolean; three targeting clauses and a
//! three-way split; a `sem_ver` rule). Issue 16's goal: independent of N,
//! under 5 ms at N = 100,000.
//!
//! `cargo bench -p rampart-benches --bench writes`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rampart_server::cli::ServeArgs;
use rampart_server::config::ServerConfig;
use rampart_server::environment::Environments;
use rampart_server::store::Store;
use rampart_server::store::embedded::EmbeddedStore;
use rampart_server::time::Clock;
use rampart_server::writes::{Definition, Writes};
use serde_json::json;

/// A flag file of `n` flags in the three shapes.
fn flag_file(n: usize) -> String {
    let mut text = String::from("{\"flags\":{");
    for index in 0..n {
        if index > 0 {
            text.push(',');
        }
        let targeting = match index % 3 {
            0 => "{}",
            1 => {
                r#"{"if":[{"in":[{"var":"country"},["de","fr"]]},"a",{"starts_with":[{"var":"email"},"ops@"]},"b",{"ends_with":[{"var":"email"},"@example.com"]},"c",{"fractional":[["a",34],["b",33],["c",33]]}]}"#
            }
            _ => r#"{"if":[{"sem_ver":[{"var":"version"},">=","2.0.0"]},"a","b"]}"#,
        };
        text.push_str(&format!(
            "\"flag-{index:06}\":{{\"state\":\"ENABLED\",\"variants\":{{\"a\":\"A\",\"b\":\"B\",\"c\":\"C\"}},\"defaultVariant\":\"a\",\"targeting\":{targeting}}}"
        ));
    }
    text.push_str("}}");
    text
}

struct Setup {
    _dir: tempfile::TempDir,
    environments: Environments,
    writes: Writes,
}

fn setup(flags: usize) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("flags.json"), flag_file(flags)).expect("flags");
    let config_file = dir.path().join("rampart.yaml");
    std::fs::write(&config_file, "limits:\n  flagFileBytes: 1000000000\n  flagFileNodes: 100000000\nenvironments:\n  default:\n    flags: [flags.json]\n")
        .expect("config");
    let args = ServeArgs { config: Some(config_file), data_dir: Some(dir.path().join("data")), ..Default::default() };
    let config = ServerConfig::resolve(&args, &|_| None).expect("config");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.data_dir).expect("store"));
    let environments = Environments::load(&config, BTreeMap::new(), Clock::system()).expect("environments");
    Setup { _dir: dir, environments, writes: Writes::new(store, 10_000, Clock::system()) }
}

fn writes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("admin put of one flag");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    for flags in [1_000usize, 10_000, 100_000] {
        let setup = setup(flags);
        let environment = setup.environments.get("default").expect("environment");
        let mut round = 0u64;
        group.bench_function(BenchmarkId::from_parameter(flags), |b| {
            b.iter(|| {
                round += 1;
                let value =
                    json!({"state": "ENABLED", "variants": {"a": "A", "b": round.to_string()}, "defaultVariant": "a"});
                let definition = Definition::compile("api-flag", value).expect("compiles");
                runtime
                    .block_on(setup.writes.put(environment, "bench".into(), "api-flag", None, definition))
                    .expect("written");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
