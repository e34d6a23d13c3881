//! Ramp records kept in the store: runs, their decision log, and the
//! outcome buckets the built-in metric source counts.

use serde::{Deserialize, Serialize};

use crate::model::{Event, Evidence, Run};

/// A ramp run, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRun {
    pub environment: String,
    pub ramp: String,
    pub run: Run,
}

/// One decision that changed a ramp's state or reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RampDecisionRecord {
    /// Unix milliseconds.
    pub at: u64,
    pub run_id: String,
    pub seq: u64,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    pub step: usize,
    pub percent: f64,
    pub events: Vec<Event>,
    pub evidence: Evidence,
    /// SHA-256 of the ramp file the decision was made under.
    pub config: String,
    pub by: String,
}

/// A compare-and-set write of a ramp run.
#[derive(Debug, Clone, PartialEq)]
pub struct RampWrite {
    pub environment: String,
    pub ramp: String,
    /// The `(run id, seq)` the stored run must have; `None`: no stored run.
    pub expect: Option<(String, u64)>,
    pub run: Run,
    pub record: Option<RampDecisionRecord>,
    /// Audit entries to append: (actor, action, changes).
    pub audit: Vec<(String, String, Vec<String>)>,
    /// Webhook deliveries to queue, in the same transaction as the state.
    pub outbox: Vec<Delivery>,
    /// The ramp lease's token when the controller driving the ramp writes;
    /// `None` for operator commands, which rely on compare-and-set alone.
    pub fence: Option<super::Fence>,
}

impl RampWrite {
    /// The audit entry for one of the write's `audit` lines.
    pub fn audit_entry(&self, (actor, action, changes): &(String, String, Vec<String>), seq: u64) -> super::AuditEntry {
        super::AuditEntry {
            seq,
            at: self.run.updated_at,
            actor: actor.clone(),
            environment: self.environment.clone(),
            flag: self.run.flag.clone(),
            action: action.clone(),
            version: None,
            changes: changes.clone(),
        }
    }
}

/// A webhook delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Assigned by the store.
    #[serde(default)]
    pub id: u64,
    /// `ramp:run:seq:event`, also sent to the receiver for deduplication.
    pub dedup_key: String,
    pub url: String,
    /// Environment variable holding the signing secret.
    pub secret_ref: Option<String>,
    pub event: String,
    pub body: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub next_attempt_at: u64,
    pub last_error: Option<String>,
}

/// Outcome counts of one flag variant in one second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeCount {
    pub flag: String,
    pub variant: String,
    /// Unix seconds of the bucket.
    pub second: u64,
    pub ok: u64,
    pub error: u64,
    /// Durations of those outcomes that came with one (spans, reports with
    /// `durationMs`), for latency guards.
    pub latency: crate::model::Latency,
}

/// A targeting key's conversion (an OpenFeature `track` event a ramp's
/// conversion guard counts) for a ramped flag, in the second it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub flag: String,
    pub event: String,
    pub second: u64,
    /// A hash of the targeting key, as in [`ContextOutcome`].
    pub context: u64,
}

/// One context's outcome in one second (for `unit: context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextOutcome {
    pub flag: String,
    pub variant: String,
    pub second: u64,
    /// A hash of the targeting key: the key itself is not stored.
    pub context: u64,
    pub error: bool,
}
