//! flagd's custom operators. Both return `null` on bad input instead of
//! failing the evaluation, as flagd specifies.

pub(crate) mod fractional;
pub(crate) mod semver;
