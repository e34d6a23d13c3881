//! The [`Store`] operations on Redis: each one a few keys read, or one
//! Lua script that checks, writes and publishes atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::Latency;
use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::{OUTCOME_SLICE_SECONDS, RedisStore, decode, json_string, script_reply, tail, unavailable};
use crate::store::{
    AuditEntry, AuditQuery, ChangeKind, Commit, Committed, ContextOutcome, Conversion, Delivery, EnvironmentState,
    Expect, FlagRecord, FlagVersion, OutcomeCount, RampDecisionRecord, RampWrite, StateOverride, Store, StoreError,
    StoreHealth, StoredRun,
};

#[async_trait]
impl Store for RedisStore {
    async fn load(&self) -> Result<BTreeMap<String, EnvironmentState>, StoreError> {
        let key = self.key(&["environments"]);
        let environments: Vec<String> = self.call(async |mut c| c.smembers(&key).await).await?;
        let mut all = BTreeMap::new();
        for environment in environments {
            let state = self.load_environment(&environment).await?;
            all.insert(environment, state);
        }
        Ok(all)
    }

    async fn commit(&self, commit: Commit) -> Result<Committed, StoreError> {
        let mut invocation = self.commit_script.prepare_invoke();
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        invocation.arg(&self.prefix).arg(commit.changes.len()).arg(keep);
        for change in &commit.changes {
            let (expect, expected) = match change.expect {
                Expect::Anything => ("any", 0),
                Expect::Absent => ("absent", 0),
                Expect::Version(version) => ("v", version),
            };
            let definition = match &change.kind {
                ChangeKind::Put(definition) => Some(definition.clone()),
                _ => None,
            };
            let (kind, body) = match &change.kind {
                ChangeKind::Put(_) | ChangeKind::Delete => {
                    let record = FlagRecord {
                        version: 0,
                        definition: definition.clone(),
                        at: commit.at,
                        by: commit.actor.clone(),
                    };
                    (if definition.is_some() { "put" } else { "delete" }, tail(&record, &["version"]))
                }
                ChangeKind::Override(Some(state)) => {
                    let record = StateOverride { state: *state, at: commit.at, by: commit.actor.clone() };
                    ("oset", serde_json::to_string(&record).unwrap_or_default())
                }
                ChangeKind::Override(None) => ("oclear", String::new()),
            };
            let version = FlagVersion {
                version: 0,
                definition,
                at: commit.at,
                by: commit.actor.clone(),
                action: change.action.clone(),
                changes: change.changes.clone(),
            };
            let audit = AuditEntry::of(&commit, change, 0, None);
            invocation
                .arg(&change.environment)
                .arg(&change.flag)
                .arg(expect)
                .arg(expected)
                .arg(kind)
                .arg(body)
                .arg(tail(&version, &["version"]))
                .arg(tail(&audit, &["seq", "version"]))
                .arg(json_string(&change.flag));
        }
        let reply: Vec<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        let reply = script_reply(reply)?;
        if reply[0] == "conflict" {
            let index: usize = reply.get(1).and_then(|i| i.parse().ok()).unwrap_or(0);
            let found: i64 = reply.get(2).and_then(|v| v.parse().ok()).unwrap_or(-1);
            let change = &commit.changes[index.min(commit.changes.len().saturating_sub(1))];
            return Err(StoreError::flag_conflict(change, u64::try_from(found).ok()));
        }
        let split = reply.iter().position(|r| r == "|").unwrap_or(reply.len());
        let numbers = &reply[1..split];
        let mut committed = Committed::default();
        for (change, pair) in commit.changes.iter().zip(numbers.chunks(2)) {
            let seq = pair.first().and_then(|s| s.parse().ok()).unwrap_or_default();
            let version = pair.get(1).and_then(|v| v.parse::<i64>().ok()).and_then(|v| u64::try_from(v).ok());
            committed.entries.push(AuditEntry::of(&commit, change, seq, version));
        }
        for pair in reply[(split + 1).min(reply.len())..].chunks(2) {
            if let [environment, revision] = pair {
                committed.revisions.insert(environment.clone(), revision.parse().unwrap_or_default());
            }
        }
        Ok(committed)
    }

