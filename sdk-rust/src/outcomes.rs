//! Outcome reporting for ramps: how requests served with each variant
//! went. Recording is a short lock and a counter increment; a background
//! task ships the counts to the server in batches (`rampart.v1`
//! `ReportOutcomes`) and keeps them for the next attempt when the server
//! cannot be reached, up to a bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rampart_proto::rampart::v1::flag_sync_client::FlagSyncClient;
use rampart_proto::rampart::v1::{
    FlagEvaluations, Outcome as OutcomeMessage, OutcomeBatch, TrackBatch, TrackEvent, UsageBatch,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;
use crate::pending::Counts;
use crate::state::State;

/// How many times a batch the server found too large for now is halved
/// and sent again within one flush.
const MAX_HALVINGS: usize = 8;

/// Sends what is pending now; on failure the counts stay pending.
///
/// The server bounds what one reporter may add to a ramp in a second,
/// relative to the step's evidence (`RESOURCE_EXHAUSTED`): then half is
/// sent at once and the rest waits for the next flush, so honest traffic
/// catches up as the step's evidence grows instead of being refused whole
/// forever. A report the server will never take (`PERMISSION_DENIED`: an
/// SDK key where reporter keys are required; `INVALID_ARGUMENT`) is
/// dropped and counted, not retried.
pub(crate) async fn flush(state: &State, channel: &Channel) -> Result<(), Error> {
    let tracked = flush_tracks(state, channel).await;
    flush_outcomes(state, channel).await.and(tracked)
}

/// Sends the pending `track` events; kept for the next flush when the
/// server cannot take them now, dropped (and counted) when it never will.
/// As with outcomes, a batch larger than the server takes from one source
/// now (`RESOURCE_EXHAUSTED`) is sent half at a time, the rest kept.
async fn flush_tracks(state: &State, channel: &Channel) -> Result<(), Error> {
    let mut events = state.tracks.take();
    let mut later = Vec::new();
    for _ in 0..=MAX_HALVINGS {
        if events.is_empty() {
            break;
        }
        let batch = TrackBatch {
            events: events
                .iter()
                .map(|(name, key)| TrackEvent { name: name.clone(), targeting_key: key.clone() })
                .collect(),
        };
        let mut request = tonic::Request::new(batch);
        authorize(state, &mut request);
        match FlagSyncClient::new(channel.clone()).track(request).await {
            Ok(_) => {
                state.tracks.restore(later);
                return Ok(());
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted && events.len() > 1 => {
                let rest = events.split_off(events.len() / 2);
                later.extend(rest);
            }
            Err(status) if matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::InvalidArgument) => {
                state.tracks.dropped.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                state.tracks.restore(later);
                tracing::warn!(
                    dropped = events.len(),
                    reason = status.message(),
                    "the server refuses these track events"
                );
                return Err(Error::Outcomes(status.message().to_owned()));
            }
            Err(status) => {
                state.tracks.restore(events);
                state.tracks.restore(later);
                return Err(Error::Outcomes(status.message().to_owned()));
            }
        }
    }
    state.tracks.restore(events);
    state.tracks.restore(later);
    Ok(())
}

fn authorize<T>(state: &State, request: &mut tonic::Request<T>) {
    if let Some(key) = state.config.reporter_key.as_ref().or(state.config.sdk_key.as_ref())
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
}

async fn flush_outcomes(state: &State, channel: &Channel) -> Result<(), Error> {
    let mut batch = state.outcomes.take();
    let mut later: Counts = HashMap::new();
    for _ in 0..=MAX_HALVINGS {
        if batch.is_empty() {
            break;
        }
        match send(state, channel, &batch).await {
            Ok(()) => {
                state.outcomes.restore(later);
                return Ok(());
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted && total(&batch) > 1 => {
                let (now, rest) = halve(batch);
                for (key, (ok, error)) in rest {
                    let entry = later.entry(key).or_default();
                    entry.0 += ok;
                    entry.1 += error;
                }
                batch = now;
            }
            Err(status) if matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::InvalidArgument) => {
                let dropped = total(&batch);
                state.outcomes.dropped.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                state.outcomes.restore(later);
                tracing::warn!(dropped, reason = status.message(), "the server refuses these outcome reports; dropped");
                return Err(Error::Outcomes(status.message().to_owned()));
            }
            Err(status) => {
                state.outcomes.restore(batch);
                state.outcomes.restore(later);
                return Err(Error::Outcomes(status.message().to_owned()));
            }
        }
    }
    state.outcomes.restore(batch);
    state.outcomes.restore(later);
    Ok(())
}

fn total(batch: &Counts) -> u64 {
    batch.values().map(|(ok, error)| ok + error).sum()
}

/// Half of every count now (rounded up), the rest later; of the entries
/// holding a single outcome (one per targeting key, as context reports
/// are), every other one now — so that a batch of many single outcomes
/// halves as well.
fn halve(batch: Counts) -> (Counts, Counts) {
    let mut now = HashMap::new();
    let mut rest = HashMap::new();
    let mut single_now = true;
    for (key, (ok, error)) in batch {
        let (ok_now, error_now) = if ok + error == 1 {
            single_now = !single_now;
            if single_now { (0, 0) } else { (ok, error) }
        } else {
            (ok.div_ceil(2), error.div_ceil(2))
        };
        if ok - ok_now + error - error_now > 0 {
            rest.insert(key.clone(), (ok - ok_now, error - error_now));
        }
        if ok_now + error_now > 0 {
            now.insert(key, (ok_now, error_now));
        }
    }
    (now, rest)
}

async fn send(state: &State, channel: &Channel, counts: &Counts) -> Result<(), tonic::Status> {
    let outcomes = counts
        .iter()
        .map(|((flag, variant, targeting_key, slot), (ok, error))| OutcomeMessage {
            flag: flag.clone(),
            variant: variant.clone(),
            ok: *ok,
            error: *error,
            targeting_key: targeting_key.clone().unwrap_or_default(),
            at_second: 0,
            duration_ms: slot.map(|slot| rampart_proto::latency::representative_millis(usize::from(slot))),
        })
        .collect();
    let mut request = tonic::Request::new(OutcomeBatch { outcomes });
    authorize(state, &mut request);
    FlagSyncClient::new(channel.clone()).report_outcomes(request).await.map(|_| ())
}

/// A lazily connected channel to the server, for outcome batches.
pub(crate) fn channel(state: &State) -> Option<Channel> {
    let endpoint = state.config.endpoint.as_ref()?;
    Endpoint::from_shared(endpoint.clone()).ok().map(|e| e.connect_timeout(state.config.connect_timeout).connect_lazy())
}

/// Most entries in one usage report (the server's bound).
const USAGE_BATCH: usize = 1_000;

/// In-process evaluation counts not yet taken by the server: (flag,
/// variant, evaluations).
type Usage = Vec<(String, Option<String>, u64)>;

/// Reports how often each flag was evaluated in process since the last
/// report (`ReportUsage`), in parts of at most [`USAGE_BATCH`]; what the
/// server cannot take now is returned, to be sent with the next report.
async fn report_usage(state: &State, channel: &Channel, mut carried: Usage) -> Usage {
    let (taken, dropped) = state.take_usage();
    if dropped > 0 {
        tracing::debug!(dropped, "usage counters beyond the bound were dropped");
    }
    for (flag, variant, count) in taken {
        match carried.iter_mut().find(|(f, v, _)| *f == flag && *v == variant) {
            Some(entry) => entry.2 += count,
            None => carried.push((flag, variant, count)),
        }
    }
    let mut kept = Vec::new();
    while !carried.is_empty() {
        let part: Usage = carried.drain(..carried.len().min(USAGE_BATCH)).collect();
        let evaluations = part
            .iter()
            .map(|(flag, variant, count)| FlagEvaluations {
                flag: flag.clone(),
                variant: variant.clone(),
                count: *count,
            })
            .collect();
        let mut request = tonic::Request::new(UsageBatch { evaluations });
        if let Some(key) = &state.config.sdk_key
            && let Ok(value) = format!("Bearer {key}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        match FlagSyncClient::new(channel.clone()).report_usage(request).await {
            Ok(_) => {}
            // Not now (unreachable, overloaded): with the next report.
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                kept.extend(part);
            }
            // Never (an older server, a refused key): dropped.
            Err(status) => tracing::debug!(%status, "the server does not take usage reports; dropped"),
        }
    }
    kept
}

