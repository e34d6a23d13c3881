//! Outcome reports as every transport takes them: recorded here, or, on a
//! relay, appended to the buffer forwarded upstream (where the ramps are).
//! The choice lives here, above both, so the ramp module never reaches up
//! into the relay (ARCHITECTURE.md, layers).

use crate::ramp::contribution::{Share, Source};
use crate::ramp::outcome_gate::Refused;
use crate::ramp::outcomes::{Origin, Part, RecordError, Report, record};
use crate::store::StoreError;

/// Takes a checked batch from a client: records it here, or on a relay
/// appends it to the buffer forwarded upstream (where the ramps are).
pub async fn take(
    services: &super::Services,
    environment: &str,
    origin: &Origin,
    parts: &[Part<'_>],
) -> Result<(usize, usize), RecordError> {
    let now = services.clock.now_millis();
    if let Some(relay) = &services.relay {
        // The relay checks its public clients as the upstream would (it
        // knows no step's evidence: their floors apply); the upstream
        // bounds what the relay forwards as one source.
        let reports: Vec<Report> = parts.iter().flat_map(|part| part.reports.iter().cloned()).collect();
        if let Source::Client(_) = origin.source {
            let shares: Vec<Share<'_>> = reports
                .iter()
                .map(|report| Share {
                    flag: &report.flag,
                    variant: &report.variant,
                    arm: crate::ramp::contribution::Arm::unknown(),
                    count: report.ok.saturating_add(report.error),
                })
                .collect();
            services.outcomes.contributions.admit(environment, &origin.source, &[(now / 1000, shares)], now).map_err(
                |(flag, variant, excess)| {
                    let refused = Refused::Excess { flag, variant, excess };
                    refused.count(&services.metrics);
                    RecordError::Refused(refused)
                },
            )?;
        }
        let forwarder = relay.forwarder.clone();
        let environment = environment.to_owned();
        let taken = tokio::task::spawn_blocking(move || forwarder.accept(&environment, &reports, now))
            .await
            .map_err(|e| StoreError::unavailable("the relay's outcome buffer", e))?;
        return match taken {
            Ok(count) => Ok((count, 0)),
            Err(error @ crate::relay::ForwardError::Full(_)) => {
                services.metrics.rejected(crate::limits::Rejection::RelayOutcomeBuffer);
                Err(StoreError::unavailable("the relay's outcome buffer", error).into())
            }
            Err(error) => Err(StoreError::unavailable("the relay's outcome buffer", error).into()),
        };
    }
    record(&*services.store, &services.ramps, &services.outcomes, &services.metrics, environment, origin, parts, now)
        .await
}
