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
//! | `outcomes:{env}:{flag}` | hash | `second\|o\|variant`, `second\|e\|variant` → count |
//! | `ctx:{env}:{flag}` | hash | `second\|context\|variant` → 0/1 |
//! | `lease:{name}`, `fence:{name}` | string with TTL, counter | holder and token |
//!
//! Channels: `changes:{env}` carries each commit's records with the new
//! revision; `ramps` each ramp write. Publishing happens inside the write's
//! script, so a message exists exactly when the write does.
//!
//! Every call is bounded by a timeout: a Redis that does not answer makes
//! writes fail with `Unavailable` (a 503) within it rather than hang.
//! Durability is Redis's: run it with `appendonly yes` (see docs/deploy.md).

mod scripts;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, PushKind, Script, Value as RedisValue};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    AuditEntry, AuditQuery, ChangeKind, Commit, Committed, ContextOutcome, Delivery, EnvironmentState, Expect,
    FlagRecord, FlagVersion, OutcomeCount, RampDecisionRecord, RampWrite, StateOverride, Store, StoreError,
    StoreHealth, StoredRun,
};
use crate::model::Run;

/// Separates environment and ramp names in hash fields (neither may
/// contain control characters).
const FIELD_SEPARATOR: char = '\u{1f}';

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` or `rediss://…` (TLS). May carry a password;
    /// it is never logged.
    pub url: String,
    /// Overrides the URL's password.
    pub password: Option<String>,
    /// Key prefix, so several Rampart installations can share one Redis.
    pub prefix: String,
    /// Longest a single store call may take.
    pub timeout: Duration,
    /// PEM file of the CA that signed the server's certificate (`rediss://`
    /// with a private CA); the system's roots otherwise.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// What the replica loop compares with what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revisions {
    pub environments: Vec<u64>,
    pub ramps: u64,
    pub epoch: Option<String>,
}

/// A change another replica (or this one) made, as published.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Environment {
        environment: String,
        revision: u64,
        flags: BTreeMap<String, Option<FlagRecord>>,
        overrides: BTreeMap<String, Option<StateOverride>>,
    },
    Ramp {
        revision: u64,
        environment: String,
        ramp: String,
        run: Box<Run>,
    },
    /// The subscription connection dropped: messages may have been missed.
    Disconnected,
}

#[derive(Debug, serde::Deserialize)]
struct EnvironmentMessage {
    revision: u64,
    #[serde(default)]
    flags: BTreeMap<String, Option<FlagRecord>>,
    #[serde(default)]
    overrides: BTreeMap<String, Option<StateOverride>>,
}

