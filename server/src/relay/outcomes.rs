//! Outcomes posted to a relay, forwarded upstream at least once and
//! counted there exactly once.
//!
//! An accepted report is appended to `outcomes/pending.jsonl` in the cache
//! directory and synced before the client is answered, so an acknowledged
//! outcome survives a relay crash. About once a second the pending file
//! becomes a numbered batch (`batch-N.jsonl`, renamed atomically); each
//! batch is summed per environment, flag, variant, targeting key and
//! second, and sent part by part with ids the upstream remembers. A batch
//! file is removed only once the upstream acknowledged every part; until
//! then it is sent again after a failure or a restart, and the upstream
//! acknowledges a part it already applied without counting it twice.
//!
//! The upstream bounds what one relay may add to a ramp per second of its
//! own, as for any reporter. A part it finds too large for now is never
//! dropped: the batch is rewritten with that part halved and the rest
//! stamped as a later second (`batch::split`), until it fits. What can
//! never be sent (a file or lines that cannot be read, a part the upstream
//! refuses as invalid) is moved aside into `outcomes/quarantine/`, logged
//! and counted, and never blocks later batches. The buffer is bounded in
//! bytes: when it is full, reports are refused (503) rather than dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_proto::rampart::v1::OutcomeBatch;
use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use super::RelayConfig;
use super::batch::{self, Line, batch_path, numbered, sealing_path, write_synced};
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

#[derive(Debug)]
struct Buffer {
    pending: std::fs::File,
    pending_bytes: u64,
    batch_bytes: u64,
    next_batch: u64,
}

/// What became of one batch.
#[derive(Debug)]
enum Sent {
    /// Every part acknowledged: the file may go.
    All(u64),
    /// A part was too large for now: the file holds the next generation.
    Split,
    /// It can never be sent: moved aside.
    Quarantined,
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
        for (number, source) in numbered(&dir, "sealing-")? {
            compact(&dir, number, &source);
        }
        let existing = numbered(&dir, "batch-")?;
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
        let line =
            Line { environment: environment.to_owned(), second: now_ms / 1000, outcomes: reports.to_vec(), part: None };
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
        let compacted = compact(&self.dir, number, &sealing_path(&self.dir, number));
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
        let channel = match tonic::transport::Endpoint::from_shared(config.url.clone()) {
            Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(5)).connect_lazy(),
            Err(error) => {
                tracing::error!(%error, "the upstream's address is not valid; outcomes stay buffered");
                return;
            }
        };
        let mut failures: u32 = 0;
        let mut backoff = rampart_proto::backoff::Backoff::new(Duration::from_millis(400), Duration::from_secs(5));
        loop {
            let delay = if failures == 0 { Duration::from_secs(1) } else { backoff.delay(failures) };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            let this = self.clone();
            let sealed = tokio::task::spawn_blocking(move || this.seal().and_then(|()| numbered(&this.dir, "batch-")));
            let pending = match sealed.await {
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
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match self.send(&config, &channel, &metrics, number, &path).await {
                    Ok(Sent::All(sent)) => {
                        metrics.relay_outcomes_forwarded(sent);
                        if std::fs::remove_file(&path).is_ok() {
                            self.forget_bytes(size);
                        }
                    }
                    Ok(Sent::Split) => {
                        // Sent again at once, now in smaller parts.
                        self.resize(size, &path);
                        self.wake.notify_one();
                        break;
                    }
                    Ok(Sent::Quarantined) => self.forget_bytes(size),
                    Err(error) => {
                        tracing::debug!(%error, batch = number, "cannot forward outcomes yet");
                        failures = failures.saturating_add(1);
                        break;
                    }
                }
            }
        }
    }

    fn forget_bytes(&self, size: u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.batch_bytes = buffer.batch_bytes.saturating_sub(size);
    }

    /// A batch file was rewritten: its size in the bound follows.
    fn resize(&self, before: u64, path: &Path) {
        let after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.batch_bytes = buffer.batch_bytes.saturating_sub(before) + after;
    }

    /// Sends one batch, part by part, in order; stops at the first part
    /// not acknowledged.
    async fn send(
        &self,
        config: &RelayConfig,
        channel: &Channel,
        metrics: &crate::metrics::Metrics,
        number: u64,
        path: &Path,
    ) -> Result<Sent, String> {
        let read = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || batch::read(&path, PART_ENTRIES)).await.map_err(|e| e.to_string())?
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(error) => {
                self.set_aside(metrics, path, &format!("cannot read it: {error}"));
                return Ok(Sent::Quarantined);
            }
        };
        if batch.unreadable > 0 {
            tracing::error!(
                batch = number,
                lines = batch.unreadable,
                "unreadable lines in the relay's outcome buffer were skipped"
            );
            metrics.relay_outcomes_quarantined();
        }
        let mut client = FlagSyncClient::new(channel.clone());
        let mut sent = 0;
        for (index, part) in batch.parts.iter().enumerate() {
            let mut request = tonic::Request::new(OutcomeBatch { outcomes: part.outcomes.clone() });
            let id = format!("{}:{number}.{}:{}:{}", self.relay_id, batch.generation, part.environment, part.index);
            let metadata = request.metadata_mut();
            for (name, value) in [
                ("authorization", format!("Bearer {}", config.token)),
                (super::ENVIRONMENT_HEADER, part.environment.clone()),
                (BATCH_HEADER, id.clone()),
            ] {
                if let Ok(value) = value.parse() {
                    metadata.insert(name, value);
                }
            }
            match client.report_outcomes(request).await {
                Ok(_) => sent += part.outcomes.len() as u64,
                Err(status)
                    if status.code() == Code::ResourceExhausted
                        && part.outcomes.iter().map(|o| o.ok + o.error).sum::<u64>() > 1 =>
                {
                    tracing::info!(batch = %id, reason = %status.message(), "the upstream takes less for now; sending it in smaller parts");
                    let later = self.clock_seconds();
                    let path = path.to_owned();
                    tokio::task::spawn_blocking(move || batch::split(&path, &batch, index, later))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    return Ok(Sent::Split);
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    self.set_aside(metrics, path, &format!("the upstream refuses part {id}: {}", status.message()));
                    return Ok(Sent::Quarantined);
                }
                Err(status) => {
                    if matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated) {
                        tracing::error!(batch = %id, reason = %status.message(), "the upstream refuses this relay's token; outcomes stay buffered");
                    }
                    return Err(status.message().to_owned());
                }
            }
        }
        Ok(Sent::All(sent))
    }

    fn set_aside(&self, metrics: &crate::metrics::Metrics, path: &Path, why: &str) {
        metrics.relay_outcomes_quarantined();
        match batch::quarantine(path) {
            Ok(moved) => tracing::error!(file = %moved.display(), why, "an outcome batch was moved aside"),
            Err(error) => tracing::error!(file = %path.display(), %error, why, "cannot move an outcome batch aside"),
        }
    }

    /// The relay's own seconds for stamping (wall time, as the buffer's).
    fn clock_seconds(&self) -> u64 {
        crate::time::Clock::system().now_millis() / 1000
    }
}

