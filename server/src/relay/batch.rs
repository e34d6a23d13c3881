//! The relay's outcome buffer on disk: `pending.jsonl` and numbered
//! `batch-N.jsonl` files of [`Line`]s, how a batch is read as the parts
//! the upstream receives, how a batch the upstream found too large for now
//! is rewritten in smaller parts, and where unreadable files go.
//!
//! A batch is rewritten by replacing its file atomically with a new
//! *generation* that holds only what the upstream has not acknowledged:
//! after a crash the relay finds either the old generation (whose
//! acknowledged parts the upstream recognises by id and does not count
//! again) or the new one (whose ids are new), never both. So an
//! acknowledged outcome is counted once, whatever happens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rampart_proto::rampart::v1::Outcome;
use serde::{Deserialize, Serialize};

use crate::model::Latency;
use crate::ramp::outcomes::Report;

/// One accepted request (or, in a rewritten batch, one part's second), as
/// a line of a buffer file.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Line {
    pub environment: String,
    pub second: u64,
    pub outcomes: Vec<Report>,
    /// The part it belongs to in a rewritten batch (0 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

/// The first line of a rewritten batch.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    generation: u64,
}

/// One request's worth for the upstream: one environment's outcomes of
/// one part, summed per second, flag, variant and targeting key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Part {
    pub index: u32,
    pub environment: String,
    pub outcomes: Vec<Outcome>,
}

/// A batch as read from its file.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub generation: u64,
    pub parts: Vec<Part>,
    /// Lines that could not be read (torn by a crash, or damaged): never
    /// acknowledged as written, or not recoverable; skipped.
    pub unreadable: usize,
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

pub(super) fn batch_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("batch-{number:020}.jsonl"))
}

pub(super) fn sealing_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("sealing-{number:020}.jsonl"))
}

/// Numbered files with this prefix, oldest first.
pub(super) fn numbered(dir: &Path, prefix: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(prefix)?.strip_suffix(".jsonl")?.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Moves a file that cannot be used aside, into `quarantine/` next to it,
/// so it never blocks the buffer; an operator can look at it there.
pub(super) fn quarantine(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("quarantine");
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let target = dir.join(format!("{name}.{}", std::process::id()));
    std::fs::rename(path, &target)?;
    Ok(target)
}

/// (part, environment, second, flag, variant, targeting key, latency slot).
type SumKey = (u32, String, u64, String, String, String, Option<u8>);

/// A buffer file summed: its generation, the sums, and the lines that
/// could not be read.
struct Sums {
    generation: u64,
    sums: BTreeMap<SumKey, (u64, u64)>,
    unreadable: usize,
}

/// A buffer file's reports summed per part, environment, second, flag,
/// variant and targeting key (empty when none); unreadable lines are
/// skipped and counted.
fn sums(path: &Path) -> std::io::Result<Sums> {
    let bytes = std::fs::read(path)?;
    let mut sums: BTreeMap<SumKey, (u64, u64)> = BTreeMap::new();
    let (mut generation, mut unreadable) = (0, 0);
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        if number == 0
            && let Ok(header) = serde_json::from_slice::<Header>(line)
        {
            generation = header.generation;
            continue;
        }
        let Ok(line) = serde_json::from_slice::<Line>(line) else {
            unreadable += 1;
            continue;
        };
        let part = line.part.unwrap_or(0);
        for report in line.outcomes {
            let key = (
                part,
                line.environment.clone(),
                line.second,
                report.flag,
                report.variant,
                report.targeting_key.unwrap_or_default(),
                report.duration_ms.map(|d| Latency::slot_of(d) as u8),
            );
            let sum = sums.entry(key).or_default();
            sum.0 = sum.0.saturating_add(report.ok);
            sum.1 = sum.1.saturating_add(report.error);
        }
    }
    Ok(Sums { generation, sums, unreadable })
}

/// Sums `source` (raw accepted lines) into `target`, written whole and
/// synced; returns the lines that could not be read.
pub(super) fn compact(source: &Path, target: &Path) -> std::io::Result<usize> {
    let Sums { sums, unreadable, .. } = sums(source)?;
    let mut lines: BTreeMap<(String, u64), Vec<Report>> = BTreeMap::new();
    for ((_, environment, second, flag, variant, key, slot), (ok, error)) in sums {
        let targeting_key = Some(key).filter(|k| !k.is_empty());
        let duration_ms = slot.map(|slot| Latency::representative_millis(usize::from(slot)));
        let report = Report { flag, variant, ok, error, targeting_key, duration_ms };
        lines.entry((environment, second)).or_default().push(report);
    }
    let mut text = Vec::new();
    for ((environment, second), outcomes) in lines {
        serde_json::to_writer(&mut text, &Line { environment, second, outcomes, part: None })
            .map_err(std::io::Error::other)?;
        text.push(b'\n');
    }
    write_synced(target, &text)?;
    Ok(unreadable)
}

/// A batch as the upstream's messages: parts in order, each at most
/// `entries` outcomes (a larger part is cut into several).
pub(super) fn read(path: &Path, entries: usize) -> std::io::Result<Batch> {
    let Sums { generation, sums, unreadable } = sums(path)?;
    let mut grouped: BTreeMap<(u32, String), Vec<Outcome>> = BTreeMap::new();
    for ((part, environment, second, flag, variant, targeting_key, slot), (ok, error)) in sums {
        grouped.entry((part, environment)).or_default().push(Outcome {
            flag,
            variant,
            ok,
            error,
            targeting_key,
            at_second: second,
            duration_ms: slot.map(|slot| Latency::representative_millis(usize::from(slot))),
        });
    }
    let mut parts = Vec::new();
    for ((_, environment), outcomes) in grouped {
        for chunk in outcomes.chunks(entries.max(1)) {
            let index = u32::try_from(parts.len()).unwrap_or(u32::MAX);
            parts.push(Part { index, environment: environment.clone(), outcomes: chunk.to_vec() });
        }
    }
    Ok(Batch { generation, parts, unreadable })
}

