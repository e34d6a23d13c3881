//! `google.protobuf.Struct` ⇄ JSON, at the gRPC edge.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as ProtoValue};
use serde_json::{Map, Number, Value};

pub(crate) fn to_struct(map: &Map<String, Value>) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect() }
}

pub(crate) fn to_proto(value: &Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(to_proto).collect() }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    ProtoValue { kind: Some(kind) }
}

pub(crate) fn from_struct(value: Struct) -> Map<String, Value> {
    value.fields.into_iter().map(|(k, v)| (k, from_proto(v))).collect()
}

/// Struct numbers are doubles; integral ones become JSON integers, so they
/// print and compare as the application wrote them.
pub(crate) fn from_proto(value: ProtoValue) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::from(n as i64)
            } else {
                Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => Value::Array(list.values.into_iter().map(from_proto).collect()),
        Some(Kind::StructValue(s)) => Value::Object(from_struct(s)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trip() {
        let value = json!({"a": 1, "b": 1.5, "c": [true, null, "x"], "d": {"e": -2}});
        let back = from_struct(to_struct(value.as_object().unwrap()));
        assert_eq!(Value::Object(back), value);
    }
}
