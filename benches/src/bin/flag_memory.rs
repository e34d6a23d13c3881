//! Where the memory of many flags goes: builds the issue-16 document of N
//! flags (three shapes, as `benches/load/scale.py`) and reports the
//! process's resident memory after each stage — the document text, the
//! compiled flag set, a reload reusing it — per flag.
//!
//! `MIMALLOC_PURGE_DELAY=0 cargo run --release -p rampart-benches --bin flag_memory -- 100000`
//! (the purge setting returns freed pages at once, so what is measured is
//! what is kept).

use rampart_engine::FlagSet;
use rampart_engine::limits::InputLimits;
use rampart_engine::source::Source;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use rampart_server::cli::ServeArgs;
use rampart_server::config::ServerConfig;
use rampart_server::environment::Environments;
use rampart_server::time::Clock;

/// Counts live bytes (what is allocated, beside what is resident).
#[global_allocator]
static ALLOCATOR: cap::Cap<tikv_jemallocator::Jemalloc> = cap::Cap::new(tikv_jemallocator::Jemalloc, usize::MAX);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn shape(i: usize) -> Value {
    // RAMPART_SHAPE=0|1|2 builds every flag in one shape.
    let only = std::env::var("RAMPART_SHAPE").ok().and_then(|s| s.parse::<usize>().ok());
    let targeting = match only.unwrap_or(i % 3) {
        0 => json!({}),
        1 => json!({"if": [{"in": [{"var": "country"}, ["de", "fr"]]}, "a",
                           {"starts_with": [{"var": "email"}, "ops@"]}, "b",
                           {"ends_with": [{"var": "email"}, "@example.com"]}, "c",
                           {"fractional": [["a", 34], ["b", 33], ["c", 33]]}]}),
        _ => json!({"if": [{"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}, "a", "b"]}),
    };
    json!({"state": "ENABLED", "variants": {"a": "A", "b": "B", "c": "C"}, "defaultVariant": "a", "targeting": targeting})
}

#[allow(clippy::print_stdout)] // the tool's report
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let start = rss_kib();
    let flags: serde_json::Map<String, Value> = (0..n).map(|i| (format!("flag-{i:06}"), shape(i))).collect();
    let text = json!({"flags": flags}).to_string();
    drop(flags);
    let with_text = rss_kib();
    let per_flag = |kib: u64| kib as f64 * 1024.0 / n as f64;
    println!("flags: {n}; document {} bytes ({:.0} bytes/flag)", text.len(), text.len() as f64 / n as f64);
    let live_before = ALLOCATOR.allocated();
    let limits = InputLimits::default();
    let sources = [Source::json("flags.json", &text)];
    let compiled = FlagSet::load_lenient_with(&sources, &limits);
    assert!(compiled.errors.is_empty(), "{}", compiled.errors);
    let loaded = rss_kib();
    let live = ALLOCATOR.allocated().saturating_sub(live_before);
    println!(
        "compiled set: {:.0} bytes/flag resident ({} KiB), {:.0} bytes/flag allocated",
        per_flag(loaded.saturating_sub(with_text)),
        loaded - with_text,
        live as f64 / n as f64
    );
    let again = FlagSet::load_lenient_reusing(&sources, &limits, &compiled.flags);
    let reloaded = rss_kib();
    println!("reload reusing it (both sets alive): +{:.0} bytes/flag", per_flag(reloaded.saturating_sub(loaded)));
    drop(again);
    drop(compiled);
    let before_server = rss_kib();

    // The server's environment over the same file: the compiled set plus
    // what the server keeps beside it.
    let dir = std::env::temp_dir().join(format!("flag-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("flags.json"), &text).expect("flags");
    drop(text);
    let config_file = dir.join("rampart.yaml");
    std::fs::write(&config_file, "environments:\n  default:\n    flags: [flags.json]\n").expect("config");
    let args = ServeArgs { config: Some(config_file), data_dir: Some(dir.join("data")), ..Default::default() };
    let config = ServerConfig::resolve(&args, &|_| None).expect("config");
    let dropped_text = rss_kib();
    let environments = Environments::load(&config, BTreeMap::new(), Clock::system()).expect("environments");
    let served = rss_kib();
    println!(
        "server environment: {:.0} bytes/flag ({} KiB)",
        per_flag(served.saturating_sub(dropped_text)),
        served.saturating_sub(dropped_text)
    );
    drop(environments);
    let _ = std::fs::remove_dir_all(&dir);
    println!("process: {start} KiB at start, {before_server} KiB before the server stage, {} KiB now", rss_kib());
}
