//! A flag set: one environment's compiled configuration, immutable once
//! built and shared by every reader.
//!
//! A set has two layers. The **base** holds the bulk of the flags (in the
//! server, the flag files') and is shared, untouched, between the sets
//! built on it; the **top** holds the few flags that replace base flags of
//! the same key or add to them (flags created through the admin API, flags
//! whose state a kill switch overrides, ramped flags). Building a set on
//! an existing base costs the size of the top, not of the base: an admin
//! write in an environment of 100,000 file flags does not touch them.
//! Lookups look in the top first (skipped while it is empty), iteration
//! merges both in key order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::error::{LoadError, LoadErrors};
use crate::evaluation::{ErrorCode, Evaluation, Typed, TypedEvaluation};
use crate::flag::{Flag, FlagState};
use crate::{Context, Metadata};

/// Flags sorted by key, with an index.
#[derive(Debug, Default)]
struct Layer {
    flags: Vec<Arc<Flag>>,
    index: HashMap<String, usize, BuildHasherDefault<KeyHasher>>,
}

impl Layer {
    /// `flags` must not repeat a key.
    fn sorted(mut flags: Vec<Arc<Flag>>) -> Layer {
        flags.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let index = flags.iter().enumerate().map(|(i, flag)| (flag.key.clone(), i)).collect();
        Layer { flags, index }
    }

    fn get(&self, key: &str) -> Option<&Arc<Flag>> {
        self.index.get(key).map(|&i| &self.flags[i])
    }
}

/// An immutable, compiled set of flags: one environment's configuration.
/// Flags are reference-counted, so a new set after a change to one flag
/// reuses every other compiled flag ([`FlagSet::on`]).
#[derive(Debug, Default)]
pub struct FlagSet {
    base: Arc<Layer>,
    top: Layer,
    /// Base flags the top replaces.
    shadowed: usize,
    metadata: Metadata,
}

impl FlagSet {
    /// Flags with distinct keys, in any order.
    pub(crate) fn from_shared(flags: Vec<Arc<Flag>>, metadata: Metadata) -> FlagSet {
        FlagSet::single(flags, metadata)
    }

    fn single(flags: Vec<Arc<Flag>>, metadata: Metadata) -> FlagSet {
        FlagSet { base: Arc::new(Layer::sorted(flags)), top: Layer::default(), shadowed: 0, metadata }
    }

    /// A set of already compiled flags (from other sets). A key that appears
    /// twice is an error naming both sources.
    pub fn from_flags(flags: impl IntoIterator<Item = Arc<Flag>>, metadata: Metadata) -> Result<FlagSet, LoadErrors> {
        let flags: Vec<Arc<Flag>> = flags.into_iter().collect();
        duplicates(&flags)?;
        Ok(FlagSet::single(flags, metadata))
    }

    /// `base`'s flags with `top` on them: a flag of `top` replaces the flag
    /// of the same key, or adds one. `base`'s own base is shared, so this
    /// costs the size of the tops alone. A key twice in `top` is an error.
    pub fn on(base: &FlagSet, top: impl IntoIterator<Item = Arc<Flag>>) -> Result<FlagSet, LoadErrors> {
        let top: Vec<Arc<Flag>> = top.into_iter().collect();
        duplicates(&top)?;
        // The new top wins over the old one.
        let fresh: std::collections::HashSet<&str> = top.iter().map(|f| f.key.as_str()).collect();
        let kept = base.top.flags.iter().filter(|f| !fresh.contains(f.key.as_str())).cloned();
        let top: Vec<Arc<Flag>> = kept.chain(top.iter().cloned()).collect();
        let top = Layer::sorted(top);
        let shadowed = top.flags.iter().filter(|f| base.base.index.contains_key(&f.key)).count();
        Ok(FlagSet { base: base.base.clone(), top, shadowed, metadata: base.metadata.clone() })
    }

    /// Whether two sets share their base: then they differ at most in the
    /// flags of their tops ([`FlagSet::top_keys`]).
    pub fn shares_base(&self, other: &FlagSet) -> bool {
        Arc::ptr_eq(&self.base, &other.base)
    }

