//! A ramp tick — observation and decision — against the age of the step:
//! outcome counts from 1,000 reporters (one row per second and variant in
//! the store) over a 12-hour step of ten-second buckets, one hour and
//! twelve hours into the step, ten seconds after the previous tick. Closed
//! buckets and the SPRT's sums over them are kept between ticks, so both
//! cost about the same: what is read and computed is what is new.
//!
//! `cargo bench -p rampart-benches --bench tick` (embedded store);
//! with `RAMPART_BENCH_REDIS_URL=redis://127.0.0.1:PORT/0` on Redis.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_server::cli::ServeArgs;
use rampart_server::config::RedisOptions;
use rampart_server::config::ServerConfig;
use rampart_server::environment::Environments;
use rampart_server::model::Status;
use rampart_server::ramp::decide::decide;
use rampart_server::ramp::observe::{Caches, Observer};
use rampart_server::ramp::prometheus::PrometheusSource;
use rampart_server::store::embedded::EmbeddedStore;
use rampart_server::store::redis::RedisStore;
use rampart_server::store::{OutcomeCount, Store};
use rampart_server::time::Clock;

const SPEC: &str = "apiVersion: rampart.dev/v1\nkind: Ramp\nmetadata: {name: checkout}\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  control: \"off\"\n  interval: 10s\n  steps:\n    - {percent: 50, hold: 13h}\n    - {percent: 100, hold: 1h}\n";
const START: u64 = 1_700_000_000_000;
const HOURS: u64 = 12;

fn tick(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("flags.json"),
        r#"{"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#,
    )
    .expect("flags");
    let config_file = dir.path().join("rampart.yaml");
    std::fs::write(&config_file, "environments:\n  default:\n    flags: [flags.json]\n").expect("config");
    let args = ServeArgs { config: Some(config_file), data_dir: Some(dir.path().join("data")), ..Default::default() };
    let config = ServerConfig::resolve(&args, &|_| None).expect("config");
    let store: Arc<dyn Store> = match std::env::var("RAMPART_BENCH_REDIS_URL") {
        Ok(url) => {
            let options = RedisOptions {
                url,
                password: None,
                prefix: format!("tick{}", std::process::id()),
                timeout: Duration::from_secs(10),
                ca_file: None,
            };
            Arc::new(runtime.block_on(RedisStore::connect(&options)).expect("redis").0)
        }
        Err(_) => Arc::new(EmbeddedStore::open(&config.data_dir).expect("store")),
    };
    let environments = Environments::load(&config, BTreeMap::new(), Clock::system()).expect("environments");
    let environment = environments.get("default").expect("environment");
    // Twelve hours of counts from 1,000 reporters, summed per second.
    runtime.block_on(async {
        for hour in 0..HOURS {
            let counts: Vec<OutcomeCount> = (0..3600)
                .flat_map(|s| {
                    let second = START / 1000 + hour * 3600 + s;
                    [("on", 500, 2), ("off", 500, 1)].map(|(variant, ok, error)| OutcomeCount {
                        flag: "new-checkout".into(),
                        variant: variant.into(),
                        second,
                        ok,
                        error,
                        ..Default::default()
                    })
                })
                .collect();
            store.record_outcomes("default", counts, Vec::new()).await.expect("recorded");
        }
    });
    let spec = rampart_server::ramp::spec::parse("ramp.yaml", SPEC).expect("spec");
    let mut run = spec.new_run("off", "run-1".into(), START);
    run.status = Status::Ramping;
    let observer = Observer::new(store, PrometheusSource::new(None).expect("client"), Duration::from_secs(5));
    let mut group = c.benchmark_group("ramp tick");
    for hour in [1, HOURS] {
        let caches = Caches::default();
        let now = START + hour * 3600 * 1000;
        // The ticks before this one filled the cache.
        runtime.block_on(observer.observe(environment, "checkout", &caches, &spec, &run, now - 10_000));
        group.bench_function(format!("hour {hour}"), |b| {
            b.iter(|| {
                let observation =
                    runtime.block_on(observer.observe(environment, "checkout", &caches, &spec, &run, now));
                assert_eq!(observation.buckets.len() as u64, (hour * 3600 - 2) / 10 + 1);
                decide(&run, &spec, &observation, now, None)
            })
        });
        group.bench_function(format!("hour {hour}, no cache"), |b| {
            b.iter(|| {
                let caches = Caches::default();
                let observation =
                    runtime.block_on(observer.observe(environment, "checkout", &caches, &spec, &run, now));
                decide(&run, &spec, &observation, now, None)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
