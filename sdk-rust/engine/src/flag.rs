//! Compiled flags and flag sets, and evaluation against them.

use serde_json::Value;

use crate::evaluation::{ErrorCode, Evaluation, Reason, ValueType};
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
    /// The flag's own rules (if any) under a ramp, evaluated natively.
    Ramped(Option<Rule>, Box<crate::ramp::Overlay>),
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
    /// The definition as served, as compact JSON: a tenth of the memory of
    /// a `serde_json::Value` tree, and what wire forms copy as it is.
    pub(crate) definition: Box<str>,
    /// MurmurHash3 state after the key: `fractional`'s default bucketing
    /// hashes the key and the targeting key, so only the latter is hashed
    /// per evaluation.
    pub(crate) key_hash: crate::bucket::PrefixHash,
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
            definition: "null".into(),
            key_hash: crate::bucket::PrefixHash::new(key),
        }
    }

    /// Why the flag cannot be evaluated, when its definition or targeting
    /// This flag under a ramp's exposure: its definition is the standard
    /// JsonLogic of [`crate::ramp::ramped_definition`] (what streams carry),
    /// its evaluation the same answers computed natively, running the
    /// flag's rules once. `None` when the exposure changes nothing (0 %,
    /// treatment = control, a variant missing, targeting that does not
    /// compile, or no rules and a default that is not the control).
    pub fn with_exposure(&self, exposure: &crate::ramp::Exposure) -> Option<Flag> {
        let has = |name: &str| self.variants.iter().any(|(variant, _)| variant == name);
        if exposure.basis_points == 0
            || exposure.treatment == exposure.control
            || !has(&exposure.treatment)
            || !has(&exposure.control)
        {
            return None;
        }
        let default_is_control = self.default_variant.map(|i| self.variants[i].0.as_str()) == Some(&exposure.control);
        let rules = match &self.targeting {
            Targeting::Rule(rule) => Some(rule.clone()),
            Targeting::None if default_is_control => None,
            Targeting::None | Targeting::Broken(_) | Targeting::Ramped(..) => return None,
        };
        let mut definition = crate::ramp::ramped_definition(&self.key, &self.definition(), exposure);
        if let Some(fields) = definition.as_object_mut() {
            fields.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        let overlay = crate::ramp::Overlay::new(&self.key, exposure, default_is_control);
        let definition = definition.to_string().into_boxed_str();
        Some(Flag { targeting: Targeting::Ramped(rules, Box::new(overlay)), definition, ..self.clone() })
    }

    /// This flag with its state set (a kill switch applied on top of its
    /// definition, which says so too).
    pub fn with_state(&self, state: FlagState) -> Flag {
        let mut flag = self.clone();
        flag.state = state;
        let mut definition = self.definition();
        if let Some(fields) = definition.as_object_mut() {
            fields.insert("state".into(), serde_json::Value::String(state.as_str().into()));
        }
        flag.definition = definition.to_string().into_boxed_str();
        flag
    }

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
    pub fn definition(&self) -> Value {
        serde_json::from_str(&self.definition).unwrap_or(Value::Null)
    }

    /// The definition as compact JSON (`null` for a flag that could not be
    /// used): compare and copy this rather than parsing it.
    pub fn definition_json(&self) -> &str {
        &self.definition
    }

    pub fn variants(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.variants.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// The variant every evaluation serves, when the flag has no targeting
    /// (its default); `None` when targeting decides.
    pub fn static_variant(&self) -> Option<&str> {
        match self.targeting {
            Targeting::None => self.default_variant(),
            _ => None,
        }
    }

    pub fn default_variant(&self) -> Option<&str> {
        self.default_variant.map(|index| self.variants[index].0.as_str())
    }

    fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        self.variants.iter().find(|(candidate, _)| crate::text::same(candidate, name)).map(|(n, v)| (n.as_str(), v))
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
                let env = Env { context, flag_key: &self.key, key_hash: Some(&self.key_hash), now, budget: &budget };
                match rule.eval(&env, Data::Root) {
                    Err(thrown) => self.thrown(thrown.0, &budget),
                    Ok(result) => self.answer(result.as_ref()),
                }
            }
            Targeting::Ramped(rules, overlay) => {
                let budget = Budget::evaluation();
                let env = Env { context, flag_key: &self.key, key_hash: Some(&self.key_hash), now, budget: &budget };
                let result = match rules.as_ref().map(|rule| rule.eval(&env, Data::Root)).transpose() {
                    Err(thrown) => return self.thrown(thrown.0, &budget),
                    Ok(result) => result,
                };
                let key = context.get(crate::TARGETING_KEY);
                match overlay.decide(result.as_deref(), key) {
                    crate::ramp::Decision::Variant(name) => self.chosen(name),
                    crate::ramp::Decision::Default => self.default(Reason::Default),
                    crate::ramp::Decision::Rules => self.answer(result.as_deref().unwrap_or(&Value::Null)),
                }
            }
        }
    }

    /// What a rule's result means: a variant name, or the default.
    fn answer(&self, result: &Value) -> Evaluation<'_> {
        match result {
            Value::Null => self.default(Reason::Default),
            Value::String(name) => self.chosen(name),
            other => self.chosen(&js::to_string(other)),
        }
    }

    fn thrown(&self, message: &str, budget: &Budget) -> Evaluation<'_> {
        let mut evaluation = Evaluation::error(
            ErrorCode::General,
            format!("error evaluating the targeting of flag '{}': {message}", self.key),
            &self.metadata,
        );
        evaluation.limit = budget.exceeded();
        evaluation
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
