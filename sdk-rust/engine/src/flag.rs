//! Compiled flags and flag sets, and evaluation against them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{LoadError, LoadErrors};
use crate::evaluation::{ErrorCode, Evaluation, Reason, Typed, TypedEvaluation, ValueType};
use crate::rule::eval::Data;
use crate::rule::{Budget, Env, Rule};
use crate::{Context, Metadata, js};

/// `ENABLED` or `DISABLED` (the kill switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FlagState {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
}

impl FlagState {
    pub fn parse(text: &str) -> Option<FlagState> {
        match text {
            "ENABLED" => Some(FlagState::Enabled),
            "DISABLED" => Some(FlagState::Disabled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlagState::Enabled => "ENABLED",
            FlagState::Disabled => "DISABLED",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Targeting {
    None,
    Rule(Rule),
    /// Targeting that could not be compiled: every evaluation answers
    /// `PARSE_ERROR` with this message, as flagd does.
    Broken(String),
}

/// One compiled flag.
#[derive(Debug, Clone)]
pub struct Flag {
    pub(crate) key: String,
    pub(crate) state: FlagState,
    pub(crate) variants: Vec<(String, Value)>,
    pub(crate) default_variant: Option<usize>,
    pub(crate) targeting: Targeting,
    pub(crate) metadata: Metadata,
    pub(crate) value_type: ValueType,
    pub(crate) source: String,
    pub(crate) definition: Value,
}

impl Flag {
    /// A flag whose definition could not be used: every evaluation answers
    /// `PARSE_ERROR` with `message`.
    pub(crate) fn broken(key: &str, message: String, source: &str) -> Flag {
        Flag {
            key: key.to_owned(),
            state: FlagState::Enabled,
            variants: Vec::new(),
            default_variant: None,
            targeting: Targeting::Broken(format!("flag '{key}' is invalid: {message}")),
            metadata: Metadata::new(),
            value_type: ValueType::Object,
            source: source.to_owned(),
            definition: Value::Null,
        }
    }

    /// Why the flag cannot be evaluated, when its definition or targeting
    /// is invalid (it then answers `PARSE_ERROR`).
    pub fn problem(&self) -> Option<&str> {
        match &self.targeting {
            Targeting::Broken(message) => Some(message),
            _ => None,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn state(&self) -> FlagState {
        self.state
    }

    /// The type of the flag's variants.
    pub fn value_type(&self) -> ValueType {
        self.value_type
    }

    /// Name of the source (file) the flag was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Flag-set metadata merged with the flag's own.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The flag's definition in flagd's format, `$ref`s expanded.
    pub fn definition(&self) -> &Value {
        &self.definition
    }

    pub fn variants(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.variants.iter().map(|(name, value)| (name.as_str(), value))
    }

    pub fn default_variant(&self) -> Option<&str> {
        self.default_variant.map(|index| self.variants[index].0.as_str())
    }

    fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        self.variants.iter().find(|(candidate, _)| candidate == name).map(|(n, v)| (n.as_str(), v))
    }

    /// Evaluates this flag. `now` is unix seconds, for `$flagd.timestamp`.
    pub fn evaluate<'a>(&'a self, context: &'a Context, now: i64) -> Evaluation<'a> {
        if self.state == FlagState::Disabled {
            return self.result(None, Reason::Disabled);
        }
        match &self.targeting {
            Targeting::None => self.default(Reason::Static),
            Targeting::Broken(message) => Evaluation::error(ErrorCode::ParseError, message.clone(), &self.metadata),
            Targeting::Rule(rule) => {
                let budget = Budget::evaluation();
                let env = Env { context, flag_key: &self.key, now, budget: &budget };
                match rule.eval(&env, Data::Root) {
                    Err(thrown) => {
                        let mut evaluation = Evaluation::error(
                            ErrorCode::General,
                            format!("error evaluating the targeting of flag '{}': {}", self.key, thrown.0),
                            &self.metadata,
                        );
                        evaluation.limit = budget.exceeded();
                        evaluation
                    }
                    Ok(result) => match result.as_ref() {
                        Value::Null => self.default(Reason::Default),
                        Value::String(name) => self.chosen(name),
                        other => self.chosen(&js::to_string(other)),
                    },
                }
            }
        }
    }

    fn chosen(&self, name: &str) -> Evaluation<'_> {
        match self.variant(name) {
            Some(variant) => self.result(Some(variant), Reason::TargetingMatch),
            None => Evaluation::error(
                ErrorCode::General,
                format!("targeting of flag '{}' chose variant '{name}', which does not exist", self.key),
                &self.metadata,
            ),
        }
    }

    fn default(&self, reason: Reason) -> Evaluation<'_> {
        match self.default_variant {
            Some(index) => {
                let (name, value) = &self.variants[index];
                self.result(Some((name, value)), reason)
            }
            // No default variant: the caller's code default, always DEFAULT.
            None => self.result(None, Reason::Default),
        }
    }

    fn result<'a>(&'a self, variant: Option<(&'a str, &'a Value)>, reason: Reason) -> Evaluation<'a> {
        Evaluation {
            value: variant.map(|(_, value)| value),
            variant: variant.map(|(name, _)| name),
            reason,
            error_code: None,
            error_message: None,
            metadata: &self.metadata,
            limit: None,
        }
    }
}

/// An immutable, compiled set of flags: one environment's configuration.
/// Built once per configuration change, then shared by every reader.
/// Flags are reference-counted, so a new set after a change to one flag
/// reuses every other compiled flag ([`FlagSet::from_flags`]).
#[derive(Debug, Default)]
pub struct FlagSet {
    /// Sorted by key, so iteration (bulk evaluation, listings) is stable.
    pub(crate) flags: Vec<Arc<Flag>>,
    pub(crate) index: HashMap<String, usize, BuildHasherDefault<KeyHasher>>,
    pub(crate) metadata: Metadata,
}

impl FlagSet {
    pub(crate) fn new(flags: Vec<Flag>, metadata: Metadata) -> FlagSet {
        FlagSet::sorted(flags.into_iter().map(Arc::new).collect(), metadata)
    }

