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
    #[error("the relay's outcome buffer is full ({0} bytes) while the upstream is away; retry later")]
    Full(u64),
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
    /// Most bytes buffered ([`BUFFER_BYTES`]).
    limit: u64,
    wake: tokio::sync::Notify,
}

fn read_or_create_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("relay-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let id = format!("{:016x}", super::random_u64());
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

fn sealing_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("sealing-{number:020}.jsonl"))
}

/// Sums `sealing-N` into `batch-N` (written whole, synced, renamed) and
/// removes `sealing-N`; returns the batch's size. A crash before the rename
/// leaves `sealing-N` to compact again; after it, `batch-N` exists and the
/// leftover `sealing-N` is only removed.
fn compact(dir: &Path, number: u64) -> std::io::Result<u64> {
    let (source, target) = (sealing_path(dir, number), batch_path(dir, number));
    if !target.exists() {
        let mut lines: BTreeMap<(String, u64), Vec<Report>> = BTreeMap::new();
        for ((environment, second, flag, variant, key), (ok, error)) in sums(&source)? {
            let targeting_key = Some(key).filter(|k| !k.is_empty());
            lines.entry((environment, second)).or_default().push(Report { flag, variant, ok, error, targeting_key });
        }
        let mut text = Vec::new();
        for ((environment, second), outcomes) in lines {
            serde_json::to_writer(&mut text, &Line { environment, second, outcomes }).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        write_synced(&target, &text)?;
    }
    std::fs::remove_file(&source)?;
    Ok(std::fs::metadata(&target)?.len())
}

/// Sealed but not yet compacted (a crash between the two).
fn sealing(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(number) =
            name.to_str().and_then(|n| n.strip_prefix("sealing-")?.strip_suffix(".jsonl")?.parse::<u64>().ok())
        {
            found.push(number);
        }
    }
    Ok(found)
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
        Forwarder::open_with_limit(cache_dir, BUFFER_BYTES)
    }

    fn open_with_limit(cache_dir: &Path, limit: u64) -> std::io::Result<Forwarder> {
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
        for number in sealing(&dir)? {
            compact(&dir, number)?;
        }
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
        Ok(Forwarder { dir, relay_id, buffer: Mutex::new(buffer), limit, wake: tokio::sync::Notify::new() })
    }

    /// Appends an accepted request durably (blocking: call off the async
    /// threads). Returns how many entries were taken.
    pub fn accept(&self, environment: &str, reports: &[Report], now_ms: u64) -> Result<usize, ForwardError> {
        let line = Line { environment: environment.to_owned(), second: now_ms / 1000, outcomes: reports.to_vec() };
        let mut text = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.pending_bytes + buffer.batch_bytes + text.len() as u64 > self.limit {
            return Err(ForwardError::Full(self.limit));
        }
        buffer.pending.write_all(&text)?;
        buffer.pending.sync_data()?;
        buffer.pending_bytes += text.len() as u64;
        drop(buffer);
        Ok(reports.len())
    }

    /// Turns what is pending into the next numbered batch: the pending
    /// file is renamed (`sealing-N`, atomically, so accepts go on into a
    /// fresh one), then summed per environment, second, flag, variant and
    /// targeting key into `batch-N`. While the upstream is away the buffer
    /// so grows with seconds × flags × variants, not with requests.
    fn seal(&self) -> std::io::Result<()> {
        let (number, raw) = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.pending_bytes == 0 {
                return Ok(());
            }
            let number = buffer.next_batch;
            write_synced(&self.dir.join("next-batch"), (number + 1).to_string().as_bytes())?;
            std::fs::rename(self.dir.join("pending.jsonl"), sealing_path(&self.dir, number))?;
            std::fs::File::open(&self.dir)?.sync_all()?;
            buffer.pending =
                std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("pending.jsonl"))?;
            let raw = buffer.pending_bytes;
            buffer.batch_bytes += raw;
            buffer.pending_bytes = 0;
            buffer.next_batch = number + 1;
            (number, raw)
        };
        let compacted = compact(&self.dir, number)?;
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.batch_bytes = buffer.batch_bytes.saturating_sub(raw) + compacted;
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

type SumKey = (String, u64, String, String, String);

/// A buffer file's reports summed per environment, second, flag, variant
/// and targeting key (empty when none).
fn sums(path: &Path) -> std::io::Result<BTreeMap<SumKey, (u64, u64)>> {
    let mut sums: BTreeMap<SumKey, (u64, u64)> = BTreeMap::new();
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
    Ok(sums)
}

