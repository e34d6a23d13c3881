//! The embedded store: one redb database file in the data directory.
//!
//! redb commits are durable (fsync) when `commit` returns, and a crash
//! leaves the last committed state; so an acknowledged admin write
//! survives `kill -9`. Values are JSON, keys are tuples so that range scans
//! give a flag's versions in order.

mod group_commit;
mod ramps;
mod usage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::usage::{FlagUsage, UsageCount};
use super::{
    AuditEntry, AuditQuery, ChangeKind, Commit, Committed, ContextOutcome, Conversion, Delivery, EnvironmentState,
    Expect, FlagRecord, FlagVersion, OutcomeCount, RampDecisionRecord, RampWrite, StateOverride, Store, StoreError,
    StoreHealth, StoredRun,
};
use crate::model::Run;

/// (environment, flag) → FlagRecord
const FLAGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("flags");
/// (environment, flag, version) → FlagVersion
const VERSIONS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("versions");
/// (environment, flag) → StateOverride
const OVERRIDES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("overrides");
/// sequence → AuditEntry
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (environment, ramp) → Run
const RAMPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ramps");
/// (environment, ramp, index) → RampDecisionRecord
const RAMP_DECISIONS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("ramp_decisions");
/// id → Delivery (webhook outbox)
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// (environment, flag, second, variant) → (ok, error) as two little-endian u64
const OUTCOMES: TableDefinition<(&str, &str, u64, &str), &[u8]> = TableDefinition::new("outcomes");
/// name → value: installation-wide settings (the secret)
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (environment, flag, second, variant, context hash) → 1 if any outcome errored
const CONTEXT_OUTCOMES: TableDefinition<(&str, &str, u64, &str, u64), u8> = TableDefinition::new("context_outcomes");
/// (environment, flag, second, event, context) → nothing: conversions.
const CONVERSIONS: TableDefinition<(&str, &str, u64, &str, u64), ()> = TableDefinition::new("conversions");
/// (environment, flag) → `store::usage::FlagUsage` as JSON
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("usage");

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Outcome reports share commits ([`group_commit`]).
    outcome_writer: group_commit::GroupCommit,
    /// Versions kept per flag.
    keep: Arc<std::sync::atomic::AtomicUsize>,
}

fn unavailable(error: impl Into<super::BoxError>) -> StoreError {
    StoreError::unavailable("the embedded store", error)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt("a record of the embedded store", e))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The store's page cache (redb's default is 1 GiB, which a burst of large
/// writes fills for good): what is read often — flags, runs, recent
/// outcome buckets — fits many times over.
pub const CACHE_BYTES: usize = 64 << 20;

/// Gives the space of pruned history back to the file system. redb reuses
/// freed pages but never shrinks its file, and compacting needs the
/// database to itself: so it happens at start-up, before anything else
/// reads or writes, and only when at least a quarter of the file (and
/// 1 MiB) is free space — compacting gigabytes takes minutes, which the
/// log says before it starts (docs/limits.md). A failure is logged; the
/// store serves as it was.
fn compact(db: &mut Database, path: &Path) {
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let before = size(path);
    let free = match db.begin_write().and_then(|txn| {
        let stats = txn.stats();
        txn.abort()?;
        Ok(stats?)
    }) {
        Ok(stats) => stats.fragmented_bytes(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the embedded store's free space; not compacting it");
            return;
        }
    };
    if free < (1 << 20) || free < before / 4 {
        return;
    }
    tracing::info!(
        size = before,
        free,
        "compacting the embedded store before serving: this takes a while for a large store"
    );
    let started = std::time::Instant::now();
    match db.compact() {
        Ok(_) => {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(before, after = size(path), elapsed_ms, "compacted the embedded store");
        }
        Err(error) => tracing::warn!(%error, "cannot compact the embedded store; it keeps its size"),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) `rampart.redb` in `dir`, creating the directory,
    /// and compacts it.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::unavailable(format!("cannot create the data directory {}", dir.display()), e))?;
        let path = dir.join("rampart.redb");
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::unavailable(format!("cannot open {}", path.display()), e))?;
        compact(&mut db, &path);
        let txn = db.begin_write().map_err(unavailable)?;
        {
            txn.open_table(FLAGS).map_err(unavailable)?;
            txn.open_table(VERSIONS).map_err(unavailable)?;
            txn.open_table(OVERRIDES).map_err(unavailable)?;
            txn.open_table(AUDIT).map_err(unavailable)?;
            txn.open_table(RAMPS).map_err(unavailable)?;
            txn.open_table(RAMP_DECISIONS).map_err(unavailable)?;
            txn.open_table(OUTCOMES).map_err(unavailable)?;
            txn.open_table(OUTBOX).map_err(unavailable)?;
            txn.open_table(CONTEXT_OUTCOMES).map_err(unavailable)?;
            txn.open_table(CONVERSIONS).map_err(unavailable)?;
            txn.open_table(USAGE).map_err(unavailable)?;
            txn.open_table(META).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            outcome_writer: group_commit::GroupCommit::default(),
            keep: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(unavailable)?
    }
}

