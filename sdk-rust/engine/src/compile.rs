//! Flag definition documents → [`FlagSet`].
//!
//! Validates each flag against flagd's schema (state, variants of one type,
//! default variant, metadata), expands `$ref`, and compiles targeting. A
//! strict load ([`FlagSet::load`]) rejects the whole set on any problem; a
//! lenient one ([`FlagSet::load_lenient`]) keeps what it can, the way flagd
//! does: a flag whose targeting does not compile answers `PARSE_ERROR`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::bounded::NodeBudget;
use crate::error::{LoadError, LoadErrors};
use crate::evaluation::ValueType;
use crate::flag::{Flag, FlagState, Targeting};
use crate::flag_set::FlagSet;
use crate::lazy;
use crate::limits::{InputLimits, Limit};
use crate::rule;
use crate::source::{RefExpander, Source};

/// Keys a flag-set document may have at the top level.
const TOP_LEVEL_KEYS: [&str; 4] = ["flags", "$evaluators", "metadata", "$schema"];
/// Keys a flag may have (`key` only in the array form).
const FLAG_KEYS: [&str; 6] = ["state", "variants", "defaultVariant", "targeting", "metadata", "key"];

/// The result of a lenient load: the flags that could be kept, and every
/// problem found.
#[derive(Debug)]
pub struct Compiled {
    pub flags: FlagSet,
    pub errors: LoadErrors,
}

