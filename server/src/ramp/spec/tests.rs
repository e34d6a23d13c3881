//! Ramp files: parsing, defaults, validation and live edits.

use super::*;

const GOOD: &str = "\
apiVersion: rampart.dev/v1
kind: Ramp
metadata:
  name: checkout-v2
spec:
  environment: production
  flag: new-checkout
  treatment: \"on\"
  control: \"off\"
  revision: 2
  interval: 30s
  steps:
    - { percent: 5, hold: 1h, minSamples: 500 }
    - { percent: 25, hold: 2h }
    - { percent: 50, hold: 4h }
    - { percent: 100, hold: 12h }
  guard:
    minSamples: 2000
    unit: context
    absolute:
      maxErrorRate: 2%
      confidence: 99.9%
    relative:
      tolerance: 10%
  policy:
    onMissingData: { pauseAfterFailedChecks: 5, then: rollback }
    onStepTimeout: { after: 6h, then: rollback }
";

#[test]
fn a_full_file_parses_with_defaults() {
    let spec = parse("ramps/c.yaml", GOOD).unwrap();
    assert_eq!(spec.name, "checkout-v2");
    assert_eq!(spec.salt, "checkout-v2");
    assert_eq!(spec.revision, 2);
    assert_eq!(spec.interval, Duration::from_secs(30));
    let percents: Vec<u32> = spec.steps.iter().map(|s| s.basis_points).collect();
    assert_eq!(percents, [500, 2500, 5000, 10_000]);
    assert_eq!(spec.steps[0].min_samples, 500);
    assert_eq!(spec.steps[1].min_samples, 2000);
    assert_eq!(spec.guard.max_error_rate, Some(0.02));
    assert!((spec.guard.absolute_confidence - 0.999).abs() < 1e-12);
    assert!((spec.guard.advance_max_ratio - 1.2).abs() < 1e-12);
    assert_eq!(spec.guard.relative_confidence, DEFAULT_RELATIVE_CONFIDENCE);
    assert_eq!(spec.guard.unit, Unit::Context);
    assert_eq!(spec.policy.on_missing_data, Action::Rollback);
    assert_eq!(spec.policy.pause_after_failed_checks, 5);
    assert_eq!(spec.policy.step_timeout, Duration::from_secs(6 * 3600));
    assert!(warnings(&spec).is_empty(), "{:?}", warnings(&spec));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("5y"), None);
}

#[test]
fn invalid_files_name_the_line_and_the_reason() {
    let cases: &[(&str, &str, usize)] = &[
        ("    - { percent: 25, hold: 2h }", "    - { percent: 3, hold: 2h }", 14),
        ("    - { percent: 100, hold: 12h }", "    - { percent: 120, hold: 12h }", 16),
        ("    - { percent: 50, hold: 4h }", "    - { percent: 50 }", 15),
        ("  control: \"off\"", "  control: \"on\"", 9),
        ("      tolerance: 10%", "      tolerance: -5%", 24),
        ("      confidence: 99.9%", "      confidence: 40%", 22),
        ("  interval: 30s", "  interval: soon", 11),
        ("  interval: 30s", "  interval: 30s\n  metrics: [{ name: p99 }]", 12),
        ("  interval: 30s", "  interval: 30s\n  guard2: 1", 12),
        ("  revision: 2", "  revision: 2\n  colour: red", 11),
    ];
    for (from, to, line) in cases {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "{from}");
        let errors = parse("r.yaml", &text).unwrap_err();
        let error = &errors[0];
        assert_eq!(error.file, "r.yaml");
        assert_eq!(error.line, Some(*line), "{to}: {errors:?}");
        assert!(!error.message.is_empty());
    }
}