fn load(db: &Database) -> Result<BTreeMap<String, EnvironmentState>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let mut state: BTreeMap<String, EnvironmentState> = BTreeMap::new();
    for entry in txn.open_table(FLAGS).map_err(unavailable)?.iter().map_err(unavailable)? {
        let (key, value) = entry.map_err(unavailable)?;
        let (environment, flag) = key.value();
        let record: FlagRecord = decode(value.value())?;
        if record.definition.is_some() {
            state.entry(environment.to_owned()).or_default().flags.insert(flag.to_owned(), record);
        }
    }
    for entry in txn.open_table(OVERRIDES).map_err(unavailable)?.iter().map_err(unavailable)? {
        let (key, value) = entry.map_err(unavailable)?;
        let (environment, flag) = key.value();
        let state_override: StateOverride = decode(value.value())?;
        state.entry(environment.to_owned()).or_default().overrides.insert(flag.to_owned(), state_override);
    }
    Ok(state)
}

fn commit(db: &Database, commit: Commit, keep: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let mut entries = Vec::with_capacity(commit.changes.len());
    {
        let mut flags = txn.open_table(FLAGS).map_err(unavailable)?;
        let mut versions = txn.open_table(VERSIONS).map_err(unavailable)?;
        let mut overrides = txn.open_table(OVERRIDES).map_err(unavailable)?;
        let mut audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let mut seq = audit.last().map_err(unavailable)?.map(|(k, _)| k.value()).unwrap_or(0);
        for change in &commit.changes {
            let key = (change.environment.as_str(), change.flag.as_str());
            let current: Option<FlagRecord> =
                flags.get(key).map_err(unavailable)?.map(|v| decode(v.value())).transpose()?;
            let live_version = current.as_ref().filter(|r| r.definition.is_some()).map(|r| r.version);
            let precondition_holds = match change.expect {
                Expect::Anything => true,
                Expect::Absent => live_version.is_none(),
                Expect::Version(version) => live_version == Some(version),
            };
            if !precondition_holds {
                return Err(StoreError::flag_conflict(change, live_version));
            }
            let version = match &change.kind {
                ChangeKind::Put(definition) => {
                    let version = current.as_ref().map_or(1, |r| r.version + 1);
                    let record = FlagRecord {
                        version,
                        definition: Some(definition.clone()),
                        at: commit.at,
                        by: commit.actor.clone(),
                    };
                    flags.insert(key, encode(&record).as_slice()).map_err(unavailable)?;
                    Some(version)
                }
                ChangeKind::Delete => {
                    let version = current.as_ref().map_or(1, |r| r.version + 1);
                    let record = FlagRecord { version, definition: None, at: commit.at, by: commit.actor.clone() };
                    flags.insert(key, encode(&record).as_slice()).map_err(unavailable)?;
                    Some(version)
                }
                ChangeKind::Override(Some(state)) => {
                    let record = StateOverride { state: *state, at: commit.at, by: commit.actor.clone() };
                    overrides.insert(key, encode(&record).as_slice()).map_err(unavailable)?;
                    None
                }
                ChangeKind::Override(None) => {
                    overrides.remove(key).map_err(unavailable)?;
                    None
                }
            };
            if let Some(version) = version {
                let definition = match &change.kind {
                    ChangeKind::Put(definition) => Some(definition.clone()),
                    _ => None,
                };
                let entry = FlagVersion {
                    version,
                    definition,
                    at: commit.at,
                    by: commit.actor.clone(),
                    action: change.action.clone(),
                    changes: change.changes.clone(),
                };
                versions.insert((key.0, key.1, version), encode(&entry).as_slice()).map_err(unavailable)?;
                // The versions that fall out of the retention (one, once it is steady).
                if let Some(newest_dropped) = version.checked_sub(keep as u64).filter(|v| *v > 0) {
                    let old: Vec<u64> = versions
                        .range((key.0, key.1, 0)..=(key.0, key.1, newest_dropped))
                        .map_err(unavailable)?
                        .map(|entry| entry.map(|(k, _)| k.value().2).map_err(unavailable))
                        .collect::<Result<_, _>>()?;
                    for dropped in old {
                        versions.remove((key.0, key.1, dropped)).map_err(unavailable)?;
                    }
                }
            }
            seq += 1;
            let entry = AuditEntry::of(&commit, change, seq, version);
            audit.insert(seq, encode(&entry).as_slice()).map_err(unavailable)?;
            entries.push(entry);
        }
    }
    txn.commit().map_err(unavailable)?;
    Ok(entries)
}

