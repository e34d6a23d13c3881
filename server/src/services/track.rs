//! OpenFeature `track` events as every transport takes them
//! (`POST /ofrep/v1/track`, the `rampart.v1` `Track` call): each one names
//! an event and the evaluation context it happened in; an event that a
//! running ramp's conversion guard counts (`spec.conversion.event`) is
//! stored as a conversion of the context's targeting key, durably before
//! the request is acknowledged.
//!
//! Events are untrusted: SDK keys ship in apps. So besides the request's
//! bounds (events per request, the key's request rate), an event counts
//! only through its targeting key — once per key and step, and only for a
//! key the ramp's own evidence exposed in that step (see
//! `ramp::observe::guards`) — and what one client address or key may add
//! in a minute is bounded as for outcome reports
//! (`ramp::contribution`).

use crate::ramp::contribution::{Arm, Share, Source};
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{Origin, RecordError};
use crate::store::{Conversion, StoreError};

/// Most events in one request.
pub const MAX_EVENTS: usize = 1000;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 256;

/// One `track` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEvent {
    pub name: String,
    /// The evaluation context's targeting key: without it an event cannot
    /// be attributed to an arm and is ignored.
    pub targeting_key: Option<String>,
}

/// What is wrong with a request's events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    #[error("at most {MAX_EVENTS} events per request")]
    TooManyEvents,
    #[error("events[{0}]: the event name must be 1 to {MAX_EVENT_NAME} bytes")]
    Name(usize),
}

/// Checks a request's shape; the error names the offending event.
pub fn check(events: &[TrackEvent]) -> Result<(), TrackError> {
    if events.len() > MAX_EVENTS {
        return Err(TrackError::TooManyEvents);
    }
    match events.iter().position(|e| e.name.is_empty() || e.name.len() > MAX_EVENT_NAME) {
        Some(index) => Err(TrackError::Name(index)),
        None => Ok(()),
    }
}

/// [`check`], counting a request over the event limit in
/// `rampart_limit_rejections_total{limit="track_events"}`.
pub fn check_counted(services: &super::Services, events: &[TrackEvent]) -> Result<(), TrackError> {
    check(events).inspect_err(|error| {
        if *error == TrackError::TooManyEvents {
            services.metrics.rejected(crate::limits::Rejection::TrackEvents);
        }
    })
}

/// Stores the events a conversion guard counts; returns (accepted,
/// ignored): an event no running ramp counts, or without a targeting key,
/// is acknowledged and dropped.
pub async fn take(
    services: &super::Services,
    environment: &str,
    origin: &Origin,
    events: &[TrackEvent],
) -> Result<(usize, usize), RecordError> {
    let now = services.clock.now_millis();
    let second = now / 1000;
    let gate = &services.outcomes;
    if let Some(relay) = &services.relay {
        // A relay runs no ramps: the upstream counts the events. Its public
        // clients are bounded here as the upstream would (it bounds what
        // the relay passes on as one source).
        if let Source::Client(_) = origin.source {
            admit(services, environment, origin, events.iter().map(|e| (e.name.as_str(), Arm::unknown())), now)?;
        }
        let events = events
            .iter()
            .map(|e| rampart_proto::rampart::v1::TrackEvent {
                name: e.name.clone(),
                targeting_key: e.targeting_key.clone().unwrap_or_default(),
            })
            .collect();
        let (accepted, ignored) = relay
            .forward_track(environment, events)
            .await
            .map_err(|status| StoreError::unavailable("the upstream, for track events", status.message().to_owned()))?;
        return Ok((accepted as usize, ignored as usize));
    }
    let mut conversions = Vec::new();
    let mut arms = Vec::new();
    let mut ignored = 0;
    for event in events {
        let Some(key) = event.targeting_key.as_deref().filter(|k| !k.is_empty()) else {
            ignored += 1;
            continue;
        };
        let flags = services.ramps.conversion_flags(environment, &event.name);
        if flags.is_empty() {
            ignored += 1;
            continue;
        }
        let context = gate.context_id(key);
        for (flag, arm) in flags {
            conversions.push(Conversion { flag, event: event.name.clone(), second, context });
            arms.push(arm);
        }
    }
    if conversions.is_empty() {
        return Ok((0, ignored));
    }
    admit(services, environment, origin, conversions.iter().map(|c| c.flag.as_str()).zip(arms), now)?;
    let accepted = events.len() - ignored;
    services.store.record_conversions(environment, conversions).await?;
    services.metrics.conversions.with_label_values(&[environment, "accepted"]).inc_by(accepted as u64);
    services.metrics.conversions.with_label_values(&[environment, "ignored"]).inc_by(ignored as u64);
    Ok((accepted, ignored))
}

/// What one source may add in a minute, as for outcome reports
/// (`ramp::contribution`): each conversion one share of its flag, bounded
/// against the arm given with it (on a relay, which knows no step: the
/// absolute floors).
fn admit<'a>(
    services: &super::Services,
    environment: &str,
    origin: &Origin,
    flags: impl Iterator<Item = (&'a str, Arm)>,
    now: u64,
) -> Result<(), RecordError> {
    let shares: Vec<Share<'_>> =
        flags.map(|(flag, arm)| Share { flag, variant: "conversion", arm, count: 1 }).collect();
    services.outcomes.contributions.admit(environment, &origin.source, &[(now / 1000, shares)], now).map_err(
        |(flag, variant, excess)| {
            let refused = Refused::Excess { flag, variant, excess };
            refused.count(&services.metrics);
            RecordError::Refused(refused)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_events_within_the_bounds() {
        let event = |name: &str| TrackEvent { name: name.into(), targeting_key: Some("u1".into()) };
        assert_eq!(check(&[event("checkout")]), Ok(()));
        assert_eq!(check(&[event("checkout"), event("")]), Err(TrackError::Name(1)));
        assert_eq!(check(&[event(&"x".repeat(MAX_EVENT_NAME + 1))]), Err(TrackError::Name(0)));
        assert_eq!(check(&vec![event("checkout"); MAX_EVENTS + 1]), Err(TrackError::TooManyEvents));
    }
}
