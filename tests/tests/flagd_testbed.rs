//! The OpenFeature flagd conformance suite (flagd-testbed 3.9.0, read from
//! `../shared/flagd-testbed/`, never copied) run against the real binary
//! in its default mode.
//!
//! A small Gherkin runner plays the provider: it reads every feature, and
//! runs each scenario whose steps an evaluation can answer — flag type and
//! default, context, evaluation, expected value, reason, error code,
//! variant, metadata — over OFREP and over flagd's gRPC evaluation (v2),
//! applying OpenFeature's provider rules (an error or a missing value gives
//! the caller's default; a value of another type is `TYPE_MISMATCH`).
//! Scenarios about connections, events, caching and provider configuration
//! test a provider, not a server, and are counted as not answerable.
//! Examples tagged `@fractional-v1` and `@fractional-v3` expect other
//! bucketing generations than Go flagd's v2 (which Rampart implements) and
//! are reported separately.
//!
//! The testbed's flagd serves `flags/allFlags.json` (every flag file but
//! the selector ones), `rawflags/selector-flags.json` and
//! `rawflags/selector-flag-combined-metadata.json`, with the static context
//! value `injectedmetadata: set`; here each is an environment whose SDK key
//! is the selector, and the evaluator features use the testkit's own file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rampart_proto::flagd::evaluation::v2 as flagd;
use rampart_tests::{FlagDir, Rampart, post, workspace};
use serde_json::{Map, Value, json};

const ALL: &str = "flags/allFlags.json";
const SELECTOR: &str = "rawflags/selector-flags.json";
const METADATA: &str = "rawflags/selector-flag-combined-metadata.json";
const EVALUATOR: &str = "evaluator/testkit-flags.json";

/// Where the suite's data is: `FLAGD_TESTBED`, else `../shared/flagd-testbed`
/// beside the workspace. `None` when it is absent outside CI (a fresh clone
/// elsewhere): the test says so and how to get it. Under `CI=true` a
/// missing testbed fails the run — never a silent skip there.
fn testbed() -> Option<PathBuf> {
    let dir = std::env::var_os("FLAGD_TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/flagd-testbed"));
    if dir.join("gherkin").is_dir() {
        return Some(dir);
    }
    let how = format!(
        "the flagd testbed is missing at {}: clone github.com/open-feature/flagd-testbed at release v3.9.0 \
         (commit 82ba89ec) there, or point FLAGD_TESTBED at such a clone",
        dir.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{how}");
    eprintln!("NOT RUN: {how}");
    None
}

// ---------- Gherkin ----------

#[derive(Debug, Clone)]
struct Step {
    text: String,
    table: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Scenario {
    feature: String,
    name: String,
    tags: Vec<String>,
    steps: Vec<Step>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => cell.push('\n'),
                Some(other) => cell.push(other),
                None => {}
            },
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            other => cell.push(other),
        }
    }
    out.push(cell.trim().to_owned());
    out
}