fn history(
    db: &Database,
    environment: &str,
    flag: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<FlagVersion>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(VERSIONS).map_err(unavailable)?;
    let start = after.saturating_add(1);
    let range = table.range((environment, flag, start)..=(environment, flag, u64::MAX)).map_err(unavailable)?;
    range.take(limit).map(|entry| decode(entry.map_err(unavailable)?.1.value())).collect()
}

/// Removes audit entries older than `before` (the log is in time order,
/// so the scan stops at the first newer one) and each flag's versions
/// beyond the newest `keep`.
fn prune(db: &Database, before: u64, keep: usize) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let mut removed = 0;
    {
        let mut audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let mut old = Vec::new();
        for entry in audit.iter().map_err(unavailable)? {
            let (seq, value) = entry.map_err(unavailable)?;
            let entry: AuditEntry = decode(value.value())?;
            if entry.at >= before {
                break;
            }
            old.push(seq.value());
        }
        for seq in old {
            audit.remove(seq).map_err(unavailable)?;
            removed += 1;
        }
        let mut versions = txn.open_table(VERSIONS).map_err(unavailable)?;
        let flags = txn.open_table(FLAGS).map_err(unavailable)?;
        let mut stale = Vec::new();
        for entry in flags.iter().map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            let (environment, flag) = key.value();
            let record: FlagRecord = decode(value.value())?;
            let Some(newest_dropped) = record.version.checked_sub(keep as u64).filter(|v| *v > 0) else { continue };
            for old in
                versions.range((environment, flag, 0)..=(environment, flag, newest_dropped)).map_err(unavailable)?
            {
                let (key, _) = old.map_err(unavailable)?;
                let (e, f, v) = key.value();
                stale.push((e.to_owned(), f.to_owned(), v));
            }
        }
        for (environment, flag, version) in stale {
            versions.remove((environment.as_str(), flag.as_str(), version)).map_err(unavailable)?;
            removed += 1;
        }
    }
    txn.commit().map_err(unavailable)?;
    Ok(removed)
}

fn audit(db: &Database, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(AUDIT).map_err(unavailable)?;
    let start = query.after.map_or(0, |after| after.saturating_add(1));
    let end = query.before.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let range = table.range(start..end).map_err(unavailable)?;
    let entries: Box<dyn Iterator<Item = _>> = if query.newest_first { Box::new(range.rev()) } else { Box::new(range) };
    for entry in entries {
        let entry: AuditEntry = decode(entry.map_err(unavailable)?.1.value())?;
        if query.matches(&entry) {
            out.push(entry);
            if out.len() >= query.limit {
                break;
            }
        }
    }
    Ok(out)
}

use ramps::{
    context_outcomes, conversions, due_deliveries, finish_delivery, outcomes, prune_outcomes, ramp_history, ramp_runs,
    record_conversions, write_ramp,
};

