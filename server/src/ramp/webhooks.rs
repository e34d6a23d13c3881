//! Ramp webhooks: every transition event is queued in the store's outbox
//! in the same transaction as the state it describes, then delivered by
//! one background task, signed with HMAC-SHA256 and retried with capped
//! exponential backoff. A delivery is removed only after a 2xx, so a crash
//! between the state write and the POST delivers it after the restart; the
//! `X-Rampart-Delivery` key `ramp:run:seq:event` lets a receiver drop the
//! duplicate that a crash *after* the POST but before its removal can cause.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::spec::{Notify, RampSpec, Severity};
use crate::model::{Event, EventKind, Evidence, Run};
use crate::store::{Delivery, Store};
use crate::time::Clock;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// Attempts before a delivery is dropped (logged as an error): with the
/// backoff cap, about four hours of trying.
const MAX_ATTEMPTS: u32 = 60;

/// How loud an event is.
pub fn severity(kind: EventKind) -> Severity {
    match kind {
        EventKind::RolledBack => Severity::Critical,
        EventKind::Holding | EventKind::Paused | EventKind::ApprovalRequested | EventKind::ConfigChangeRefused => {
            Severity::Warning
        }
        _ => Severity::Info,
    }
}

fn wanted(target: &Notify, kind: EventKind) -> bool {
    severity(kind) >= target.min_severity && (target.events.is_empty() || target.events.contains(&kind))
}

/// The deliveries for a transition's events, one per event and target.
pub fn deliveries(
    spec: &RampSpec,
    environment: &str,
    run: &Run,
    events: &[Event],
    evidence: &Evidence,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for event in events {
        let name = event.name();
        let dedup_key = format!("{}:{}:{}:{name}", spec.name, run.run_id, run.seq);
        let mut body = json!({
            "event": name,
            "severity": severity(event.kind),
            "reason": event.reason,
            "by": event.by,
            "dedupKey": dedup_key,
            "environment": environment,
            "ramp": spec.name,
            "flag": run.flag,
            "runId": run.run_id,
            "seq": run.seq,
            "state": run.status.name(),
            "stateReason": run.status.reason(),
            "step": run.step + 1,
            "percent": run.percent(),
            "dryRun": spec.dry_run,
            "at": crate::time::rfc3339(run.updated_at),
            "observation": {
                "treatment": evidence.treatment,
                "control": evidence.control,
                "lambda": evidence.lambda,
                "ceilingLower": evidence.ceiling_lower,
                "ratioUpper": evidence.ratio_upper,
                "differenceUpper": evidence.difference_upper,
            },
        });
        // A release's stage says which: the pipeline's stage events.
        if let Some(stage) = &spec.stage {
            body["release"] =
                json!({"name": stage.release, "stage": stage.index + 1, "stages": stage.environments.len()});
        }
        let body = body.to_string();
        for target in spec.notify.iter().filter(|t| wanted(t, event.kind)) {
            out.push(Delivery {
                id: 0,
                dedup_key: dedup_key.clone(),
                url: target.webhook.clone(),
                secret_ref: target.secret_ref.clone(),
                event: name.clone(),
                body: body.clone(),
                attempts: 0,
                next_attempt_at: run.updated_at,
                last_error: None,
            });
        }
    }
    out
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The lease whose holder delivers webhooks.
const LEASE: &str = "webhooks";

/// Delivers the outbox until `shutdown`, then gives the lease up.
///
/// With replicas, only the holder of the `webhooks` lease delivers, so one
/// message is not sent by several replicas at once.
pub async fn run(
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
    (holder, lease_ttl): (String, Duration),
    clock: Clock,
    shutdown: CancellationToken,
) {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        if !matches!(store.acquire_lease(LEASE, &holder, lease_ttl).await, Ok(Some(_))) {
            continue;
        }
        if let Ok(pending) = store.pending_deliveries().await {
            metrics.webhook_outbox.set(pending as i64);
        }
        let due = match store.due_deliveries(clock.now_millis(), 50).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the webhook outbox");
                continue;
            }
        };
        for delivery in due {
            let id = delivery.id;
            let result = send(&client, &delivery).await;
            let outcome = match &result {
                Ok(()) => "delivered",
                Err(_) if delivery.attempts + 1 >= MAX_ATTEMPTS => "dropped",
                Err(_) => "failed",
            };
            metrics.webhook_deliveries.with_label_values(&[outcome]).inc();
            let retry = match result {
                Ok(()) => {
                    tracing::info!(event = %delivery.event, key = %delivery.dedup_key, "webhook delivered");
                    None
                }
                Err(error) if delivery.attempts + 1 >= MAX_ATTEMPTS => {
                    tracing::error!(event = %delivery.event, key = %delivery.dedup_key, %error, "webhook dropped after {MAX_ATTEMPTS} attempts");
                    None
                }
                Err(error) => {
                    let attempts = delivery.attempts + 1;
                    let backoff = (1000u64 << attempts.min(20)).min(MAX_BACKOFF_MS);
                    tracing::warn!(event = %delivery.event, key = %delivery.dedup_key, attempts, %error, "webhook failed; will retry");
                    Some(Delivery {
                        attempts,
                        next_attempt_at: clock.now_millis() + backoff,
                        last_error: Some(error.to_string()),
                        ..delivery
                    })
                }
            };
            if let Err(error) = store.finish_delivery(id, retry).await {
                tracing::warn!(%error, "cannot update the webhook outbox");
            }
        }
    }
    let _ = store.release_lease(LEASE, &holder).await;
}

