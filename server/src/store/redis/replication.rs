//! Replication reads: what other replicas published (each commit's
//! records, each ramp write), the revisions and data epoch a replica
//! compares with what it serves, and reading an environment again.

use std::collections::BTreeMap;

use ::redis::{AsyncCommands, PushKind, Value as RedisValue};
use tokio::sync::mpsc;

use super::{FIELD_SEPARATOR, RedisStore, decode};
use crate::model::Run;
use crate::store::{EnvironmentState, FlagRecord, StateOverride, StoreError, StoredRun};

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

impl RedisStore {
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
        let fresh = format!("{:x}-{:x}", crate::time::Clock::system().now_millis(), std::process::id());
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
pub(super) async fn forward_pushes(
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
