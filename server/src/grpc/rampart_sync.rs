//! Rampart's own sync (`rampart.v1.FlagSync`), for the Rust SDK and
//! relays: outcome, track and usage reports here; the `Subscribe` stream
//! is served by `subscribe`, on the sync listener's own HTTP/2 handling.

use std::pin::Pin;
use std::sync::Arc;

use crate::services::track::TrackEvent;
use rampart_proto::rampart::v1::flag_sync_server::FlagSync;
use rampart_proto::rampart::v1::{
    OutcomeBatch, OutcomeReply, SubscribeRequest, SyncEvent, TrackBatch, TrackReply, UsageBatch, UsageReply,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::GrpcState;
use crate::environment::{Environment, Trust};
use crate::ramp::applied::Claim;
use crate::ramp::contribution::Source;
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{Origin, Part, RecordError, Report};

#[derive(Debug, Clone)]
pub(crate) struct RampartSync {
    pub(crate) state: GrpcState,
    /// Ids of batches relays forwarded and this process applied.
    pub(crate) applied: Arc<crate::ramp::applied::AppliedBatches>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SyncEvent, Status>> + Send + 'static>>;

fn report(o: rampart_proto::rampart::v1::Outcome) -> Report {
    Report {
        flag: o.flag,
        variant: o.variant,
        ok: o.ok,
        error: o.error,
        targeting_key: Some(o.targeting_key).filter(|k| !k.is_empty()),
        duration_ms: o.duration_ms,
    }
}

impl RampartSync {
    fn refused(&self, refused: Refused) -> Status {
        refused.count(&self.state.metrics);
        answer(refused)
    }

    fn record_error(&self, error: RecordError) -> Status {
        match error {
            // Counted where it was refused.
            RecordError::Refused(refused) => answer(refused),
            RecordError::Store(error) => Status::unavailable(error.to_string()),
        }
    }

    /// Outcomes a relay forwards: already checked and rate-limited per
    /// client there, summed per second the relay accepted them in. A batch id already applied is acknowledged
    /// without counting it again (the relay sends until acknowledged).
    async fn forwarded(
        &self,
        relay: &str,
        environment: &Environment,
        metadata: &tonic::metadata::MetadataMap,
        batch: OutcomeBatch,
    ) -> Result<Response<OutcomeReply>, Status> {
        let id = metadata.get(crate::relay::BATCH_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Status::invalid_argument(format!("forwarded outcomes carry '{}'", crate::relay::BATCH_HEADER))
        })?;
        let id = format!("{relay}/{id}");
        let claimed = match self.applied.claim(&id) {
            Claim::Fresh(claimed) => claimed,
            Claim::Applied => {
                return Ok(Response::new(OutcomeReply { accepted: 0, ignored: batch.outcomes.len() as u64 }));
            }
            Claim::InFlight => return Err(Status::unavailable("this batch is being applied now; send it again later")),
        };
        let origin = Origin { trust: Trust::Reporter, source: Source::Relay(relay.to_owned()) };
        self.state
            .outcomes
            .admit(&environment.name, &origin.source, self.state.clock.now_millis())
            .map_err(|r| self.refused(r))?;
        // Counted on arrival, like every report (the ramp's evidence reads
        // closed buckets only, so back-dating would miss them), and bounded
        // as one source, second by second of the relay's own: the relay's
        // token is a credential that can leak. All or nothing: a batch is
        // counted whole or refused whole (and resent whole).
        let now = self.state.clock.now_millis();
        let mut by_second: std::collections::BTreeMap<u64, Vec<Report>> = std::collections::BTreeMap::new();
        for outcome in batch.outcomes {
            if outcome.at_second > now / 1000 + 5 {
                return Err(Status::invalid_argument("forwarded outcomes name a second in the future"));
            }
            by_second.entry(outcome.at_second).or_default().push(report(outcome));
        }
        let mut all = Vec::new();
        for reports in by_second.values() {
            crate::ramp::outcomes::check(reports).map_err(|error| Status::invalid_argument(error.to_string()))?;
            // Too large for one request: the relay sends it in smaller parts.
            self.state.outcomes.check_counts(Trust::Reporter, reports).map_err(|refused| {
                refused.count(&self.state.metrics);
                Status::resource_exhausted(refused.to_string())
            })?;
            all.extend(reports.iter().cloned());
        }
        crate::ramp::outcomes::check(&all).map_err(|error| Status::invalid_argument(error.to_string()))?;
        let parts: Vec<Part<'_>> =
            by_second.iter().map(|(second, reports)| Part { second: *second, reports: reports.as_slice() }).collect();
        // A relay in the middle of a chain passes them on.
        let (accepted, ignored) = crate::services::outcomes::take(&self.state, &environment.name, &origin, &parts)
            .await
            .map_err(|error| self.record_error(error))?;
        claimed.applied();
        Ok(Response::new(OutcomeReply { accepted: accepted as u64, ignored: ignored as u64 }))
    }

    /// A relay's subscription: its token's name and the environment it
    /// names (which the token must be scoped to); `None` for SDK clients.
    pub(crate) fn relay(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<(String, Arc<Environment>)>, Status> {
        let Some(token) = bearer(metadata) else { return Ok(None) };
        if self.state.environments.relay_name(token).is_none() {
            return Ok(None);
        }
        let header = crate::relay::ENVIRONMENT_HEADER;
        let Some(name) = metadata.get(header).and_then(|v| v.to_str().ok()) else {
            return Err(Status::invalid_argument(format!("a relay names the environment it follows in '{header}'")));
        };
        match self.state.environments.relay(token, name) {
            Ok((relay, environment)) => Ok(Some((relay, environment.clone()))),
            Err(rejection) => Err(Status::permission_denied(rejection.to_string())),
        }
    }
}

/// A refused report as a gRPC status.
fn answer(refused: Refused) -> Status {
    match refused {
        Refused::Rate { .. } | Refused::Excess { .. } => Status::resource_exhausted(refused.to_string()),
        _ => Status::invalid_argument(refused.to_string()),
    }
}

/// The bearer token of a call, if any.
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

#[tonic::async_trait]
impl FlagSync for RampartSync {
    type SubscribeStream = EventStream;

    async fn report_outcomes(&self, request: Request<OutcomeBatch>) -> Result<Response<OutcomeReply>, Status> {
        let peer = request.remote_addr().map(|addr| addr.ip());
        let (metadata, _, batch) = request.into_parts();
        if let Some((relay, environment)) = self.relay(&metadata)? {
            return self.forwarded(&relay, &environment, &metadata, batch).await;
        }
        let (environment, trust) = self.state.reporter(&metadata)?;
        let state = &self.state;
        let key = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| metadata.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let origin = Origin::of(trust, key, peer);
        state
            .outcomes
            .admit(&environment.name, &origin.source, state.clock.now_millis())
            .map_err(|r| self.refused(r))?;
        let reports: Vec<Report> = batch.outcomes.into_iter().map(report).collect();
        crate::ramp::outcomes::check(&reports).map_err(|error| Status::invalid_argument(error.to_string()))?;
        state.outcomes.check_counts(trust, &reports).map_err(|r| self.refused(r))?;
        let parts = [Part { second: state.clock.now_millis() / 1000, reports: &reports }];
        let (accepted, ignored) = crate::services::outcomes::take(state, &environment.name, &origin, &parts)
            .await
            .map_err(|error| self.record_error(error))?;
        Ok(Response::new(OutcomeReply { accepted: accepted as u64, ignored: ignored as u64 }))
    }

    async fn track(&self, request: Request<TrackBatch>) -> Result<Response<TrackReply>, Status> {
        let peer = request.remote_addr().map(|addr| addr.ip());
        let (metadata, _, batch) = request.into_parts();
        let state = &self.state;
        let key = crate::grpc::bearer_or_api_key(&metadata);
        let (environment, origin) = match self.relay(&metadata)? {
            // A relay passing on its region's events: one source, by name.
            Some((relay, environment)) => {
                (environment, Origin { trust: Trust::Reporter, source: Source::Relay(relay) })
            }
            None => {
                let (environment, trust) = state.environments.tracker(key.as_deref()).map_err(Status::from)?;
                (environment.clone(), Origin::of(trust, key.as_deref(), peer))
            }
        };
        state
            .outcomes
            .admit(&environment.name, &origin.source, state.clock.now_millis())
            .map_err(|r| self.refused(r))?;
        let events: Vec<TrackEvent> = batch
            .events
            .into_iter()
            .map(|event| TrackEvent {
                name: event.name,
                targeting_key: Some(event.targeting_key).filter(|k| !k.is_empty()),
            })
            .collect();
        crate::services::track::check_counted(state, &events)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let (accepted, ignored) = crate::services::track::take(state, &environment.name, &origin, &events)
            .await
            .map_err(|error| self.record_error(error))?;
        Ok(Response::new(TrackReply { accepted: accepted as u64, ignored: ignored as u64 }))
    }

    async fn report_usage(&self, request: Request<UsageBatch>) -> Result<Response<UsageReply>, Status> {
        let (metadata, _, batch) = request.into_parts();
        let state = &self.state;
        let key = crate::grpc::bearer_or_api_key(&metadata);
        let environment = state
            .environments
            .authenticate(key.as_deref(), crate::environment::Purpose::Evaluate)
            .map_err(Status::from)?;
        let entries: Vec<crate::services::usage::Reported> = batch
            .evaluations
            .into_iter()
            .map(|e| crate::services::usage::Reported { flag: e.flag, variant: e.variant, count: e.count })
            .collect();
        let now = state.clock.now_millis();
        let result = crate::services::usage::report(&state.metrics, environment, &entries, now)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        Ok(Response::new(UsageReply { accepted: result.accepted as u64, ignored: result.ignored as u64 }))
    }

    /// Never reached: `sync_listener` answers this path itself.
    async fn subscribe(&self, _: Request<SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        Err(Status::internal("Subscribe is served by the sync listener"))
    }
}
