//! Ramp records in redb: runs (compare-and-set, fenced), decision logs,
//! outcome buckets, and the webhook outbox.

use super::*;
use crate::model::Latency;
use crate::model::latency::SLOTS;

pub(super) fn ramp_runs(db: &Database) -> Result<Vec<StoredRun>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(RAMPS).map_err(unavailable)?;
    let mut runs = Vec::new();
    for entry in table.iter().map_err(unavailable)? {
        let (key, value) = entry.map_err(unavailable)?;
        let (environment, ramp) = key.value();
        runs.push(StoredRun { environment: environment.into(), ramp: ramp.into(), run: decode(value.value())? });
    }
    Ok(runs)
}

pub(super) fn write_ramp(db: &Database, write: RampWrite) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let key = (write.environment.as_str(), write.ramp.as_str());
        let mut ramps = txn.open_table(RAMPS).map_err(unavailable)?;
        let current: Option<Run> = ramps.get(key).map_err(unavailable)?.map(|v| decode(v.value())).transpose()?;
        let found = current.as_ref().map(|run| (run.run_id.as_str(), run.seq));
        if found != write.expect.as_ref().map(|(run, seq)| (run.as_str(), *seq)) {
            return Err(StoreError::ramp_conflict(&write, found));
        }
        ramps.insert(key, encode(&write.run).as_slice()).map_err(unavailable)?;
        if let Some(record) = &write.record {
            let mut decisions = txn.open_table(RAMP_DECISIONS).map_err(unavailable)?;
            let last = decisions
                .range((key.0, key.1, 0)..=(key.0, key.1, u64::MAX))
                .map_err(unavailable)?
                .next_back()
                .transpose()
                .map_err(unavailable)?
                .map_or(0, |(k, _)| k.value().2);
            decisions.insert((key.0, key.1, last + 1), encode(record).as_slice()).map_err(unavailable)?;
        }
        let mut outbox = txn.open_table(OUTBOX).map_err(unavailable)?;
        let mut id = outbox.last().map_err(unavailable)?.map(|(k, _)| k.value()).unwrap_or(0);
        for delivery in &write.outbox {
            id += 1;
            let delivery = Delivery { id, ..delivery.clone() };
            outbox.insert(id, encode(&delivery).as_slice()).map_err(unavailable)?;
        }
        let mut audit = txn.open_table(AUDIT).map_err(unavailable)?;
        let mut seq = audit.last().map_err(unavailable)?.map(|(k, _)| k.value()).unwrap_or(0);
        for line in &write.audit {
            seq += 1;
            audit.insert(seq, encode(&write.audit_entry(line, seq)).as_slice()).map_err(unavailable)?;
        }
    }
    txn.commit().map_err(unavailable)
}

pub(super) fn ramp_history(
    db: &Database,
    environment: &str,
    ramp: &str,
    limit: usize,
) -> Result<Vec<RampDecisionRecord>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(RAMP_DECISIONS).map_err(unavailable)?;
    let range = table.range((environment, ramp, 0)..=(environment, ramp, u64::MAX)).map_err(unavailable)?;
    let mut records = range
        .rev()
        .take(limit)
        .map(|entry| decode(entry.map_err(unavailable)?.1.value()))
        .collect::<Result<Vec<RampDecisionRecord>, _>>()?;
    records.reverse();
    Ok(records)
}

pub(super) fn due_deliveries(db: &Database, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(OUTBOX).map_err(unavailable)?;
    let mut due = Vec::new();
    for entry in table.iter().map_err(unavailable)? {
        let delivery: Delivery = decode(entry.map_err(unavailable)?.1.value())?;
        if delivery.next_attempt_at <= now {
            due.push(delivery);
            if due.len() >= limit {
                break;
            }
        }
    }
    Ok(due)
}

pub(super) fn finish_delivery(db: &Database, id: u64, retry: Option<Delivery>) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(OUTBOX).map_err(unavailable)?;
        match retry {
            Some(delivery) => {
                table.insert(id, encode(&Delivery { id, ..delivery }).as_slice()).map_err(unavailable)?;
            }
            None => {
                table.remove(id).map_err(unavailable)?;
            }
        }
    }
    txn.commit().map_err(unavailable)
}

/// An outcome bucket's value: ok and error counts (8 bytes each, little
/// endian), then — only once some outcome in it came with a duration — the
/// latency slots (8 bytes each). Values written before latency existed
/// are the first 16 bytes alone.
fn counts_of(bytes: &[u8]) -> (u64, u64, Latency) {
    let read = |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0);
    let mut latency = Latency::default();
    if bytes.len() >= 16 + 8 * SLOTS {
        for slot in 0..SLOTS {
            latency.add(slot, read(16 + 8 * slot));
        }
    }
    (read(0), read(8), latency)
}

