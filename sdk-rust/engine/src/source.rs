//! Flag definition text → JSON document.
//!
//! flagd's format is the same schema in JSON or YAML; both become a
//! `serde_json::Value` here so the compiler sees one shape. Syntax errors keep
//! the parser's line and column. `$ref` expansion happens on the document, not
//! on text, so it cannot be fooled by whitespace.

use serde_json::{Map, Value};

use crate::error::LoadError;

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

    /// Parses the text into a JSON document, reporting syntax errors with
    /// their line.
    pub(crate) fn parse(&self) -> Result<Value, LoadError> {
        match self.format {
            Format::Json => serde_json::from_str(self.text).map_err(|e| {
                LoadError::new(self.name, format!("invalid JSON: {}", strip_position(&e.to_string()))).at_line(e.line())
            }),
            Format::Yaml => {
                if self.text.trim().is_empty() {
                    return Err(LoadError::new(self.name, "the document is empty"));
                }
                serde_saphyr::from_str_with_options::<Value>(self.text, yaml_options()).map_err(|e| {
                    let message = e.to_string();
                    let line = yaml_error_line(&message);
                    let first = message.lines().next().unwrap_or("").trim();
                    let mut err = LoadError::new(self.name, format!("invalid YAML: {first}"));
                    if let Some(line) = line {
                        err = err.at_line(line);
                    }
                    err
                })
            }
        }
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

/// serde_json appends " at line L column C"; we report the line separately.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(index) => &message[..index],
        None => message,
    }
}

/// serde-saphyr reports positions as "line L" / "line L, column C" in its
/// message; pick the first.
fn yaml_error_line(message: &str) -> Option<usize> {
    let index = message.find("line ")?;
    let digits: String = message[index + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Upper bound on `$ref` expansion depth; deeper chains are reported as cycles.
const MAX_REF_DEPTH: usize = 16;

/// Replaces every `{"$ref": "name"}` object inside `value` with a copy of
/// the evaluator `name`. Evaluators may reference other evaluators (flagd
/// only supports one level, depending on key order; we resolve any depth and
/// report cycles). Unknown names are left in place: the rule compiler
/// reports them as unknown references for the flag that uses them.
pub(crate) fn expand_refs(value: &mut Value, evaluators: &Map<String, Value>) -> Result<(), String> {
    expand(value, evaluators, 0)
}

fn expand(value: &mut Value, evaluators: &Map<String, Value>, depth: usize) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if let Some(name) = ref_name(map) {
                let Some(body) = evaluators.get(name) else {
                    return Ok(());
                };
                if depth >= MAX_REF_DEPTH {
                    return Err(format!("$ref '{name}' is nested more than {MAX_REF_DEPTH} levels deep (a cycle?)"));
                }
                let mut body = body.clone();
                expand(&mut body, evaluators, depth + 1)?;
                *value = body;
                return Ok(());
            }
            for child in map.values_mut() {
                expand(child, evaluators, depth)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| expand(item, evaluators, depth)),
        _ => Ok(()),
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
        let err = Source::json("f.json", "{\n  \"flags\": {\n    \"a\": ,\n  }\n}").parse().unwrap_err();
        assert_eq!(err.file, "f.json");
        assert_eq!(err.line, Some(3));
        assert!(err.message.starts_with("invalid JSON"), "{}", err.message);
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let err = Source::yaml("f.yaml", "flags:\n  a:\n    state: ENABLED\n   variants: [\n").parse().unwrap_err();
        assert!(err.line.is_some(), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }

    #[test]
    fn yaml_duplicate_keys_are_rejected() {
        let err = Source::yaml("f.yaml", "flags:\n  a: {}\n  a: {}\n").parse().unwrap_err();
        assert!(err.message.contains("uplicate"), "{}", err.message);
    }

    #[test]
    fn yaml_and_json_give_the_same_document() {
        let json = Source::json("a.json", r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2}}}}"#);
        let yaml =
            Source::yaml("a.yaml", "flags:\n  f:\n    state: ENABLED\n    variants:\n      a: 1.5\n      b: 2\n");
        assert_eq!(json.parse().unwrap(), yaml.parse().unwrap());
    }

    #[test]
    fn yaml_on_and_off_are_strings() {
        let value = Source::yaml("f.yaml", "a: on\nb: off\nc: yes\nd: true\n").parse().unwrap();
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
}
