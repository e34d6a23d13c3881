//! The evaluation context: the attributes an application sends with each
//! evaluation (OFREP's `context`, flagd's `Struct`, the SDK's builder).
//!
//! Contexts are small (a targeting key and a handful of attributes) and
//! every `var` in a rule looks one up, so fields are kept in a vector and
//! found by a linear scan that compares lengths first: for the usual five
//! to ten fields this beats a tree or a hash map by several nanoseconds a
//! lookup, which is a large share of an evaluation's cost.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The key flagd and OpenFeature use for the value that identifies the
/// subject of an evaluation (user, device, session…); `fractional` buckets by it.
pub const TARGETING_KEY: &str = "targetingKey";

#[derive(Clone, Default, PartialEq)]
pub struct Context {
    fields: Vec<(String, Value)>,
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// A context whose `targetingKey` is `key`.
    pub fn with_targeting_key(key: impl Into<String>) -> Context {
        Context::new().with(TARGETING_KEY, key.into())
    }

    /// Adds (or replaces) a field, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Context {
        self.insert(key, value);
        self
    }

    /// Adds a field, replacing one with the same key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.position(&key) {
            Some(index) => self.fields[index].1 = value,
            None => self.fields.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|index| &self.fields[index].1)
    }

    /// The targeting key, when it is a string.
    pub fn targeting_key(&self) -> Option<&str> {
        self.get(TARGETING_KEY).and_then(Value::as_str)
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// The context as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields.iter().cloned().collect()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|(candidate, _)| crate::text::same(candidate, key))
    }
}

/// Equality for short byte strings without a call into libc's `memcmp`,
/// which costs more than the comparison itself for keys of a few bytes.
impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.fields.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Context {
        Context { fields: map.into_iter().collect() }
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Context {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Context {
        let mut context = Context::new();
        for (key, value) in iter {
            context.insert(key, value);
        }
        context
    }
}

/// A JSON object becomes a context; anything else is an error.
impl TryFrom<Value> for Context {
    type Error = Value;

    fn try_from(value: Value) -> Result<Context, Value> {
        match value {
            Value::Object(map) => Ok(Context::from(map)),
            other => Err(other),
        }
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Deserialises a JSON object straight into the field vector (no
/// intermediate map): servers parse one per request.
impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Context, D::Error> {
        struct ContextVisitor;

        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = Context;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Context, A::Error> {
                let mut context = Context { fields: Vec::with_capacity(map.size_hint().unwrap_or(8).min(64)) };
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    context.insert(key, value);
                }
                Ok(context)
            }
        }

        deserializer.deserialize_map(ContextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn insert_replaces_and_get_finds() {
        let mut context = Context::with_targeting_key("u1").with("email", "a@b.c").with("a-rather-long-key-name", 1);
        context.insert("email", "x@y.z");
        assert_eq!(context.len(), 3);
        assert_eq!(context.get("email"), Some(&json!("x@y.z")));
        assert_eq!(context.get("a-rather-long-key-name"), Some(&json!(1)));
        assert_eq!(context.get("a-rather-long-key-namX"), None);
        assert_eq!(context.get("emai"), None);
        assert_eq!(context.targeting_key(), Some("u1"));
    }

    #[test]
    fn round_trips_as_a_json_object() {
        let context: Context = serde_json::from_value(json!({"targetingKey": "u", "n": 1})).unwrap();
        assert_eq!(serde_json::to_value(&context).unwrap(), json!({"n": 1, "targetingKey": "u"}));
        assert!(Context::try_from(json!([1])).is_err());
        assert!(serde_json::from_str::<Context>("[1]").unwrap_err().to_string().contains("expected a JSON object"));
        let repeated: Context = serde_json::from_str(r#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!((repeated.len(), repeated.get("a")), (1, Some(&json!(2))));
    }
}
