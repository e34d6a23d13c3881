//! A ramped flag evaluated natively (`Flag::with_exposure`) answers
//! exactly as the standard JsonLogic it streams (`ramp::ramped_definition`
//! compiled as any flag): same variant, value, reason and error, over
//! 100,000 generated contexts at every step percentage, for flags with and
//! without rules, rules that answer the control, null, another variant or
//! throw, a default that is or is not the control, and targeting keys that
//! are missing, empty, numbers or strings.

use rampart_engine::ramp::{Exposure, ramped_definition};
use rampart_engine::{Context, Flag, TARGETING_KEY};
use serde_json::{Value, json};

fn flags() -> Vec<(&'static str, Value)> {
    let variants = json!({"on": true, "off": false, "beta": true});
    vec![
        ("plain", json!({"state": "ENABLED", "variants": variants, "defaultVariant": "off"})),
        (
            "rules",
            json!({"state": "ENABLED", "variants": variants, "defaultVariant": "off", "targeting": {"if": [
                {"==": [{"var": "tier"}, "beta"]}, "beta",
                {"in": [{"var": "country"}, ["de", "fr"]]}, "off",
                {"ends_with": [{"var": "email"}, "@example.com"]}, {"fractional": [["on", 20], ["off", 80]]},
                null]}}),
        ),
        (
            "default-is-treatment",
            json!({"state": "ENABLED", "variants": variants, "defaultVariant": "on", "targeting": {"if": [
                {"==": [{"var": "tier"}, "free"]}, "off", null]}}),
        ),
        (
            "throws-sometimes",
            json!({"state": "ENABLED", "variants": variants, "defaultVariant": "off", "targeting": {"if": [
                {"==": [{"var": "tier"}, "boom"]}, {"max": [{"var": "tier"}]},
                {"var": "pick"}]}}),
        ),
    ]
}

/// A deterministic pseudo-random context (xorshift), varied in every field
/// the flags read.
fn context(seed: u64) -> Context {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut context = Context::new();
    match next() % 10 {
        0 => {}
        1 => context.insert(TARGETING_KEY, Value::String(String::new())),
        2 => context.insert(TARGETING_KEY, json!(next() % 1000)),
        _ => context.insert(TARGETING_KEY, Value::String(format!("user-{}", next() % 1_000_000))),
    }
    let tiers = ["beta", "free", "gold", "boom", ""];
    context.insert("tier", Value::String(tiers[(next() % 5) as usize].into()));
    let countries = ["de", "fr", "no", "us"];
    context.insert("country", Value::String(countries[(next() % 4) as usize].into()));
    if next() % 2 == 0 {
        context.insert("email", Value::String(format!("u{}@example.com", next() % 100)));
    }
    let picks = [json!("on"), json!("off"), Value::Null, json!("missing"), json!(true)];
    context.insert("pick", picks[(next() % 5) as usize].clone());
    context
}

#[test]
fn native_and_json_ramps_give_the_same_answers_at_every_step() {
    let flags: Vec<(&str, Flag)> = flags()
        .into_iter()
        .map(|(key, definition)| (key, Flag::compile(key, definition, "t.json").expect("compiles")))
        .collect();
    let mut compared = 0usize;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for basis_points in [1u32, 100, 500, 2_500, 5_000, 9_999, 10_000] {
        let exposure = Exposure { treatment: "on".into(), control: "off".into(), salt: "s1".into(), basis_points };
        let pairs: Vec<(Flag, Flag)> = flags
            .iter()
            .map(|(key, flag)| {
                let native = flag.with_exposure(&exposure).expect("ramped");
                let json = Flag::compile(key, ramped_definition(key, &flag.definition(), &exposure), "t.json")
                    .expect("the JSON form compiles");
                assert_eq!(
                    native.definition()["targeting"],
                    json.definition()["targeting"],
                    "{key}: same definition streamed"
                );
                (native, json)
            })
            .collect();
        for seed in 0..100_000u64 {
            let context = context(seed ^ u64::from(basis_points) << 32);
            let (native, json) = &pairs[(seed % pairs.len() as u64) as usize];
            let (a, b) = (native.evaluate(&context, 0), json.evaluate(&context, 0));
            assert_eq!(
                (a.variant, a.value, a.reason, a.error_code, &a.error_message),
                (b.variant, b.value, b.reason, b.error_code, &b.error_message),
                "flag {} at {basis_points} bp, context {context:?}",
                native.key()
            );
            compared += 1;
            let outcome = match (a.error_code, a.variant) {
                (Some(_), _) => "error".to_owned(),
                (None, variant) => format!("{:?}/{}", a.reason, variant.unwrap_or("-")),
            };
            *seen.entry(outcome).or_default() += 1;
        }
    }
    assert_eq!(compared, 700_000);
    // Every path was taken: the treatment and the control by the bucket,
    // the rules' own variant, the default, and a thrown rule.
    for outcome in ["error", "TargetingMatch/on", "TargetingMatch/off", "TargetingMatch/beta", "Default/off"] {
        assert!(seen.get(outcome).is_some_and(|n| *n > 100), "{outcome} in {seen:?}");
    }
}

#[test]
fn an_exposure_that_changes_nothing_is_refused() {
    let plain = Flag::compile(
        "f",
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
        "t.json",
    )
    .expect("compiles");
    let exposure = |bp: u32, treatment: &str| Exposure {
        treatment: treatment.into(),
        control: "off".into(),
        salt: "s".into(),
        basis_points: bp,
    };
    assert!(plain.with_exposure(&exposure(0, "on")).is_none(), "0 %");
    assert!(plain.with_exposure(&exposure(500, "off")).is_none(), "treatment = control");
    assert!(plain.with_exposure(&exposure(500, "gone")).is_none(), "a missing variant");
    assert!(plain.with_exposure(&exposure(500, "on")).is_none(), "no rules and the default is not the control");
}
