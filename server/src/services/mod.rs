//! What every transport serves from — the HTTP listeners and gRPC alike:
//! built once at start-up and cloned cheaply (every field is shared).

pub mod otlp;
pub mod outcomes;
pub mod track;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::environment::Environments;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::ramp::controller::Controller;
use crate::ramp::outcome_gate::OutcomeGate;
use crate::store::Store;
use crate::time::Clock;

#[derive(Debug, Clone)]
pub struct Services {
    pub environments: Arc<Environments>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub ramps: Arc<Controller>,
    pub limits: Arc<Limits>,
    /// What outcome reports must pass before a ramp counts them.
    pub outcomes: Arc<OutcomeGate>,
    /// Ends every stream when the server shuts down.
    pub shutdown: CancellationToken,
    /// Keep-alive interval of streams (flagd: 20 s).
    pub heartbeat: Duration,
    /// Largest request body or gRPC message.
    pub max_body_bytes: usize,
    /// Wall time for evaluations (`$flagd.timestamp`) and outcome reports.
    pub clock: Clock,
    /// Spans already counted from OTLP exports (an exporter's retry).
    pub otlp_dedupe: Arc<crate::otlp::dedupe::Dedupe>,
    /// The last point of each OTLP metric series (cumulative totals).
    pub otlp_series: Arc<crate::otlp::points::Series>,
    /// Set on a relay: its upstream and how each environment follows it.
    pub relay: Option<Arc<crate::relay::Relay>>,
}
