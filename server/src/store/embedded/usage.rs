//! Flag usage in the embedded store: one record per (environment, flag),
//! read, added to and pruned in one write transaction per flush.

use std::collections::BTreeMap;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::{USAGE, unavailable};
use crate::store::StoreError;
use crate::store::usage::{FlagUsage, UsageCount};

pub(super) fn record_usage(db: &Database, environment: &str, at: u64, counts: &[UsageCount]) -> Result<(), StoreError> {
    let mut by_flag: BTreeMap<&str, Vec<&UsageCount>> = BTreeMap::new();
    for count in counts {
        by_flag.entry(count.flag.as_str()).or_default().push(count);
    }
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(USAGE).map_err(unavailable)?;
        for (flag, counts) in by_flag {
            let stored = table.get((environment, flag)).map_err(unavailable)?.map(|v| v.value().to_vec());
            let mut usage = stored
                .and_then(|bytes| serde_json::from_slice::<FlagUsage>(&bytes).ok())
                .unwrap_or_else(|| FlagUsage { flag: flag.to_owned(), ..FlagUsage::default() });
            for count in counts {
                usage.add(count, at);
            }
            let bytes = serde_json::to_vec(&usage).map_err(unavailable)?;
            table.insert((environment, flag), bytes.as_slice()).map_err(unavailable)?;
        }
    }
    txn.commit().map_err(unavailable)
}

pub(super) fn usage(db: &Database, environment: &str, flag: Option<&str>) -> Result<Vec<FlagUsage>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(USAGE).map_err(unavailable)?;
    let mut out = Vec::new();
    let mut read = |bytes: &[u8]| {
        if let Ok(usage) = serde_json::from_slice::<FlagUsage>(bytes) {
            out.push(usage);
        }
    };
    match flag {
        Some(flag) => {
            if let Some(value) = table.get((environment, flag)).map_err(unavailable)? {
                read(value.value());
            }
        }
        None => {
            for entry in table.range((environment, "")..).map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                if key.value().0 != environment {
                    break;
                }
                read(value.value());
            }
        }
    }
    Ok(out)
}