/// Why a delivery did not arrive.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("the secret variable {0} is not set")]
    SecretUnset(String),
    #[error("{0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("the receiver answered {0}")]
    Refused(reqwest::StatusCode),
}

async fn send(client: &reqwest::Client, delivery: &Delivery) -> Result<(), DeliveryError> {
    let mut request = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("x-rampart-event", &delivery.event)
        .header("x-rampart-delivery", &delivery.dedup_key);
    if let Some(variable) = &delivery.secret_ref {
        // Never sent unsigned when a secret is configured but missing.
        let secret = std::env::var(variable).map_err(|_| DeliveryError::SecretUnset(variable.clone()))?;
        request = request.header("x-rampart-signature", signature(secret.as_bytes(), delivery.body.as_bytes()));
    }
    let response = request.body(delivery.body.clone()).send().await.map_err(DeliveryError::Unreachable)?;
    if response.status().is_success() { Ok(()) } else { Err(DeliveryError::Refused(response.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn severity_filters() {
        let target =
            Notify { webhook: "http://x".into(), secret_ref: None, events: vec![], min_severity: Severity::Warning };
        assert!(
            wanted(&target, EventKind::RolledBack)
                && wanted(&target, EventKind::Paused)
                && !wanted(&target, EventKind::Advanced)
        );
        let only = Notify { events: vec![EventKind::Completed], min_severity: Severity::Info, ..target };
        assert!(wanted(&only, EventKind::Completed) && !wanted(&only, EventKind::RolledBack));
    }

    #[test]
    fn a_release_stage_s_events_name_the_release_and_the_stage() {
        let text = "apiVersion: rampart.dev/v1\nkind: Release\nmetadata: {name: checkout}\nspec:\n  flag: f\n  treatment: \"on\"\n  notify:\n    - {webhook: \"http://127.0.0.1:9/hook\"}\n  stages:\n    - {environment: staging, steps: [{percent: 100, hold: 1m}]}\n    - {environment: production, steps: [{percent: 100, hold: 1m}]}\n";
        let spec =
            crate::ramp::release::stage_for("r.yaml", text, "production", None).expect("valid").expect("a stage");
        let run = spec.new_run("off", "run-1".into(), 0);
        let event = Event::new(EventKind::Started, None, "controller");
        let deliveries = deliveries(&spec, "production", &run, &[event], &Evidence::default());
        assert_eq!(deliveries.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&deliveries[0].body).expect("json");
        assert_eq!(body["release"], json!({"name": "checkout", "stage": 2, "stages": 2}));
        assert_eq!(body["environment"], "production");
    }
}
