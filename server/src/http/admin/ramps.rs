//! Ramps in the admin API: status with evidence, the decision log, and the
//! operator commands (pause, resume, promote, abort, restart). A command is
//! applied as an immediate controller tick, so the guards run first: a
//! regression found in the same check wins over `promote`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ramp_view::{Explanation, RampStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::{Action, RampCommand};
use crate::ramp::controller::{CommandError, Entry};
use crate::ramp::verdict::{Verdict, judge};
use serde_json::{Value, json};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RampList {
    ramps: Vec<RampStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RampHistory {
    environment: String,
    name: String,
    /// Every decision that changed the ramp's state or reason, oldest first,
    /// with the counts and statistics behind it.
    #[schema(value_type = Vec<Object>)]
    decisions: Vec<crate::store::RampDecisionRecord>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// Most recent decisions to return (default 100, at most 1000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/admin/v1/ramps", tag = "ramps",
    description = "Every ramp of every environment with its state, step, percent and evidence.",
    responses((status = 200, body = RampList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_ramps(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let ramps = state.ramps.views().await.into_iter().map(RampStatus::from).collect();
    Ok(HttpResponse::Ok().json(RampList { ramps }))
}

#[utoipa::path(get, path = "/admin/v1/ramps/{environment}/{name}", tag = "ramps",
    description = "One ramp: state, step, percent, the current evidence and what is missing to advance.",
    params(("environment" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RampStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_ramp(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let entry = find(&state, path.into_inner())?;
    Ok(HttpResponse::Ok().json(RampStatus::from(state.ramps.view(&entry).await)))
}

#[utoipa::path(get, path = "/admin/v1/ramps/{environment}/{name}/explain", tag = "ramps",
    description = "The current evidence, each guard's statistic against its threshold with a verdict, \
                   the smallest regression detectable at the current traffic, and what is missing to advance.",
    params(("environment" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn explain_ramp(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let entry = find(&state, path.into_inner())?;
    Ok(HttpResponse::Ok().json(Explanation::from(state.ramps.view(&entry).await)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerdictQuery {
    /// `true`: answer the verdict in the status code as well — 200 pass,
    /// 425 pending, 412 fail — for webhooks that read only the status
    /// (Flagger). Without it the answer is always 200 (Argo Rollouts' `web`
    /// provider reads `$.verdict`).
    gate: Option<bool>,
}

/// A ramp's verdict for deployment tools (`ramp/verdict.rs`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerdictAnswer {
    verdict: Verdict,
    /// Why, in words.
    reason: String,
    environment: String,
    name: String,
    flag: String,
    state: String,
    step: usize,
    percent: f64,
    /// The current step's evidence, as in the ramp's status.
    #[schema(value_type = Object)]
    evidence: Option<crate::model::Evidence>,
    /// With `gate=true` and a verdict other than pass: the error shape of
    /// every refusal, so tools that log errors show the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    error: Option<Value>,
}

#[utoipa::path(get, path = "/admin/v1/ramps/{environment}/{name}/verdict", tag = "ramps",
    description = "The ramp's verdict for deployment tools: `pass` (completed, or the treatment is proven not worse \
                   at the current step with its minimum samples), `fail` (rolled back, or paused by a guard on a \
                   regression) or `pending`, with the reason and the evidence. Argo Rollouts: a `web` metric with \
                   `jsonPath: \"{$.verdict}\"`, `successCondition: result == \"pass\"`, `failureCondition: result == \"fail\"`. \
                   Flagger: a webhook on `?gate=true` (2xx only on pass). See docs/ci-cd.md.",
    params(("environment" = String, Path), ("name" = String, Path), VerdictQuery),
    responses((status = 200, body = VerdictAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 412, body = VerdictAnswer), (status = 425, body = VerdictAnswer)))]
pub(crate) async fn ramp_verdict(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let query = web::Query::<VerdictQuery>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let entry = find(&state, path.into_inner())?;
    let view = state.ramps.view(&entry).await;
    let judgement = judge(&view);
    let run = &view.run;
    let status = match (query.gate.unwrap_or(false), judgement.verdict) {
        (false, _) | (true, Verdict::Pass) => StatusCode::OK,
        (true, Verdict::Pending) => StatusCode::from_u16(425).unwrap_or(StatusCode::CONFLICT),
        (true, Verdict::Fail) => StatusCode::PRECONDITION_FAILED,
    };
    let error = (status != StatusCode::OK).then(|| {
        let code = if judgement.verdict == Verdict::Fail { "RAMP_FAILED" } else { "RAMP_PENDING" };
        json!({"code": code, "message": judgement.reason, "details": null})
    });
    let step = run.display_step();
    let mut response = HttpResponse::build(status).json(VerdictAnswer {
        verdict: judgement.verdict,
        reason: judgement.reason,
        environment: view.environment.clone(),
        name: view.name.clone(),
        flag: run.flag.clone(),
        state: run.status.name().to_owned(),
        step,
        percent: f64::from(run.basis_points) / 100.0,
        evidence: view.evidence.clone(),
        error,
    });
    if status.as_u16() == 425 {
        // The http crate knows no reason phrase for 425: without one the
        // status line reads "425 <unknown status code>".
        response.head_mut().reason = Some("Too Early");
    }
    Ok(response)
}

#[utoipa::path(get, path = "/admin/v1/ramps/{environment}/{name}/history", tag = "ramps",
    description = "The ramp's decision log: every change of state or reason with its counts and statistics.",
    params(("environment" = String, Path), ("name" = String, Path), HistoryQuery),
    responses((status = 200, body = RampHistory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn ramp_history(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let query = web::Query::<HistoryQuery>::from_query(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let (environment, name) = path.into_inner();
    if state.ramps.entry(&environment, &name).is_none() {
        return Err(not_found(&environment, &name));
    }
    let mut decisions = state.store.ramp_history(&environment, &name, limit).await?;
    // Steps are numbered from 1 in every answer, as in the status (the
    // store keeps the run's index); 0 only before the first step.
    for decision in &mut decisions {
        if decision.to != "Pending" {
            decision.step += 1;
        }
    }
    Ok(HttpResponse::Ok().json(RampHistory { environment, name, decisions }))
}

#[utoipa::path(post, path = "/admin/v1/ramps/{environment}/{name}/{action}", tag = "ramps",
    description = "An operator command, applied now as a controller tick (guards first). \
                   `pause` stops advancing (guards keep running); `resume` continues at the same step; \
                   `promote` moves to the next step now; `abort` rolls back to 0%; `restart` starts a new \
                   run of a rolled-back or completed ramp; `approve` grants a step's approval. Every command is in the audit log. \
                   `pause`, `resume` and `approve` need the `write` role; `promote`, `abort` and `restart` need `admin`.",
    params(("environment" = String, Path), ("name" = String, Path),
           ("action" = String, Path, description = "pause | resume | promote | abort | approve | restart")),
    request_body(content = Option<CommandBody>, description = "Optional: `{\"reason\"}`; `promote` also takes `force` (with a reason) to promote while the treatment looks worse than the tolerance."),
    responses((status = 200, body = RampStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn ramp_command(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (environment, name, action) = path.into_inner();
    let Some(ramp_command) = RampCommand::parse(&action) else {
        state.admin.authorize(&request, Action::Read)?;
        return Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no ramp command '{action}': use pause, resume, promote, abort, approve or restart"),
        ));
    };
    let caller = state.admin.authorize(&request, Action::Ramp(ramp_command))?;
    let by = caller.name.clone();
    let body = command_body(&state, payload).await?;
    if body.force && ramp_command != RampCommand::Promote {
        return Err(ApiError::bad_request("force applies to promote only"));
    }
    let force = match (body.force, body.reason) {
        (true, Some(reason)) if !reason.trim().is_empty() => Some(reason),
        (true, _) => return Err(ApiError::bad_request("force needs a reason (it is kept in the audit log)")),
        (false, _) => None,
    };
    let command = ramp_command.command(by, force);
    match state.ramps.command(&environment, &name, command).await {
        Ok(view) => Ok(HttpResponse::Ok().json(RampStatus::from(view))),
        Err(CommandError::NotFound(environment, name)) => Err(not_found(&environment, &name)),
        Err(CommandError::Rejected(message)) => {
            // With the evidence the decision was made on.
            let evidence = match state.ramps.entry(&environment, &name) {
                Some(entry) => serde_json::to_value(state.ramps.view(&entry).await.evidence).unwrap_or_default(),
                None => serde_json::Value::Null,
            };
            Err(ApiError::new(StatusCode::CONFLICT, "RAMP_COMMAND_REJECTED", message.to_string())
                .with_details(serde_json::json!({"evidence": evidence})))
        }
        Err(CommandError::Store(error)) => Err(error.into()),
    }
}

/// An operator command's optional body: `{"reason"?, "force"?}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandBody {
    /// Why (required with `force`; kept in the audit log).
    reason: Option<String>,
    /// `promote` only: promote although the treatment currently looks worse
    /// than the tolerance.
    #[serde(default)]
    force: bool,
}

async fn command_body(state: &AppState, payload: web::Payload) -> Result<CommandBody, ApiError> {
    let bytes = crate::http::read_body(state, payload, 64 << 10).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CommandBody::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

fn find(state: &AppState, (environment, name): (String, String)) -> Result<std::sync::Arc<Entry>, ApiError> {
    state.ramps.entry(&environment, &name).ok_or_else(|| not_found(&environment, &name))
}

fn not_found(environment: &str, name: &str) -> ApiError {
    ApiError::not_found("RAMP_NOT_FOUND", format!("no ramp '{name}' in environment '{environment}'"))
}
