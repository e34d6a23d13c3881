//! Release pipelines in the admin API (`ramp/release.rs`): each release
//! with its stages — every stage a ramp in its environment — and where the
//! pipeline stands.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::policy::Action;
use crate::model::{PendingReason, Status};
use crate::ramp::controller::RampView;

/// One stage as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StageStatus {
    pub environment: String,
    /// The stage's ramp: `GET /admin/v1/ramps/{environment}/{ramp}`.
    pub ramp: String,
    pub state: String,
    pub reason: Option<String>,
    pub percent: f64,
    /// Numbered from 1 (0 before the first step).
    pub step: usize,
    pub steps: Vec<f64>,
}

/// A release pipeline as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReleaseStatus {
    pub name: String,
    pub flag: String,
    pub treatment: String,
    /// `Pending` (the first stage has not started), `Running`, `Halted` (a
    /// stage rolled back: the later ones never start) or `Completed`.
    pub state: String,
    /// The stage the pipeline is at, from 1: the first that has not
    /// completed (the last when all have).
    pub stage: usize,
    pub stages: Vec<StageStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReleaseList {
    releases: Vec<ReleaseStatus>,
}

/// Every release, from the stages the controller runs.
pub(crate) async fn releases(state: &AppState) -> Vec<ReleaseStatus> {
    let mut stages: std::collections::BTreeMap<String, Vec<(usize, RampView)>> = Default::default();
    for entry in state.ramps.entries() {
        let view = state.ramps.glance(&entry).await;
        if let Some(stage) = view.spec.stage.clone() {
            stages.entry(stage.release.clone()).or_default().push((stage.index, view));
        }
    }
    stages.into_iter().map(|(name, mut views)| release(name, &mut views)).collect()
}

fn release(name: String, views: &mut [(usize, RampView)]) -> ReleaseStatus {
    views.sort_by_key(|(index, _)| *index);
    let stages: Vec<StageStatus> = views
        .iter()
        .map(|(_, view)| {
            let run = &view.run;
            StageStatus {
                environment: view.environment.clone(),
                ramp: view.name.clone(),
                state: run.status.name().to_owned(),
                reason: run.status.reason().map(str::to_owned),
                percent: f64::from(run.basis_points) / 100.0,
                step: run.display_step(),
                steps: view.spec.steps.iter().map(|s| f64::from(s.basis_points) / 100.0).collect(),
            }
        })
        .collect();
    let statuses: Vec<&Status> = views.iter().map(|(_, view)| &view.run.status).collect();
    let current =
        statuses.iter().position(|s| !matches!(s, Status::Completed)).unwrap_or(statuses.len().saturating_sub(1));
    let state = if statuses.iter().any(|s| matches!(s, Status::RolledBack { .. })) {
        "Halted"
    } else if statuses.iter().all(|s| matches!(s, Status::Completed)) {
        "Completed"
    } else if current == 0
        && matches!(statuses.first(), Some(Status::Pending { reason }) if *reason != PendingReason::PreviousStage)
    {
        "Pending"
    } else {
        "Running"
    };
    let (flag, treatment) =
        views.first().map(|(_, v)| (v.run.flag.clone(), v.run.treatment.clone())).unwrap_or_default();
    ReleaseStatus { name, flag, treatment, state: state.to_owned(), stage: current + 1, stages }
}

#[utoipa::path(get, path = "/admin/v1/releases", tag = "ramps",
    description = "Every release pipeline (`kind: Release`) with its stages, each a ramp in its environment, and where it stands.",
    responses((status = 200, body = ReleaseList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_releases(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    Ok(HttpResponse::Ok().json(ReleaseList { releases: releases(&state).await }))
}

#[utoipa::path(get, path = "/admin/v1/releases/{name}", tag = "ramps",
    description = "One release pipeline: its state (Pending, Running, Halted, Completed), the stage it is at, and each stage's ramp.",
    params(("name" = String, Path)),
    responses((status = 200, body = ReleaseStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_release(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    Ok(HttpResponse::Ok().json(find(&state, &path.into_inner()).await?))
}

async fn find(state: &AppState, name: &str) -> Result<ReleaseStatus, ApiError> {
    let found = releases(state).await.into_iter().find(|release| release.name == name);
    found.ok_or_else(|| ApiError::not_found("RELEASE_NOT_FOUND", format!("no release '{name}'")))
}

/// A decision of one of a release's stages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StageDecision {
    environment: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    decision: crate::store::RampDecisionRecord,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReleaseHistory {
    name: String,
    /// Every stage's decisions (the last 1,000 of each), oldest first, each
    /// with its stage's environment.
    decisions: Vec<StageDecision>,
}

#[utoipa::path(get, path = "/admin/v1/releases/{name}/history", tag = "ramps",
    description = "A release's history: every stage's decisions, oldest first, each with its environment.",
    params(("name" = String, Path)),
    responses((status = 200, body = ReleaseHistory), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn release_history(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request, Action::Read)?;
    let name = path.into_inner();
    let release = find(&state, &name).await?;
    let mut decisions = Vec::new();
    for stage in &release.stages {
        for mut decision in state.store.ramp_history(&stage.environment, &stage.ramp, 1000).await? {
            // Steps from 1, as in every answer.
            if decision.to != "Pending" {
                decision.step += 1;
            }
            decisions.push(StageDecision { environment: stage.environment.clone(), decision });
        }
    }
    decisions.sort_by_key(|d| d.decision.at);
    Ok(HttpResponse::Ok().json(ReleaseHistory { name, decisions }))
}