#[async_trait]
impl Store for EmbeddedStore {
    async fn ramp_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        self.blocking(ramp_runs).await
    }

    async fn write_ramp(&self, write: RampWrite) -> Result<(), StoreError> {
        self.blocking(move |db| write_ramp(db, write)).await
    }

    async fn ramp_history(
        &self,
        environment: &str,
        ramp: &str,
        limit: usize,
    ) -> Result<Vec<RampDecisionRecord>, StoreError> {
        let (environment, ramp) = (environment.to_owned(), ramp.to_owned());
        self.blocking(move |db| ramp_history(db, &environment, &ramp, limit)).await
    }

    async fn record_outcomes(
        &self,
        environment: &str,
        counts: Vec<OutcomeCount>,
        contexts: Vec<ContextOutcome>,
    ) -> Result<(), StoreError> {
        self.outcome_writer.record(&self.db, environment.to_owned(), counts, contexts).await
    }

    async fn outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.to_owned());
        self.blocking(move |db| outcomes(db, &environment, &flag, from, to)).await
    }

    async fn context_outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ContextOutcome>, StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.to_owned());
        self.blocking(move |db| context_outcomes(db, &environment, &flag, from, to)).await
    }

    async fn record_conversions(&self, environment: &str, conversions: Vec<Conversion>) -> Result<(), StoreError> {
        let environment = environment.to_owned();
        self.blocking(move |db| record_conversions(db, &environment, &conversions)).await
    }

    async fn conversions(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Conversion>, StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.to_owned());
        self.blocking(move |db| conversions(db, &environment, &flag, from, to)).await
    }

    async fn due_deliveries(&self, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.blocking(move |db| due_deliveries(db, now, limit)).await
    }

    async fn record_usage(&self, environment: &str, at: u64, counts: Vec<UsageCount>) -> Result<(), StoreError> {
        let environment = environment.to_owned();
        self.blocking(move |db| usage::record_usage(db, &environment, at, &counts)).await
    }

    async fn usage(&self, environment: &str, flag: Option<&str>, _now: u64) -> Result<Vec<FlagUsage>, StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.map(str::to_owned));
        self.blocking(move |db| usage::usage(db, &environment, flag.as_deref())).await
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(OUTBOX).map_err(unavailable)?.len().map_err(unavailable)
        })
        .await
    }

    async fn finish_delivery(&self, id: u64, retry: Option<Delivery>) -> Result<(), StoreError> {
        self.blocking(move |db| finish_delivery(db, id, retry)).await
    }

    async fn prune_outcomes(&self, environment: &str, flag: &str, before: u64) -> Result<(), StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.to_owned());
        self.blocking(move |db| prune_outcomes(db, &environment, &flag, before)).await
    }

    async fn load(&self) -> Result<BTreeMap<String, EnvironmentState>, StoreError> {
        self.blocking(load).await
    }

    async fn commit(&self, batch: Commit) -> Result<Committed, StoreError> {
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        let entries = self.blocking(move |db| commit(db, batch, keep)).await?;
        Ok(Committed { entries, revisions: BTreeMap::new() })
    }

    fn health(&self) -> StoreHealth {
        StoreHealth { kind: "embedded", state: "ok", error: None }
    }

    async fn installation_secret(&self) -> Result<[u8; 32], StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let secret = {
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                let existing =
                    meta.get("secret").map_err(unavailable)?.and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
                match existing {
                    Some(secret) => secret,
                    None => {
                        let secret = super::random_secret()?;
                        meta.insert("secret", secret.as_slice()).map_err(unavailable)?;
                        secret
                    }
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(secret)
        })
        .await
    }

    async fn history(
        &self,
        environment: &str,
        flag: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FlagVersion>, StoreError> {
        let (environment, flag) = (environment.to_owned(), flag.to_owned());
        self.blocking(move |db| history(db, &environment, &flag, after, limit)).await
    }

    fn retain_versions(&self, versions: usize) {
        self.keep.store(versions.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    async fn prune(&self, before: u64) -> Result<u64, StoreError> {
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        self.blocking(move |db| prune(db, before, keep)).await
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(move |db| audit(db, &query)).await
    }
}

#[cfg(test)]
mod tests;
