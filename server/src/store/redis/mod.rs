//! The Redis store: the same data as the embedded one, shared by every
//! replica, with each change published for the others.
//!
//! Layout (all keys start with `{prefix}:`, one hash tag):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `environments` | set | environments with stored state |
//! | `rev:{env}` | counter | the environment's revision, +1 per commit |
//! | `meta:{env}` | hash | flag → `version:live` (for preconditions) |
//! | `flags:{env}` | hash | flag → `FlagRecord` JSON (tombstones kept) |
//! | `overrides:{env}` | hash | flag → `StateOverride` JSON |
//! | `versions:{env}:{flag}` | list | `FlagVersion` JSON, oldest first |
//! | `audit`, `audit:seq` | sorted set by seq, counter | `AuditEntry` JSON |
//! | `ramps`, `rampmeta` | hash | `env␟ramp` → `Run` JSON / `run\nseq` |
//! | `ramps:rev` | counter | +1 per ramp write |
//! | `decisions:{env}␟{ramp}` | list | `RampDecisionRecord` JSON |
//! | `outbox`, `outbox:seq` | hash, counter | id → `Delivery` JSON |
//! | `outcomes:{env}:{minute}:{flag}` | hash | `second\|o\|variant`, `second\|e\|variant` → count |
//! | `ctx:{env}:{minute}:{flag}` | hash | `second\|context\|variant` → 0/1 |
//! | `outslices:{env}:{flag}` | sorted set | minutes holding outcomes (for pruning) |
//! | `lease:{name}`, `fence:{name}` | string with TTL, counter | holder and token |
//!
//! Outcomes are kept in one hash per minute (`second / 60`), so a ramp
//! tick reads the minutes its window covers — a bounded amount per minute
//! of traffic — and never a hash that grows with the age of the step.
//!
//! Channels: `changes:{env}` carries each commit's records with the new
//! revision; `ramps` each ramp write. Publishing happens inside the write's
//! script, so a message exists exactly when the write does.
//!
//! Every call is bounded by a timeout: a Redis that does not answer makes
//! writes fail with `Unavailable` (a 503) within it rather than hang.
//! Durability is Redis's: run it with `appendonly yes` (see docs/deploy.md).

mod operations;
mod replication;
mod scripts;
mod usage;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{BoxError, StoreError};
use crate::config::{RedisOptions, redact};

/// Separates environment and ramp names in hash fields (neither may
/// contain control characters).
const FIELD_SEPARATOR: char = '\u{1f}';

/// Seconds of outcomes per hash (see the layout above).
pub(super) const OUTCOME_SLICE_SECONDS: u64 = 60;

use replication::forward_pushes;
pub use replication::{Notice, Revisions};

#[derive(Debug, Default)]
struct Health {
    /// The last error, while Redis does not answer.
    error: Option<String>,
}

#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    subscriber: ConnectionManager,
    prefix: String,
    timeout: Duration,
    health: Arc<Mutex<Health>>,
    commit_script: Arc<Script>,
    write_ramp_script: Arc<Script>,
    acquire_script: Arc<Script>,
    release_script: Arc<Script>,
    /// Versions kept per flag (0: all).
    keep: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(error: impl Into<BoxError>) -> StoreError {
    StoreError::unavailable("redis", error)
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt("a record in redis", e))
}