#[test]
fn prometheus_guards_notify_targets_and_approvals() {
    let text = GOOD.replace(
            "    minSamples: 2000\n",
            "    minSamples: 2000\n    prometheus:\n      errors: 'sum(increase(errors_total{variant=\"{{variant}}\"}[{{window}}]))'\n      total: 'sum(increase(requests_total{variant=\"{{variant}}\"}[{{window}}]))'\n      lag: 45s\n",
        ).replace("  revision: 2\n", "  revision: 2\n  notify:\n    - { webhook: https://hooks.example.com/r, secretRef: HOOK_SECRET, minSeverity: warning }\n").replace("{ percent: 25, hold: 2h }", "{ percent: 25, hold: 2h, approve: true }");
    let spec = parse("r.yaml", &text).unwrap();
    let MetricSource::Prometheus(guard) = &spec.guard.source else { panic!("{:?}", spec.guard.source) };
    assert_eq!(guard.lag, Duration::from_secs(45));
    assert_eq!(spec.notify[0].min_severity, Severity::Warning);
    assert!(spec.steps[1].approve && !spec.steps[0].approve);
    let bad = text.replace("{{window}}]))'\n      total", "{{windw}}]))'\n      total");
    let errors = parse("r.yaml", &bad).unwrap_err();
    assert!(errors[0].message.contains("unknown template variable '{{windw}}'"), "{errors:?}");
    assert_eq!(errors[0].line, Some(22));
}

#[test]
fn weak_schedules_are_warned_about() {
    let text = GOOD.replace("percent: 50, hold: 4h", "percent: 80, hold: 4h").replace("      maxErrorRate: 2%\n", "");
    let spec = parse("r.yaml", &text).unwrap();
    let warnings = warnings(&spec);
    assert!(warnings.iter().any(|w| w.contains("80%")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("maxErrorRate")), "{warnings:?}");
}

#[test]
fn live_edits() {
    let running = parse("r.yaml", GOOD).unwrap();
    let more_steps =
        parse("r.yaml", &GOOD.replace("    - { percent: 50", "    - { percent: 35, hold: 1h }\n    - { percent: 50"))
            .unwrap();
    assert_eq!(more_steps.live_edit_refusal(&running, 2500), None);
    let salted = parse("r.yaml", &GOOD.replace("  revision: 2", "  revision: 2\n  salt: other")).unwrap();
    assert!(salted.live_edit_refusal(&running, 2500).unwrap().contains("salt"));
    let treatment = parse("r.yaml", &GOOD.replace("treatment: \"on\"", "treatment: \"blue\"")).unwrap();
    assert!(treatment.live_edit_refusal(&running, 2500).unwrap().contains("treatment"));
    let moved = parse("r.yaml", &GOOD.replace("percent: 25,", "percent: 30,")).unwrap();
    assert!(moved.live_edit_refusal(&running, 2500).unwrap().contains("25%"));
}

#[test]
fn several_guards_share_one_false_alarm_budget() {
    let with = |metrics: &str| {
        let text = format!("{GOOD}  metrics:\n{metrics}");
        parse("ramps/c.yaml", &text).unwrap()
    };
    let metric = |name: &str, role: &str, dry_run: bool| {
        format!(
            "    - {{ name: {name}, role: {role}, query: 'x{{variant=\"{{{{variant}}}}\"}}', relative: {{ confidence: 99% }}, dryRun: {dry_run} }}\n"
        )
    };
    let alone = parse("ramps/c.yaml", GOOD).unwrap();
    assert!((alone.guard.absolute_confidence - 0.999).abs() < 1e-12, "one guard keeps what the file says");
    // The error guard and two guard metrics: each at α / 3.
    let three = with(&(metric("p99", "guard", false) + &metric("cpu", "guard", false) + &metric("lat", "gate", false)));
    assert!((three.guard.absolute_confidence - (1.0 - 0.001 / 3.0)).abs() < 1e-12);
    assert!((three.guard.relative_confidence - (1.0 - (1.0 - alone.guard.relative_confidence) / 3.0)).abs() < 1e-12);
    assert!((three.metrics[0].confidence - (1.0 - 0.01 / 3.0)).abs() < 1e-12);
    assert!((three.metrics[2].confidence - 0.99).abs() < 1e-12, "a gate never rolls back: its own confidence");
    // A dry-run guard records only: it takes no share.
    let dry = with(&metric("p99", "guard", true));
    assert!((dry.guard.absolute_confidence - 0.999).abs() < 1e-12);
}