    /// The keys of the top layer.
    pub fn top_keys(&self) -> impl Iterator<Item = &str> {
        self.top.flags.iter().map(|f| f.key.as_str())
    }

    /// The compiled flags in key order, shareable with another set.
    pub fn shared(&self) -> Shared<'_> {
        Shared { base: &self.base.flags, top: &self.top.flags, remaining: self.len() }
    }

    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.shared_flag(key).map(|flag| &**flag)
    }

    /// A flag, shareable with another set.
    pub fn shared_flag(&self, key: &str) -> Option<&Arc<Flag>> {
        if !self.top.flags.is_empty()
            && let Some(flag) = self.top.get(key)
        {
            return Some(flag);
        }
        self.base.get(key)
    }

    /// Flags in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Flag> {
        self.shared().map(|flag| &**flag)
    }

    pub fn len(&self) -> usize {
        self.base.flags.len() + self.top.flags.len() - self.shadowed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flag-set metadata (of all sources, later ones winning).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Overrides a flag's state (a kill switch applied on top of its
    /// definition); returns false when there is no such flag. The changed
    /// flag goes into the top, so the base stays shared.
    pub fn set_state(&mut self, key: &str, state: FlagState) -> bool {
        let Some(flag) = self.shared_flag(key) else { return false };
        let changed = flag.with_state(state);
        match self.top.index.get(key) {
            Some(&index) => self.top.flags[index] = Arc::new(changed),
            None => {
                let mut flags = std::mem::take(&mut self.top.flags);
                flags.push(Arc::new(changed));
                self.top = Layer::sorted(flags);
                self.shadowed += 1;
            }
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

/// An error naming both sources of every key given twice.
fn duplicates(flags: &[Arc<Flag>]) -> Result<(), LoadErrors> {
    let mut seen: HashMap<&str, &str> = HashMap::with_capacity(flags.len());
    let mut errors = Vec::new();
    for flag in flags {
        if let Some(first) = seen.insert(&flag.key, &flag.source) {
            errors.push(
                LoadError::new(flag.source.clone(), format!("is also defined in {first}")).in_flag(flag.key.clone()),
            );
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(LoadErrors(errors)) }
}

/// A set's flags in key order: both layers merged, the top winning.
#[derive(Debug, Clone)]
pub struct Shared<'a> {
    base: &'a [Arc<Flag>],
    top: &'a [Arc<Flag>],
    remaining: usize,
}

impl<'a> Iterator for Shared<'a> {
    type Item = &'a Arc<Flag>;

    fn next(&mut self) -> Option<&'a Arc<Flag>> {
        let next = match (self.base.first(), self.top.first()) {
            (None, None) => return None,
            (Some(base), None) => {
                self.base = &self.base[1..];
                base
            }
            (None, Some(top)) => {
                self.top = &self.top[1..];
                top
            }
            (Some(base), Some(top)) => match base.key.cmp(&top.key) {
                std::cmp::Ordering::Less => {
                    self.base = &self.base[1..];
                    base
                }
                std::cmp::Ordering::Greater => {
                    self.top = &self.top[1..];
                    top
                }
                std::cmp::Ordering::Equal => {
                    self.base = &self.base[1..];
                    self.top = &self.top[1..];
                    top
                }
            },
        };
        self.remaining -= 1;
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Shared<'_> {}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::FlagSet;
    use crate::flag::{Flag, FlagState};

    fn flag(key: &str, default: &str, source: &str) -> Arc<Flag> {
        let definition = json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": default});
        Arc::new(Flag::compile(key, definition, source).expect("compiles"))
    }

    fn keys_and_defaults(set: &FlagSet) -> Vec<(String, String)> {
        set.iter().map(|f| (f.key().to_owned(), f.default_variant().unwrap_or("").to_owned())).collect()
    }

    #[test]
    fn a_top_replaces_and_adds_in_key_order_and_shares_the_base() {
        let base =
            FlagSet::from_flags([flag("b", "a", "f"), flag("d", "a", "f"), flag("a", "a", "f")], Default::default())
                .expect("base");
        let layered =
            FlagSet::on(&base, [flag("d", "b", "api"), flag("c", "b", "api"), flag("e", "b", "api")]).expect("layered");
        assert_eq!(
            keys_and_defaults(&layered),
            [("a", "a"), ("b", "a"), ("c", "b"), ("d", "b"), ("e", "b")].map(|(k, d)| (k.to_owned(), d.to_owned()))
        );
        assert_eq!((layered.len(), layered.iter().len()), (5, 5));
        assert_eq!(layered.get("d").and_then(|f| f.default_variant()), Some("b"));
        assert_eq!(layered.get("a").map(|f| f.source()), Some("f"));
        assert!(layered.get("z").is_none());
        assert!(layered.shares_base(&base));
        assert_eq!(layered.top_keys().collect::<Vec<_>>(), ["c", "d", "e"]);
        // A set on a layered set keeps the older top, the newer winning.
        let again = FlagSet::on(&layered, [flag("c", "a", "api")]).expect("again");
        assert_eq!(again.get("c").and_then(|f| f.default_variant()), Some("a"));
        assert_eq!(again.get("e").and_then(|f| f.default_variant()), Some("b"));
        assert_eq!(again.len(), 5);
        assert!(FlagSet::on(&base, [flag("x", "a", "one"), flag("x", "a", "two")]).is_err(), "a key twice in the top");
    }

    #[test]
    fn a_reload_takes_unchanged_flags_as_they_were() {
        use crate::source::Source;
        let text = |default: &str| {
            format!(
                r#"{{"$evaluators": {{"de": {{"in": [{{"var": "country"}}, ["de"]]}}}},
                    "flags": {{
                      "same": {{"state": "ENABLED", "variants": {{"a": 1, "b": 2}}, "defaultVariant": "a",
                                "targeting": {{"if": [{{"$ref": "de"}}, "b"]}}}},
                      "edited": {{"state": "ENABLED", "variants": {{"a": 1, "b": 2}}, "defaultVariant": "{default}"}}}}}}"#
            )
        };
        let limits = crate::InputLimits::default();
        let first = FlagSet::load_lenient_with(&[Source::json("f.json", &text("a"))], &limits).flags;
        let second = FlagSet::load_lenient_reusing(&[Source::json("f.json", &text("b"))], &limits, &first).flags;
        assert!(Arc::ptr_eq(first.shared_flag("same").expect("same"), second.shared_flag("same").expect("same")));
        assert!(!Arc::ptr_eq(first.shared_flag("edited").expect("e"), second.shared_flag("edited").expect("e")));
        assert_eq!(second.get("edited").and_then(|f| f.default_variant()), Some("b"));
        // Another file, or a changed shared rule, compiles again.
        let moved = FlagSet::load_lenient_reusing(&[Source::json("g.json", &text("b"))], &limits, &second).flags;
        assert!(!Arc::ptr_eq(second.shared_flag("same").expect("s"), moved.shared_flag("same").expect("s")));
        let rule = text("b").replace(r#"["de"]"#, r#"["fr"]"#);
        let changed = FlagSet::load_lenient_reusing(&[Source::json("g.json", &rule)], &limits, &moved).flags;
        assert!(!Arc::ptr_eq(moved.shared_flag("same").expect("s"), changed.shared_flag("same").expect("s")));
        let context = crate::Context::new().with("country", "fr");
        assert_eq!(changed.evaluate("same", &context, 0).variant, Some("b"), "the new rule is the one served");
    }

    #[test]
    fn a_kill_switch_goes_into_the_top() {
        let base = FlagSet::from_flags([flag("a", "a", "f"), flag("b", "a", "f")], Default::default()).expect("base");
        let mut set = FlagSet::on(&base, []).expect("set");
        assert!(set.set_state("b", FlagState::Disabled));
        assert!(!set.set_state("missing", FlagState::Disabled));
        assert_eq!(set.get("b").map(|f| f.state()), Some(FlagState::Disabled));
        assert_eq!(base.get("b").map(|f| f.state()), Some(FlagState::Enabled), "the base is untouched");
        assert_eq!(set.len(), 2);
        assert!(set.set_state("b", FlagState::Enabled));
        assert_eq!((set.len(), set.get("b").map(|f| f.state())), (2, Some(FlagState::Enabled)));
    }
}