#[derive(Debug, serde::Deserialize)]
struct RampMessage {
    revision: u64,
    environment: String,
    ramp: String,
    run: Run,
}

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

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Unavailable(format!("corrupt record in redis: {e}")))
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
            .map_err(|e| StoreError::Unavailable(format!("invalid redis URL {redacted}: {e}")))?;
        let mut settings = info.redis_settings().clone().set_protocol(::redis::ProtocolVersion::RESP3);
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match &options.ca_file {
            None => ::redis::Client::open(info),
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    StoreError::Unavailable(format!("cannot read the Redis CA file {}: {e}", path.display()))
                })?;
                let certificates = ::redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                ::redis::Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|e| StoreError::Unavailable(format!("{redacted}: {e}")))?;
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
            .map_err(|_| StoreError::Unavailable(format!("redis at {redacted} did not answer")))?
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to redis at {redacted}: {e}")))?;
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
                Err(StoreError::Unavailable(format!("redis: {error}")))
            }
        }
    }

    /// The newest revision of each environment and of the ramps, and the
    /// data's epoch.
    pub async fn revisions(&self, environments: &[String]) -> Result<Revisions, StoreError> {
        let mut keys: Vec<String> = environments.iter().map(|e| self.key(&["rev", e])).collect();
        keys.push(self.key(&["ramps", "rev"]));
        keys.push(self.key(&["epoch"]));
        let mut values: Vec<Option<String>> =
            self.call(async |mut c| ::redis::cmd("MGET").arg(&keys).query_async(&mut c).await).await?;
        let epoch = values.pop().flatten();
        let mut numbers: Vec<u64> =
            values.into_iter().map(|v| v.and_then(|v| v.parse().ok()).unwrap_or_default()).collect();
        let ramps = numbers.pop().unwrap_or_default();
        Ok(Revisions { environments: numbers, ramps, epoch })
    }

    /// The data's epoch: a random name given to the data set when it was
    /// first seen. A different (or missing) epoch means Redis lost its data
    /// or was replaced, and revisions started again.
    pub async fn epoch(&self) -> Result<String, StoreError> {
        let key = self.key(&["epoch"]);
        let fresh = format!("{:x}-{:x}", crate::time::now_millis(), std::process::id());
        self.call(async |mut c| {
            let _: Option<String> = ::redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async(&mut c).await?;
            c.get(&key).await
        })
        .await
    }

    /// One environment's state, read atomically with its revision.
    pub async fn load_environment(&self, environment: &str) -> Result<EnvironmentState, StoreError> {
        let (rev, flags, overrides) =
            (self.key(&["rev", environment]), self.key(&["flags", environment]), self.key(&["overrides", environment]));
        let (revision, flags, overrides): (Option<u64>, BTreeMap<String, String>, BTreeMap<String, String>) = self
            .call(async |mut c| {
                ::redis::pipe().atomic().get(&rev).hgetall(&flags).hgetall(&overrides).query_async(&mut c).await
            })
            .await?;
        let mut state = EnvironmentState { revision: revision.unwrap_or_default(), ..Default::default() };
        for (flag, text) in flags {
            let record: FlagRecord = decode(&text)?;
            if record.definition.is_some() {
                state.flags.insert(flag, record);
            }
        }
        for (flag, text) in overrides {
            state.overrides.insert(flag, decode(&text)?);
        }
        Ok(state)
    }

    /// Every ramp run, read atomically with the ramps' revision.
    pub async fn load_ramps(&self) -> Result<(u64, Vec<StoredRun>), StoreError> {
        let (rev, ramps) = (self.key(&["ramps", "rev"]), self.key(&["ramps"]));
        let (revision, runs): (Option<u64>, BTreeMap<String, String>) = self
            .call(async |mut c| ::redis::pipe().atomic().get(&rev).hgetall(&ramps).query_async(&mut c).await)
            .await?;
        let mut stored = Vec::new();
        for (field, text) in runs {
            let Some((environment, ramp)) = field.split_once(FIELD_SEPARATOR) else { continue };
            stored.push(StoredRun { environment: environment.into(), ramp: ramp.into(), run: decode(&text)? });
        }
        Ok((revision.unwrap_or_default(), stored))
    }

    /// Pings over the subscription connection: a dropped one reconnects
    /// (and resubscribes) only when it is used.
    pub async fn ping_subscriber(&self) -> bool {
        let mut subscriber = self.subscriber.clone();
        let ping = async move { ::redis::cmd("PING").query_async::<String>(&mut subscriber).await };
        matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_)))
    }
}

