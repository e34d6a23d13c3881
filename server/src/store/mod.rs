//! Durable state behind the admin API: flags created through the API, every
//! version of every flag, kill-switch overrides of file-owned flags, and the
//! audit log.
//!
//! [`Store`] is the boundary: the embedded implementation ([`embedded`],
//! redb in the data directory) is the default; [`redis`] shares the same
//! data between replicas. Every write is one [`Commit`]: a batch of
//! changes with preconditions, applied atomically together with their
//! versions and audit entries, and durable when `commit` returns.
//!
//! A shared store numbers each environment's changes (its *revision*) and
//! publishes them; replicas apply them in order and resynchronise from a
//! full read when they find a gap (see `crate::replica`).

pub mod embedded;
mod ramps;
pub mod redis;
pub mod usage;

pub use ramps::{ContextOutcome, Conversion, Delivery, OutcomeCount, RampDecisionRecord, RampWrite, StoredRun};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The current record of an API-owned flag. `definition` is `None` after a
/// delete (a tombstone keeps the version counter, so a re-created flag's
/// history continues).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagRecord {
    pub version: u64,
    pub definition: Option<Value>,
    /// Unix milliseconds.
    pub at: u64,
    pub by: String,
}

/// A kill-switch override of a file-owned flag's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateOverride {
    pub state: rampart_engine::FlagState,
    pub at: u64,
    pub by: String,
}

/// One version of a flag, as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagVersion {
    pub version: u64,
    /// `None` for a delete.
    pub definition: Option<Value>,
    pub at: u64,
    pub by: String,
    pub action: String,
    pub changes: Vec<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub at: u64,
    pub actor: String,
    pub environment: String,
    pub flag: String,
    /// A flag's change (`writes::FlagAction`: `create`, `update`, `delete`,
    /// `revert to N`, `promote`, `disable`, `enable`) or a ramp's
    /// (`ramp.<event>` as `model::EventKind` names them, `ramp.created`,
    /// `ramp.file_rejected`). Stored as text, so old logs read the same.
    pub action: String,
    /// The flag version written, for API-owned flags.
    pub version: Option<u64>,
    pub changes: Vec<String>,
}

/// What a change expects to find, checked inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Anything,
    /// No live flag (absent or deleted).
    Absent,
    /// The live flag at exactly this version.
    Version(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// Create or replace an API-owned flag.
    Put(Value),
    /// Delete an API-owned flag.
    Delete,
    /// Set (`Some`) or clear (`None`) a file-owned flag's state override.
    Override(Option<rampart_engine::FlagState>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub environment: String,
    pub flag: String,
    pub expect: Expect,
    pub kind: ChangeKind,
    pub action: String,
    pub changes: Vec<String>,
}

/// Changes applied all together or not at all, by one actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub actor: String,
    /// Unix milliseconds.
    pub at: u64,
    pub changes: Vec<Change>,
}

/// Everything the server needs in memory, per environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentState {
    /// The environment's revision in a shared store (0 in the embedded one).
    pub revision: u64,
    /// Live API-owned flags by key (tombstones left out).
    pub flags: BTreeMap<String, FlagRecord>,
    pub overrides: BTreeMap<String, StateOverride>,
}

/// Filters and paging for the audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub environment: Option<String>,
    pub flag: Option<String>,
    pub actor: Option<String>,
    /// An action, or the start of one ending in `.` (`ramp.` is every
    /// ramp action).
    pub action: Option<String>,
    /// Entries of one ramp (their first change names it).
    pub ramp: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<u64>,
    /// Entries after this sequence number.
    pub after: Option<u64>,
    /// Entries before this sequence number.
    pub before: Option<u64>,
    /// Newest entries first (the dashboard pages backwards with `before`).
    pub newest_first: bool,
    pub limit: usize,
}

impl StoreError {
    /// A flag precondition that failed; `found` is the live version.
    pub fn flag_conflict(change: &Change, found: Option<u64>) -> StoreError {
        StoreError::Conflict {
            environment: change.environment.clone(),
            flag: change.flag.clone(),
            expected: match change.expect {
                Expect::Absent => "no flag".into(),
                Expect::Version(v) => format!("version {v}"),
                Expect::Anything => "anything".into(),
            },
            found: found.map_or_else(|| "no flag".into(), |v| format!("version {v}")),
        }
    }

