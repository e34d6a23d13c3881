//! Flag definition text → JSON document.
//!
//! flagd's format is the same schema in JSON or YAML; both become a
//! `serde_json::Value` here so the compiler sees one shape. Syntax errors keep
//! the parser's line and column. `$ref` expansion happens on the document, not
//! on text, so it cannot be fooled by whitespace.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::bounded::{self, NodeBudget};
use crate::error::LoadError;
use crate::limits::{InputLimits, Limit, MAX_REF_DEPTH, MAX_RULE_NODES};

/// How a source's text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// `.yaml` and `.yml` are YAML; everything else is JSON (flagd's default).
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") { Format::Yaml } else { Format::Json }
    }
}

/// One flag definition document: its name (a file path, used in every
/// message about it), its text and its format.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub format: Format,
}

impl<'a> Source<'a> {
    pub fn new(name: &'a str, text: &'a str, format: Format) -> Self {
        Source { name, text, format }
    }

    pub fn json(name: &'a str, text: &'a str) -> Self {
        Source::new(name, text, Format::Json)
    }

    pub fn yaml(name: &'a str, text: &'a str) -> Self {
        Source::new(name, text, Format::Yaml)
    }

    /// Format chosen from the file extension.
    pub fn from_path(name: &'a str, text: &'a str) -> Self {
        Source::new(name, text, Format::from_path(name))
    }

    /// Parses the text into a JSON document under the load's budget,
    /// reporting syntax errors and exceeded limits with their line.
    pub(crate) fn parse(&self, limits: &InputLimits, budget: &mut NodeBudget) -> Result<Value, LoadError> {
        if self.text.len() > limits.max_bytes {
            return Err(LoadError::new(
                self.name,
                format!("the document is {} bytes, more than the limit of {}", self.text.len(), limits.max_bytes),
            )
            .with_limit(Limit::DocumentBytes));
        }
        let result = match self.format {
            Format::Json => bounded::json(self.text, budget).map_err(|e| {
                let mut error = LoadError::new(
                    self.name,
                    format!("invalid JSON: {}", crate::error::strip_position(&e.to_string())),
                )
                .at_line(e.line());
                error.malformed =
                    matches!(e.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
                error
            }),
            Format::Yaml => {
                if self.text.trim().is_empty() {
                    return Err(LoadError::new(self.name, "the document is empty"));
                }
                bounded::yaml(self.text, yaml_options(), budget).map_err(|e| {
                    let message = e.to_string();
                    let line = yaml_error_line(&message);
                    let mut err = LoadError::new(self.name, format!("invalid YAML: {}", yaml_message(&message)));
                    if let Some(line) = line {
                        err = err.at_line(line);
                    }
                    err
                })
            }
        };
        result.map_err(|error| match budget.exceeded {
            Some(limit) => error.with_limit(limit),
            None => error,
        })
    }

    /// Parses a flag document: JSON with its flags left as text until each
    /// is compiled ([`crate::lazy`]), YAML whole.
    pub(crate) fn parse_document(
        &self,
        limits: &InputLimits,
        budget: &mut NodeBudget,
    ) -> Result<crate::lazy::Document<'a>, LoadError> {
        if self.format != Format::Json || self.text.len() > limits.max_bytes {
            return self.parse(limits, budget).map(crate::lazy::Document::Whole);
        }
        crate::lazy::json(self.text, budget).map_err(|e| {
            let mut error =
                LoadError::new(self.name, format!("invalid JSON: {}", crate::error::strip_position(&e.to_string())))
                    .at_line(e.line());
            error.malformed =
                matches!(e.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
            match budget.exceeded {
                Some(limit) => error.with_limit(limit),
                None => error,
            }
        })
    }

    /// Parses the text under `limits` alone: for a document that is not a
    /// flag set, such as one flag's definition in a request body.
    pub fn parse_value(&self, limits: &InputLimits) -> Result<Value, LoadError> {
        self.parse(limits, &mut NodeBudget::new(limits.max_nodes))
    }

    /// Best-effort line of the first place `key` appears as a mapping key
    /// (`"key":` in JSON, `key:` in YAML), so errors about a flag can point
    /// at it.
    pub fn locate_key(&self, key: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|line| {
                let line = line.trim_start();
                let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
                is_mapping_key(line, key) || names_key_field(line, key)
            })
            .map(|index| index + 1)
    }
}