/// Parses one feature into concrete scenarios (outlines expanded, each row
/// carrying its Examples block's tags).
fn parse(path: &Path) -> Vec<Scenario> {
    let text = std::fs::read_to_string(path).expect("feature");
    let feature = path.file_name().expect("a file").to_string_lossy().into_owned();
    let mut scenarios = Vec::new();
    let mut pending_tags: Vec<String> = Vec::new();
    let mut feature_tags: Vec<String> = Vec::new();
    let mut background: Vec<Step> = Vec::new();
    // The block being read: background, scenario, or examples.
    enum Block {
        None,
        Background,
        Scenario { name: String, tags: Vec<String>, steps: Vec<Step>, outline: bool },
        Examples { name: String, tags: Vec<String>, steps: Vec<Step>, header: Vec<String>, example_tags: Vec<String> },
    }
    let mut block = Block::None;
    let flush = |block: &mut Block, scenarios: &mut Vec<Scenario>, background: &[Step], feature: &str| {
        if let Block::Scenario { name, tags, steps, outline: false } = std::mem::replace(block, Block::None) {
            let mut all = background.to_vec();
            all.extend(steps);
            scenarios.push(Scenario { feature: feature.to_owned(), name, tags, steps: all });
        }
    };
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            pending_tags.extend(line.split_whitespace().map(str::to_owned));
            continue;
        }
        if line.starts_with("Feature:") {
            feature_tags = std::mem::take(&mut pending_tags);
            continue;
        }
        if line.starts_with("Background:") {
            flush(&mut block, &mut scenarios, &background, &feature);
            block = Block::Background;
            continue;
        }
        if let Some(name) = line.strip_prefix("Scenario Outline:").or_else(|| line.strip_prefix("Scenario:")) {
            flush(&mut block, &mut scenarios, &background, &feature);
            let mut tags = feature_tags.clone();
            tags.extend(std::mem::take(&mut pending_tags));
            block = Block::Scenario {
                name: name.trim().to_owned(),
                tags,
                steps: Vec::new(),
                outline: line.starts_with("Scenario Outline:"),
            };
            continue;
        }
        if line.starts_with("Examples:") {
            let example_tags = std::mem::take(&mut pending_tags);
            block = match std::mem::replace(&mut block, Block::None) {
                Block::Scenario { name, tags, steps, .. } | Block::Examples { name, tags, steps, .. } => {
                    Block::Examples { name, tags, steps, header: Vec::new(), example_tags }
                }
                other => other,
            };
            continue;
        }
        if line.starts_with('|') {
            let row = cells(line);
            match &mut block {
                Block::Examples { name, tags, steps, header, example_tags } => {
                    if header.is_empty() {
                        *header = row;
                    } else {
                        let substitute = |text: &str| {
                            header
                                .iter()
                                .zip(&row)
                                .fold(text.to_owned(), |acc, (h, v)| acc.replace(&format!("<{h}>"), v))
                        };
                        let mut all = background.clone();
                        all.extend(steps.iter().map(|s| Step { text: substitute(&s.text), table: s.table.clone() }));
                        let mut all_tags = tags.clone();
                        all_tags.extend(example_tags.iter().cloned());
                        scenarios.push(Scenario {
                            feature: feature.clone(),
                            name: format!("{name} [{}]", row.join(", ")),
                            tags: all_tags,
                            steps: all,
                        });
                    }
                }
                Block::Scenario { steps, .. } => {
                    if let Some(last) = steps.last_mut() {
                        last.table.push(row);
                    }
                }
                Block::Background => {
                    if let Some(last) = background.last_mut() {
                        last.table.push(row);
                    }
                }
                Block::None => {}
            }
            continue;
        }
        let text = ["Given ", "When ", "Then ", "And ", "But "]
            .iter()
            .find_map(|keyword| line.strip_prefix(keyword))
            .unwrap_or(line)
            .to_owned();
        let step = Step { text, table: Vec::new() };
        match &mut block {
            Block::Background => background.push(step),
            Block::Scenario { steps, .. } => steps.push(step),
            _ => {}
        }
    }
    flush(&mut block, &mut scenarios, &background, &feature);
    scenarios
}

// ---------- steps ----------

/// The quoted arguments of a step, if it has exactly `shape` with `"X"` in
/// place of each argument. An argument may itself contain quotes (JSON
/// values): it ends where the rest of the shape matches.
fn quoted<'s>(text: &'s str, shape: &str) -> Option<Vec<&'s str>> {
    let parts: Vec<&str> = shape.split("\"X\"").collect();
    let mut rest = text.strip_prefix(parts[0])?;
    let mut args = Vec::new();
    for (index, literal) in parts.iter().enumerate().skip(1) {
        rest = rest.strip_prefix('"')?;
        let closing = format!("\"{literal}");
        let end = if index + 1 == parts.len() {
            rest.strip_suffix(closing.as_str()).map(str::len)?
        } else {
            rest.find(&closing)?
        };
        args.push(&rest[..end]);
        rest = &rest[end + closing.len()..];
    }
    rest.is_empty().then_some(args)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "Boolean" => Kind::Boolean,
            "String" => Kind::String,
            "Integer" => Kind::Integer,
            "Float" => Kind::Float,
            "Object" => Kind::Object,
            _ => return None,
        })
    }

    /// A value written in a step, as this type.
    fn value(self, text: &str) -> Value {
        match self {
            Kind::Boolean => Value::Bool(text == "true"),
            Kind::String => Value::String(text.to_owned()),
            Kind::Integer => text.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
            Kind::Float => text.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
            Kind::Object => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::Boolean => value.is_boolean(),
            Kind::String => value.is_string(),
            Kind::Integer => value.as_f64().is_some_and(|f| f.fract() == 0.0),
            Kind::Float => value.is_number(),
            Kind::Object => value.is_object(),
        }
    }
}