/// Sums `sealing-N` into `batch-N` (written whole, synced, renamed) and
/// removes `sealing-N`; returns the batch's size. A crash before the rename
/// leaves `sealing-N` to compact again; after it, `batch-N` exists and the
/// leftover `sealing-N` is only removed. A `sealing-N` that cannot be read
/// is moved aside, so a restart never fails on it.
fn compact(dir: &Path, number: u64, source: &Path) -> u64 {
    let target = batch_path(dir, number);
    let result = if target.exists() { Ok(0) } else { batch::compact(source, &target) };
    match result {
        Ok(unreadable) => {
            if unreadable > 0 {
                tracing::error!(
                    batch = number,
                    lines = unreadable,
                    "unreadable lines in the relay's pending outcomes were skipped"
                );
            }
            if let Err(error) = std::fs::remove_file(source) {
                tracing::warn!(%error, "cannot remove a sealed outcome file");
            }
        }
        Err(error) => match batch::quarantine(source) {
            Ok(moved) => tracing::error!(%error, file = %moved.display(), "cannot read sealed outcomes; moved aside"),
            Err(error) => tracing::error!(%error, "cannot read nor move aside sealed outcomes"),
        },
    }
    std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rampart_proto::rampart::v1::Outcome;

    use super::*;

    fn batches(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
        numbered(dir, "batch-")
    }

    /// A batch's outcomes per environment.
    fn aggregate(path: &Path) -> std::io::Result<BTreeMap<String, Vec<Outcome>>> {
        let mut parts: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        for part in batch::read(path, PART_ENTRIES)?.parts {
            parts.entry(part.environment).or_default().extend(part.outcomes);
        }
        Ok(parts)
    }

    fn report(variant: &str, ok: u64, error: u64) -> Report {
        Report { flag: "f".into(), variant: variant.into(), ok, error, targeting_key: None, duration_ms: None }
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
    fn garbage_left_in_pending_outcomes_never_stops_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let forwarder = Forwarder::open(dir.path()).expect("open");
        forwarder.accept("production", &[report("on", 4, 0)], 1_000).expect("accept");
        let outcomes = forwarder.dir.clone();
        drop(forwarder);
        // A sealing file left by a crash, with bytes that are not text.
        let mut garbage = std::fs::read(outcomes.join("pending.jsonl")).expect("pending");
        garbage.extend_from_slice(b"\xff\xfe\x00 garbage\n");
        std::fs::write(sealing_path(&outcomes, 1), garbage).expect("write");
        std::fs::remove_file(outcomes.join("pending.jsonl")).expect("remove");
        for _ in 0..2 {
            let reopened = Forwarder::open(dir.path()).expect("a restart never fails on garbage");
            drop(reopened);
        }
        let sealed = batches(&outcomes).expect("batches");
        let ok: u64 = aggregate(&sealed[0].1).expect("aggregate")["production"].iter().map(|o| o.ok).sum();
        assert_eq!(ok, 4, "what could be read is kept");
    }
}