/// `rest` after `key` written bare, single- or double-quoted at the start of `line`.
fn strip_key<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    if let Some(rest) = line.strip_prefix('"').and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix('"')) {
        return Some(rest);
    }
    if let Some(rest) = line.strip_prefix('\'').and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix('\'')) {
        return Some(rest);
    }
    line.strip_prefix(key)
}

/// `key:` at the start of a line (YAML), or `"key":` anywhere in it (JSON,
/// where several keys may share a line).
fn is_mapping_key(line: &str, key: &str) -> bool {
    if line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')) {
        return true;
    }
    ['"', '\''].iter().any(|quote| {
        let quoted = format!("{quote}{key}{quote}");
        line.match_indices(&quoted).any(|(at, _)| line[at + quoted.len()..].trim_start().starts_with(':'))
    })
}

/// `key: my-flag` / `"key": "my-flag",` — the array form's key field.
fn names_key_field(line: &str, key: &str) -> bool {
    let Some(rest) = strip_key(line, "key").and_then(|rest| rest.trim_start().strip_prefix(':')) else {
        return false;
    };
    rest.trim().trim_end_matches(',').trim().trim_matches(['"', '\'']) == key
}

/// YAML as flag files need it: YAML 1.2 booleans only, so the variant
/// names `on`, `off`, `yes` and `no` stay strings (with YAML 1.1 rules
/// `defaultVariant: on` would silently become `true`). Duplicate keys are
/// rejected.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}

/// The first line of a YAML parser's error, in our words: without the
/// parser's `error: ` prefix and its advice to change its options (a
/// duplicate key reads "duplicate key 'state'", as in JSON files).
pub fn yaml_message(error: &str) -> String {
    let first = error.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once("duplicate mapping key: ") {
        Some((position, rest)) => {
            let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
            format!("{position}duplicate key '{key}'")
        }
        None => first.to_owned(),
    }
}

/// serde-saphyr reports positions as "line L" / "line L, column C" in its
/// message; pick the first.
fn yaml_error_line(message: &str) -> Option<usize> {
    let index = message.find("line ")?;
    let digits: String = message[index + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Expands `$ref`s against one document's `$evaluators`. Before anything
/// is copied, the size of the expanded rule is computed (each evaluator's
/// expanded size once, memoised), so a rule that would expand past its
/// limits is refused without spending the memory: ten evaluators that each
/// reference the previous one ten times describe 10¹⁰ nodes in 2 KB.
#[derive(Debug)]
pub(crate) struct RefExpander<'e> {
    evaluators: &'e Map<String, Value>,
    /// Expanded size of each evaluator (`None` while being measured, to
    /// find cycles).
    sizes: HashMap<String, Option<usize>>,
}

/// Why a rule's `$ref`s cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefError {
    pub(crate) message: String,
    pub(crate) limit: Option<Limit>,
}

impl<'e> RefExpander<'e> {
    pub(crate) fn new(evaluators: &'e Map<String, Value>) -> Self {
        RefExpander { evaluators, sizes: HashMap::new() }
    }

