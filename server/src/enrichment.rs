//! What the server adds to an evaluation context, per environment: static
//! values (flagd's `context-value`) and values taken from request headers
//! (flagd's `context-from-header`).
//!
//! Precedence, lowest first: the request's own context, the static
//! values, the headers. Values the server sets are not the client's to
//! override: a rule that trusts `region` from a gateway header must not be
//! fooled by a `region` in the request body.

use std::collections::BTreeMap;

use rampart_engine::Context;
use serde_json::{Map, Value};

/// One environment's additions (empty: nothing is added, nothing costs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrichment {
    values: Map<String, Value>,
    /// Lower-case header name → context key.
    headers: Vec<(String, String)>,
}

impl Enrichment {
    pub fn new(values: Map<String, Value>, headers: BTreeMap<String, String>) -> Result<Enrichment, String> {
        let mut mapped = Vec::new();
        for (header, key) in headers {
            let valid =
                !header.is_empty() && header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(format!("contextFromHeaders: '{header}' is not a header name"));
            }
            if key.is_empty() {
                return Err(format!("contextFromHeaders: header '{header}' needs a context key"));
            }
            mapped.push((header.to_ascii_lowercase(), key));
        }
        Ok(Enrichment { values, headers: mapped })
    }

    /// The static values (what flagd sends in-process providers as the
    /// sync context).
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.headers.is_empty()
    }

    /// The request's context with the static values and mapped headers
    /// (`header(name)` gives a header's value by lower-case name).
    pub fn apply<'h>(&self, context: Context, header: impl Fn(&str) -> Option<&'h str>) -> Context {
        if self.is_empty() {
            return context;
        }
        let mut context = context;
        for (key, value) in &self.values {
            context = context.with(key, value.clone());
        }
        for (name, key) in &self.headers {
            if let Some(value) = header(name) {
                context = context.with(key, Value::String(value.to_owned()));
            }
        }
        context
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn headers_win_over_static_values_which_win_over_the_request() {
        let values = json!({"region": "eu", "tier": "static"}).as_object().cloned().unwrap();
        let headers = BTreeMap::from([("X-Tier".to_owned(), "tier".to_owned())]);
        let enrichment = Enrichment::new(values, headers).unwrap();
        let request = Context::new().with("region", "us").with("email", "a@b.c");
        let enriched = enrichment.apply(request.clone(), |name| (name == "x-tier").then_some("gold"));
        assert_eq!(enriched.get("region"), Some(&json!("eu")));
        assert_eq!(enriched.get("tier"), Some(&json!("gold")));
        assert_eq!(enriched.get("email"), Some(&json!("a@b.c")));
        let without = enrichment.apply(request, |_| None);
        assert_eq!(without.get("tier"), Some(&json!("static")));
        assert!(Enrichment::new(Map::new(), BTreeMap::from([("bad header".into(), "k".into())])).is_err());
    }
}
