//! `POST /admin/v1/alerts`: Alertmanager's webhook (`webhook_configs`) as
//! a ramp guard. An alert whose labels name a ramp (`rampart_ramp`) or a
//! flag (`rampart_flag`), optionally in one environment
//! (`rampart_environment` or `environment`), pauses or rolls back that
//! ramp while it fires — whichever the ramp's file says
//! (`alerts.onFiring`, default `pause`: a person looks). A resolved alert
//! is recorded in the audit log; it resumes nothing (the ramp stopped for
//! a reason: resuming is an operator's call).
//!
//! The caller needs the narrow `alerts` role (or `write`). Alerts are
//! untrusted input like any evidence: the body is bounded, at most
//! [`MAX_ALERTS`] alerts are read from one notification, and an alert can
//! only stop a ramp — never advance one.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::ramp::controller::CommandError;
use crate::ramp::controller::alerts::AlertTarget;
use crate::ramp::decide::Command;
use crate::ramp::spec;

/// Largest notification body.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;
/// Most alerts read from one notification (Alertmanager's `max_alerts`
/// caps what it sends; set it at or below this).
pub(crate) const MAX_ALERTS: usize = 1_000;

/// Alertmanager's webhook body (version 4): only what is read here;
/// other fields are ignored, as Alertmanager adds some over versions.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Notification {
    #[schema(value_type = Vec<Object>)]
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: AlertStatus,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlertStatus {
    Firing,
    Resolved,
}

/// What each alert did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Handled {
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Acted>,
    /// Alerts that name no ramp or flag under a ramp.
    unmatched: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Acted {
    alert: String,
    environment: String,
    ramp: String,
    /// `paused`, `rolled_back`, `unchanged` (already stopped, or nothing to
    /// stop) or `recorded` (resolved).
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/admin/v1/alerts", tag = "ramps",
    description = "Alertmanager's webhook receiver (`webhook_configs: [{url: …/admin/v1/alerts, http_config: \
                   {authorization: {credentials: <alerts token>}}}]`). A firing alert whose labels name a ramp \
                   (`rampart_ramp`) or a flag (`rampart_flag`), optionally with `rampart_environment` or \
                   `environment`, pauses or rolls back the ramp as its file says (`alerts.onFiring`); a resolved \
                   alert is recorded. Needs the `alerts` role (or `write`).",
    request_body(content = Notification, description = "Alertmanager's webhook body (version 4)"),
    responses((status = 200, body = Handled), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn receive_alerts(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = state.admin.authorize(&request, Action::PostAlerts)?;
    let bytes = crate::http::read_body(&state, payload, MAX_BODY_BYTES).await?;
    let notification: Notification = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not an Alertmanager notification: {e}")))?;
    if notification.alerts.len() > MAX_ALERTS {
        count(&state, "too_many", 1);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_MANY_ALERTS",
            format!(
                "{} alerts in one notification; at most {MAX_ALERTS} (set max_alerts in Alertmanager's webhook_configs)",
                notification.alerts.len()
            ),
        ));
    }
    let mut handled = Handled { actions: Vec::new(), unmatched: 0 };
    for alert in &notification.alerts {
        let name = alert.labels.get("alertname").cloned().unwrap_or_else(|| "(unnamed)".to_owned());
        let label = |key: &str| alert.labels.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let target = AlertTarget {
            environment: label("rampart_environment").or_else(|| label("environment")),
            ramp: label("rampart_ramp"),
            flag: label("rampart_flag"),
        };
        let targets = state.ramps.alert_targets(target).await;
        if targets.is_empty() {
            handled.unmatched += 1;
            count(&state, "unmatched", 1);
            continue;
        }
        let summary = alert.annotations.get("summary").map(|s| s.chars().take(200).collect::<String>());
        for (entry, on_firing) in targets {
            let (result, reason) = match alert.status {
                AlertStatus::Firing => {
                    let note = match &summary {
                        Some(summary) => format!("alert {name} firing: {summary}"),
                        None => format!("alert {name} firing"),
                    };
                    let (command, done) = match on_firing {
                        spec::Action::Pause => (Command::Pause { by: caller.name.clone() }, "paused"),
                        spec::Action::Rollback => (Command::Abort { by: caller.name.clone() }, "rolled_back"),
                    };
                    match state.ramps.command_noted(&entry.environment, &entry.name, command, Some(note)).await {
                        Ok(_) => (done, None),
                        // Already paused, rolled back or completed: a repeat
                        // of a firing alert changes nothing and is not audited.
                        Err(CommandError::Rejected(refusal)) => ("unchanged", Some(refusal.to_string())),
                        Err(CommandError::NotFound(..)) => ("unchanged", Some("the ramp is gone".to_owned())),
                        Err(CommandError::Store(error)) => return Err(error.into()),
                    }
                }
                AlertStatus::Resolved => {
                    let line = format!("alert {name} resolved (the ramp stays as it is: resume it if it should go on)");
                    state.ramps.audit_note(&entry, &caller.name, "ramp.alert_resolved", vec![line]).await?;
                    ("recorded", None)
                }
            };
            count(&state, result, 1);
            tracing::info!(environment = %entry.environment, ramp = %entry.name, alert = %name, result, "alert received");
            handled.actions.push(Acted {
                alert: name.clone(),
                environment: entry.environment.clone(),
                ramp: entry.name.clone(),
                result,
                reason,
            });
        }
    }
    Ok(HttpResponse::Ok().json(handled))
}

fn count(state: &AppState, result: &str, n: u64) {
    state.metrics.alerts.with_label_values(&[result]).inc_by(n);
}
