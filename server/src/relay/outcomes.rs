//! Outcomes posted to a relay, forwarded upstream at least once.
//!
//! An accepted report is appended to `outcomes/pending.jsonl` in the cache
//! directory and synced before the client is answered, so an acknowledged
//! outcome survives a relay crash. About once a second the pending file
//! becomes a numbered batch (`batch-N.jsonl`, renamed atomically); each
//! batch is aggregated per environment, flag, variant, targeting key and
//! second, and sent with its id (`relay id : N : environment : part`). A
//! batch file is removed only once the upstream acknowledged every part;
//! until then it is sent again after a failure or a restart, and the
//! upstream acknowledges a part it already applied without counting it
//! twice. The buffer is bounded in bytes: when it is full, reports are
//! refused (503) rather than dropped silently.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{Outcome, OutcomeBatch};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::RelayConfig;
use crate::ramp::outcomes::Report;

/// Most bytes the buffer may hold (pending and unsent batches together).
pub(super) const BUFFER_BYTES: u64 = 64 << 20;
/// Entries per forwarded request: the upstream's limit for one batch.
const PART_ENTRIES: usize = crate::ramp::outcomes::MAX_ENTRIES;
/// The metadata carrying a forwarded batch's id.
pub const BATCH_HEADER: &str = "x-rampart-batch";

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the relay's outcome buffer is full ({BUFFER_BYTES} bytes) while the upstream is away; retry later")]
    Full,
    #[error("cannot write the relay's outcome buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// One accepted request, as a line of the buffer.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    environment: String,
    second: u64,
    outcomes: Vec<Report>,
}

#[derive(Debug)]
struct Buffer {
    pending: std::fs::File,
    pending_bytes: u64,
    batch_bytes: u64,
    next_batch: u64,
}

/// The relay's outcome buffer and its sender.
#[derive(Debug)]
pub struct Forwarder {
    dir: PathBuf,
    /// Identifies this relay's batches to the upstream (kept in the cache
    /// directory, so it survives restarts).
    relay_id: String,
    buffer: Mutex<Buffer>,
    wake: tokio::sync::Notify,
}

fn read_or_create_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("relay-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let id = format!("{:016x}", hasher.finish());
    write_synced(&path, id.as_bytes())?;
    Ok(id)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn batch_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("batch-{number:020}.jsonl"))
}