/// Flushes every `interval` until `stop`, then once more; reports usage
/// every `usageInterval`.
pub(crate) async fn run(state: Arc<State>, interval: Duration, stop: CancellationToken) {
    let Some(channel) = channel(&state) else { return };
    let mut usage: Usage = Vec::new();
    let mut last_usage = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = flush(&state, &channel).await {
            tracing::debug!(%error, "outcome report failed; will retry");
        }
        if state.config.usage_interval.is_some_and(|every| last_usage.elapsed() >= every) {
            usage = report_usage(&state, &channel, usage).await;
            last_usage = tokio::time::Instant::now();
        }
    }
    let last = async {
        let _ = flush(&state, &channel).await;
        if state.config.usage_interval.is_some() {
            report_usage(&state, &channel, usage).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), last).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::Key;

    fn key(variant: &str, targeting_key: Option<&str>) -> Key {
        ("flag".to_owned(), variant.to_owned(), targeting_key.map(str::to_owned), None)
    }

    #[test]
    fn halving_splits_counts_and_single_outcomes_alike() {
        let mut batch: Counts = HashMap::new();
        batch.insert(key("on", None), (7, 3));
        for user in 0..10 {
            batch.insert(key("off", Some(&format!("user-{user}"))), (1, 0));
        }
        let before = total(&batch);
        let (now, later) = halve(batch);
        assert_eq!(now[&key("on", None)], (4, 2), "rounded up, both kinds");
        assert_eq!(later[&key("on", None)], (3, 1));
        let singles = |part: &Counts| part.keys().filter(|k| k.2.is_some()).count();
        assert_eq!((singles(&now), singles(&later)), (5, 5), "every other single outcome");
        assert_eq!(total(&now) + total(&later), before, "nothing lost, nothing doubled");
        // A batch of one outcome cannot be halved: flush sends it as it is.
        let one: Counts = [(key("on", Some("u")), (0, 1))].into_iter().collect();
        let (now, later) = halve(one);
        assert_eq!((total(&now), later.len()), (1, 0));
    }
}