    fn sorted(mut flags: Vec<Arc<Flag>>, metadata: Metadata) -> FlagSet {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let index = flags.iter().enumerate().map(|(i, flag)| (flag.key.clone(), i)).collect();
        FlagSet { flags, index, metadata }
    }

    /// A set of already compiled flags (from other sets). A key that appears
    /// twice is an error naming both sources.
    pub fn from_flags(flags: impl IntoIterator<Item = Arc<Flag>>, metadata: Metadata) -> Result<FlagSet, LoadErrors> {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let flags: Vec<Arc<Flag>> = flags.into_iter().collect();
        let mut errors = Vec::new();
        for flag in &flags {
            if let Some(first) = seen.insert(&flag.key, &flag.source) {
                errors.push(
                    LoadError::new(flag.source.clone(), format!("is also defined in {first}"))
                        .in_flag(flag.key.clone()),
                );
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Ok(FlagSet::sorted(flags, metadata))
    }

    /// The compiled flags, shareable with another set.
    pub fn shared(&self) -> impl ExactSizeIterator<Item = &Arc<Flag>> {
        self.flags.iter()
    }

    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.index.get(key).map(|&i| &*self.flags[i])
    }

    /// A flag, shareable with another set.
    pub fn shared_flag(&self, key: &str) -> Option<&Arc<Flag>> {
        self.index.get(key).map(|&i| &self.flags[i])
    }

    /// Flags in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Flag> {
        self.flags.iter().map(|flag| &**flag)
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag-set metadata (of all sources, later ones winning).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Overrides a flag's state (a kill switch applied on top of its
    /// definition); returns false when there is no such flag. Only possible
    /// while the set is still owned, before it is shared.
    pub fn set_state(&mut self, key: &str, state: FlagState) -> bool {
        let Some(&index) = self.index.get(key) else { return false };
        let flag = Arc::make_mut(&mut self.flags[index]);
        flag.state = state;
        if let Some(definition) = flag.definition.as_object_mut() {
            definition.insert("state".into(), serde_json::Value::String(state.as_str().into()));
        }
        true
    }

    /// Evaluates a flag; a missing flag is `FLAG_NOT_FOUND`, not an `Err`.
    pub fn evaluate<'a>(&'a self, key: &str, context: &'a Context, now: i64) -> Evaluation<'a> {
        match self.get(key) {
            Some(flag) => flag.evaluate(context, now),
            None => Evaluation::error(ErrorCode::FlagNotFound, format!("flag '{key}' not found"), &self.metadata),
        }
    }

    /// Evaluates a flag as type `T` (`bool`, `&str`, `i64`, `f64`, or
    /// `&Map`); a value of another type is `TYPE_MISMATCH`.
    pub fn resolve<'a, T: Typed<'a>>(&'a self, key: &str, context: &'a Context, now: i64) -> TypedEvaluation<'a, T> {
        self.evaluate(key, context, now).typed(key)
    }
}

/// A fast hash for the flag-key index. Keys come from configuration, not
/// from clients, so the DoS resistance of SipHash buys nothing here, while
/// its cost is a tenth of an evaluation. (The multiply-rotate scheme of
/// rustc's FxHash.)
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((chunk, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*chunk));
            bytes = rest;
        }
        if let Some((chunk, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*chunk)));
            bytes = rest;
        }
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