impl FlagSet {
    /// Loads and compiles flag definitions; any problem rejects the whole
    /// set, with one error per problem naming file, line and flag.
    pub fn load(sources: &[Source<'_>]) -> Result<FlagSet, LoadErrors> {
        FlagSet::load_with(sources, &InputLimits::default())
    }

    /// [`FlagSet::load`] with other input limits.
    pub fn load_with(sources: &[Source<'_>], limits: &InputLimits) -> Result<FlagSet, LoadErrors> {
        let compiled = FlagSet::load_lenient_with(sources, limits);
        if compiled.errors.is_empty() { Ok(compiled.flags) } else { Err(compiled.errors) }
    }

    /// Loads what can be loaded: structurally invalid flags are left out,
    /// flags whose targeting does not compile answer `PARSE_ERROR`.
    pub fn load_lenient(sources: &[Source<'_>]) -> Compiled {
        FlagSet::load_lenient_with(sources, &InputLimits::default())
    }

    /// [`FlagSet::load_lenient`] with other input limits. The limits hold
    /// for all sources together: their bytes, and their values after
    /// `$ref` expansion.
    pub fn load_lenient_with(sources: &[Source<'_>], limits: &InputLimits) -> Compiled {
        FlagSet::load_lenient_reusing(sources, limits, &FlagSet::default())
    }

    /// [`FlagSet::load_lenient_with`], taking from `previous` every flag
    /// whose definition (after `$ref` expansion), source and metadata are
    /// unchanged instead of compiling it again: a reload of a large file in
    /// which one flag changed compiles that flag, and the unchanged flags
    /// stay the same shared objects (streams see only the changed one).
    pub fn load_lenient_reusing(sources: &[Source<'_>], limits: &InputLimits, previous: &FlagSet) -> Compiled {
        let mut errors = Vec::new();
        let mut flags: Vec<Arc<Flag>> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut metadata = Map::new();
        let mut budget = NodeBudget::new(limits.max_nodes);
        let mut bytes = 0usize;
        for source in sources {
            bytes = bytes.saturating_add(source.text.len());
            if bytes > limits.max_bytes && source.text.len() <= limits.max_bytes {
                errors.push(
                    LoadError::new(
                        source.name,
                        format!(
                            "the flag documents of this set take {bytes} bytes with this one, more than the limit of {}",
                            limits.max_bytes
                        ),
                    )
                    .with_limit(Limit::DocumentBytes),
                );
                continue;
            }
            let document = match source.parse_document(limits, &mut budget) {
                Ok(document) => document,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let Some((file_metadata, file_flags)) =
                compile_document(source, document, &mut budget, &mut errors, previous)
            else {
                continue;
            };
            metadata.extend(file_metadata);
            for flag in file_flags {
                if let Some(first) = seen.get(&flag.key) {
                    let mut error =
                        LoadError::new(source.name, format!("is also defined in {first}")).in_flag(&flag.key);
                    if let Some(line) = source.locate_key(&flag.key) {
                        error = error.at_line(line);
                    }
                    errors.push(error);
                    continue;
                }
                seen.insert(flag.key.clone(), source.name.to_owned());
                flags.push(flag);
            }
        }
        Compiled { flags: FlagSet::from_shared(flags, metadata), errors: LoadErrors(errors) }
    }
}

/// A compiled document: its flag-set metadata and its flags.
type Document = (Map<String, Value>, Vec<Arc<Flag>>);

/// A flag's definition: parsed, or still the document's text.
enum Definition<'t> {
    Parsed(Value),
    Text(&'t RawValue),
}

/// Compiles one document into its flag-set metadata and flags.
fn compile_document<'t>(
    source: &Source<'t>,
    document: lazy::Document<'t>,
    budget: &mut NodeBudget,
    errors: &mut Vec<LoadError>,
    previous: &FlagSet,
) -> Option<Document> {
    let document_error = |message: String| LoadError::new(source.name, message);
    let (mut top, flags) = match document {
        lazy::Document::Whole(Value::Object(mut top)) => {
            let flags = top.remove("flags").map(lazy::Flags::Parsed);
            (top, flags)
        }
        lazy::Document::Lazy { top, flags } => (top, flags),
        lazy::Document::Whole(_) => {
            errors.push(document_error("the document must be an object with a \"flags\" key".into()));
            return None;
        }
    };
    for key in top.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            let mut error = document_error(format!(
                "unknown top-level key '{key}' (expected one of: {})",
                TOP_LEVEL_KEYS.join(", ")
            ));
            if let Some(line) = source.locate_key(key) {
                error = error.at_line(line);
            }
            errors.push(error);
        }
    }
    let evaluators = match top.remove("$evaluators") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(evaluators)) => evaluators,
        Some(_) => {
            errors.push(document_error("\"$evaluators\" must be an object of named rules".into()));
            Map::new()
        }
    };
    let metadata = match top.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(value) => match check_metadata(&value) {
            Ok(map) => map,
            Err(message) => {
                errors.push(document_error(format!("flag-set metadata: {message}")));
                Map::new()
            }
        },
    };
    let entries: Vec<(Cow<'t, str>, Definition<'t>)> = match flags {
        Some(lazy::Flags::Unparsed(flags)) => flags.into_iter().map(|(k, raw)| (k, Definition::Text(raw))).collect(),
        Some(lazy::Flags::Parsed(Value::Object(flags))) => {
            flags.into_iter().map(|(k, v)| (Cow::Owned(k), Definition::Parsed(v))).collect()
        }
        Some(lazy::Flags::Parsed(Value::Array(items))) => {
            let mut entries: Vec<(Cow<'t, str>, Definition<'t>)> = Vec::with_capacity(items.len());
            for (position, item) in items.into_iter().enumerate() {
                match item.get("key").and_then(Value::as_str) {
                    Some(key) if !key.is_empty() => {
                        entries.push((Cow::Owned(key.to_owned()), Definition::Parsed(item)))
                    }
                    _ => errors.push(document_error(format!("flags[{position}] has no \"key\" string"))),
                }
            }
            let mut keys = HashMap::new();
            for (key, _) in &entries {
                if keys.insert(key.clone(), ()).is_some() {
                    errors.push(document_error("is defined more than once".into()).in_flag(key.to_string()));
                }
            }
            entries
        }
        Some(_) => {
            errors.push(document_error("\"flags\" must be an object keyed by flag key (or an array of flags)".into()));
            return None;
        }
        None => {
            errors.push(document_error("missing required key \"flags\"".into()));
            return None;
        }
    };
    let mut flags = Vec::with_capacity(entries.len());
    let mut expander = RefExpander::new(&evaluators);
    for (key, definition) in entries {
        let locate = |message: String| {
            let mut error = LoadError::new(source.name, message).in_flag(key.to_string());
            if let Some(line) = source.locate_key(&key) {
                error = error.at_line(line);
            }
            error
        };
        let definition = match definition {
            Definition::Parsed(value) => value,
            Definition::Text(raw) => match lazy::flag(source.text, raw, budget) {
                Ok(value) => value,
                Err((message, line)) => {
                    // As a whole parse would: the document is refused.
                    let error = LoadError::new(source.name, format!("invalid JSON: {message}")).at_line(line);
                    errors.push(match budget.exceeded {
                        Some(limit) => error.with_limit(limit),
                        None => error,
                    });
                    return None;
                }
            },
        };
        // A flag compiled before from the same file, which served without a problem.
        let earlier = previous.shared_flag(&key).filter(|f| f.source == source.name && f.problem().is_none());
        match compile_flag(&key, definition, &mut expander, budget, &metadata, source.name, earlier) {
            Ok((flag, targeting_error)) => {
                if let Some(problem) = targeting_error {
                    let error = locate(problem.message);
                    errors.push(match problem.limit {
                        Some(limit) => error.with_limit(limit),
                        None => error,
                    });
                }
                flags.push(flag);
            }
            Err(problems) => {
                // Kept as a flag that answers PARSE_ERROR (as flagd serves a
                // flag it cannot use), so a lenient load names it rather than
                // pretending it does not exist.
                flags.push(Arc::new(Flag::broken(&key, problems.join("; "), source.name)));
                errors.extend(problems.into_iter().map(locate));
            }
        }
    }
    Some((metadata, flags))
}