/// Turns the subscription's pushes into notices.
async fn forward_pushes(
    mut pushes: mpsc::UnboundedReceiver<::redis::PushInfo>,
    notices: mpsc::UnboundedSender<Notice>,
    prefix: String,
) {
    let changes = format!("{prefix}:changes:");
    let ramps = format!("{prefix}:ramps");
    while let Some(push) = pushes.recv().await {
        let notice = match push.kind {
            PushKind::Disconnection => Some(Notice::Disconnected),
            PushKind::Message | PushKind::PMessage => {
                // Message: [channel, payload]; PMessage: [pattern, channel, payload].
                let skip = usize::from(push.kind == PushKind::PMessage);
                let text = |value: Option<&RedisValue>| match value {
                    Some(RedisValue::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
                    Some(RedisValue::SimpleString(text)) => Some(text.clone()),
                    _ => None,
                };
                match (text(push.data.get(skip)), text(push.data.get(skip + 1))) {
                    (Some(channel), Some(payload)) => parse_message(&channel, &payload, &changes, &ramps),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(notice) = notice
            && notices.send(notice).is_err()
        {
            return;
        }
    }
}

fn parse_message(channel: &str, payload: &str, changes: &str, ramps: &str) -> Option<Notice> {
    let parsed = if let Some(environment) = channel.strip_prefix(changes) {
        serde_json::from_str::<EnvironmentMessage>(payload).map(|m| Notice::Environment {
            environment: environment.to_owned(),
            revision: m.revision,
            flags: m.flags,
            overrides: m.overrides,
        })
    } else if channel == ramps {
        serde_json::from_str::<RampMessage>(payload).map(|m| Notice::Ramp {
            revision: m.revision,
            environment: m.environment,
            ramp: m.ramp,
            run: Box::new(m.run),
        })
    } else {
        return None;
    };
    parsed.map_err(|error| tracing::warn!(%channel, %error, "unreadable change message; resynchronising")).ok()
}

fn script_reply(reply: Vec<String>) -> Result<Vec<String>, StoreError> {
    if reply.is_empty() { Err(StoreError::Unavailable("redis: empty script reply".into())) } else { Ok(reply) }
}

#[async_trait]
impl Store for RedisStore {
    async fn load(&self) -> Result<BTreeMap<String, EnvironmentState>, StoreError> {
        let key = self.key(&["environments"]);
        let environments: Vec<String> = self.call(async |mut c| c.smembers(&key).await).await?;
        let mut all = BTreeMap::new();
        for environment in environments {
            let state = self.load_environment(&environment).await?;
            all.insert(environment, state);
        }
        Ok(all)
    }

    async fn commit(&self, commit: Commit) -> Result<Committed, StoreError> {
        let mut invocation = self.commit_script.prepare_invoke();
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        invocation.arg(&self.prefix).arg(commit.changes.len()).arg(keep);
        for change in &commit.changes {
            let (expect, expected) = match change.expect {
                Expect::Anything => ("any", 0),
                Expect::Absent => ("absent", 0),
                Expect::Version(version) => ("v", version),
            };
            let definition = match &change.kind {
                ChangeKind::Put(definition) => Some(definition.clone()),
                _ => None,
            };
            let (kind, body) = match &change.kind {
                ChangeKind::Put(_) | ChangeKind::Delete => {
                    let record = FlagRecord {
                        version: 0,
                        definition: definition.clone(),
                        at: commit.at,
                        by: commit.actor.clone(),
                    };
                    (if definition.is_some() { "put" } else { "delete" }, tail(&record, &["version"]))
                }
                ChangeKind::Override(Some(state)) => {
                    let record = StateOverride { state: *state, at: commit.at, by: commit.actor.clone() };
                    ("oset", serde_json::to_string(&record).unwrap_or_default())
                }
                ChangeKind::Override(None) => ("oclear", String::new()),
            };
            let version = FlagVersion {
                version: 0,
                definition,
                at: commit.at,
                by: commit.actor.clone(),
                action: change.action.clone(),
                changes: change.changes.clone(),
            };
            let audit = AuditEntry::of(&commit, change, 0, None);
            invocation
                .arg(&change.environment)
                .arg(&change.flag)
                .arg(expect)
                .arg(expected)
                .arg(kind)
                .arg(body)
                .arg(tail(&version, &["version"]))
                .arg(tail(&audit, &["seq", "version"]))
                .arg(json_string(&change.flag));
        }
        let reply: Vec<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        let reply = script_reply(reply)?;
        if reply[0] == "conflict" {
            let index: usize = reply.get(1).and_then(|i| i.parse().ok()).unwrap_or(0);
            let found: i64 = reply.get(2).and_then(|v| v.parse().ok()).unwrap_or(-1);
            let change = &commit.changes[index.min(commit.changes.len().saturating_sub(1))];
            return Err(StoreError::flag_conflict(change, u64::try_from(found).ok()));
        }
        let split = reply.iter().position(|r| r == "|").unwrap_or(reply.len());
        let numbers = &reply[1..split];
        let mut committed = Committed::default();
        for (change, pair) in commit.changes.iter().zip(numbers.chunks(2)) {
            let seq = pair.first().and_then(|s| s.parse().ok()).unwrap_or_default();
            let version = pair.get(1).and_then(|v| v.parse::<i64>().ok()).and_then(|v| u64::try_from(v).ok());
            committed.entries.push(AuditEntry::of(&commit, change, seq, version));
        }
        for pair in reply[(split + 1).min(reply.len())..].chunks(2) {
            if let [environment, revision] = pair {
                committed.revisions.insert(environment.clone(), revision.parse().unwrap_or_default());
            }
        }
        Ok(committed)
    }

    async fn installation_secret(&self) -> Result<[u8; 32], StoreError> {
        // The first replica's secret wins (SET NX); everyone reads it back.
        let key = self.key(&["secret"]);
        let candidate = hex::encode(super::random_secret()?);
        let _: Option<String> = self
            .call(async |mut c| redis::cmd("SET").arg(&key).arg(&candidate).arg("NX").query_async(&mut c).await)
            .await?;
        let stored: Option<String> = self.call(async |mut c| c.get(&key).await).await?;
        stored
            .and_then(|text| hex::decode(text).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| StoreError::Unavailable("redis: the installation secret is not readable".into()))
    }

    async fn history(
        &self,
        environment: &str,
        flag: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FlagVersion>, StoreError> {
        // Versions are consecutive in the list, so the page is found from
        // the first one kept without reading the others.
        let key = self.key(&["versions", environment, flag]);
        let first: Option<String> = self.call(async |mut c| c.lindex(&key, 0).await).await?;
        let Some(first) = first else { return Ok(Vec::new()) };
        let first = decode::<FlagVersion>(&first)?.version;
        let start = after.saturating_add(1).saturating_sub(first) as isize;
        let stop = start.saturating_add(limit as isize).saturating_sub(1);
        let items: Vec<String> = self.call(async |mut c| c.lrange(&key, start, stop).await).await?;
        items.iter().map(|text| decode(text)).collect()
    }

    fn retain_versions(&self, versions: usize) {
        self.keep.store(versions.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    async fn prune(&self, before: u64) -> Result<u64, StoreError> {
        // Audit: oldest first, until an entry is new enough.
        const PAGE: isize = 500;
        let key = self.key(&["audit"]);
        let mut removed = 0u64;
        loop {
            let page: Vec<String> = self.call(async |mut c| c.zrange(&key, 0, PAGE - 1).await).await?;
            let old: Vec<&String> =
                page.iter().take_while(|text| decode::<AuditEntry>(text).is_ok_and(|e| e.at < before)).collect();
            if old.is_empty() {
                break;
            }
            let count = old.len();
            let members: Vec<String> = old.into_iter().cloned().collect();
            let _: i64 = self.call(async |mut c| c.zrem(&key, &members).await).await?;
            removed += count as u64;
            if count < page.len() || page.len() < PAGE as usize {
                break;
            }
        }
        // Versions beyond the retention (left from a larger setting).
        let keep = self.keep.load(std::sync::atomic::Ordering::Relaxed);
        if keep > 0 {
            let environments: Vec<String> =
                self.call(async |mut c| c.smembers(self.key(&["environments"])).await).await?;
            for environment in environments {
                let meta = self.key(&["meta", &environment]);
                let flags: Vec<String> = self.call(async |mut c| c.hkeys(&meta).await).await?;
                for flag in flags {
                    let versions = self.key(&["versions", &environment, &flag]);
                    let length: usize = self.call(async |mut c| c.llen(&versions).await).await?;
                    if length > keep {
                        let _: () = self.call(async |mut c| c.ltrim(&versions, -(keep as isize), -1).await).await?;
                        removed += (length - keep) as u64;
                    }
                }
            }
        }
        Ok(removed)
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        const PAGE: isize = 500;
        let key = self.key(&["audit"]);
        let mut out = Vec::new();
        let mut start = query.after.map_or(0, |after| after.saturating_add(1));
        loop {
            let page: Vec<String> =
                self.call(async |mut c| c.zrangebyscore_limit(&key, start as f64, "+inf", 0, PAGE).await).await?;
            let full = page.len() as isize == PAGE;
            for text in page {
                let entry: AuditEntry = decode(&text)?;
                start = entry.seq + 1;
                if query.matches(&entry) {
                    out.push(entry);
                    if out.len() >= query.limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn ramp_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        Ok(self.load_ramps().await?.1)
    }

    async fn write_ramp(&self, write: RampWrite) -> Result<(), StoreError> {
        let field = Self::ramp_field(&write.environment, &write.ramp);
        let expect = write.expect.as_ref().map(|(run, seq)| format!("{run}\n{seq}")).unwrap_or_default();
        let run_json = serde_json::to_string(&write.run).map_err(unavailable)?;
        let record = match &write.record {
            Some(record) => serde_json::to_string(record).map_err(unavailable)?,
            None => String::new(),
        };
        let (fence_lease, fence_token) =
            write.fence.as_ref().map_or((String::new(), 0), |f| (f.lease.clone(), f.token));
        let message = format!(
            "\"environment\":{},\"ramp\":{},\"run\":",
            json_string(&write.environment),
            json_string(&write.ramp)
        );
        let mut invocation = self.write_ramp_script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(&write.environment)
            .arg(&field)
            .arg(expect)
            .arg(format!("{}\n{}", write.run.run_id, write.run.seq))
            .arg(run_json)
            .arg(record)
            .arg(&fence_lease)
            .arg(fence_token)
            .arg(write.audit.len())
            .arg(write.outbox.len())
            .arg(message);
        for line in &write.audit {
            invocation.arg(tail(&write.audit_entry(line, 0), &["seq"]));
        }
        for delivery in &write.outbox {
            invocation.arg(tail(delivery, &["id"]));
        }
        let reply: Vec<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        let reply = script_reply(reply)?;
        match reply[0].as_str() {
            "fenced" => Err(StoreError::Fenced {
                lease: fence_lease,
                token: fence_token,
                current: reply.get(1).and_then(|c| c.parse().ok()).unwrap_or_default(),
            }),
            "conflict" => {
                let found = reply.get(1).and_then(|f| f.split_once('\n'));
                let found = found.map(|(run, seq)| (run, seq.parse().unwrap_or_default()));
                Err(StoreError::ramp_conflict(&write, found))
            }
            _ => Ok(()),
        }
    }

    async fn ramp_history(
        &self,
        environment: &str,
        ramp: &str,
        limit: usize,
    ) -> Result<Vec<RampDecisionRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(&["decisions", &Self::ramp_field(environment, ramp)]);
        let start = -(limit.min(isize::MAX as usize) as isize);
        let items: Vec<String> = self.call(async |mut c| c.lrange(&key, start, -1).await).await?;
        items.iter().map(|text| decode(text)).collect()
    }

    async fn record_outcomes(
        &self,
        environment: &str,
        counts: Vec<OutcomeCount>,
        contexts: Vec<ContextOutcome>,
    ) -> Result<(), StoreError> {
        if counts.is_empty() && contexts.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for count in &counts {
            let key = self.key(&["outcomes", environment, &count.flag]);
            if count.ok > 0 {
                pipe.hincr(&key, format!("{}|o|{}", count.second, count.variant), count.ok).ignore();
            }
            if count.error > 0 {
                pipe.hincr(&key, format!("{}|e|{}", count.second, count.variant), count.error).ignore();
            }
        }
        for outcome in &contexts {
            let key = self.key(&["ctx", environment, &outcome.flag]);
            let field = format!("{}|{}|{}", outcome.second, outcome.context, outcome.variant);
            if outcome.error {
                pipe.hset(&key, field, 1).ignore();
            } else {
                pipe.hset_nx(&key, field, 0).ignore();
            }
        }
        self.call(async |mut c| pipe.query_async::<()>(&mut c).await).await
    }

    async fn outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let key = self.key(&["outcomes", environment, flag]);
        let all: BTreeMap<String, u64> = self.call(async |mut c| c.hgetall(&key).await).await?;
        let mut counts: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
        for (field, value) in all {
            let mut parts = field.splitn(3, '|');
            let (Some(second), Some(kind), Some(variant)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(second) = second.parse::<u64>() else { continue };
            if second < from || second >= to {
                continue;
            }
            let entry = counts.entry((second, variant.to_owned())).or_default();
            if kind == "e" {
                entry.1 += value;
            } else {
                entry.0 += value;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((second, variant), (ok, error))| OutcomeCount { flag: flag.to_owned(), variant, second, ok, error })
            .collect())
    }

    async fn context_outcomes(
        &self,
        environment: &str,
        flag: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<ContextOutcome>, StoreError> {
        let key = self.key(&["ctx", environment, flag]);
        let all: BTreeMap<String, u8> = self.call(async |mut c| c.hgetall(&key).await).await?;
        let mut out = Vec::new();
        for (field, value) in all {
            let mut parts = field.splitn(3, '|');
            let (Some(second), Some(context), Some(variant)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(second), Ok(context)) = (second.parse::<u64>(), context.parse::<u64>()) else { continue };
            if (from..to).contains(&second) {
                out.push(ContextOutcome {
                    flag: flag.to_owned(),
                    variant: variant.to_owned(),
                    second,
                    context,
                    error: value == 1,
                });
            }
        }
        out.sort_by(|a, b| (a.second, &a.variant, a.context).cmp(&(b.second, &b.variant, b.context)));
        Ok(out)
    }

    async fn due_deliveries(&self, now: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let key = self.key(&["outbox"]);
        let all: BTreeMap<u64, String> = self.call(async |mut c| c.hgetall(&key).await).await?;
        let mut due = Vec::new();
        for text in all.values() {
            let delivery: Delivery = decode(text)?;
            if delivery.next_attempt_at <= now {
                due.push(delivery);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        let key = self.key(&["outbox"]);
        self.call(async |mut c| c.hlen(&key).await).await
    }

    async fn finish_delivery(&self, id: u64, retry: Option<Delivery>) -> Result<(), StoreError> {
        let key = self.key(&["outbox"]);
        match retry {
            Some(delivery) => {
                let text = serde_json::to_string(&Delivery { id, ..delivery }).map_err(unavailable)?;
                self.call(async |mut c| c.hset::<_, _, _, ()>(&key, id, text).await).await
            }
            None => self.call(async |mut c| c.hdel::<_, _, ()>(&key, id).await).await,
        }
    }

    async fn prune_outcomes(&self, environment: &str, flag: &str, before: u64) -> Result<(), StoreError> {
        for kind in ["outcomes", "ctx"] {
            let key = self.key(&[kind, environment, flag]);
            let fields: Vec<String> = self.call(async |mut c| c.hkeys(&key).await).await?;
            let old: Vec<&String> = fields
                .iter()
                .filter(|f| f.split('|').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s < before))
                .collect();
            for chunk in old.chunks(1000) {
                self.call(async |mut c| c.hdel::<_, _, ()>(&key, chunk).await).await?;
            }
        }
        Ok(())
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.acquire_script.prepare_invoke();
        invocation.arg(&self.prefix).arg(name).arg(holder).arg(ttl.as_millis().max(1) as u64);
        let token: Option<String> = self.call(async |mut c| invocation.invoke_async(&mut c).await).await?;
        Ok(token.and_then(|t| t.parse().ok()))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut invocation = self.release_script.prepare_invoke();
        invocation.arg(&self.prefix).arg(name).arg(holder);
        self.call(async |mut c| invocation.invoke_async::<i64>(&mut c).await).await.map(|_| ())
    }

    fn health(&self) -> StoreHealth {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match &health.error {
            None => StoreHealth { kind: "redis", state: "ok", error: None },
            Some(error) => StoreHealth { kind: "redis", state: "unavailable", error: Some(error.clone()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
