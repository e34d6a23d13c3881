//! Outcome reporting for ramps: how requests served with each variant
//! went. Recording is a short lock and a counter increment; a background
//! task ships the counts to the server in batches (`rampart.v1`
//! `ReportOutcomes`) and keeps them for the next attempt when the server
//! cannot be reached, up to a bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{Outcome as OutcomeMessage, OutcomeBatch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::client::State;
use crate::error::Error;

/// How a request served with a flag's variant went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    Ok,
    Error,
}

/// Distinct (flag, variant, targeting key) counters kept at most; beyond
/// that new keys are dropped (and counted) rather than growing without bound.
const MAX_PENDING: usize = 10_000;

type Key = (String, String, Option<String>);

/// Counts waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    counts: Mutex<HashMap<Key, (u64, u64)>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl Pending {
    pub(crate) fn add(&self, key: Key, ok: u64, error: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = counts.len() >= MAX_PENDING;
        match counts.get_mut(&key) {
            Some(entry) => {
                entry.0 += ok;
                entry.1 += error;
            }
            None if full => {
                self.dropped.fetch_add(ok + error, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                counts.insert(key, (ok, error));
            }
        }
    }

    fn take(&self) -> HashMap<Key, (u64, u64)> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn restore(&self, counts: HashMap<Key, (u64, u64)>) {
        for (key, (ok, error)) in counts {
            self.add(key, ok, error);
        }
    }
}

/// Sends what is pending now; on failure the counts stay pending.
pub(crate) async fn flush(state: &State, channel: &Channel) -> Result<(), Error> {
    let counts = state.outcomes.take();
    if counts.is_empty() {
        return Ok(());
    }
    let outcomes = counts
        .iter()
        .map(|((flag, variant, targeting_key), (ok, error))| OutcomeMessage {
            flag: flag.clone(),
            variant: variant.clone(),
            ok: *ok,
            error: *error,
            targeting_key: targeting_key.clone().unwrap_or_default(),
            at_second: 0,
        })
        .collect();
    let mut request = tonic::Request::new(OutcomeBatch { outcomes });
    if let Some(key) = state.config.reporter_key.as_ref().or(state.config.sdk_key.as_ref())
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    match FlagSyncClient::new(channel.clone()).report_outcomes(request).await {
        Ok(_) => Ok(()),
        Err(status) => {
            state.outcomes.restore(counts);
            Err(Error::Outcomes(status.message().to_owned()))
        }
    }
}

/// A lazily connected channel to the server, for outcome batches.
pub(crate) fn channel(state: &State) -> Option<Channel> {
    let endpoint = state.config.endpoint.as_ref()?;
    Endpoint::from_shared(endpoint.clone()).ok().map(|e| e.connect_timeout(state.config.connect_timeout).connect_lazy())
}

/// Flushes every `interval` until `stop`, then once more.
pub(crate) async fn run(state: Arc<State>, interval: Duration, stop: CancellationToken) {
    let Some(channel) = channel(&state) else { return };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = flush(&state, &channel).await {
            tracing::debug!(%error, "outcome report failed; will retry");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), flush(&state, &channel)).await;
}
