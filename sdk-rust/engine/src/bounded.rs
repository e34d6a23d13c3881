//! Parsing a document into a `serde_json::Value` under a node budget.
//!
//! The same visitor runs under the JSON and the YAML parser, so both formats
//! have one budget: every value counts as a node, nesting is bounded, and a
//! key that appears twice in one object is an error (YAML's parser refuses
//! duplicates too; JSON's would silently keep the last one, which in a flag
//! file is nearly always a merge mistake that changes targeting). The budget
//! is checked as values are built, so a document over it costs at most the
//! budget's worth of memory before it is refused.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::limits::{Limit, MAX_DOCUMENT_DEPTH};

/// Nodes left to build, shared by every document of one load.
#[derive(Debug)]
pub(crate) struct NodeBudget {
    remaining: usize,
    limit: usize,
    /// Which bound a failed parse ran into, if any.
    pub(crate) exceeded: Option<Limit>,
}

impl NodeBudget {
    pub(crate) fn new(limit: usize) -> NodeBudget {
        NodeBudget { remaining: limit, limit, exceeded: None }
    }

    /// Takes `nodes`; false (and marked exceeded) when there are not enough.
    pub(crate) fn take(&mut self, nodes: usize) -> bool {
        match self.remaining.checked_sub(nodes) {
            Some(left) => {
                self.remaining = left;
                true
            }
            None => {
                self.exceeded = Some(Limit::DocumentNodes);
                false
            }
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Nodes that may still be built.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.remaining
    }

    fn too_many<E: de::Error>(&self) -> E {
        E::custom(format_args!("the document has more than {} values (the node limit)", self.limit))
    }
}

/// Deserialises one value, charging the budget.
pub(crate) struct Bounded<'b> {
    pub(crate) budget: &'b mut NodeBudget,
    pub(crate) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if !self.budget.take(1) {
            return Err(self.budget.too_many());
        }
        deserializer.deserialize_any(self)
    }
}

impl Bounded<'_> {
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth >= MAX_DOCUMENT_DEPTH {
            self.budget.exceeded = Some(Limit::DocumentDepth);
            return Err(E::custom(format_args!("the document nests more than {MAX_DOCUMENT_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn child(&mut self) -> Bounded<'_> {
        Bounded { budget: self.budget, depth: self.depth + 1 }
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.child())?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// Parses JSON text under the budget.
pub(crate) fn json(text: &str, budget: &mut NodeBudget) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Bounded { budget, depth: 0 }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Parses YAML text under the budget.
pub(crate) fn yaml(
    text: &str,
    options: serde_saphyr::Options,
    budget: &mut NodeBudget,
) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
        Bounded { budget, depth: 0 }.deserialize(deserializer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_value() {
        let mut budget = NodeBudget::new(4);
        assert_eq!(json(r#"{"a": [1, 2]}"#, &mut budget).unwrap(), serde_json::json!({"a": [1, 2]}));
        let mut budget = NodeBudget::new(3);
        let error = json(r#"{"a": [1, 2]}"#, &mut budget).unwrap_err();
        assert!(error.to_string().contains("more than 3 values"), "{error}");
        assert_eq!(budget.exceeded, Some(Limit::DocumentNodes));
    }

    #[test]
    fn yaml_uses_the_same_budget() {
        let mut budget = NodeBudget::new(3);
        assert!(yaml("a: [1, 2]\n", serde_saphyr::Options::default(), &mut budget).is_err());
        assert_eq!(budget.exceeded, Some(Limit::DocumentNodes));
        let mut budget = NodeBudget::new(4);
        assert_eq!(
            yaml("a: [1, 2]\n", serde_saphyr::Options::default(), &mut budget).unwrap(),
            serde_json::json!({"a": [1, 2]})
        );
    }

    #[test]
    fn refuses_duplicate_keys_with_their_line() {
        let error = json("{\n\"state\": 1,\n\"state\": 2}", &mut NodeBudget::new(100)).unwrap_err();
        assert!(error.to_string().contains("duplicate key 'state'"), "{error}");
        assert_eq!(error.line(), 3);
    }

    #[test]
    fn bounds_nesting() {
        let deep = format!("{}{}", "[".repeat(MAX_DOCUMENT_DEPTH + 1), "]".repeat(MAX_DOCUMENT_DEPTH + 1));
        let mut budget = NodeBudget::new(1000);
        let error = json(&deep, &mut budget).unwrap_err();
        assert!(error.to_string().contains("nests more than"), "{error}");
        assert_eq!(budget.exceeded, Some(Limit::DocumentDepth));
        let ok = format!("{}{}", "[".repeat(MAX_DOCUMENT_DEPTH), "]".repeat(MAX_DOCUMENT_DEPTH));
        assert!(json(&ok, &mut NodeBudget::new(1000)).is_ok());
    }
}