/// A record's JSON without its opening brace and without `skip`'s fields,
/// so a script can put numbers it assigns in front.
fn tail<T: Serialize>(value: &T, skip: &[&str]) -> String {
    let mut fields = match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    for field in skip {
        fields.remove(*field);
    }
    let text = Value::Object(fields).to_string();
    text[1..].to_owned()
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn script_reply(reply: Vec<String>) -> Result<Vec<String>, StoreError> {
    if reply.is_empty() { Err(unavailable("a script answered nothing")) } else { Ok(reply) }
}

impl RedisStore {
    /// Connects (failing if Redis does not answer within the timeout) and
    /// subscribes to every change channel. Published changes arrive on the
    /// returned receiver.
    pub async fn connect(options: &RedisOptions) -> Result<(RedisStore, mpsc::UnboundedReceiver<Notice>), StoreError> {
        let redacted = redact(&options.url);
        if options.url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; ring is the one
            // built in. Already installed (a second connection) is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut info: ::redis::ConnectionInfo = ::redis::IntoConnectionInfo::into_connection_info(options.url.as_str())
            .map_err(|e| StoreError::unavailable(format!("invalid redis URL {redacted}"), e))?;
        let mut settings = info.redis_settings().clone().set_protocol(::redis::ProtocolVersion::RESP3);
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match &options.ca_file {
            None => ::redis::Client::open(info),
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    StoreError::unavailable(format!("cannot read the Redis CA file {}", path.display()), e)
                })?;
                let certificates = ::redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                ::redis::Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|e| StoreError::unavailable(redacted.clone(), e))?;
        // Fail fast while Redis is away: a few quick retries, then the call
        // errors (and the next call tries again), so writes get a 503
        // instead of hanging.
        let config = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(options.timeout))
                .set_response_timeout(Some(options.timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
        };
        let (push_sender, pushes) = mpsc::unbounded_channel();
        let connect = async {
            let connection = ConnectionManager::new_with_config(client.clone(), config()).await?;
            let subscriber = ConnectionManager::new_with_config(
                client,
                config().set_push_sender(push_sender).set_automatic_resubscription(),
            )
            .await?;
            Ok::<_, ::redis::RedisError>((connection, subscriber))
        };
        let (connection, mut subscriber) = tokio::time::timeout(options.timeout, connect)
            .await
            .map_err(|_| StoreError::unavailable(format!("redis at {redacted}"), "no answer"))?
            .map_err(|e| StoreError::unavailable(format!("cannot connect to redis at {redacted}"), e))?;
        let prefix = format!("{{{}}}", options.prefix);
        subscriber.psubscribe(format!("{prefix}:changes:*")).await.map_err(unavailable)?;
        subscriber.subscribe(format!("{prefix}:ramps")).await.map_err(unavailable)?;
        let (notices, receiver) = mpsc::unbounded_channel();
        tokio::spawn(forward_pushes(pushes, notices, prefix.clone()));
        let store = RedisStore {
            connection,
            subscriber,
            prefix,
            timeout: options.timeout,
            health: Arc::default(),
            commit_script: Arc::new(Script::new(scripts::COMMIT)),
            write_ramp_script: Arc::new(Script::new(scripts::WRITE_RAMP)),
            acquire_script: Arc::new(Script::new(scripts::ACQUIRE)),
            release_script: Arc::new(Script::new(scripts::RELEASE)),
            keep: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        Ok((store, receiver))
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// The hash of `kind` ("outcomes" or "ctx") holding `minute`'s outcomes.
    fn outcome_key(&self, kind: &str, environment: &str, flag: &str, minute: u64) -> String {
        self.key(&[kind, environment, &minute.to_string(), flag])
    }

    /// The hashes of `kind` covering seconds `[from, to)`, in one round trip.
    async fn read_slices<V: ::redis::FromRedisValue>(
        &self,
        kind: &str,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<std::collections::BTreeMap<String, V>>, StoreError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for minute in from / OUTCOME_SLICE_SECONDS..=(to - 1) / OUTCOME_SLICE_SECONDS {
            pipe.hgetall(self.outcome_key(kind, environment, flag, minute));
        }
        self.call(async |mut c| pipe.query_async(&mut c).await).await
    }

    fn ramp_field(environment: &str, ramp: &str) -> String {
        format!("{environment}{FIELD_SEPARATOR}{ramp}")
    }

    /// Runs one call against Redis within the timeout, keeping the health
    /// state (and logging its changes once).
    async fn call<T>(
        &self,
        work: impl AsyncFnOnce(ConnectionManager) -> Result<T, ::redis::RedisError>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, work(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => {
                if health.error.take().is_some() {
                    tracing::info!("redis answers again");
                }
                Ok(value)
            }
            Err(error) => {
                if health.error.is_none() {
                    tracing::warn!(%error, "redis is unavailable: evaluations keep serving the last snapshot, writes fail with 503");
                }
                health.error = Some(error.clone());
                Err(unavailable(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlagRecord;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:hunter2@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(redact("rediss://user:pw@cache:6380"), "rediss://***@cache:6380");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }

    #[test]
    fn tails_splice_after_assigned_numbers() {
        let record = FlagRecord { version: 0, definition: None, at: 5, by: "ana".into() };
        let spliced = format!("{{\"version\":7,{}", tail(&record, &["version"]));
        let back: FlagRecord = serde_json::from_str(&spliced).expect("valid JSON");
        assert_eq!(back, FlagRecord { version: 7, ..record });
    }
}