    /// A ramp write whose expected `(run id, seq)` was not the stored one.
    pub fn ramp_conflict(write: &RampWrite, found: Option<(&str, u64)>) -> StoreError {
        let describe = |v: Option<(&str, u64)>| match v {
            Some((run, seq)) => format!("run {run} at seq {seq}"),
            None => "no run".into(),
        };
        StoreError::Conflict {
            environment: write.environment.clone(),
            flag: format!("ramp {}", write.ramp),
            expected: describe(write.expect.as_ref().map(|(run, seq)| (run.as_str(), *seq))),
            found: describe(found),
        }
    }
}

impl AuditEntry {
    /// The entry a commit writes for one of its changes.
    pub fn of(commit: &Commit, change: &Change, seq: u64, version: Option<u64>) -> AuditEntry {
        AuditEntry {
            seq,
            at: commit.at,
            actor: commit.actor.clone(),
            environment: change.environment.clone(),
            flag: change.flag.clone(),
            action: change.action.clone(),
            version,
            changes: change.changes.clone(),
        }
    }
}

impl AuditQuery {
    /// Whether an entry passes the filters (paging aside).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.environment.as_ref().is_none_or(|e| *e == entry.environment)
            && self.flag.as_ref().is_none_or(|f| *f == entry.flag)
            && self.actor.as_ref().is_none_or(|a| *a == entry.actor)
            && self.action.as_ref().is_none_or(|a| {
                if a.ends_with('.') { entry.action.starts_with(a.as_str()) } else { *a == entry.action }
            })
            && self.ramp.as_ref().is_none_or(|ramp| {
                entry.action.starts_with("ramp.")
                    && entry.changes.first().is_some_and(|first| {
                        first
                            .strip_prefix("ramp ")
                            .and_then(|rest| rest.strip_prefix(ramp.as_str()))
                            .is_some_and(|rest| rest.starts_with(' '))
                    })
            })
            && self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at < until)
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    pub entries: Vec<AuditEntry>,
    /// The new revision of each environment written, in a shared store.
    pub revisions: BTreeMap<String, u64>,
}

/// A held lease's fencing token, carried by every write its holder makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub token: u64,
}

/// How the store is doing, for `/readyz` and the metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    /// `embedded` or `redis`.
    pub kind: &'static str,
    /// `ok` or `unavailable`.
    pub state: &'static str,
    /// The last error, while unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition failed: someone else changed the flag first.
    #[error("flag '{flag}' in environment '{environment}' changed: expected {expected}, found {found}")]
    Conflict { environment: String, flag: String, expected: String, found: String },
    /// The store cannot be reached, did not answer in time, or failed the
    /// operation: retrying later may succeed.
    #[error("the store is unavailable: {context}: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: BoxError,
    },
    /// A stored record cannot be read: the data is damaged, or was written
    /// by a newer version. Retrying does not help; nothing reads past it.
    #[error("a stored record cannot be read ({record}): {source}")]
    Corrupt {
        record: String,
        #[source]
        source: serde_json::Error,
    },
    /// A write carried a fencing token older than the lease's newest: its
    /// writer lost the lease (paused, partitioned) and another holds it.
    #[error("lease '{lease}' moved on: token {token} is stale (now {current})")]
    Fenced { lease: String, token: u64, current: u64 },
}