/// A flag's targeting that cannot be compiled: the flag answers
/// `PARSE_ERROR`.
#[derive(Debug)]
struct TargetingProblem {
    message: String,
    limit: Option<Limit>,
}

impl Flag {
    /// Compiles one flag definition on its own (a flag created through an
    /// API: no `$evaluators`, no flag-set metadata); any problem, its
    /// targeting included, is an error.
    pub fn compile(key: &str, definition: Value, source: &str) -> Result<Flag, LoadErrors> {
        let evaluators = Map::new();
        let mut expander = RefExpander::new(&evaluators);
        let mut budget = NodeBudget::new(usize::MAX);
        let error = |message: String, limit: Option<Limit>| {
            let error = LoadError::new(source, message).in_flag(key);
            match limit {
                Some(limit) => error.with_limit(limit),
                None => error,
            }
        };
        match compile_flag(key, definition, &mut expander, &mut budget, &Map::new(), source, None) {
            Ok((flag, None)) => Ok(Arc::unwrap_or_clone(flag)),
            Ok((_, Some(problem))) => Err(error(problem.message, problem.limit).into()),
            Err(problems) => Err(LoadErrors(problems.into_iter().map(|m| error(m, None)).collect())),
        }
    }
}

/// Compiles one flag. Structural problems are `Err` (the flag cannot be
/// kept); a targeting problem comes back beside a flag that answers
/// `PARSE_ERROR`.
fn compile_flag(
    key: &str,
    definition: Value,
    expander: &mut RefExpander<'_>,
    budget: &mut NodeBudget,
    set_metadata: &Map<String, Value>,
    source: &str,
    earlier: Option<&Arc<Flag>>,
) -> Result<(Arc<Flag>, Option<TargetingProblem>), Vec<String>> {
    if key.is_empty() {
        return Err(vec!["a flag key must not be empty".into()]);
    }
    let Value::Object(mut fields) = definition else {
        return Err(vec!["a flag must be an object".into()]);
    };
    fields.remove("key");
    let mut problems = Vec::new();
    for field in fields.keys() {
        if !FLAG_KEYS.contains(&field.as_str()) {
            problems.push(format!(
                "unknown key '{field}' (expected one of: state, variants, defaultVariant, targeting, metadata)"
            ));
        }
    }
    let state = match fields.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => Some(FlagState::Enabled),
        Some(Value::String(s)) if s == "DISABLED" => Some(FlagState::Disabled),
        Some(other) => {
            problems.push(format!("state must be \"ENABLED\" or \"DISABLED\", found {other}"));
            None
        }
        None => {
            problems.push("missing required key \"state\"".into());
            None
        }
    };
    let variants = match fields.get("variants") {
        Some(Value::Object(variants)) if !variants.is_empty() => match variants_of(variants) {
            Ok(variants) => Some(variants),
            Err(message) => {
                problems.push(message);
                None
            }
        },
        Some(Value::Object(_)) => {
            problems.push("variants must not be empty".into());
            None
        }
        Some(_) => {
            problems.push("variants must be an object of variant name to value".into());
            None
        }
        None => {
            problems.push("missing required key \"variants\"".into());
            None
        }
    };
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(value) => check_metadata(value).map_err(|m| problems.push(format!("metadata: {m}"))).ok(),
    };
    let default_name = match fields.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.is_empty() => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => {
            problems.push(format!("defaultVariant must be a variant name or null, found {other}"));
            None
        }
    };
    let (Some(state), Some((variants, value_type)), Some(flag_metadata)) = (state, variants, metadata) else {
        return Err(problems);
    };
    let default_variant = match &default_name {
        Some(name) => match variants.iter().position(|(candidate, _)| candidate == name) {
            Some(index) => Some(index),
            None => {
                let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
                problems.push(format!("defaultVariant '{name}' is not one of the variants ({})", names.join(", ")));
                None
            }
        },
        None => None,
    };
    // `$ref`s expanded first: the definition is compared (for reuse) and
    // compiled as it will be served.
    let expanded = match fields.get_mut("targeting") {
        Some(logic @ Value::Object(_)) => expander.expand(logic, budget),
        _ => Ok(()),
    };
    // Serve the normalised variants (floats as floats) everywhere.
    fields.insert("variants".into(), Value::Object(variants.iter().cloned().collect()));
    if let Some(earlier) = earlier
        && problems.is_empty()
        && expanded.is_ok()
        && *earlier.definition == serde_json::to_string(&fields).unwrap_or_default()
    {
        let mut metadata = set_metadata.clone();
        metadata.extend(flag_metadata.clone());
        if earlier.metadata == metadata {
            return Ok((earlier.clone(), None));
        }
    }
    let (targeting, targeting_error) = match (fields.get_mut("targeting"), expanded) {
        (None | Some(Value::Null), _) => (Targeting::None, None),
        (Some(Value::Object(map)), Ok(())) if map.is_empty() => (Targeting::None, None),
        (Some(logic @ Value::Object(_)), expanded) => match expanded {
            Err(error) => (
                Targeting::Broken(error.message.clone()),
                Some(TargetingProblem { message: format!("targeting: {}", error.message), limit: error.limit }),
            ),
            Ok(()) => match rule::compile(logic) {
                Ok(rule) => {
                    // Compiles, but can it work? Reported, still served.
                    let names: Vec<&str> = variants.iter().map(|(name, _)| name.as_str()).collect();
                    let lint = crate::lint::targeting(logic, &names);
                    let problem = (!lint.is_empty())
                        .then(|| TargetingProblem { message: format!("targeting: {}", lint.join("; ")), limit: None });
                    (Targeting::Rule(rule), problem)
                }
                Err(error) => {
                    let message = format!("invalid targeting: {}", error.message);
                    (Targeting::Broken(message.clone()), Some(TargetingProblem { message, limit: error.limit }))
                }
            },
        },
        (Some(other), _) => {
            problems.push(format!("targeting must be a JsonLogic object, found {other}"));
            (Targeting::None, None)
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut metadata = set_metadata.clone();
    metadata.extend(flag_metadata);
    Ok((
        Arc::new(Flag {
            key: key.to_owned(),
            state,
            variants,
            default_variant,
            targeting,
            metadata,
            value_type,
            source: source.to_owned(),
            definition: Value::Object(fields).to_string().into_boxed_str(),
            key_hash: crate::bucket::PrefixHash::new(key),
        }),
        targeting_error,
    ))
}

/// Checks that all variants have one type (booleans, strings, numbers or
/// objects) and normalises numbers: when any variant is written as a float
/// they are all served as floats, so clients that infer the type from JSON
/// (OFREP) see `1.0`, not `1`.
fn variants_of(variants: &Map<String, Value>) -> Result<(Vec<(String, Value)>, ValueType), String> {
    let type_of = |value: &Value| match value {
        Value::Bool(_) => Some(ValueType::Bool),
        Value::String(_) => Some(ValueType::String),
        Value::Number(n) if n.is_f64() => Some(ValueType::Float),
        Value::Number(_) => Some(ValueType::Int),
        Value::Object(_) => Some(ValueType::Object),
        Value::Null | Value::Array(_) => None,
    };
    let mut flag_type: Option<ValueType> = None;
    for (name, value) in variants {
        if name.is_empty() {
            return Err("variant names must not be empty".into());
        }
        let Some(this) = type_of(value) else {
            return Err(format!("variant '{name}' must be a boolean, string, number or object, found {value}"));
        };
        flag_type = Some(match (flag_type, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(ValueType::Int), ValueType::Float) | (Some(ValueType::Float), ValueType::Int) => ValueType::Float,
            (Some(a), b) => {
                return Err(format!(
                    "all variants must have the same type: variant '{name}' is {} but an earlier one is {}",
                    b.as_str(),
                    a.as_str()
                ));
            }
        });
    }
    let flag_type = flag_type.ok_or("variants must not be empty")?;
    let normalised = variants
        .iter()
        .map(|(name, value)| {
            let value = match (flag_type, value) {
                (ValueType::Float, Value::Number(n)) if !n.is_f64() => {
                    n.as_f64().and_then(Number::from_f64).map(Value::Number).unwrap_or_else(|| value.clone())
                }
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    Ok((normalised, flag_type))
}

fn check_metadata(value: &Value) -> Result<Map<String, Value>, String> {
    let Value::Object(map) = value else {
        return Err("must be an object".into());
    };
    for (key, entry) in map {
        if !matches!(entry, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(format!("'{key}' must be a string, number or boolean, found {entry}"));
        }
    }
    Ok(map.clone())
}