    async fn installation_secret(&self) -> Result<[u8; 32], StoreError> {
        // The first replica's secret wins (SET NX); everyone reads it back.
        let key = self.key(&["secret"]);
        let candidate = hex::encode(crate::store::random_secret()?);
        let _: Option<String> = self
            .call(async |mut c| redis::cmd("SET").arg(&key).arg(&candidate).arg("NX").query_async(&mut c).await)
            .await?;
        let stored: Option<String> = self.call(async |mut c| c.get(&key).await).await?;
        stored
            .and_then(|text| hex::decode(text).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| StoreError::unavailable("redis", "the installation secret is not 32 bytes of hex"))
    }

    async fn history(
        &self,
        environment: &str,
        flag: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FlagVersion>, StoreError> {
        // Versions are consecutive in the list, so the page is found from
        // the first one kept without reading the others.
        let key = self.key(&["versions", environment, flag]);
        let first: Option<String> = self.call(async |mut c| c.lindex(&key, 0).await).await?;
        let Some(first) = first else { return Ok(Vec::new()) };
        let first = decode::<FlagVersion>(&first)?.version;
        let start = after.saturating_add(1).saturating_sub(first) as isize;
        let stop = start.saturating_add(limit as isize).saturating_sub(1);
        let items: Vec<String> = self.call(async |mut c| c.lrange(&key, start, stop).await).await?;
        items.iter().map(|text| decode(text)).collect()
    }

    fn retain_versions(&self, versions: usize) {
        self.keep.store(versions.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    async fn prune(&self, before: u64) -> Result<u64, StoreError> {
        // Audit: oldest first, until an entry is new enough.
        const PAGE: isize = 500;
        let key = self.key(&["audit"]);
        let mut removed = 0u64;
        loop {
            let page: Vec<String> = self.call(async |mut c| c.zrange(&key, 0, PAGE - 1).await).await?;
            let old: Vec<&String> =
                page.iter().take_while(|text| decode::<AuditEntry>(text).is_ok_and(|e| e.at < before)).collect();
            if old.is_empty() {
                break;
            }
            let count = old.len();
            let members: Vec<String> = old.into_iter().cloned().collect();
            let _: i64 = self.call(async |mut c| c.zrem(&key, &members).await).await?;
            removed += count as u64;
            if count < page.len() || page.len() < PAGE as usize {
                break;
            }
        }
        // Versions beyond the retention (left from a larger setting).
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        if keep > 0 {
            let environments: Vec<String> =
                self.call(async |mut c| c.smembers(self.key(&["environments"])).await).await?;
            for environment in environments {
                let meta = self.key(&["meta", &environment]);
                let flags: Vec<String> = self.call(async |mut c| c.hkeys(&meta).await).await?;
                for flag in flags {
                    let versions = self.key(&["versions", &environment, &flag]);
                    let length: usize = self.call(async |mut c| c.llen(&versions).await).await?;
                    if length > keep {
                        let _: () = self.call(async |mut c| c.ltrim(&versions, -(keep as isize), -1).await).await?;
                        removed += (length - keep) as u64;
                    }
                }
            }
        }
        Ok(removed)
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        const PAGE: isize = 500;
        let key = self.key(&["audit"]);
        let mut out = Vec::new();
        // Scores are sequence numbers; `start..end` is what is left to read.
        let mut start = query.after.map_or(0, |after| after.saturating_add(1));
        let mut end = query.before.unwrap_or(u64::MAX);
        loop {
            if start >= end {
                return Ok(out);
            }
            let (low, high) = (start as f64, format!("({end}"));
            let page: Vec<String> = if query.newest_first {
                self.call(async |mut c| c.zrevrangebyscore_limit(&key, &high, low, 0, PAGE).await).await?
            } else {
                self.call(async |mut c| c.zrangebyscore_limit(&key, low, &high, 0, PAGE).await).await?
            };
            let full = page.len() as isize == PAGE;
            for text in page {
                let entry: AuditEntry = decode(&text)?;
                if query.newest_first {
                    end = entry.seq;
                } else {
                    start = entry.seq + 1;
                }
                if query.matches(&entry) {
                    out.push(entry);
                    if out.len() >= query.limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn ramp_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        Ok(self.load_ramps().await?.1)
    }

    async fn write_ramp(&self, write: RampWrite) -> Result<(), StoreError> {
        let field = Self::ramp_field(&write.environment, &write.ramp);
        let expect = write.expect.as_ref().map(|(run, seq)| format!("{run}\n{seq}")).unwrap_or_default();
        let run_json = serde_json::to_string(&write.run).map_err(unavailable)?;
        let record = match &write.record {
            Some(record) => serde_json::to_string(record).map_err(unavailable)?,
            None => String::new(),
        };
        let (fence_lease, fence_token) =
            write.fence.as_ref().map_or((String::new(), 0), |f| (f.lease.clone(), f.token));
        let message = format!(
            "\"environment\":{},\"ramp\":{},\"run\":",
            json_string(&write.environment),
            json_string(&write.ramp)
        );
        let mut invocation = self.write_ramp_script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(&write.environment)
            .arg(&field)
            .arg(expect)
            .arg(format!("{}\n{}", write.run.run_id, write.run.seq))
            .arg(run_json)
            .arg(record)
            .arg(&fence_lease)
            .arg(fence_token)
            .arg(write.audit.len())
            .arg(write.outbox.len())
            .arg(message);
        for line in &write.audit {
            invocation.arg(tail(&write.audit_entry(line, 0), &["seq"]));
        }
        for delivery in &write.outbox {
            invocation.arg(tail(delivery, &["id"]));
        }
        let reply: Vec<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        let reply = script_reply(reply)?;
        match reply[0].as_str() {
            "fenced" => Err(StoreError::Fenced {
                lease: fence_lease,
                token: fence_token,
                current: reply.get(1).and_then(|c| c.parse().ok()).unwrap_or_default(),
            }),
            "conflict" => {
                let found = reply.get(1).and_then(|f| f.split_once('\n'));
                let found = found.map(|(run, seq)| (run, seq.parse().unwrap_or_default()));
                Err(StoreError::ramp_conflict(&write, found))
            }
            _ => Ok(()),
        }
    }

    async fn ramp_history(
        &self,
        environment: &str,
        ramp: &str,
        limit: usize,
    ) -> Result<Vec<RampDecisionRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(&["decisions", &Self::ramp_field(environment, ramp)]);
        let start = -(limit.min(isize::MAX as usize) as isize);
        let items: Vec<String> = self.call(async |mut c| c.lrange(&key, start, -1).await).await?;
        items.iter().map(|text| decode(text)).collect()
    }

    async fn record_outcomes(
        &self,
        environment: &str,
        counts: Vec<OutcomeCount>,
        contexts: Vec<ContextOutcome>,
    ) -> Result<(), StoreError> {
        if counts.is_empty() && contexts.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let mut minutes: BTreeSet<(&str, u64)> = BTreeSet::new();
        for count in &counts {
            let minute = count.second / OUTCOME_SLICE_SECONDS;
            let key = self.outcome_key("outcomes", environment, &count.flag, minute);
            minutes.insert((&count.flag, minute));
            if count.ok > 0 {
                pipe.hincr(&key, format!("{}|o|{}", count.second, count.variant), count.ok).ignore();
            }
            if count.error > 0 {
                pipe.hincr(&key, format!("{}|e|{}", count.second, count.variant), count.error).ignore();
            }
            // Durations: one field per latency slot that holds something.
            for (slot, n) in count.latency.slots() {
                pipe.hincr(&key, format!("{}|l{slot}|{}", count.second, count.variant), n).ignore();
            }
        }
        for outcome in &contexts {
            let minute = outcome.second / OUTCOME_SLICE_SECONDS;
            let key = self.outcome_key("ctx", environment, &outcome.flag, minute);
            minutes.insert((&outcome.flag, minute));
            let field = format!("{}|{}|{}", outcome.second, outcome.context, outcome.variant);
            if outcome.error {
                pipe.hset(&key, field, 1).ignore();
            } else {
                pipe.hset_nx(&key, field, 0).ignore();
            }
        }
        for (flag, minute) in minutes {
            pipe.zadd(self.key(&["outslices", environment, flag]), minute, minute).ignore();
        }
        self.call(async |mut c| pipe.query_async::<()>(&mut c).await).await
    }

    async fn outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let slices: Vec<BTreeMap<String, u64>> = self.read_slices("outcomes", environment, flag, from, to).await?;
        let mut counts: BTreeMap<(u64, String), (u64, u64, Latency)> = BTreeMap::new();
        for (field, value) in slices.into_iter().flatten() {
            let mut parts = field.splitn(3, '|');
            let (Some(second), Some(kind), Some(variant)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(second) = second.parse::<u64>() else { continue };
            if second < from || second >= to {
                continue;
            }
            let entry = counts.entry((second, variant.to_owned())).or_default();
            match kind {
                "e" => entry.1 += value,
                "o" => entry.0 += value,
                slot => {
                    if let Some(slot) = slot.strip_prefix('l').and_then(|slot| slot.parse::<usize>().ok()) {
                        entry.2.add(slot, value);
                    }
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|((second, variant), (ok, error, latency))| OutcomeCount {
                flag: flag.to_owned(),
                variant,
                second,
                ok,
                error,
                latency,
            })
            .collect())
    }

    async fn record_conversions(&self, environment: &str, conversions: Vec<Conversion>) -> Result<(), StoreError> {
        if conversions.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let mut minutes: BTreeSet<(&str, u64)> = BTreeSet::new();
        for conversion in &conversions {
            let minute = conversion.second / OUTCOME_SLICE_SECONDS;
            let key = self.outcome_key("conv", environment, &conversion.flag, minute);
            minutes.insert((&conversion.flag, minute));
            let field = format!("{}|{}|{}", conversion.second, conversion.context, conversion.event);
            pipe.hset(&key, field, 1).ignore();
        }
        for (flag, minute) in minutes {
            pipe.zadd(self.key(&["outslices", environment, flag]), minute, minute).ignore();
        }
        self.call(async |mut c| pipe.query_async::<()>(&mut c).await).await
    }

    async fn conversions(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Conversion>, StoreError> {
        let slices: Vec<BTreeMap<String, u8>> = self.read_slices("conv", environment, flag, from, to).await?;
        let mut out = Vec::new();
        for field in slices.into_iter().flat_map(BTreeMap::into_keys) {
            let mut parts = field.splitn(3, '|');
            let (Some(second), Some(context), Some(event)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(second), Ok(context)) = (second.parse::<u64>(), context.parse::<u64>()) else { continue };
            if (from..to).contains(&second) {
                out.push(Conversion { flag: flag.to_owned(), event: event.to_owned(), second, context });
            }
        }
        Ok(out)
    }

    async fn context_outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ContextOutcome>, StoreError> {
        let slices: Vec<BTreeMap<String, u8>> = self.read_slices("ctx", environment, flag, from, to).await?;
        let mut out = Vec::new();
        for (field, value) in slices.into_iter().flatten() {
            let mut parts = field.splitn(3, '|');
            let (Some(second), Some(context), Some(variant)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(second), Ok(context)) = (second.parse::<u64>(), context.parse::<u64>()) else { continue };
            if (from..to).contains(&second) {
                out.push(ContextOutcome {
                    flag: flag.to_owned(),
                    variant: variant.to_owned(),
                    second,
                    context,
                    error: value == 1,
                });
            }
        }
        out.sort_by(|a, b| (a.second, &a.variant, a.context).cmp(&(b.second, &b.variant, b.context)));
        Ok(out)
    }

    async fn record_usage(
        &self,
        environment: &str,
        at: u64,
        counts: Vec<crate::store::usage::UsageCount>,
    ) -> Result<(), StoreError> {
        self.add_usage(environment, at, counts).await
    }

    async fn usage(
        &self,
        environment: &str,
        flag: Option<&str>,
        now: u64,
    ) -> Result<Vec<crate::store::usage::FlagUsage>, StoreError> {
        self.read_usage(environment, flag, now).await
    }

    async fn due_deliveries(&self, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let key = self.key(&["outbox"]);
        let all: BTreeMap<u64, String> = self.call(async |mut c| c.hgetall(&key).await).await?;
        let mut due = Vec::new();
        for text in all.values() {
            let delivery: Delivery = decode(text)?;
            if delivery.next_attempt_at <= now {
                due.push(delivery);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        let key = self.key(&["outbox"]);
        self.call(async |mut c| c.hlen(&key).await).await
    }

    async fn finish_delivery(&self, id: u64, retry: Option<Delivery>) -> Result<(), StoreError> {
        let key = self.key(&["outbox"]);
        match retry {
            Some(delivery) => {
                let text = serde_json::to_string(&Delivery { id, ..delivery }).map_err(unavailable)?;
                self.call(async |mut c| c.hset::<_, _, _, ()>(&key, id, text).await).await
            }
            None => self.call(async |mut c| c.hdel::<_, _, ()>(&key, id).await).await,
        }
    }

    async fn prune_outcomes(&self, environment: &str, flag: &str, before: u64) -> Result<(), StoreError> {
        // Whole slices before `before`'s minute go with their keys; in that
        // minute (at most a minute of fields) the seconds before it.
        let index = self.key(&["outslices", environment, flag]);
        let boundary = before / OUTCOME_SLICE_SECONDS;
        if !before.is_multiple_of(OUTCOME_SLICE_SECONDS) {
            for kind in ["outcomes", "ctx", "conv"] {
                let key = self.outcome_key(kind, environment, flag, boundary);
                let fields: Vec<String> = self.call(async |mut c| c.hkeys(&key).await).await?;
                let old: Vec<&String> = fields
                    .iter()
                    .filter(|f| f.split('|').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s < before))
                    .collect();
                if !old.is_empty() {
                    self.call(async |mut c| c.hdel::<_, _, ()>(&key, old).await).await?;
                }
            }
        }
        if boundary == 0 {
            return Ok(());
        }
        let minutes: Vec<u64> =
            self.call(async |mut c| c.zrangebyscore(&index, f64::NEG_INFINITY, (boundary - 1) as f64).await).await?;
        for chunk in minutes.chunks(500) {
            let mut pipe = ::redis::pipe();
            pipe.atomic();
            for minute in chunk {
                pipe.del(self.outcome_key("outcomes", environment, flag, *minute)).ignore();
                pipe.del(self.outcome_key("ctx", environment, flag, *minute)).ignore();
                pipe.del(self.outcome_key("conv", environment, flag, *minute)).ignore();
            }
            pipe.zrem(&index, chunk).ignore();
            self.call(async |mut c| pipe.query_async::<()>(&mut c).await).await?;
        }
        Ok(())
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.acquire_script.prepare_invoke();
        invocation.arg(&self.prefix).arg(name).arg(holder).arg(ttl.as_millis().max(1) as u64);
        let token: Option<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        Ok(token.and_then(|t| t.parse().ok()))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut invocation = self.release_script.prepare_invoke();
        invocation.arg(&self.prefix).arg(name).arg(holder);
        self.call(async |mut c| invocation.invoke_async::<i64>(&mut c).await).await.map(|_| ())
    }

    fn health(&self) -> StoreHealth {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match &health.error {
            None => StoreHealth { kind: "redis", state: "ok", error: None },
            Some(error) => StoreHealth { kind: "redis", state: "unavailable", error: Some(error.clone()) },
        }
    }
}
