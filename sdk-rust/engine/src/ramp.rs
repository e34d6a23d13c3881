//! Ramp exposure: how a progressive rollout changes a flag's answers.
//!
//! While a ramp is active, a context that the flag's own rules give the
//! *control* variant gets the *treatment* when its ramp bucket is below the
//! ramp's percentage. The bucket hashes `flagKey/salt/targetingKey`, so it
//! is independent of any `fractional` split inside the flag, sticky for a
//! user while the salt stays, and monotonic: a user exposed at 5 % is still
//! exposed at 25 %.
//!
//! [`ramped_definition`] rewrites the flag's targeting into standard flagd
//! JsonLogic (`if`, `===`, `fractional` with a `cat` bucketing expression),
//! which the server streams to SDKs and flagd providers, so every evaluator
//! gives exactly the same answer. That form runs the flag's own rules up to
//! three times; [`Flag::with_exposure`](crate::Flag::with_exposure) serves
//! the same definition but evaluates it natively ([`Overlay`]): the rules
//! once, then the bucket. A differential test (`tests/ramp_native.rs`)
//! holds the two to the same answers.

use serde_json::{Value, json};

use crate::bucket;

/// Percentages are kept in basis points: 1 % = 100, 100 % = 10 000.
pub const FULL: u32 = 10_000;

/// A ramp's effect on one flag at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub treatment: String,
    pub control: String,
    pub salt: String,
    /// 0..=10 000; 0 leaves the flag unchanged.
    pub basis_points: u32,
}

impl Exposure {
    /// The bucketing string's constant prefix; the targeting key follows.
    pub fn bucket_prefix(&self, flag_key: &str) -> String {
        format!("{flag_key}/{}/", self.salt)
    }
}

/// A targeting key's ramp bucket in `0..10 000`.
pub fn ramp_bucket(flag_key: &str, salt: &str, targeting_key: &str) -> u32 {
    let hash = bucket::hash(&[flag_key, "/", salt, "/", targeting_key]);
    bucket::scale(hash, u64::from(FULL)) as u32
}

/// Whether a context with this targeting key, given the control variant by
/// the flag's rules, is switched to the treatment.
pub fn is_exposed(flag_key: &str, exposure: &Exposure, targeting_key: &str) -> bool {
    match exposure.basis_points {
        0 => false,
        FULL.. => true,
        bp => !targeting_key.is_empty() && ramp_bucket(flag_key, &exposure.salt, targeting_key) < bp,
    }
}

/// The flag definition with the exposure applied to its targeting. At 0 %
/// the definition is returned unchanged. Contexts without a targeting key
/// cannot be bucketed and keep the control below 100 %.
pub fn ramped_definition(flag_key: &str, definition: &Value, exposure: &Exposure) -> Value {
    let mut definition = definition.clone();
    if exposure.basis_points == 0 || exposure.treatment == exposure.control {
        return definition;
    }
    let Some(fields) = definition.as_object_mut() else {
        return definition;
    };
    let default_is_control = fields.get("defaultVariant").and_then(Value::as_str) == Some(exposure.control.as_str());
    let original = fields.get("targeting").filter(|t| !is_empty_targeting(t)).cloned();
    let treatment = Value::String(exposure.treatment.clone());
    let control = Value::String(exposure.control.clone());
    // What a context the rules give the control gets; `otherwise` for the
    // contexts that cannot be bucketed.
    let ramp = |otherwise: Value| -> Value {
        if exposure.basis_points >= FULL {
            return treatment.clone();
        }
        let split = json!({ "fractional": [
            { "cat": [exposure.bucket_prefix(flag_key), { "var": "targetingKey" }] },
            [exposure.treatment, exposure.basis_points],
            [exposure.control, FULL - exposure.basis_points],
        ]});
        json!({ "if": [{ "var": "targetingKey" }, split, otherwise] })
    };
    let targeting = match original {
        // No rules: everyone gets the default variant.
        // Targeting must be an object, also at 100 %.
        None if default_is_control && exposure.basis_points >= FULL => json!({ "if": [true, treatment, null] }),
        None if default_is_control => ramp(Value::Null),
        None => return definition,
        Some(rules) => {
            let mut branches = vec![json!({ "===": [rules.clone(), control.clone()] }), ramp(control)];
            if default_is_control {
                branches.push(json!({ "===": [rules.clone(), Value::Null] }));
                branches.push(ramp(Value::Null));
            }
            branches.push(rules);
            json!({ "if": branches })
        }
    };
    fields.insert("targeting".into(), targeting);
    definition
}

/// A ramp applied natively: what [`ramped_definition`]'s JsonLogic does,
/// without evaluating the flag's rules more than once.
#[derive(Debug, Clone)]
pub(crate) struct Overlay {
    /// `flagKey/salt/`: the bucketing string before the targeting key.
    pub(crate) prefix: String,
    /// Its hash state, so an evaluation hashes the targeting key only.
    prefix_hash: bucket::PrefixHash,
    pub(crate) treatment: String,
    pub(crate) control: String,
    pub(crate) basis_points: u32,
    /// A context the rules give no variant (null) is the control too.
    pub(crate) default_is_control: bool,
}

/// What an overlay decides for one context.
pub(crate) enum Decision<'a> {
    /// This variant (reason `TARGETING_MATCH`).
    Variant(&'a str),
    /// The default variant (reason `DEFAULT`).
    Default,
    /// The rules' own answer stands.
    Rules,
}

