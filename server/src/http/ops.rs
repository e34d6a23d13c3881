//! Operator endpoints: `/healthz` (the process runs), `/readyz` (it serves
//! a loaded configuration) and `/metrics` (Prometheus text format).

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use super::AppState;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready once every environment has a loaded flag set, which is true from
/// the moment the listeners are bound; the body says what is served.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // `revision`: the shared store's, the same on every replica in step.
    let environments: Map<String, Value> = state
        .environments
        .iter()
        .map(|environment| {
            let snapshot = environment.snapshot();
            let invalid: Vec<Value> = snapshot
                .problems
                .iter()
                .map(|p| json!({"flag": p.flag, "file": p.file, "line": p.line, "message": p.message}))
                .collect();
            let served = json!({
                "version": snapshot.version,
                "flags": snapshot.flags.len(),
                "revision": environment.revision(),
                "invalidFlags": invalid,
            });
            (environment.name.clone(), served)
        })
        .collect();
    // A store outage stops writes, not evaluations: the replica stays ready
    // (taking every replica out of the load balancer would turn a write
    // outage into a read outage) and says so here and in rampart_store_up.
    let store = state.store.health();
    let Some(relay) = &state.relay else {
        return HttpResponse::Ok().json(json!({"status": "ready", "environments": environments, "store": store}));
    };
    // A relay whose upstream is away keeps serving what it has (taking it
    // out of the load balancer would turn an upstream outage into a regional
    // one): `stale`, still 200, with the age. Only a relay with nothing to
    // serve yet is not ready.
    use crate::relay::LinkState;
    let mut environments = environments;
    let mut status = "ready";
    for (name, served) in environments.iter_mut() {
        let link = relay.state(name);
        let (text, age) = match link {
            LinkState::Live => ("live", None),
            LinkState::Stale { age_ms } => ("stale", age_ms.map(|ms| ms as f64 / 1e3)),
            LinkState::Waiting => ("waiting", None),
        };
        status = match (status, link) {
            (_, LinkState::Waiting) | ("not ready", _) => "not ready",
            (_, LinkState::Stale { .. }) | ("stale", _) => "stale",
            _ => "ready",
        };
        served["upstream"] = json!({"state": text, "stalenessSeconds": age});
    }
    let body = json!({"status": status, "environments": environments, "upstream": relay.upstream(), "store": store});
    if status == "not ready" { HttpResponse::ServiceUnavailable().json(body) } else { HttpResponse::Ok().json(body) }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}

/// The admin API's OpenAPI 3 document, generated from the handlers.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi())
}
