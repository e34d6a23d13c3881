//! Ramp files on disk → specs bound to their flags. The one path used by
//! start-up, hot reload and `rampart validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rampart_engine::{Flag, LoadError, LoadErrors};

use super::spec::{self, RampSpec};
use crate::loader::WhenNothingMatches;

/// A spec whose flag and variants exist, with its control resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub spec: Arc<RampSpec>,
    /// The control variant: the spec's, or the flag's default variant.
    pub control: String,
}

/// Files named by the patterns. Unlike flag files, a glob may match
/// nothing (see [`WhenNothingMatches::Allow`]).
pub fn expand(patterns: &[String], glob_files: usize) -> Result<Vec<PathBuf>, LoadErrors> {
    crate::loader::expand_files(patterns, glob_files, WhenNothingMatches::Allow)
}

/// Reads and parses ramp files for `environment` (a release file gives
/// its stage there, if it has one, and its stages must name environments
/// in `known`); every problem of every file is returned.
pub fn read(paths: &[PathBuf], environment: &str, known: &[String]) -> Result<Vec<RampSpec>, LoadErrors> {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let name = path.to_string_lossy().into_owned();
        match std::fs::read_to_string(path) {
            Ok(text) if super::kind::kind_of(&text) == super::kind::FileKind::Release => {
                match super::release::stage_for(&name, &text, environment, Some(known)) {
                    Ok(stage) => specs.extend(stage),
                    Err(problems) => errors.extend(problems),
                }
            }
            Ok(text) => match spec::parse(&name, &text) {
                Ok(spec) => specs.push(spec),
                Err(problems) => errors.extend(problems),
            },
            Err(error) => errors.push(LoadError::new(name, format!("cannot read: {error}"))),
        }
    }
    if errors.is_empty() { Ok(specs) } else { Err(LoadErrors(errors)) }
}

/// Checks specs against one environment's flags: the flag and both variants
/// exist, names are unique, and at most one ramp drives a flag.
pub fn bind(
    specs: Vec<RampSpec>,
    environment: &str,
    flag: impl Fn(&str) -> Option<Arc<Flag>>,
) -> Result<Vec<Bound>, LoadErrors> {
    let mut errors = Vec::new();
    let mut bound = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    // "in environment 'x'" where there is one (`rampart validate` checks
    // files against the flag files it is given, with no environment).
    let place = if environment.is_empty() { String::new() } else { format!(" in environment '{environment}'") };
    for spec in specs {
        let error_at = |line: Option<usize>, message: String| {
            let error = LoadError::new(spec.file.clone(), message).in_ramp(spec.name.clone());
            match line {
                Some(line) => error.at_line(line),
                None => error,
            }
        };
        let error = |message: String| error_at(None, message);
        if let Some(declared) = &spec.environment
            && declared != environment
            && !environment.is_empty()
        {
            errors.push(error(format!(
                "spec.environment is '{declared}' but the file is listed for environment '{environment}'"
            )));
            continue;
        }
        if let Some(other) = names.insert(spec.name.clone(), spec.file.clone()) {
            errors.push(error(format!("a ramp named '{}' is also defined in {other}", spec.name)));
            continue;
        }
        if let Some(other) = flags.insert(spec.flag.clone(), spec.name.clone()) {
            errors.push(error_at(
                spec.lines.flag,
                format!("flag '{}' is already ramped by '{other}': one ramp per flag and environment", spec.flag),
            ));
            continue;
        }
        let Some(target) = flag(&spec.flag) else {
            errors.push(error_at(spec.lines.flag, format!("flag '{}' does not exist{place}", spec.flag)));
            continue;
        };
        let variants: Vec<&str> = target.variants().map(|(name, _)| name).collect();
        if !variants.contains(&spec.treatment.as_str()) {
            errors.push(error_at(
                spec.lines.treatment,
                format!(
                    "treatment '{}' is not a variant of flag '{}' (variants: {})",
                    spec.treatment,
                    spec.flag,
                    variants.join(", ")
                ),
            ));
            continue;
        }
        let control = match spec.control.as_deref().or(target.default_variant()) {
            Some(control) => control.to_owned(),
            None => {
                errors.push(error(format!(
                    "flag '{}' has no default variant: name the control variant with spec.control",
                    spec.flag
                )));
                continue;
            }
        };
        if !variants.contains(&control.as_str()) {
            errors.push(error_at(
                spec.lines.control,
                format!("control '{control}' is not a variant of flag '{}'", spec.flag),
            ));
            continue;
        }
        if control == spec.treatment {
            errors.push(error(format!("the control is the flag's default variant '{control}', same as the treatment")));
            continue;
        }
        // A ramp compares the treatment with what users get today: a
        // control nobody is served can never be judged (the split would
        // look broken and the ramp hold forever).
        if let Some(served) = target.static_variant()
            && served != control
        {
            errors.push(error_at(
                spec.lines.control,
                format!(
                    "control '{control}' is not what the flag serves outside the ramp ('{served}', its default, \
                     to everyone): make '{control}' the flag's defaultVariant, or ramp from '{served}'"
                ),
            ));
            continue;
        }
        bound.push(Bound { spec: Arc::new(spec), control });
    }
    if errors.is_empty() { Ok(bound) } else { Err(LoadErrors(errors)) }
}