/// Unsent batches, oldest first.
fn batches(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("batch-")?.strip_suffix(".jsonl")?.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

impl Forwarder {
    pub fn open(cache_dir: &Path) -> std::io::Result<Forwarder> {
        let dir = cache_dir.join("outcomes");
        std::fs::create_dir_all(&dir)?;
        let relay_id = read_or_create_id(cache_dir)?;
        let pending_path = dir.join("pending.jsonl");
        // A line torn by a crash mid-append was never acknowledged: cut it,
        // so the next line does not join it.
        if let Ok(text) = std::fs::read(&pending_path)
            && text.last().is_some_and(|last| *last != b'\n')
        {
            let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let file = std::fs::OpenOptions::new().write(true).open(&pending_path)?;
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
        let pending = std::fs::OpenOptions::new().create(true).append(true).open(&pending_path)?;
        let pending_bytes = pending.metadata()?.len();
        let existing = batches(&dir)?;
        let mut batch_bytes = 0;
        for (_, path) in &existing {
            batch_bytes += std::fs::metadata(path)?.len();
        }
        let stored_next = std::fs::read_to_string(dir.join("next-batch"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let next_batch = existing.last().map_or(stored_next, |(n, _)| stored_next.max(n + 1));
        let buffer = Buffer { pending, pending_bytes, batch_bytes, next_batch };
        Ok(Forwarder { dir, relay_id, buffer: Mutex::new(buffer), wake: tokio::sync::Notify::new() })
    }

    /// Appends an accepted request durably (blocking: call off the async
    /// threads). Returns how many entries were taken.
    pub fn accept(&self, environment: &str, reports: &[Report], now_ms: u64) -> Result<usize, ForwardError> {
        let line = Line { environment: environment.to_owned(), second: now_ms / 1000, outcomes: reports.to_vec() };
        let mut text = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.pending_bytes + buffer.batch_bytes + text.len() as u64 > BUFFER_BYTES {
            return Err(ForwardError::Full);
        }
        buffer.pending.write_all(&text)?;
        buffer.pending.sync_data()?;
        buffer.pending_bytes += text.len() as u64;
        drop(buffer);
        Ok(reports.len())
    }

    /// Turns what is pending into the next numbered batch.
    fn seal(&self) -> std::io::Result<()> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.pending_bytes == 0 {
            return Ok(());
        }
        let number = buffer.next_batch;
        write_synced(&self.dir.join("next-batch"), (number + 1).to_string().as_bytes())?;
        std::fs::rename(self.dir.join("pending.jsonl"), batch_path(&self.dir, number))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        buffer.pending = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("pending.jsonl"))?;
        buffer.batch_bytes += buffer.pending_bytes;
        buffer.pending_bytes = 0;
        buffer.next_batch = number + 1;
        Ok(())
    }

    /// Bytes waiting to be forwarded.
    pub fn buffered_bytes(&self) -> u64 {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.pending_bytes + buffer.batch_bytes
    }

    /// Seals and sends batches until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        config: RelayConfig,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        loop {
            let delay = if failures == 0 {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200).saturating_mul(1 << failures.min(5)).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            let this = self.clone();
            let sealed = tokio::task::spawn_blocking(move || this.seal().and_then(|()| batches(&this.dir))).await;
            let pending = match sealed {
                Ok(Ok(pending)) => pending,
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot seal the relay's outcome buffer");
                    failures = failures.saturating_add(1);
                    continue;
                }
                Err(_) => continue,
            };
            failures = 0;
            for (number, path) in pending {
                match self.send(&config, number, &path).await {
                    Ok(sent) => {
                        metrics.relay_outcomes_forwarded(sent);
                        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                        if std::fs::remove_file(&path).is_ok() {
                            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
                            buffer.batch_bytes = buffer.batch_bytes.saturating_sub(size);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, batch = number, "cannot forward outcomes yet");
                        failures = failures.saturating_add(1);
                        break;
                    }
                }
            }
        }
    }

    /// Sends one batch, part by part; `Ok` once every part is acknowledged
    /// (or refused for good: logged and counted, never retried forever).
    async fn send(&self, config: &RelayConfig, number: u64, path: &Path) -> Result<u64, String> {
        let parts = aggregate(path).map_err(|e| e.to_string())?;
        let channel = tonic::transport::Endpoint::from_shared(config.url.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut client = FlagSyncClient::new(channel);
        let mut sent = 0;
        for (environment, entries) in parts {
            for (part, chunk) in entries.chunks(PART_ENTRIES).enumerate() {
                let mut request = tonic::Request::new(OutcomeBatch { outcomes: chunk.to_vec() });
                let id = format!("{}:{number}:{environment}:{part}", self.relay_id);
                let metadata = request.metadata_mut();
                for (name, value) in [
                    ("authorization", format!("Bearer {}", config.token)),
                    (super::ENVIRONMENT_HEADER, environment.clone()),
                    (BATCH_HEADER, id.clone()),
                ] {
                    if let Ok(value) = value.parse() {
                        metadata.insert(name, value);
                    }
                }
                match client.report_outcomes(request).await {
                    Ok(_) => sent += chunk.len() as u64,
                    Err(status)
                        if matches!(
                            status.code(),
                            Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated
                        ) =>
                    {
                        tracing::error!(batch = %id, reason = %status.message(), "the upstream refused forwarded outcomes; dropping them");
                    }
                    Err(status) => return Err(status.message().to_owned()),
                }
            }
        }
        Ok(sent)
    }
}

/// A batch file's reports summed per environment, flag, variant, targeting
/// key and second.
fn aggregate(path: &Path) -> std::io::Result<BTreeMap<String, Vec<Outcome>>> {
    type Key = (String, u64, String, String, String);
    let mut sums: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    let file = std::fs::File::open(path)?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        // A line torn by a crash mid-append was never acknowledged.
        let Ok(line) = serde_json::from_str::<Line>(&line) else { continue };
        for report in line.outcomes {
            let key = (
                line.environment.clone(),
                line.second,
                report.flag,
                report.variant,
                report.targeting_key.unwrap_or_default(),
            );
            let sum = sums.entry(key).or_default();
            sum.0 = sum.0.saturating_add(report.ok);
            sum.1 = sum.1.saturating_add(report.error);
        }
    }
    let mut parts: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for ((environment, second, flag, variant, targeting_key), (ok, error)) in sums {
        parts.entry(environment).or_default().push(Outcome {
            flag,
            variant,
            ok,
            error,
            targeting_key,
            at_second: second,
        });
    }
    Ok(parts)
}

/// On an upstream: the ids of forwarded batches already applied, so a
/// batch sent again (its acknowledgement was lost) is not counted twice.
/// Bounded: the oldest ids are forgotten first, long after their relay
/// stopped resending them. Held in memory: an upstream that crashes between
/// applying a batch and acknowledging it may count that batch again.
#[derive(Debug, Default)]
pub struct AppliedBatches {
    ids: Mutex<(std::collections::HashSet<String>, std::collections::VecDeque<String>)>,
}

/// Batch ids remembered.
const APPLIED_IDS: usize = 100_000;

impl AppliedBatches {
    pub fn contains(&self, id: &str) -> bool {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).0.contains(id)
    }

    pub fn insert(&self, id: String) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.0.insert(id.clone()) {
            ids.1.push_back(id);
        }
        while ids.1.len() > APPLIED_IDS {
            if let Some(old) = ids.1.pop_front() {
                ids.0.remove(&old);
            }
        }
    }
}
