//! What one admin token can make the store hold is bounded: its writes per
//! second (`limits.adminWritesPerSecond`, burst twice that) times the
//! definition limit, history per flag, and flags per environment. The
//! embedded store's cache and compaction at start-up are unit-tested
//! (`store/embedded/tests.rs`).

use std::time::Duration;

use rampart_tests::{FlagDir, Rampart, eventually, send};
use serde_json::json;

const TOKEN: &str = "store-bounds-writer-0123456789";

#[test]
fn one_token_writes_at_most_its_rate() {
    let dir = FlagDir::new();
    dir.write("flags.yaml", "flags:\n  f:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: \"on\"\n");
    let config = dir.write(
        "rampart.yaml",
        &format!(
            "environments:\n  production:\n    flags: [flags.yaml]\nadminTokens:\n  - {{name: ci, role: write, value: {TOKEN}}}\n\
             limits:\n  adminWritesPerSecond: 5\n"
        ),
    );
    let server = Rampart::start(&["--config", &config]);
    let url = format!("{}/admin/v1/environments/production/flags/wide", server.admin);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    let started = std::time::Instant::now();
    for round in 0..40 {
        let body = json!({"state": "ENABLED", "variants": {"v": format!("{round}{}", "x".repeat(100_000))}, "defaultVariant": "v"});
        let answer = send("PUT", &url, Some(TOKEN), Some(&body), &[]);
        if answer.status == 429 {
            retry_after = Some(answer.body["error"]["message"].as_str().unwrap_or_default().to_owned());
        }
        statuses.push(answer.status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let written = statuses.iter().filter(|s| **s < 300).count();
    // A burst of ten, and what five a second refill while the loop ran.
    let most = 10 + (5.0 * elapsed).ceil() as usize;
    assert!(written >= 10 && written <= most, "{written} written in {elapsed:.1} s (at most {most}): {statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|m| m.contains("adminWritesPerSecond")));
    let refused = statuses.iter().filter(|s| **s == 429).count() as f64;
    eventually(Duration::from_secs(5), || {
        let counted = server.metric("rampart_limit_rejections_total{limit=\"admin_writes\"}");
        if counted == refused { Ok(()) } else { Err(format!("{counted} counted, {refused} refused")) }
    });
}