/// Half of every count (rounded up), and the rest, dropping empty entries.
fn halve(outcomes: &[Outcome]) -> (Vec<Outcome>, Vec<Outcome>) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for outcome in outcomes {
        let (ok, error) = (outcome.ok.div_ceil(2), outcome.error.div_ceil(2));
        if ok + error > 0 {
            first.push(Outcome { ok, error, ..outcome.clone() });
        }
        if outcome.ok - ok + outcome.error - error > 0 {
            second.push(Outcome { ok: outcome.ok - ok, error: outcome.error - error, ..outcome.clone() });
        }
    }
    (first, second)
}

/// Replaces a batch whose part `refused` the upstream found too large for
/// now, and whose earlier parts it acknowledged, with its next generation:
/// the refused part in two halves (the second stamped `later`, a second of
/// the relay's own, so the upstream weighs it as a new second), then the
/// parts not sent yet. Atomic: the file holds one generation or the other.
pub(super) fn split(path: &Path, batch: &Batch, refused: usize, later: u64) -> std::io::Result<()> {
    let Some(part) = batch.parts.get(refused) else { return Ok(()) };
    let (first, mut second) = halve(&part.outcomes);
    for outcome in &mut second {
        outcome.at_second = outcome.at_second.max(later);
    }
    let mut units = vec![(part.environment.clone(), first), (part.environment.clone(), second)];
    units.extend(batch.parts[refused + 1..].iter().map(|p| (p.environment.clone(), p.outcomes.clone())));
    let mut text = serde_json::to_vec(&Header { generation: batch.generation + 1 }).map_err(std::io::Error::other)?;
    text.push(b'\n');
    for (index, (environment, outcomes)) in units.into_iter().filter(|(_, o)| !o.is_empty()).enumerate() {
        let mut seconds: BTreeMap<u64, Vec<Report>> = BTreeMap::new();
        for outcome in outcomes {
            seconds.entry(outcome.at_second).or_default().push(Report {
                flag: outcome.flag,
                variant: outcome.variant,
                ok: outcome.ok,
                error: outcome.error,
                targeting_key: Some(outcome.targeting_key).filter(|k| !k.is_empty()),
                duration_ms: outcome.duration_ms,
            });
        }
        for (second, outcomes) in seconds {
            let part = Some(u32::try_from(index).unwrap_or(u32::MAX));
            let line = Line { environment: environment.clone(), second, outcomes, part };
            serde_json::to_writer(&mut text, &line).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
    }
    write_synced(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(environment: &str, second: u64, ok: u64, error: u64) -> String {
        let report =
            Report { flag: "f".into(), variant: "on".into(), ok, error, targeting_key: None, duration_ms: None };
        let line = Line { environment: environment.into(), second, outcomes: vec![report], part: None };
        serde_json::to_string(&line).expect("line")
    }

    fn totals(batch: &Batch) -> (u64, u64) {
        batch.parts.iter().flat_map(|p| &p.outcomes).fold((0, 0), |(ok, error), o| (ok + o.ok, error + o.error))
    }

    #[test]
    fn damaged_lines_are_skipped_and_counted_never_blocking_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("batch-1.jsonl");
        let mut bytes = line("production", 10, 3, 1).into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe not json\n{\"environ\n");
        bytes.extend_from_slice(line("production", 11, 2, 0).as_bytes());
        std::fs::write(&path, bytes).expect("write");
        let batch = read(&path, 100).expect("read");
        assert_eq!((batch.unreadable, totals(&batch)), (2, (5, 1)));
    }

    #[test]
    fn a_split_batch_keeps_every_unacknowledged_outcome_once_in_a_new_generation() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("batch-1.jsonl");
        let text = [line("a", 10, 30_001, 7), line("b", 10, 5, 5)].join("\n");
        std::fs::write(&path, text).expect("write");
        let batch = read(&path, 100).expect("read");
        assert_eq!(batch.parts.len(), 2);
        // Part 0 acknowledged; part 1 refused as too large for now.
        split(&path, &batch, 1, 99).expect("split");
        let next = read(&path, 100).expect("read");
        assert_eq!(next.generation, 1);
        assert_eq!(totals(&next), (5, 5), "only what was not acknowledged");
        assert_eq!(next.parts.len(), 2, "two halves");
        assert_eq!((next.parts[0].outcomes[0].ok, next.parts[0].outcomes[0].error), (3, 3));
        assert_eq!(next.parts[1].outcomes[0].at_second, 99, "the rest counts as a later second");
        // Refused again at its first half: three parts, nothing lost or doubled.
        split(&path, &next, 0, 100).expect("split");
        let again = read(&path, 100).expect("read");
        assert_eq!((again.generation, totals(&again)), (2, (5, 5)));
    }

    #[test]
    fn quarantined_files_move_aside() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("batch-7.jsonl");
        std::fs::write(&path, b"\xff").expect("write");
        let moved = quarantine(&path).expect("quarantine");
        assert!(!path.exists() && moved.exists() && moved.starts_with(dir.path().join("quarantine")));
    }
}
