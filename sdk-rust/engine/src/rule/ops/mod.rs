//! flagd's custom operators. Both return `null` on bad input instead of
//! failing the evaluation, as flagd specifies. They are part of the rule
//! language, not beside it: a `fractional` holds the rule that picks its
//! bucket, and a rule holds compiled operators, so they live inside `rule`.

pub(crate) mod fractional;
pub(crate) mod semver;