fn value_of(ok: u64, error: u64, latency: &Latency) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + 8 * SLOTS);
    value.extend_from_slice(&ok.to_le_bytes());
    value.extend_from_slice(&error.to_le_bytes());
    if !latency.is_empty() {
        let mut slots = [0u64; SLOTS];
        for (slot, n) in latency.slots() {
            slots[slot] = n;
        }
        for n in slots {
            value.extend_from_slice(&n.to_le_bytes());
        }
    }
    value
}

/// Adds reports — (environment, counts, per-context outcomes) — to the
/// outcome buckets in one write transaction (one fsync for all of them).
pub(super) fn record_outcome_batch(
    db: &Database,
    reports: &[(&str, &[OutcomeCount], &[ContextOutcome])],
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(OUTCOMES).map_err(unavailable)?;
        for (environment, counts, _) in reports {
            for count in *counts {
                let key = (*environment, count.flag.as_str(), count.second, count.variant.as_str());
                let (ok, error, mut latency) =
                    table.get(key).map_err(unavailable)?.map_or_else(Default::default, |v| counts_of(v.value()));
                latency.merge(&count.latency);
                let value = value_of(ok + count.ok, error + count.error, &latency);
                table.insert(key, value.as_slice()).map_err(unavailable)?;
            }
        }
        let mut table = txn.open_table(CONTEXT_OUTCOMES).map_err(unavailable)?;
        for (environment, _, contexts) in reports {
            for outcome in *contexts {
                let key =
                    (*environment, outcome.flag.as_str(), outcome.second, outcome.variant.as_str(), outcome.context);
                let errored = table.get(key).map_err(unavailable)?.is_some_and(|v| v.value() == 1);
                table.insert(key, u8::from(errored || outcome.error)).map_err(unavailable)?;
            }
        }
    }
    txn.commit().map_err(unavailable)
}

pub(super) fn outcomes(
    db: &Database,
    environment: &str,
    flag: &str,
    from: u64,
    to: u64,
) -> Result<Vec<OutcomeCount>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(OUTCOMES).map_err(unavailable)?;
    let mut out = Vec::new();
    for entry in table.range((environment, flag, from, "")..(environment, flag, to, "")).map_err(unavailable)? {
        let (key, value) = entry.map_err(unavailable)?;
        let (_, flag, second, variant) = key.value();
        let (ok, error, latency) = counts_of(value.value());
        out.push(OutcomeCount { flag: flag.into(), variant: variant.into(), second, ok, error, latency });
    }
    Ok(out)
}

pub(super) fn context_outcomes(
    db: &Database,
    environment: &str,
    flag: &str,
    from: u64,
    to: u64,
) -> Result<Vec<ContextOutcome>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(CONTEXT_OUTCOMES).map_err(unavailable)?;
    let mut out = Vec::new();
    let range = table.range((environment, flag, from, "", 0)..(environment, flag, to, "", 0)).map_err(unavailable)?;
    for entry in range {
        let (key, value) = entry.map_err(unavailable)?;
        let (_, flag, second, variant, context) = key.value();
        out.push(ContextOutcome {
            flag: flag.into(),
            variant: variant.into(),
            second,
            context,
            error: value.value() == 1,
        });
    }
    Ok(out)
}

pub(super) fn record_conversions(
    db: &Database,
    environment: &str,
    conversions: &[Conversion],
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(CONVERSIONS).map_err(unavailable)?;
        for c in conversions {
            table
                .insert((environment, c.flag.as_str(), c.second, c.event.as_str(), c.context), ())
                .map_err(unavailable)?;
        }
    }
    txn.commit().map_err(unavailable)
}

pub(super) fn conversions(
    db: &Database,
    environment: &str,
    flag: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Conversion>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(CONVERSIONS).map_err(unavailable)?;
    let mut out = Vec::new();
    let range = table.range((environment, flag, from, "", 0)..(environment, flag, to, "", 0)).map_err(unavailable)?;
    for entry in range {
        let (key, _) = entry.map_err(unavailable)?;
        let (_, flag, second, event, context) = key.value();
        out.push(Conversion { flag: flag.into(), event: event.into(), second, context });
    }
    Ok(out)
}

pub(super) fn prune_outcomes(db: &Database, environment: &str, flag: &str, before: u64) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(OUTCOMES).map_err(unavailable)?;
        table
            .retain_in((environment, flag, 0, "")..(environment, flag, before, ""), |_, _| false)
            .map_err(unavailable)?;
        let mut table = txn.open_table(CONTEXT_OUTCOMES).map_err(unavailable)?;
        table
            .retain_in((environment, flag, 0, "", 0)..(environment, flag, before, "", 0), |_, _| false)
            .map_err(unavailable)?;
        let mut table = txn.open_table(CONVERSIONS).map_err(unavailable)?;
        table
            .retain_in((environment, flag, 0, "", 0)..(environment, flag, before, "", 0), |_, _| false)
            .map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)
}
