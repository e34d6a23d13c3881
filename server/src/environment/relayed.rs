//! An environment on a relay: its flags are what the upstream last sent,
//! taken in place of flag files (a relay has no files, API flags, overrides
//! or ramps of its own — the upstream's flag definitions already carry
//! every ramp's exposure).

use std::sync::Arc;

use rampart_engine::{FlagSet, LoadError, LoadErrors};

use super::Environment;

/// The name a relayed flag set carries where file names would be.
pub const UPSTREAM_SOURCE: &str = "upstream";

impl Environment {
    /// Serves `flags` (with the problems of those that did not compile) as
    /// this environment's flags and publishes the change to every stream.
    /// Returns the new version, or `None` when nothing changed.
    pub async fn serve_upstream(&self, flags: FlagSet, problems: Vec<LoadError>) -> Result<Option<u64>, LoadErrors> {
        let mut inputs = self.inputs.lock().await;
        let mut candidate = inputs.clone();
        candidate.file_flags = Arc::new(flags);
        candidate.problems = Arc::new(problems);
        candidate.file_names = vec![UPSTREAM_SOURCE.to_owned()];
        let built = candidate.compose()?;
        if crate::changes::diff(&self.snapshot().flags, &built.flags).is_empty() {
            *inputs = candidate;
            return Ok(None);
        }
        *inputs = candidate;
        Ok(Some(self.publish(built, &inputs)))
    }
}
