//! Evaluation results in OpenFeature's vocabulary, with flagd's semantics.

use serde_json::{Map, Value};

use crate::Metadata;

/// Why a value was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The flag has no targeting: its default variant.
    Static,
    /// Targeting chose a variant (`fractional` included; flagd never says SPLIT).
    TargetingMatch,
    /// Targeting returned null, or there is no default variant: the
    /// default variant, or the caller's code default.
    Default,
    /// The flag is disabled: the caller's code default.
    Disabled,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    pub const ALL: [Reason; 5] =
        [Reason::Static, Reason::TargetingMatch, Reason::Default, Reason::Disabled, Reason::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong when the reason is [`Reason::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FlagNotFound,
    /// The flag's targeting could not be compiled (e.g. an unknown `$ref`).
    ParseError,
    /// The flag's value is not of the type the caller asked for.
    TypeMismatch,
    /// Targeting failed at run time, or named a variant that does not exist.
    General,
    InvalidContext,
    TargetingKeyMissing,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        }
    }
}

/// The type of a flag's variants, or the type a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    String,
    /// Every variant is an integer.
    Int,
    /// At least one variant is written as a float; all are served as floats.
    Float,
    Object,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bool => "boolean",
            ValueType::String => "string",
            ValueType::Int => "integer",
            ValueType::Float => "float",
            ValueType::Object => "object",
        }
    }

    /// Whether `value` can be served to a caller asking for this type.
    /// Integers satisfy a float request; a float satisfies an integer
    /// request only when it is integral.
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (ValueType::Bool, Value::Bool(_)) | (ValueType::String, Value::String(_)) => true,
            (ValueType::Object, Value::Object(_)) => true,
            (ValueType::Float, Value::Number(_)) => true,
            (ValueType::Int, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }
}

/// One evaluation. `value` is `None` when the caller's code default
/// applies: the flag is disabled, has no default variant, or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'a> {
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    /// Flag-set metadata merged with the flag's own (the flag's wins).
    pub metadata: &'a Metadata,
    /// The evaluation budget that ended a failed evaluation, if one did
    /// (see [`crate::limits`]).
    pub limit: Option<crate::limits::Limit>,
}

impl<'a> Evaluation<'a> {
    pub(crate) fn error(code: ErrorCode, message: String, metadata: &'a Metadata) -> Self {
        Evaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message),
            metadata,
            limit: None,
        }
    }

    /// Narrows the result to the type the caller asked for: a value of
    /// another type becomes `TYPE_MISMATCH`.
    pub fn typed<T: Typed<'a>>(self, key: &str) -> TypedEvaluation<'a, T> {
        let value = match self.value {
            Some(value) => match T::from_value(value) {
                Some(typed) => Some(typed),
                None => {
                    return TypedEvaluation {
                        value: None,
                        variant: None,
                        reason: Reason::Error,
                        error_code: Some(ErrorCode::TypeMismatch),
                        error_message: Some(format!(
                            "flag '{key}' is not of type {}, its value is {}",
                            T::TYPE.as_str(),
                            json_type(value)
                        )),
                        metadata: self.metadata,
                    };
                }
            },
            None => None,
        };
        TypedEvaluation {
            value,
            variant: self.variant,
            reason: self.reason,
            error_code: self.error_code,
            error_message: self.error_message,
            metadata: self.metadata,
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An evaluation narrowed to one type; see [`Evaluation::typed`].
#[derive(Debug, Clone, PartialEq)]
pub struct TypedEvaluation<'a, T> {
    pub value: Option<T>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub metadata: &'a Metadata,
}

impl<T> TypedEvaluation<'_, T> {
    /// The value, or the caller's default when the code default applies.
    pub fn value_or(self, default: T) -> T {
        self.value.unwrap_or(default)
    }
}

/// Types a flag can be resolved as.
pub trait Typed<'a>: Sized {
    const TYPE: ValueType;
    fn from_value(value: &'a Value) -> Option<Self>;
}

impl<'a> Typed<'a> for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_bool()
    }
}

impl<'a> Typed<'a> for &'a str {
    const TYPE: ValueType = ValueType::String;
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_str()
    }
}

impl<'a> Typed<'a> for i64 {
    const TYPE: ValueType = ValueType::Int;
    fn from_value(value: &'a Value) -> Option<Self> {
        if !ValueType::Int.accepts(value) {
            return None;
        }
        value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
    }
}

impl<'a> Typed<'a> for f64 {
    const TYPE: ValueType = ValueType::Float;
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_f64()
    }
}

/// Any value, whatever its type (a JSON accessor).
impl<'a> Typed<'a> for &'a Value {
    const TYPE: ValueType = ValueType::Object;
    fn from_value(value: &'a Value) -> Option<Self> {
        Some(value)
    }
}

impl<'a> Typed<'a> for &'a Map<String, Value> {
    const TYPE: ValueType = ValueType::Object;
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_object()
    }
}
