//! Changing flags: the one write path behind the admin API — create,
//! replace, delete, the kill switch, revert and promotion. Each change is
//! checked (ownership, precondition, limits), compiled by the engine
//! exactly as file flags are, written durably to the store, and published
//! by the environment — all under the environment's lock, so what is served
//! is exactly what the store acknowledged and no concurrent write is lost.
//!
//! Nothing here knows HTTP: callers get a typed [`WriteError`] and render it.

mod describe;
mod flags;
mod promote;
mod rate;

use std::sync::Arc;

use rampart_engine::{Flag, LoadErrors};
use serde_json::Value;

use crate::environment::compile_api_flag;
use crate::snapshot::Snapshot;
use crate::store::{Store, StoreError};
use crate::time::Clock;

pub use describe::describe;
pub use flags::Edit;
pub use promote::{Promotion, PromotionAction, PromotionItem};

/// What a change of a flag was, as its history and the audit log name it.
/// The stored text (`Display`) is stable: `create`, `update`, `delete`,
/// `revert to N`, `promote`, `disable`, `enable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagAction {
    Create,
    Update,
    Delete,
    /// Back to the definition of a version of the flag's history.
    Revert {
        to: u64,
    },
    /// Copied from another environment.
    Promote,
    /// The kill switch: the flag's state set to `DISABLED` / `ENABLED`.
    Disable,
    Enable,
}

impl std::fmt::Display for FlagAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagAction::Create => f.write_str("create"),
            FlagAction::Update => f.write_str("update"),
            FlagAction::Delete => f.write_str("delete"),
            FlagAction::Revert { to } => write!(f, "revert to {to}"),
            FlagAction::Promote => f.write_str("promote"),
            FlagAction::Disable => f.write_str("disable"),
            FlagAction::Enable => f.write_str("enable"),
        }
    }
}

impl FlagAction {
    /// The kill switch's action for the state wanted.
    pub fn of_state(wanted: rampart_engine::FlagState) -> FlagAction {
        if wanted == rampart_engine::FlagState::Disabled { FlagAction::Disable } else { FlagAction::Enable }
    }
}

/// Who makes a change, and — when they give one — why, in their words:
/// the reason is kept with the change in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub reason: Option<&'a str>,
}

impl<'a> Actor<'a> {
    pub fn new(name: &'a str, reason: Option<&'a str>) -> Actor<'a> {
        Actor { name, reason }
    }

    /// A change's description lines, with the reason last.
    fn describe(&self, mut lines: Vec<String>) -> Vec<String> {
        if let Some(reason) = self.reason {
            lines.push(format!("reason: {reason}"));
        }
        lines
    }
}