/// Any error, as the cause of an unavailable store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Unavailable { context: context.into(), source: source.into() }
    }

    pub fn corrupt(record: impl Into<String>, source: serde_json::Error) -> StoreError {
        StoreError::Corrupt { record: record.into(), source }
    }
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// All environments' live state.
    async fn load(&self) -> Result<BTreeMap<String, EnvironmentState>, StoreError>;

    /// Applies a batch atomically; returns the audit entries written.
    async fn commit(&self, commit: Commit) -> Result<Committed, StoreError>;

    /// A page of a flag's versions, oldest first: those after version
    /// `after`, at most `limit`. Versions beyond the retention are gone.
    async fn history(
        &self,
        environment: &str,
        flag: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FlagVersion>, StoreError>;

    /// Keeps at most `versions` versions of each flag from now on: each
    /// commit drops the versions that fall out ([`Store::prune`] drops
    /// older ones left from a larger setting).
    fn retain_versions(&self, versions: usize);

    /// Drops audit entries older than `before` (unix ms) and versions
    /// beyond the retention; returns how many records were removed.
    async fn prune(&self, before: u64) -> Result<u64, StoreError>;

    /// Audit entries matching the query, in order, at most `limit`.
    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Every persisted ramp run.
    async fn ramp_runs(&self) -> Result<Vec<StoredRun>, StoreError>;

    /// Writes a ramp run with compare-and-set on `(run id, seq)`, together
    /// with its decision record and audit entries, atomically.
    async fn write_ramp(&self, write: RampWrite) -> Result<(), StoreError>;

    /// A ramp's decision records, newest last, at most `limit`.
    async fn ramp_history(
        &self,
        environment: &str,
        ramp: &str,
        limit: usize,
    ) -> Result<Vec<RampDecisionRecord>, StoreError>;

    /// Adds outcome counts (and per-context outcomes) to their buckets;
    /// durable when it returns.
    async fn record_outcomes(
        &self,
        environment: &str,
        counts: Vec<OutcomeCount>,
        contexts: Vec<ContextOutcome>,
    ) -> Result<(), StoreError>;

    /// A flag's outcome counts for seconds in `[from, to)`.
    async fn outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<OutcomeCount>, StoreError>;

    /// A flag's per-context outcomes for seconds in `[from, to)`.
    async fn context_outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ContextOutcome>, StoreError>;

    /// Adds conversions; durable when it returns. The same key converting
    /// again in the same second is stored once.
    async fn record_conversions(&self, environment: &str, conversions: Vec<Conversion>) -> Result<(), StoreError>;

    /// A flag's conversions for seconds in `[from, to)` (deleted with its
    /// outcomes by `prune_outcomes`).
    async fn conversions(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Conversion>, StoreError>;

    /// Adds flag evaluation counts, taken at `at` (unix ms), to the flags'
    /// usage ([`usage`]); durable when it returns.
    async fn record_usage(&self, environment: &str, at: u64, counts: Vec<usage::UsageCount>) -> Result<(), StoreError>;

    /// The stored usage of one flag, or of every flag of the environment
    /// that has any, at `now` (unix ms: what has left the window may be
    /// dropped).
    async fn usage(&self, environment: &str, flag: Option<&str>, now: u64)
    -> Result<Vec<usage::FlagUsage>, StoreError>;

    /// Outbox deliveries due at `now` (unix ms), oldest first, at most `limit`.
    async fn due_deliveries(&self, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// How many deliveries wait in the outbox.
    async fn pending_deliveries(&self) -> Result<u64, StoreError>;

    /// Removes a delivered message (`None`), or records a failed attempt.
    async fn finish_delivery(&self, id: u64, retry: Option<Delivery>) -> Result<(), StoreError>;

    /// Drops a flag's outcome buckets older than `before` (seconds).
    async fn prune_outcomes(&self, environment: &str, flag: &str, before: u64) -> Result<(), StoreError>;

    /// Takes or renews the lease `name` for `holder` for `ttl`; returns its
    /// fencing token, or `None` while another holder has it. A store used
    /// by one process has nobody to share with: the lease is always held.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let _ = (name, holder, ttl);
        Ok(Some(0))
    }

    /// Gives a held lease up (at shutdown), so another replica takes over
    /// at once rather than after the lease time.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _ = (name, holder);
        Ok(())
    }

    /// This installation's secret (32 random bytes), created on first use
    /// and the same for every replica sharing the store: the key of the
    /// keyed hashes that stand for targeting keys in stored outcomes.
    async fn installation_secret(&self) -> Result<[u8; 32], StoreError>;

    fn health(&self) -> StoreHealth;
}

/// 32 bytes from the operating system's randomness.
pub fn random_secret() -> Result<[u8; 32], StoreError> {
    let mut secret = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut secret)
        .map_err(|_| StoreError::unavailable("the installation secret", "the operating system gave no randomness"))?;
    Ok(secret)
}