fn same(kind: Kind, expected: &Value, actual: &Value) -> bool {
    match kind {
        Kind::Integer | Kind::Float => expected.as_f64() == actual.as_f64(),
        _ => expected == actual,
    }
}

/// What a provider hands the application.
#[derive(Debug, Clone, Default)]
struct Details {
    value: Value,
    reason: String,
    variant: Option<String>,
    error_code: Option<String>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Ofrep,
    Grpc,
}

/// The environments and their SDK keys (the selectors).
struct Testbed {
    server: Rampart,
    _dir: FlagDir,
    runtime: tokio::runtime::Runtime,
}

impl Testbed {
    fn start(root: &Path) -> Testbed {
        let dir = FlagDir::new();
        let flags = root.join("flags");
        // flagd's testbed serves one merged document: every flag file but
        // the selector ones, their `$evaluators` shared by all flags.
        let mut merged = json!({"flags": {}, "$evaluators": {}});
        let mut files: Vec<PathBuf> = std::fs::read_dir(&flags).expect("flags").flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let name = path.file_name().expect("a file").to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with("selector-") {
                continue;
            }
            let document: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("flag file")).expect("json");
            for section in ["flags", "$evaluators"] {
                if let Some(entries) = document[section].as_object() {
                    merged[section].as_object_mut().expect("object").extend(entries.clone());
                }
            }
        }
        let all = dir.write("allFlags.json", &merged.to_string());
        let file = |name: &str| format!("['{}']", flags.join(name).display());
        let evaluator = root.join("evaluator/flags/testkit-flags.json");
        let config = dir.write(
            "rampart.yaml",
            &format!(
                "environments:\n\
                 \x20 all:\n    flags: ['{}']\n    sdkKeys: [{{value: '{ALL}'}}]\n    context: {{injectedmetadata: set}}\n\
                 \x20 selector:\n    flags: {}\n    sdkKeys: [{{value: '{SELECTOR}'}}]\n    context: {{injectedmetadata: set}}\n\
                 \x20 metadata:\n    flags: {}\n    sdkKeys: [{{value: '{METADATA}'}}]\n\
                 \x20 evaluator:\n    flags: ['{}']\n    sdkKeys: [{{value: '{EVALUATOR}'}}]\n",
                all,
                file("selector-flags.json"),
                file("selector-flag-combined-metadata.json"),
                evaluator.display()
            ),
        );
        let server = Rampart::start(&["--config", &config]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Testbed { server, _dir: dir, runtime }
    }

    fn evaluate(
        &self,
        transport: Transport,
        selector: &str,
        key: &str,
        kind: Kind,
        context: &Map<String, Value>,
        default: &Value,
    ) -> Details {
        let mut details = match transport {
            Transport::Ofrep => self.ofrep(selector, key, context),
            Transport::Grpc => self.grpc(selector, key, kind, context),
        };
        // OpenFeature's provider rules.
        if details.error_code.is_none() && !details.value.is_null() && !kind.accepts(&details.value) {
            details.error_code = Some("TYPE_MISMATCH".into());
            details.reason = "ERROR".into();
        }
        if details.error_code.is_some() || details.value.is_null() {
            details.value = default.clone();
        }
        details
    }

    fn ofrep(&self, selector: &str, key: &str, context: &Map<String, Value>) -> Details {
        let reply = post(
            &format!("{}/ofrep/v1/evaluate/flags/{key}", self.server.http),
            &json!({"context": context}).to_string(),
            &[("x-api-key", selector)],
        );
        let body = reply.body;
        Details {
            value: body.get("value").cloned().unwrap_or(Value::Null),
            reason: body["reason"].as_str().unwrap_or("ERROR").to_owned(),
            variant: body["variant"].as_str().map(str::to_owned),
            error_code: body["errorCode"].as_str().map(str::to_owned),
            metadata: body["metadata"].as_object().cloned().unwrap_or_default(),
        }
    }

    fn grpc(&self, selector: &str, key: &str, kind: Kind, context: &Map<String, Value>) -> Details {
        self.runtime.block_on(async {
            let mut client = flagd::service_client::ServiceClient::connect(format!("http://{}", self.server.grpc))
                .await
                .expect("gRPC");
            let context = Some(to_struct(context));
            let flag_key = key.to_owned();
            let answer: Result<(Value, String, String, Option<prost_types::Struct>), tonic::Status> = match kind {
                Kind::Boolean => client
                    .resolve_boolean(with_selector(flagd::ResolveBooleanRequest { flag_key, context }, selector))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| {
                        (r.value.map_or(Value::Null, Value::Bool), r.reason, r.variant.unwrap_or_default(), r.metadata)
                    }),
                Kind::String => client
                    .resolve_string(with_selector(flagd::ResolveStringRequest { flag_key, context }, selector))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| {
                        (
                            r.value.map_or(Value::Null, Value::String),
                            r.reason,
                            r.variant.unwrap_or_default(),
                            r.metadata,
                        )
                    }),
                Kind::Integer => client
                    .resolve_int(with_selector(flagd::ResolveIntRequest { flag_key, context }, selector))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| {
                        (r.value.map_or(Value::Null, Value::from), r.reason, r.variant.unwrap_or_default(), r.metadata)
                    }),
                Kind::Float => client
                    .resolve_float(with_selector(flagd::ResolveFloatRequest { flag_key, context }, selector))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| {
                        (r.value.map_or(Value::Null, Value::from), r.reason, r.variant.unwrap_or_default(), r.metadata)
                    }),
                Kind::Object => client
                    .resolve_object(with_selector(flagd::ResolveObjectRequest { flag_key, context }, selector))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| {
                        (
                            r.value.map_or(Value::Null, |s| Value::Object(from_struct(s))),
                            r.reason,
                            r.variant.unwrap_or_default(),
                            r.metadata,
                        )
                    }),
            };
            match answer {
                Ok((value, reason, variant, metadata)) => Details {
                    value,
                    reason,
                    variant: (!variant.is_empty()).then_some(variant),
                    error_code: None,
                    metadata: metadata.map(from_struct).unwrap_or_default(),
                },
                // As flagd's providers map statuses.
                Err(status) => Details {
                    value: Value::Null,
                    reason: "ERROR".into(),
                    variant: None,
                    error_code: Some(
                        match status.code() {
                            tonic::Code::NotFound => "FLAG_NOT_FOUND",
                            tonic::Code::InvalidArgument => "TYPE_MISMATCH",
                            tonic::Code::DataLoss => "PARSE_ERROR",
                            _ => "GENERAL",
                        }
                        .into(),
                    ),
                    metadata: Map::new(),
                },
            }
        })
    }
}

