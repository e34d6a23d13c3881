//! A JSON flag document parsed one flag at a time.
//!
//! Parsed whole, a document of 100,000 flags becomes a `Value` tree of
//! millions of nodes — about ten times the text — that lives only until
//! the flags are compiled, yet the allocator keeps most of those pages:
//! the server's resident memory after start was two and a half times what
//! it serves from. So the `flags` object of a JSON document is read as
//! slices of the text (`RawValue`: checked, not built) and each flag is
//! parsed when it is compiled, under the same node budget and depth bound
//! as a whole parse; only one flag's tree exists at a time. Everything
//! else in the document — metadata, `$evaluators` — is small and parsed as
//! before. YAML documents are parsed whole (their budgets are the same).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::bounded::{Bounded, NodeBudget};

/// The depth of a flag's definition in its document: document → `flags` → flag.
const FLAG_DEPTH: usize = 2;

/// A parsed flag document.
#[derive(Debug)]
pub(crate) enum Document<'t> {
    /// Parsed whole (YAML, or JSON that is not an object).
    Whole(Value),
    /// A JSON object: every top-level key but `flags` parsed.
    Lazy { top: Map<String, Value>, flags: Option<Flags<'t>> },
}

/// A document's `flags`.
#[derive(Debug)]
pub(crate) enum Flags<'t> {
    /// An object keyed by flag key, each definition still text. Keys are
    /// borrowed from the text unless they hold escapes.
    Unparsed(Vec<(Cow<'t, str>, &'t RawValue)>),
    /// Any other value, parsed (the array form, or something invalid).
    Parsed(Value),
}

/// Parses `text` as a JSON flag document, leaving each flag unparsed.
pub(crate) fn json<'t>(text: &'t str, budget: &mut NodeBudget) -> Result<Document<'t>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let document = DocumentSeed { budget }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(document)
}

/// Parses one flag's definition, taken from `text` by [`json`], under the
/// budget. Errors carry the line in the whole document.
pub(crate) fn flag(text: &str, raw: &RawValue, budget: &mut NodeBudget) -> Result<Value, (String, usize)> {
    let slice = raw.get();
    let mut deserializer = serde_json::Deserializer::from_str(slice);
    let parsed = Bounded { budget, depth: FLAG_DEPTH }.deserialize(&mut deserializer);
    parsed.map_err(|error| {
        // The slice lies inside `text`: its offset gives the lines before it.
        let offset = (slice.as_ptr() as usize).saturating_sub(text.as_ptr() as usize).min(text.len());
        let before = text[..offset].bytes().filter(|b| *b == b'\n').count();
        (crate::error::strip_position(&error.to_string()).to_owned(), before + error.line())
    })
}

struct DocumentSeed<'b> {
    budget: &'b mut NodeBudget,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Document<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Document<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Anything but an object is parsed whole, as [`Bounded`] would.
macro_rules! whole {
    ($($method:ident($($arg:ident: $type:ty),*)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, $($arg: $type),*) -> Result<Document<'de>, E> {
            if !self.budget.take(1) {
                return Err(E::custom(format_args!("the document has more than {} values (the node limit)", self.budget.limit())));
            }
            Bounded { budget: self.budget, depth: 0 }.$method($($arg),*).map(Document::Whole)
        })*
    };
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flag document")
    }

    whole!(
        visit_bool(v: bool),
        visit_i64(v: i64),
        visit_u64(v: u64),
        visit_f64(v: f64),
        visit_str(v: &str),
        visit_string(v: String),
        visit_unit(),
    );

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Document<'de>, A::Error> {
        if !self.budget.take(1) {
            return Err(de::Error::custom("the document has more values than the node limit"));
        }
        Bounded { budget: self.budget, depth: 0 }.visit_seq(seq).map(Document::Whole)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Document<'de>, A::Error> {
        if !self.budget.take(1) {
            return Err(de::Error::custom("the document has more values than the node limit"));
        }
        let mut top = Map::new();
        let mut flags = None;
        while let Some(key) = access.next_key::<String>()? {
            if top.contains_key(&key) || (key == "flags" && flags.is_some()) {
                return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
            }
            if key == "flags" {
                flags = Some(access.next_value_seed(FlagsSeed { budget: self.budget })?);
            } else {
                let value = access.next_value_seed(Bounded { budget: self.budget, depth: 1 })?;
                top.insert(key, value);
            }
        }
        Ok(Document::Lazy { top, flags })
    }
}

struct FlagsSeed<'b> {
    budget: &'b mut NodeBudget,
}

impl<'de> DeserializeSeed<'de> for FlagsSeed<'_> {
    type Value = Flags<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Flags<'de>, D::Error> {
        if !self.budget.take(1) {
            return Err(de::Error::custom(format_args!(
                "the document has more than {} values (the node limit)",
                self.budget.limit()
            )));
        }
        deserializer.deserialize_any(self)
    }
}