    /// Replaces every `{"$ref": "name"}` object inside `value` with a copy
    /// of the evaluator `name`. Evaluators may reference other evaluators
    /// (flagd only supports one level, depending on key order; we resolve
    /// any depth and report cycles). Unknown names are left in place: the
    /// rule compiler reports them as unknown references for the flag that
    /// uses them. The expanded rule has at most [`MAX_RULE_NODES`] nodes,
    /// and its growth is charged to the document's budget.
    pub(crate) fn expand(&mut self, value: &mut Value, budget: &mut NodeBudget) -> Result<(), RefError> {
        let size = self.size(value, 0)?;
        if size > MAX_RULE_NODES {
            return Err(RefError {
                message: format!(
                    "targeting has {} nodes once its $refs are expanded, more than the limit of {MAX_RULE_NODES}",
                    if size == usize::MAX { "too many".to_owned() } else { size.to_string() }
                ),
                limit: Some(Limit::RuleNodes),
            });
        }
        let original = count(value);
        if !budget.take(size.saturating_sub(original)) {
            return Err(RefError {
                message: format!(
                    "expanding this flag's $refs takes the document past its limit of {} values",
                    budget.limit()
                ),
                limit: Some(Limit::DocumentNodes),
            });
        }
        self.copy_in(value);
        Ok(())
    }

    /// The node count of `value` with every known `$ref` expanded
    /// (saturating), or the cycle / depth error.
    fn size(&mut self, value: &Value, depth: usize) -> Result<usize, RefError> {
        Ok(match value {
            Value::Object(map) => match ref_name(map) {
                Some(name) if self.evaluators.contains_key(name) => self.evaluator_size(name, depth)?,
                _ => {
                    let mut total: usize = 1;
                    for child in map.values() {
                        total = total.saturating_add(self.size(child, depth)?);
                    }
                    total
                }
            },
            Value::Array(items) => {
                let mut total: usize = 1;
                for item in items {
                    total = total.saturating_add(self.size(item, depth)?);
                }
                total
            }
            _ => 1,
        })
    }

    fn evaluator_size(&mut self, name: &str, depth: usize) -> Result<usize, RefError> {
        let cycle = || RefError {
            message: format!("$ref '{name}' is nested more than {MAX_REF_DEPTH} levels deep (a cycle?)"),
            limit: None,
        };
        match self.sizes.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(cycle()),
            None => {}
        }
        if depth >= MAX_REF_DEPTH {
            return Err(cycle());
        }
        let evaluators = self.evaluators;
        let body = &evaluators[name];
        self.sizes.insert(name.to_owned(), None);
        let size = self.size(body, depth + 1);
        match size {
            Ok(size) => {
                self.sizes.insert(name.to_owned(), Some(size));
                Ok(size)
            }
            Err(error) => {
                self.sizes.remove(name);
                Err(error)
            }
        }
    }

    /// Copies evaluators in; sizes were checked first.
    fn copy_in(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(body) = ref_name(map).and_then(|name| self.evaluators.get(name)) {
                    let mut body = body.clone();
                    self.copy_in(&mut body);
                    *value = body;
                    return;
                }
                map.values_mut().for_each(|child| self.copy_in(child));
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.copy_in(item)),
            _ => {}
        }
    }
}

/// Nodes in a value as written.
fn count(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(count).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(count).sum::<usize>(),
        _ => 1,
    }
}