/// A request carrying the selector as flagd providers send it.
fn with_selector<T>(value: T, selector: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(value);
    request.metadata_mut().insert("flagd-selector", selector.parse().expect("ascii"));
    request
}

fn to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    use prost_types::value::Kind as K;
    fn value(v: &Value) -> prost_types::Value {
        let kind = match v {
            Value::Null => K::NullValue(0),
            Value::Bool(b) => K::BoolValue(*b),
            Value::Number(n) => K::NumberValue(n.as_f64().unwrap_or_default()),
            Value::String(s) => K::StringValue(s.clone()),
            Value::Array(items) => K::ListValue(prost_types::ListValue { values: items.iter().map(value).collect() }),
            Value::Object(map) => K::StructValue(to_struct(map)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    prost_types::Struct { fields: map.iter().map(|(k, v)| (k.clone(), value(v))).collect() }
}

fn from_struct(object: prost_types::Struct) -> Map<String, Value> {
    use prost_types::value::Kind as K;
    fn value(v: prost_types::Value) -> Value {
        match v.kind {
            None | Some(K::NullValue(_)) => Value::Null,
            Some(K::BoolValue(b)) => Value::Bool(b),
            Some(K::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9e15 => Value::from(n as i64),
            Some(K::NumberValue(n)) => Value::from(n),
            Some(K::StringValue(s)) => Value::String(s),
            Some(K::ListValue(list)) => Value::Array(list.values.into_iter().map(value).collect()),
            Some(K::StructValue(s)) => Value::Object(from_struct(s)),
        }
    }
    object.fields.into_iter().map(|(k, v)| (k, value(v))).collect()
}

/// Runs one scenario; `Ok(false)` when a step is not one an evaluation
/// can answer.
fn run(testbed: &Testbed, scenario: &Scenario, transport: Transport) -> Result<bool, String> {
    // Superseded by the suite's own newer scenarios (`@no-default` by
    // `@no-default-variant`, which it contradicts).
    if scenario.tags.iter().any(|t| t == "@deprecated") {
        return Ok(false);
    }
    let mut selector = if scenario.steps.iter().any(|s| s.text == "an evaluator") { EVALUATOR } else { ALL };
    let mut flag: Option<(Kind, String, Value)> = None;
    let mut context = Map::new();
    let mut details: Option<Details> = None;
    for step in &scenario.steps {
        let text = step.text.as_str();
        if let Some(args) = quoted(text, "an option \"X\" of type \"X\" with value \"X\"") {
            // A provider's own cache is not the server's to answer for.
            if args[0] == "cache" && args[2] != "disabled" {
                return Ok(false);
            }
            if args[0] == "selector" {
                selector = match args[2] {
                    "flags/allFlags.json" => ALL,
                    "rawflags/selector-flags.json" => SELECTOR,
                    "rawflags/selector-flag-combined-metadata.json" => METADATA,
                    _ => return Ok(false),
                };
            }
        } else if matches!(
            text,
            "a stable flagd provider" | "a metadata flagd provider" | "a syncpayload flagd provider"
        ) {
            if text.starts_with("a metadata") && selector == ALL {
                selector = METADATA;
            }
        } else if text == "an evaluator" {
            selector = EVALUATOR;
        } else if let Some((kind, rest)) = text.strip_prefix("a ").and_then(|t| t.split_once("-flag with key ")) {
            let Some(kind) = Kind::parse(kind) else { return Ok(false) };
            let args = quoted(rest, "\"X\" and a default value \"X\"")
                .or_else(|| quoted(rest, "\"X\" and a fallback value \"X\""))
                .ok_or_else(|| format!("unparsed: {text}"))?;
            flag = Some((kind, args[0].to_owned(), kind.value(args[1])));
        } else if let Some(args) =
            quoted(text, "a context containing a key \"X\", with type \"X\" and with value \"X\"")
        {
            let Some(kind) = Kind::parse(args[1]) else { return Ok(false) };
            context.insert(args[0].to_owned(), kind.value(args[2]));
        } else if let Some(args) = quoted(
            text,
            "a context containing a nested property with outer key \"X\" and inner key \"X\", with value \"X\"",
        ) {
            context.insert(args[0].to_owned(), json!({ args[1]: args[2] }));
        } else if let Some(args) = quoted(text, "a context containing a targeting key with value \"X\"") {
            context.insert("targetingKey".into(), Value::String(args[0].to_owned()));
        } else if text == "the flag was evaluated with details" {
            let (kind, key, default) = flag.as_ref().ok_or("no flag")?;
            details = Some(testbed.evaluate(transport, selector, key, *kind, &context, default));
        } else if let Some(args) = quoted(text, "the resolved details value should be \"X\"") {
            let (kind, _, _) = flag.as_ref().ok_or("no flag")?;
            let got = &details.as_ref().ok_or("not evaluated")?.value;
            let expected = kind.value(args[0]);
            if !same(*kind, &expected, got) {
                return Err(format!("value {got}, expected {expected}"));
            }
        } else if let Some(args) = quoted(text, "the reason should be \"X\"") {
            let got = &details.as_ref().ok_or("not evaluated")?.reason;
            if got != args[0] {
                return Err(format!("reason {got}, expected {}", args[0]));
            }
        } else if let Some(args) = quoted(text, "the error-code should be \"X\"") {
            let got = details.as_ref().ok_or("not evaluated")?.error_code.clone().unwrap_or_default();
            if got != args[0] {
                return Err(format!("error code {got:?}, expected {:?}", args[0]));
            }
        } else if let Some(args) = quoted(text, "the variant should be \"X\"") {
            let got = details.as_ref().ok_or("not evaluated")?.variant.clone().unwrap_or_default();
            if got != args[0] {
                return Err(format!("variant {got:?}, expected {:?}", args[0]));
            }
        } else if text == "the resolved metadata should contain" {
            let metadata = &details.as_ref().ok_or("not evaluated")?.metadata;
            for row in step.table.iter().skip(1) {
                let kind = Kind::parse(&row[1]).ok_or("metadata type")?;
                let expected = kind.value(&row[2]);
                let got = metadata.get(&row[0]).cloned().unwrap_or(Value::Null);
                if !same(kind, &expected, &got) {
                    return Err(format!("metadata {}: {got}, expected {expected} (all: {metadata:?})", row[0]));
                }
            }
        } else if text == "the resolved metadata is empty" {
            let metadata = &details.as_ref().ok_or("not evaluated")?.metadata;
            if !metadata.is_empty() {
                return Err(format!("metadata {metadata:?}, expected none"));
            }
        } else {
            return Ok(false);
        }
    }
    Ok(details.is_some())
}

#[test]
fn the_flagd_testbed_passes_over_ofrep_and_grpc() {
    let Some(root) = testbed() else { return };
    let mut features: Vec<PathBuf> = ["gherkin", "evaluator/gherkin"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("features").flatten().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "feature"))
        .collect();
    features.sort();
    let scenarios: Vec<Scenario> = features.iter().flat_map(|path| parse(path)).collect();
    assert!(scenarios.len() > 200, "only {} scenarios parsed", scenarios.len());
    let testbed = Testbed::start(&root);
    // generation → (passed, failed, not answerable) per transport.
    let mut tally: BTreeMap<(&str, &str), (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let generation = if scenario.tags.iter().any(|t| t == "@fractional-v1") {
            "fractional-v1"
        } else if scenario.tags.iter().any(|t| t == "@fractional-v3") {
            "fractional-v3"
        } else {
            "flagd"
        };
        for (transport, name) in [(Transport::Ofrep, "OFREP"), (Transport::Grpc, "gRPC")] {
            let counts = tally.entry((generation, name)).or_default();
            match run(&testbed, scenario, transport) {
                Ok(true) => counts.0 += 1,
                Ok(false) => {
                    counts.2 += 1;
                    if transport == Transport::Ofrep && std::env::var_os("TESTBED_LIST").is_some() {
                        eprintln!("not answerable: {} / {}", scenario.feature, scenario.name);
                    }
                }
                Err(error) => {
                    counts.1 += 1;
                    if generation == "flagd" {
                        failures.push(format!("{name} {} / {}: {error}", scenario.feature, scenario.name));
                    }
                }
            }
        }
    }
    eprintln!(
        "flagd-testbed {} ({} scenarios):",
        std::fs::read_to_string(root.join("version.txt")).unwrap_or_default().trim(),
        scenarios.len()
    );
    for ((generation, transport), (passed, failed, skipped)) in &tally {
        eprintln!(
            "  {generation:<14} {transport:<5} passed {passed:>4}  failed {failed:>3}  not answerable {skipped:>3}"
        );
    }
    assert!(failures.is_empty(), "{} scenarios failed:\n{}", failures.len(), failures.join("\n"));
    let (passed, _, _) = tally[&("flagd", "OFREP")];
    assert!(passed > 250, "only {passed} scenarios were answerable over OFREP");

    // In-process providers get the static context with the configuration.
    testbed.runtime.block_on(async {
        use rampart_proto::flagd::sync::v1::{SyncFlagsRequest, flag_sync_service_client::FlagSyncServiceClient};
        let mut client = FlagSyncServiceClient::connect(format!("http://{}", testbed.server.sync)).await.expect("sync");
        let request = with_selector(SyncFlagsRequest { provider_id: "testbed".into(), selector: String::new() }, ALL);
        let mut stream = client.sync_flags(request).await.expect("subscribe").into_inner();
        let first = stream.message().await.expect("message").expect("a configuration");
        let context = from_struct(first.sync_context.expect("sync context"));
        assert_eq!(context.get("injectedmetadata"), Some(&json!("set")));
    });
}
