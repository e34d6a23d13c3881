//! Invalid flag definitions are rejected as a whole, with one error per
//! problem naming the file, the line when it can be found, the flag, and
//! what is wrong.

use rampart_engine::{FlagSet, Source};

/// (format, document, expected (line, flag, message fragment) per error)
type Case = (&'static str, &'static str, &'static [(Option<usize>, Option<&'static str>, &'static str)]);

const CASES: &[Case] = &[
    ("json", "{\"flags\": {\"a\": ", &[(Some(1), None, "invalid JSON: EOF while parsing")]),
    ("yaml", "flags:\n  a:\n    state: ENABLED\n   bad: [\n", &[(Some(4), None, "invalid YAML")]),
    ("json", "[]", &[(None, None, "the document must be an object")]),
    ("json", "{}", &[(None, None, "missing required key \"flags\"")]),
    ("json", "{\"flags\": 3}", &[(None, None, "\"flags\" must be an object")]),
    ("json", "{\"flags\": {}, \"flagz\": {}}", &[(Some(1), None, "unknown top-level key 'flagz'")]),
    (
        "json",
        "{\n \"flags\": {\n  \"f\": {\"variants\": {\"a\": true}}\n }\n}",
        &[(Some(3), Some("f"), "missing required key \"state\"")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ON", "variants": {"a": 1}}}}"#,
        &[(Some(1), Some("f"), "state must be \"ENABLED\" or \"DISABLED\"")],
    ),
    ("json", r#"{"flags": {"f": {"state": "ENABLED"}}}"#, &[(Some(1), Some("f"), "missing required key \"variants\"")]),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {}}}}"#,
        &[(Some(1), Some("f"), "variants must not be empty")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": true, "b": "x"}}}}"#,
        &[(
            Some(1),
            Some("f"),
            "all variants must have the same type: variant 'b' is string but an earlier one is boolean",
        )],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": [1]}}}}"#,
        &[(Some(1), Some("f"), "variant 'a' must be a boolean, string, number or object")],
    ),
    (
        "yaml",
        "flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: maybe\n",
        &[(Some(2), Some("f"), "defaultVariant 'maybe' is not one of the variants (off, on)")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": "a"}}}"#,
        &[(Some(1), Some("f"), "targeting must be a JsonLogic object")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVarient": "a"}}}"#,
        &[(Some(1), Some("f"), "unknown key 'defaultVarient'")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "metadata": {"x": [1]}}}}"#,
        &[(Some(1), Some("f"), "metadata: 'x' must be a string, number or boolean")],
    ),
    (
        "json",
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"$ref": "nope"}, "a"]}}}}"#,
        &[(Some(1), Some("f"), "invalid targeting: $ref to unknown evaluator \"nope\"")],
    ),
    (
        "yaml",
        "flags:\n  ok:\n    state: ENABLED\n    variants: {a: 1}\n  bad:\n    state: ENABLED\n    variants: {a: 1}\n    targeting: {\"/\": [1, 0]}\n",
        &[(Some(5), Some("bad"), "invalid targeting: this expression always fails: division by zero")],
    ),
    (
        "json",
        r#"{"flags": [{"state": "ENABLED", "variants": {"a": 1}}]}"#,
        &[(None, None, "flags[0] has no \"key\" string")],
    ),
    (
        "json",
        "{\"flags\": {\"a\": {\"state\": \"X\", \"variants\": {\"a\": 1}}, \"b\": {\"state\": \"ENABLED\"}}}",
        &[(Some(1), Some("a"), "state must be"), (Some(1), Some("b"), "missing required key \"variants\"")],
    ),
];

#[test]
fn every_problem_is_reported_with_its_location() {
    for (format, text, expected) in CASES {
        let name = format!("flags.{format}");
        let errors = FlagSet::load(&[Source::from_path(&name, text)]).expect_err(text);
        let got: Vec<_> = errors.iter().collect();
        assert_eq!(got.len(), expected.len(), "{text}\n→ {errors}");
        for (error, (line, flag, fragment)) in got.iter().zip(expected.iter()) {
            assert_eq!(error.file, name, "{error}");
            assert_eq!(error.line, *line, "{text}\n→ {error}");
            assert_eq!(error.flag.as_deref(), *flag, "{error}");
            assert!(error.message.contains(fragment), "{error}\n   does not contain: {fragment}");
        }
    }
}

#[test]
fn the_message_reads_like_a_compiler_error() {
    let text = "flags:\n  f:\n    state: ENABLED\n    variants: {a: 1}\n    defaultVariant: b\n";
    let errors = FlagSet::load(&[Source::yaml("flags/prod.yaml", text)]).expect_err("invalid");
    assert_eq!(errors.to_string(), "flags/prod.yaml:2: flag 'f': defaultVariant 'b' is not one of the variants (a)");
}

#[test]
fn a_key_defined_in_two_files_is_rejected() {
    let a = r#"{"flags": {"shared": {"state": "ENABLED", "variants": {"a": 1}}}}"#;
    let b = "flags:\n  shared:\n    state: ENABLED\n    variants: {a: 1}\n";
    let errors = FlagSet::load(&[Source::json("a.json", a), Source::yaml("b.yaml", b)]).expect_err("duplicate");
    assert_eq!(errors.to_string(), "b.yaml:2: flag 'shared': is also defined in a.json");
}

#[test]
fn both_shapes_of_flags_load_the_same() {
    let object = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b"}}}"#;
    let array = r#"{"flags": [{"key": "f", "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b"}]}"#;
    let context = rampart_engine::Context::new();
    let from_object = FlagSet::load(&[Source::json("o.json", object)]).expect("valid");
    let from_array = FlagSet::load(&[Source::json("a.json", array)]).expect("valid");
    assert_eq!(from_object.evaluate("f", &context, 0).value, from_array.evaluate("f", &context, 0).value);
    assert_eq!(from_array.get("f").expect("loaded").definition(), from_object.get("f").expect("loaded").definition());
}