/// A batch as the upstream's messages, per environment.
fn aggregate(path: &Path) -> std::io::Result<BTreeMap<String, Vec<Outcome>>> {
    let mut parts: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for ((environment, second, flag, variant, targeting_key), (ok, error)) in sums(path)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(variant: &str, ok: u64, error: u64) -> Report {
        Report { flag: "f".into(), variant: variant.into(), ok, error, targeting_key: None }
    }

    #[test]
    fn accepted_reports_are_sealed_into_numbered_batches_and_summed_per_second() {
        let dir = tempfile::tempdir().expect("dir");
        let forwarder = Forwarder::open(dir.path()).expect("open");
        forwarder.accept("production", &[report("on", 1, 2), report("off", 5, 0)], 10_100).expect("accept");
        forwarder.accept("production", &[report("on", 3, 0)], 10_900).expect("accept");
        forwarder.accept("production", &[report("on", 1, 0)], 11_000).expect("accept");
        forwarder.accept("staging", &[report("on", 1, 1)], 10_000).expect("accept");
        forwarder.seal().expect("seal");
        forwarder.seal().expect("nothing more to seal");
        let sealed = batches(&forwarder.dir).expect("batches");
        assert_eq!(sealed.len(), 1);
        let parts = aggregate(&sealed[0].1).expect("aggregate");
        let production: Vec<(u64, &str, u64, u64)> =
            parts["production"].iter().map(|o| (o.at_second, o.variant.as_str(), o.ok, o.error)).collect();
        assert_eq!(production, [(10, "off", 5, 0), (10, "on", 4, 2), (11, "on", 1, 0)]);
        assert_eq!(parts["staging"].len(), 1);
        // The batch holds sums, not requests: many reports of one second
        // take one line per flag and variant.
        let many = Forwarder::open(&dir.path().join("many")).expect("open");
        for _ in 0..1000 {
            many.accept("production", &[report("on", 1, 0), report("off", 1, 0)], 20_000).expect("accept");
        }
        let raw = many.buffered_bytes();
        many.seal().expect("seal");
        assert!(many.buffered_bytes() * 100 < raw, "{} of {raw} bytes", many.buffered_bytes());
        // Reopened (a restart), the batch is still there and numbering goes on.
        let id = forwarder.relay_id.clone();
        drop(forwarder);
        let reopened = Forwarder::open(dir.path()).expect("reopen");
        assert_eq!(reopened.relay_id, id, "the relay keeps its id");
        reopened.accept("production", &[report("on", 1, 0)], 12_000).expect("accept");
        reopened.seal().expect("seal");
        let numbers: Vec<u64> = batches(&reopened.dir).expect("batches").into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [1, 2]);
    }

    #[test]
    fn a_line_torn_by_a_crash_is_cut_and_the_buffer_is_bounded() {
        let dir = tempfile::tempdir().expect("dir");
        let forwarder = Forwarder::open_with_limit(dir.path(), 400).expect("open");
        forwarder.accept("production", &[report("on", 1, 0)], 1_000).expect("accept");
        let pending = forwarder.dir.join("pending.jsonl");
        drop(forwarder);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&pending)
            .expect("pending")
            .write_all(b"{\"environ")
            .expect("tear");
        let forwarder = Forwarder::open_with_limit(dir.path(), 400).expect("reopen");
        forwarder.accept("production", &[report("on", 2, 0)], 2_000).expect("accept");
        forwarder.seal().expect("seal");
        let sealed = batches(&forwarder.dir).expect("batches");
        let ok: u64 = aggregate(&sealed[0].1).expect("aggregate")["production"].iter().map(|o| o.ok).sum();
        assert_eq!(ok, 3, "both acknowledged lines survive, the torn one is gone");
        // At the bound: refused, counted by the caller, nothing written.
        let before = forwarder.buffered_bytes();
        let mut accepted = 0;
        while forwarder.accept("production", &[report("on", 1, 0)], 3_000).is_ok() {
            accepted += 1;
        }
        assert!(accepted > 0);
        assert!(matches!(forwarder.accept("production", &[report("on", 1, 0)], 3_000), Err(ForwardError::Full(400))));
        assert!(forwarder.buffered_bytes() <= 400 && forwarder.buffered_bytes() > before);
    }

    #[test]
    fn applied_batch_ids_are_remembered_up_to_their_bound() {
        let applied = AppliedBatches::default();
        applied.insert("relay/a:1:production:0".into());
        assert!(applied.contains("relay/a:1:production:0"));
        for n in 0..APPLIED_IDS {
            applied.insert(format!("other:{n}"));
        }
        assert!(!applied.contains("relay/a:1:production:0"), "the oldest id is forgotten first");
        assert!(applied.contains(&format!("other:{}", APPLIED_IDS - 1)));
    }
}