macro_rules! parsed {
    ($($method:ident($($arg:ident: $type:ty),*)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, $($arg: $type),*) -> Result<Flags<'de>, E> {
            Bounded { budget: self.budget, depth: 1 }.$method($($arg),*).map(Flags::Parsed)
        })*
    };
}

impl<'de> Visitor<'de> for FlagsSeed<'_> {
    type Value = Flags<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the flags")
    }

    parsed!(
        visit_bool(v: bool),
        visit_i64(v: i64),
        visit_u64(v: u64),
        visit_f64(v: f64),
        visit_str(v: &str),
        visit_string(v: String),
        visit_unit(),
    );

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Flags<'de>, A::Error> {
        Bounded { budget: self.budget, depth: 1 }.visit_seq(seq).map(Flags::Parsed)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Flags<'de>, A::Error> {
        let mut flags: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
        while let Some(key) = access.next_key_seed(Key)? {
            let raw: &'de RawValue = access.next_value()?;
            flags.push((key, raw));
        }
        let mut seen = HashSet::with_capacity(flags.len());
        if let Some((key, _)) = flags.iter().find(|(key, _)| !seen.insert(key.as_ref())) {
            return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
        }
        Ok(Flags::Unparsed(flags))
    }
}

/// A key, borrowed from the text when it can be.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flag key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stay_text_until_parsed_and_count_as_a_whole_parse_does() {
        let text =
            "{\"metadata\": {\"a\": 1},\n \"flags\": {\n  \"f\": {\"state\": \"ENABLED\"},\n  \"g\": [1, {\"x\": 2}]}}";
        let mut whole = NodeBudget::new(1000);
        crate::bounded::json(text, &mut whole).expect("whole");
        let mut budget = NodeBudget::new(1000);
        let Document::Lazy { top, flags: Some(Flags::Unparsed(flags)) } = json(text, &mut budget).expect("lazy") else {
            panic!("a lazy document")
        };
        assert_eq!(top["metadata"], serde_json::json!({"a": 1}));
        assert_eq!(flags.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(), ["f", "g"]);
        for (_, raw) in &flags {
            flag(text, raw, &mut budget).expect("flag");
        }
        assert_eq!(budget.remaining(), whole.remaining(), "the same nodes are charged");
    }

    #[test]
    fn errors_inside_a_flag_name_the_line_of_the_document() {
        let text = "{\"flags\": {\n\"f\": {\"state\": \"ENABLED\",\n\"state\": \"DISABLED\"}}}";
        let mut budget = NodeBudget::new(100);
        let Document::Lazy { flags: Some(Flags::Unparsed(flags)), .. } = json(text, &mut budget).expect("lazy") else {
            panic!("a lazy document")
        };
        let (message, line) = flag(text, flags[0].1, &mut budget).expect_err("duplicate");
        assert!(message.contains("duplicate key 'state'"), "{message}");
        assert_eq!(line, 3);
    }

    #[test]
    fn duplicate_flag_keys_and_syntax_errors_are_refused() {
        let error = json("{\"flags\": {\"f\": {}, \"f\": {}}}", &mut NodeBudget::new(100)).expect_err("duplicate");
        assert!(error.to_string().contains("duplicate key 'f'"), "{error}");
        assert!(json("{\"flags\": {\"f\": {\"state\": }}}", &mut NodeBudget::new(100)).is_err());
        assert!(matches!(json("[1]", &mut NodeBudget::new(100)), Ok(Document::Whole(_))));
    }

    #[test]
    fn a_flag_nested_too_deeply_is_refused_as_in_a_whole_parse() {
        let depth = crate::limits::MAX_DOCUMENT_DEPTH;
        let inner = format!("{}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        let text = format!("{{\"flags\": {{\"f\": {inner}}}}}");
        assert!(crate::bounded::json(&text, &mut NodeBudget::new(10_000)).is_err());
        let mut budget = NodeBudget::new(10_000);
        let Document::Lazy { flags: Some(Flags::Unparsed(flags)), .. } = json(&text, &mut budget).expect("lazy") else {
            panic!("a lazy document")
        };
        let (message, _) = flag(&text, flags[0].1, &mut budget).expect_err("too deep");
        assert!(message.contains("nests more than"), "{message}");
        // One level less is accepted by both.
        let inner = format!("{}{}", "[".repeat(depth - 2), "]".repeat(depth - 2));
        let text = format!("{{\"flags\": {{\"f\": {inner}}}}}");
        assert!(crate::bounded::json(&text, &mut NodeBudget::new(10_000)).is_ok());
        let mut budget = NodeBudget::new(10_000);
        let Document::Lazy { flags: Some(Flags::Unparsed(flags)), .. } = json(&text, &mut budget).expect("lazy") else {
            panic!("a lazy document")
        };
        assert!(flag(&text, flags[0].1, &mut budget).is_ok());
    }
}