impl<'a> From<&'a str> for Actor<'a> {
    fn from(name: &'a str) -> Actor<'a> {
        Actor { name, reason: None }
    }
}

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no flag '{flag}' in environment '{environment}'")]
    NotFound { environment: String, flag: String },
    /// The flag's rules live in a file: change them there.
    #[error("flag '{flag}' is defined in {file}: change its rules there (the admin API can disable and enable it)")]
    FileOwned { flag: String, file: String },
    /// The flag is not what the caller expected (`If-Match`).
    #[error("flag '{flag}' changed: expected {expected}, the flag is now {}", current.as_deref().unwrap_or("absent"))]
    Precondition { flag: String, expected: String, current: Option<String> },
    #[error("environment '{environment}' would have more than {max} API-owned flags, the most allowed")]
    TooManyFlags { environment: String, max: usize },
    /// The flag (or the environment with it) does not compile.
    #[error("{0}")]
    Invalid(LoadErrors),
    #[error("flag '{flag}' has no version {version}")]
    VersionNotFound { flag: String, version: u64 },
    #[error("version {version} of flag '{flag}' is its deletion; revert to a version before it")]
    VersionDeleted { flag: String, version: u64 },
    /// Promotion copies API-owned flags; file-owned ones move through files.
    #[error("flag '{flag}' is defined in {file} in '{environment}': promote it through the files")]
    SourceFileOwned { environment: String, flag: String, file: String },
    #[error("promotion needs two different environments")]
    SameEnvironment,
    /// The actor writes faster than `limits.adminWritesPerSecond`.
    #[error("too many writes with this token (limits.adminWritesPerSecond); retry in {:.1} s", retry_after.as_secs_f64())]
    RateLimited { retry_after: std::time::Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The write path's fixed settings.
#[derive(Debug, Clone)]
pub struct Writes {
    store: Arc<dyn Store>,
    /// Most API-owned flags per environment.
    max_api_flags: usize,
    /// When each change happened.
    clock: Clock,
    /// Writes per second per actor.
    rate: Arc<rate::WriteRate>,
    /// Where refusals by the rate are counted (the server's writes).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// What a write published: `created` when the flag did not exist, and the
/// snapshot the write itself published (not a later writer's).
#[derive(Debug, Clone)]
pub struct Written {
    pub created: bool,
    pub snapshot: Arc<Snapshot>,
}

/// A flag definition compiled once, so the write does not compile it again.
#[derive(Debug, Clone)]
pub struct Definition {
    value: Value,
    flag: Arc<Flag>,
}

impl Definition {
    /// Compiles `value` as flag `key` on its own: a bad definition is
    /// refused before anything else is looked at.
    pub fn compile(key: &str, value: Value) -> Result<Definition, WriteError> {
        let flag = compile_api_flag(key, &value).map_err(WriteError::Invalid)?;
        Ok(Definition { value, flag })
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// A flag's version tag: `"v<version>"` for API-owned flags, a digest of
/// the files (and the override's time) for file-owned ones. The admin API
/// sends it as the `ETag`; writes compare it with what the caller expects.
pub fn version_tag(snapshot: &Snapshot, key: &str) -> Option<String> {
    snapshot.flags.get(key)?;
    Some(match snapshot.api.get(key) {
        Some(record) => format!("\"v{}\"", record.version),
        None => {
            let at = snapshot.overrides.get(key).map_or(0, |o| o.at);
            format!("\"f{}-{at}\"", hex::encode(&snapshot.files_digest[..6]))
        }
    })
}

/// Whether the flag is as the caller expects (`None`: anything).
fn check_expected(snapshot: &Snapshot, key: &str, expected: Option<&str>) -> Result<(), WriteError> {
    let Some(expected) = expected else { return Ok(()) };
    match version_tag(snapshot, key) {
        Some(current) if current == expected => Ok(()),
        current => Err(WriteError::Precondition { flag: key.to_owned(), expected: expected.to_owned(), current }),
    }
}

/// Refuses a change to the rules of a flag its files define.
fn check_not_file_owned(snapshot: &Snapshot, key: &str) -> Result<(), WriteError> {
    match snapshot.file_of(key) {
        Some(file) => Err(WriteError::FileOwned { flag: key.to_owned(), file: file.to_owned() }),
        None => Ok(()),
    }
}

impl Writes {
    pub fn new(store: Arc<dyn Store>, max_api_flags: usize, clock: Clock) -> Writes {
        let rate = Arc::new(rate::WriteRate::new(crate::limits::Limits::default().admin_writes_per_second));
        Writes { store, max_api_flags, clock, rate, metrics: None }
    }

    /// Writes per second per actor (`limits.adminWritesPerSecond`),
    /// refusals counted in `metrics`.
    pub fn with_rate(mut self, per_second: u32, metrics: Arc<crate::metrics::Metrics>) -> Writes {
        self.rate = Arc::new(rate::WriteRate::new(per_second));
        self.metrics = Some(metrics);
        self
    }

    /// Takes one write from the actor's rate.
    fn admit(&self, actor: &Actor<'_>) -> Result<(), WriteError> {
        self.rate.admit(actor.name, self.clock.now_millis()).map_err(|retry_after| {
            if let Some(metrics) = &self.metrics {
                metrics.rejected(crate::limits::Rejection::AdminWrites);
            }
            WriteError::RateLimited { retry_after }
        })
    }
}

#[cfg(test)]
mod tests;