/// `Some(name)` when the object is exactly `{"$ref": "name"}`.
pub(crate) fn ref_name(map: &Map<String, Value>) -> Option<&str> {
    if map.len() != 1 {
        return None;
    }
    map.get("$ref").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_syntax_error_has_line() {
        let err = Source::json("f.json", "{\n  \"flags\": {\n    \"a\": ,\n  }\n}")
            .parse(&InputLimits::default(), &mut budget())
            .unwrap_err();
        assert_eq!(err.file, "f.json");
        assert_eq!(err.line, Some(3));
        assert!(err.message.starts_with("invalid JSON"), "{}", err.message);
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let err = Source::yaml("f.yaml", "flags:\n  a:\n    state: ENABLED\n   variants: [\n")
            .parse(&InputLimits::default(), &mut budget())
            .unwrap_err();
        assert!(err.line.is_some(), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }

    #[test]
    fn yaml_duplicate_keys_are_rejected() {
        let err = Source::yaml("f.yaml", "flags:\n  a: {}\n  a: {}\n")
            .parse(&InputLimits::default(), &mut budget())
            .unwrap_err();
        assert_eq!(err.message, "invalid YAML: line 3 column 3: duplicate key 'a'");
    }

    #[test]
    fn yaml_and_json_give_the_same_document() {
        let json = Source::json("a.json", r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2}}}}"#);
        let yaml =
            Source::yaml("a.yaml", "flags:\n  f:\n    state: ENABLED\n    variants:\n      a: 1.5\n      b: 2\n");
        assert_eq!(
            json.parse(&InputLimits::default(), &mut budget()).unwrap(),
            yaml.parse(&InputLimits::default(), &mut budget()).unwrap()
        );
    }

    #[test]
    fn yaml_on_and_off_are_strings() {
        let value = Source::yaml("f.yaml", "a: on\nb: off\nc: yes\nd: true\n")
            .parse(&InputLimits::default(), &mut budget())
            .unwrap();
        assert_eq!(value, serde_json::json!({"a": "on", "b": "off", "c": "yes", "d": true}));
    }

    #[test]
    fn locates_flag_keys() {
        let json = Source::json("a.json", "{\n \"flags\": {\n  \"my-flag\" : {\n");
        assert_eq!(json.locate_key("my-flag"), Some(3));
        let yaml = Source::yaml("a.yaml", "flags:\n  other: {}\n  my-flag:\n");
        assert_eq!(yaml.locate_key("my-flag"), Some(3));
        let array = Source::yaml("a.yaml", "flags:\n  - key: my-flag\n");
        assert_eq!(array.locate_key("my-flag"), Some(2));
        assert_eq!(yaml.locate_key("absent"), None);
    }

    fn budget() -> NodeBudget {
        NodeBudget::new(InputLimits::DEFAULT_MAX_NODES)
    }

    fn expand_refs(rule: &mut Value, evaluators: &Map<String, Value>) -> Result<(), String> {
        RefExpander::new(evaluators).expand(rule, &mut budget()).map_err(|e| e.message)
    }

    #[test]
    fn expands_nested_refs_and_reports_cycles() {
        let evaluators: Map<String, Value> = serde_json::from_str(
            r#"{"a": {"==": [1, 1]}, "b": {"and": [{"$ref": "a"}]}, "loop": {"!": {"$ref": "loop"}}}"#,
        )
        .unwrap();
        let mut rule: Value = serde_json::from_str(r#"{"if": [{"$ref": "b"}, "x", {"$ref": "zzz"}]}"#).unwrap();
        expand_refs(&mut rule, &evaluators).unwrap();
        assert_eq!(rule, serde_json::json!({"if": [{"and": [{"==": [1, 1]}]}, "x", {"$ref": "zzz"}]}));
        let mut cyclic: Value = serde_json::json!({"$ref": "loop"});
        assert!(expand_refs(&mut cyclic, &evaluators).unwrap_err().contains("cycle"));
    }

    #[test]
    fn refuses_exponential_expansion_before_copying() {
        // e0 = a comparison; e(n) = or of ten references to e(n-1): 10^n nodes.
        let mut evaluators = Map::new();
        evaluators.insert("e0".into(), serde_json::json!({"==": [{"var": "x"}, 1]}));
        for level in 1..=9 {
            let previous = serde_json::json!({"$ref": format!("e{}", level - 1)});
            evaluators.insert(format!("e{level}"), serde_json::json!({"or": vec![previous; 10]}));
        }
        let started = std::time::Instant::now();
        let mut rule = serde_json::json!({"$ref": "e9"});
        let error = RefExpander::new(&evaluators).expand(&mut rule, &mut budget()).unwrap_err();
        assert_eq!(error.limit, Some(Limit::RuleNodes));
        assert!(error.message.contains("more than the limit"), "{}", error.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
        // Within the rule limit, but many flags sharing it exhaust the document's budget.
        let mut small = NodeBudget::new(8_000);
        let mut expander = RefExpander::new(&evaluators);
        let mut first = serde_json::json!({"$ref": "e3"});
        expander.expand(&mut first, &mut small).unwrap();
        let mut second = serde_json::json!({"$ref": "e3"});
        let error = expander.expand(&mut second, &mut small).unwrap_err();
        assert_eq!(error.limit, Some(Limit::DocumentNodes));
    }
}
