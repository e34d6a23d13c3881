//! `rampart validate FILE…`: the server's own loaders, run once. Flag files
//! are compiled as one set; ramp files (`kind: Ramp`) are checked on their
//! own and against the flags given with them.

use std::collections::BTreeMap;
use std::process::ExitCode;

use rampart_engine::{FlagSet, LoadError, Source};

use crate::loader;
use crate::ramp::{files, spec};

/// Whether a file is a ramp or release file (its document's `kind`).
fn is_ramp(text: &str) -> bool {
    crate::ramp::kind::kind_of(text) != crate::ramp::kind::FileKind::Flags
}

/// The environments a `rampart.yaml` configures (its `environments:` keys).
fn environments_of(path: &str) -> Result<Vec<String>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::new(path, format!("cannot read: {e}")))?;
    let document: serde_json::Value =
        serde_saphyr::from_str_with_options(&text, rampart_engine::source::yaml_options()).map_err(|e| {
            LoadError::new(path, format!("invalid YAML: {}", rampart_engine::source::yaml_message(&e.to_string())))
        })?;
    match document.get("environments").and_then(serde_json::Value::as_object) {
        Some(environments) => Ok(environments.keys().cloned().collect()),
        None => Err(LoadError::new(path, "no environments are configured")),
    }
}

/// Prints one line per problem and returns 1 when any file is invalid;
/// prints a summary (and any warnings) and returns 0 otherwise.
#[allow(clippy::print_stdout)] // a command's report
pub fn run(patterns: &[String], config: Option<&str>) -> ExitCode {
    let mut errors: Vec<LoadError> = Vec::new();
    // The server's default limits: a file that validates loads on a server
    // that keeps them.
    let limits = crate::limits::Limits::default();
    // With the server's configuration, release stages must name its
    // environments.
    let known = match config.map(environments_of).transpose() {
        Ok(known) => known,
        Err(problem) => return report(vec![problem]),
    };
    let read = match loader::read(patterns, &limits) {
        Ok(read) => read,
        Err(problems) => return report(problems.0),
    };
    let (ramp_files, flag_files): (Vec<_>, Vec<_>) = read.files.iter().partition(|f| is_ramp(&f.text));
    let sources: Vec<Source<'_>> = flag_files.iter().map(|f| Source::from_path(&f.name, &f.text)).collect();
    let flags = match FlagSet::load_with(&sources, &limits.flag_files) {
        Ok(flags) => flags,
        Err(problems) => {
            errors.extend(problems.0);
            FlagSet::default()
        }
    };
    // Every problem in one run: a file with errors is still checked
    // against the flags as far as it could be read.
    let mut by_environment: BTreeMap<String, Vec<spec::RampSpec>> = BTreeMap::new();
    for file in &ramp_files {
        if crate::ramp::kind::kind_of(&file.text) == crate::ramp::kind::FileKind::Release {
            // Every stage, each against the flags as its environment.
            use crate::ramp::release::stage_for;
            match stage_for(&file.name, &file.text, "", known.as_deref()) {
                Err(problems) => errors.extend(problems),
                Ok(first) => {
                    let environments = first.and_then(|s| s.stage).map(|s| s.environments).unwrap_or_default();
                    for environment in environments {
                        match stage_for(&file.name, &file.text, &environment, known.as_deref()) {
                            Ok(Some(stage)) => by_environment.entry(environment).or_default().push(stage),
                            Ok(None) => {}
                            Err(problems) => errors.extend(problems),
                        }
                    }
                }
            }
            continue;
        }
        let (spec, problems) = spec::parse_all(&file.name, &file.text);
        errors.extend(problems);
        if let Some(spec) = spec {
            by_environment.entry(spec.environment.clone().unwrap_or_default()).or_default().push(spec);
        }
    }
    let mut ramps = 0;
    let mut warnings = Vec::new();
    for (environment, specs) in by_environment {
        let lookup = |key: &str| flags.shared().find(|f| f.key() == key).cloned();
        match files::bind(specs, &environment, lookup) {
            Ok(bound) => {
                ramps += bound.len();
                for ramp in &bound {
                    warnings.extend(
                        spec::warnings(&ramp.spec).into_iter().map(|w| format!("{}: warning: {w}", ramp.spec.file)),
                    );
                }
            }
            Err(problems) => errors.extend(problems.0),
        }
    }
    if !errors.is_empty() {
        return report(errors);
    }
    for warning in warnings {
        println!("{warning}");
    }
    let ramps = match ramps {
        0 => String::new(),
        1 => ", 1 ramp".to_owned(),
        n => format!(", {n} ramps"),
    };
    println!("ok: {} flags in {} files{ramps}", flags.len(), flag_files.len());
    ExitCode::SUCCESS
}

fn report(errors: Vec<LoadError>) -> ExitCode {
    for error in &errors {
        eprintln!("{error}");
    }
    eprintln!("{} problem{} found", errors.len(), if errors.len() == 1 { "" } else { "s" });
    ExitCode::from(1)
}