impl Overlay {
    pub(crate) fn new(flag_key: &str, exposure: &Exposure, default_is_control: bool) -> Overlay {
        let prefix = exposure.bucket_prefix(flag_key);
        Overlay {
            prefix_hash: bucket::PrefixHash::new(&prefix),
            prefix,
            treatment: exposure.treatment.clone(),
            control: exposure.control.clone(),
            basis_points: exposure.basis_points,
            default_is_control,
        }
    }

    /// The decision for a context whose rules answered `rules` (`None`: the
    /// flag has no rules), given the context's targeting key value.
    pub(crate) fn decide<'a>(&'a self, rules: Option<&Value>, targeting_key: Option<&Value>) -> Decision<'a> {
        match rules {
            None => self.ramp(targeting_key, Decision::Default),
            Some(Value::String(name)) if *name == self.control => {
                self.ramp(targeting_key, Decision::Variant(&self.control))
            }
            Some(Value::Null) if self.default_is_control => self.ramp(targeting_key, Decision::Default),
            Some(_) => Decision::Rules,
        }
    }

    /// `{"if": [{"var": "targetingKey"}, {"fractional": [{"cat": [prefix, key]}, …]}, otherwise]}`,
    /// or the treatment at 100 %.
    fn ramp<'a>(&'a self, targeting_key: Option<&Value>, otherwise: Decision<'a>) -> Decision<'a> {
        if self.basis_points >= FULL {
            return Decision::Variant(&self.treatment);
        }
        let Some(key) = targeting_key.filter(|key| crate::js::truthy(key)) else { return otherwise };
        let hash = match key {
            Value::String(key) => self.prefix_hash.of(key),
            other => {
                let mut text = self.prefix.clone();
                crate::js::write_string(other, &mut text);
                bucket::hash(&[&text])
            }
        };
        if bucket::scale(hash, u64::from(FULL)) < u64::from(self.basis_points) {
            Decision::Variant(&self.treatment)
        } else {
            Decision::Variant(&self.control)
        }
    }
}

fn is_empty_targeting(targeting: &Value) -> bool {
    match targeting {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, FlagSet, Source};

    fn exposure(bp: u32) -> Exposure {
        Exposure { treatment: "on".into(), control: "off".into(), salt: "s1".into(), basis_points: bp }
    }

    fn evaluate(definition: &Value, key: Option<&str>, extra: &[(&str, Value)]) -> String {
        let text = json!({ "flags": { "f": definition } }).to_string();
        let set = FlagSet::load(&[Source::json("t.json", &text)]).unwrap();
        let mut context = Context::new();
        if let Some(key) = key {
            context.insert(crate::TARGETING_KEY, Value::String(key.into()));
        }
        for (name, value) in extra {
            context.insert(*name, value.clone());
        }
        set.evaluate("f", &context, 0).variant.unwrap_or_default().to_owned()
    }

    #[test]
    fn the_rewritten_flag_answers_exactly_as_the_bucket_says() {
        let plain = json!({ "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off" });
        let with_rules = json!({
            "state": "ENABLED", "variants": { "on": true, "off": false, "beta": true }, "defaultVariant": "off",
            "targeting": { "if": [{ "==": [{ "var": "tier" }, "beta"] }, "beta", { "==": [{ "var": "tier" }, "free"] }, "off", null] }
        });
        for bp in [0, 1, 500, 2_500, 5_000, 9_999, FULL] {
            let exposure = exposure(bp);
            let plain = ramped_definition("f", &plain, &exposure);
            let rules = ramped_definition("f", &with_rules, &exposure);
            for i in 0..300 {
                let key = format!("user-{i}");
                let expected = if is_exposed("f", &exposure, &key) { "on" } else { "off" };
                assert_eq!(evaluate(&plain, Some(&key), &[]), expected, "{bp} {key}");
                // Rules giving the control explicitly, or nothing (default = control).
                assert_eq!(evaluate(&rules, Some(&key), &[("tier", json!("free"))]), expected);
                assert_eq!(evaluate(&rules, Some(&key), &[]), expected);
                // Rules giving another variant are left alone.
                assert_eq!(evaluate(&rules, Some(&key), &[("tier", json!("beta"))]), "beta");
            }
            let keyless = if bp >= FULL { "on" } else { "off" };
            assert_eq!(evaluate(&plain, None, &[]), keyless);
        }
    }

    #[test]
    fn exposure_is_monotonic_and_close_to_the_percentage() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        let mut previous: Vec<bool> = vec![false; keys.len()];
        for bp in [100, 500, 2_500, 5_000, FULL] {
            let exposed: Vec<bool> = keys.iter().map(|k| is_exposed("flag", &exposure(bp), k)).collect();
            for (before, now) in previous.iter().zip(&exposed) {
                assert!(!before || *now, "a user exposed earlier must stay exposed");
            }
            let share = exposed.iter().filter(|e| **e).count() as f64 / keys.len() as f64;
            let p = f64::from(bp) / f64::from(FULL);
            let sigma = (p * (1.0 - p) / keys.len() as f64).sqrt();
            assert!((share - p).abs() <= 4.0 * sigma + 1e-9, "{bp}: {share}");
            previous = exposed;
        }
    }

    #[test]
    fn a_different_salt_exposes_a_different_population() {
        let a = exposure(5_000);
        let b = Exposure { salt: "s2".into(), ..a.clone() };
        let differ = (0..1000).filter(|i| is_exposed("f", &a, &format!("{i}")) != is_exposed("f", &b, &format!("{i}")));
        assert!(differ.count() > 300);
    }
}
