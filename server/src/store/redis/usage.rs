//! Flag usage in Redis, shared by every replica: a hash per flag whose
//! fields (`store::usage` names them) are added to with `HINCRBY`, and a
//! sorted set per environment holding each flag's last evaluation (`ZADD
//! GT`: the latest wins whichever replica writes last) — also the index of
//! flags with usage.
//!
//! Pruning: each write deletes, for the variants it counts, the names of
//! the day of hours and the month of days just before the window; a read
//! deletes any expired field it meets.

use std::collections::{BTreeMap, BTreeSet};

use super::RedisStore;
use crate::store::StoreError;
use crate::store::usage::{self, DAYS_KEPT, FlagUsage, HOURS_KEPT, UsageCount};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

impl RedisStore {
    fn usage_key(&self, environment: &str, flag: &str) -> String {
        self.key(&["usage", environment, flag])
    }

    fn usage_index(&self, environment: &str) -> String {
        self.key(&["usagelast", environment])
    }

    pub(super) async fn add_usage(
        &self,
        environment: &str,
        at: u64,
        counts: Vec<UsageCount>,
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        let mut expired: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for count in &counts {
            let key = self.usage_key(environment, &count.flag);
            for field in usage::fields_of(count, at) {
                pipe.hincr(&key, field, count.count).ignore();
            }
            let entry = last.entry(&count.flag).or_default();
            *entry = (*entry).max(count.last);
            let gone = expired.entry(&count.flag).or_default();
            let (hour, day) = (at / HOUR_MS, at / DAY_MS);
            for back in HOURS_KEPT..HOURS_KEPT + 24 {
                gone.insert(usage::field('h', hour.saturating_sub(back), count.source, &count.variant));
            }
            for back in DAYS_KEPT..DAYS_KEPT + 30 {
                gone.insert(usage::field('d', day.saturating_sub(back), count.source, &count.variant));
            }
        }
        for (flag, fields) in expired {
            pipe.hdel(self.usage_key(environment, flag), fields.into_iter().collect::<Vec<_>>()).ignore();
        }
        let index = self.usage_index(environment);
        for (flag, at) in last {
            pipe.cmd("ZADD").arg(&index).arg("GT").arg(at).arg(flag).ignore();
        }
        self.call(async |mut c| pipe.query_async::<()>(&mut c).await).await
    }

    pub(super) async fn read_usage(
        &self,
        environment: &str,
        flag: Option<&str>,
        now: u64,
    ) -> Result<Vec<FlagUsage>, StoreError> {
        let index = self.usage_index(environment);
        let flags: Vec<(String, u64)> = match flag {
            Some(flag) => {
                let score: Option<f64> = self
                    .call(async |mut c| ::redis::cmd("ZSCORE").arg(&index).arg(flag).query_async(&mut c).await)
                    .await?;
                score.map(|at| vec![(flag.to_owned(), at as u64)]).unwrap_or_default()
            }
            None => {
                let all: Vec<(String, f64)> = self
                    .call(async |mut c| {
                        ::redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).arg("WITHSCORES").query_async(&mut c).await
                    })
                    .await?;
                all.into_iter().map(|(flag, at)| (flag, at as u64)).collect()
            }
        };
        if flags.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for (flag, _) in &flags {
            pipe.hgetall(self.usage_key(environment, flag));
        }
        let hashes: Vec<BTreeMap<String, u64>> = self.call(async |mut c| pipe.query_async(&mut c).await).await?;
        let mut stale = ::redis::pipe();
        let mut out = Vec::with_capacity(flags.len());
        for ((flag, last), mut periods) in flags.into_iter().zip(hashes) {
            let gone: Vec<String> = periods.keys().filter(|name| usage::expired(name, now)).cloned().collect();
            if !gone.is_empty() {
                stale.hdel(self.usage_key(environment, &flag), gone.clone()).ignore();
                periods.retain(|name, _| !gone.contains(name));
            }
            out.push(FlagUsage { flag, last, periods });
        }
        // Best effort: a failed clean-up leaves fields the next read drops again.
        let _ = self.call(async |mut c| stale.query_async::<()>(&mut c).await).await;
        Ok(out)
    }
}
