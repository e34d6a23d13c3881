//! Release pipelines (`kind: Release`): one flag and treatment taken
//! through ordered stages, each a ramp in its own environment with its own
//! steps and guard, e.g. staging 50 → 100 % and then production
//! 5 → 25 → 50 → 100 %.
//!
//! A release file is listed among the ramp files of every environment it
//! has a stage in. Read for one environment, it *is* that environment's
//! stage: a ramp (same name as the release) built from the release's
//! shared fields and the stage's own, through the ramp file parser — so a
//! stage validates, persists, survives restarts and is driven by one
//! replica exactly as any ramp. A stage starts only once the stage before
//! it has completed (`PendingReason::PreviousStage`); a rollback in any
//! stage therefore halts the pipeline — the later stages never start.

use rampart_engine::LoadError;
use serde_json::{Map, Value};

use super::spec::{self, RampSpec, Stage};

/// The stage of the release in `text` for `environment`: `Ok(None)` when
/// the release has no stage there (any environment: the first stage, for
/// `rampart validate` without one). With `known`, every stage must name
/// one of those environments: a typo must not pass for a stage that was
/// run (the pipeline would end before it, and report success).
pub fn stage_for(
    file: &str,
    text: &str,
    environment: &str,
    known: Option<&[String]>,
) -> Result<Option<RampSpec>, Vec<LoadError>> {
    let error = |message: String| vec![LoadError::new(file, message)];
    let document: Value = serde_saphyr::from_str_with_options(text, rampart_engine::source::yaml_options())
        .map_err(|e| error(format!("invalid YAML: {}", rampart_engine::source::yaml_message(&e.to_string()))))?;
    let name = document["metadata"]["name"].as_str().ok_or_else(|| error("metadata.name is required".into()))?;
    let Some(fields) = document["spec"].as_object() else { return Err(error("spec is required".into())) };
    let Some(stages) = fields.get("stages").and_then(Value::as_array).filter(|s| !s.is_empty()) else {
        return Err(error("spec.stages: at least one stage (environment, steps) is required".into()));
    };
    let mut environments = Vec::with_capacity(stages.len());
    for (index, stage) in stages.iter().enumerate() {
        let Some(environment) = stage["environment"].as_str() else {
            return Err(error(format!("spec.stages[{index}].environment is required")));
        };
        if environments.iter().any(|e| e == environment) {
            return Err(error(format!("spec.stages[{index}]: environment '{environment}' has a stage already")));
        }
        if let Some(known) = known.filter(|known| !known.iter().any(|k| k == environment)) {
            let line = text.lines().position(|l| l.contains("environment") && l.contains(environment)).map(|i| i + 1);
            let problem = LoadError::new(
                file,
                format!(
                    "spec.stages[{index}].environment '{environment}' is not a configured environment ({})",
                    known.join(", ")
                ),
            );
            return Err(vec![match line {
                Some(line) => problem.at_line(line),
                None => problem,
            }]);
        }
        environments.push(environment.to_owned());
    }
    let index = if environment.is_empty() { Some(0) } else { environments.iter().position(|e| e == environment) };
    let Some(index) = index else { return Ok(None) };
    // The stage's ramp: the shared fields, then the stage's own.
    let rollback_earlier = match fields.get("rollbackEarlierStages") {
        None => false,
        Some(Value::Bool(value)) => *value,
        Some(_) => return Err(error("spec.rollbackEarlierStages must be true or false".into())),
    };
    let mut ramp: Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| *key != "stages" && *key != "rollbackEarlierStages")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in stages[index].as_object().into_iter().flatten() {
        if key != "environment" {
            ramp.insert(key.clone(), value.clone());
        }
    }
    if !environment.is_empty() {
        ramp.insert("environment".into(), Value::String(environment.to_owned()));
    }
    let generated = serde_json::json!({
        "apiVersion": document["apiVersion"],
        "kind": "Ramp",
        "metadata": {"name": name},
        "spec": ramp,
    })
    .to_string();
    let place = format!("stage {} ({})", index + 1, environments[index]);
    let mut spec = spec::parse(file, &generated).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| LoadError::new(file, format!("{place}: {}", e.message)).in_ramp(name.to_owned()))
            .collect::<Vec<_>>()
    })?;
    // Lines point into the release file, for binding's messages.
    let line = |key: &str| text.lines().position(|l| l.trim_start().starts_with(&format!("{key}:"))).map(|i| i + 1);
    spec.lines = spec::KeyLines { flag: line("flag"), treatment: line("treatment"), control: line("control") };
    spec.stage = Some(Stage { release: name.to_owned(), index, environments, rollback_earlier });
    Ok(Some(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "apiVersion: rampart.dev/v1\nkind: Release\nmetadata:\n  name: checkout-v2\nspec:\n  flag: new-checkout\n  treatment: \"on\"\n  interval: 1s\n  stages:\n    - environment: staging\n      steps: [{percent: 50, hold: 1s}, {percent: 100, hold: 1s}]\n    - environment: production\n      steps: [{percent: 5, hold: 1s}, {percent: 100, hold: 1s}]\n      guard: {minSamples: 100}\n";

    #[test]
    fn each_environment_reads_its_own_stage() {
        assert_eq!(crate::ramp::kind::kind_of(RELEASE), crate::ramp::kind::FileKind::Release);
        let staging = stage_for("r.yaml", RELEASE, "staging", None).expect("valid").expect("a stage");
        assert_eq!(staging.name, "checkout-v2");
        assert_eq!(staging.steps.iter().map(|s| s.basis_points).collect::<Vec<_>>(), [5000, 10_000]);
        assert_eq!(staging.stage.as_ref().and_then(Stage::previous), None);
        let production = stage_for("r.yaml", RELEASE, "production", None).expect("valid").expect("a stage");
        assert_eq!(production.steps[0].basis_points, 500);
        assert_eq!(production.steps[0].min_samples, 100);
        assert_eq!(production.environment.as_deref(), Some("production"));
        assert_eq!(production.stage.as_ref().and_then(Stage::previous), Some(("staging", "checkout-v2")));
        assert_eq!(production.file, "r.yaml");
        assert_eq!(production.lines.flag, Some(6));
        assert!(stage_for("r.yaml", RELEASE, "dev", None).expect("valid").is_none());
        // A stage's digest changes with what the stage runs, not with other stages.
        let edited = RELEASE.replace("{percent: 5, hold: 1s}", "{percent: 10, hold: 1s}");
        let staging_again = stage_for("r.yaml", &edited, "staging", None).expect("valid").expect("a stage");
        assert_eq!(staging_again.digest, staging.digest);
        assert_ne!(stage_for("r.yaml", &edited, "production", None).unwrap().unwrap().digest, production.digest);
    }

    #[test]
    fn problems_name_the_file_and_the_stage() {
        let broken = RELEASE.replace(
            "{percent: 100, hold: 1s}]\n    - environment: production",
            "{percent: 150, hold: 1s}]\n    - environment: production",
        );
        let errors = stage_for("r.yaml", &broken, "staging", None).expect_err("invalid");
        assert!(errors.iter().any(|e| e.file == "r.yaml" && e.message.contains("stage 1 (staging)")), "{errors:?}");
        let twice = RELEASE.replace("environment: production", "environment: staging");
        assert!(stage_for("r.yaml", &twice, "staging", None).is_err());
        assert!(
            stage_for("r.yaml", "kind: Release\nmetadata: {name: x}\nspec: {stages: []}\n", "staging", None).is_err()
        );
    }
}
