//! Which environment a request may reach, decided once for every
//! transport (OFREP, server-sent events, `/v1/outcomes`, gRPC): each
//! transport only finds the key where its protocol carries it and renders
//! the [`KeyRejection`] in its own shape.
//!
//! SDK keys select an environment for evaluation and streams; they ship in
//! client applications, so an environment may insist on reporter keys for
//! outcome reports. Admin tokens are refused everywhere a key is expected:
//! each credential has one purpose, and a token sent to the wrong place is
//! a mistake worth saying so.

use std::sync::Arc;

use super::registry::{Credentials, KeyTable};
use super::{Environment, Environments};
use crate::config::KeyDigest;

/// What the key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Evaluating flags and following their changes: an SDK key.
    Evaluate,
    /// Reporting outcomes: a reporter key, or an SDK key where the
    /// environment opted in (`sdkKeyOutcomes`).
    Report,
}

/// How far the credential of an outcome report is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A reporter key: a secret kept on the servers that report, so its
    /// reports may carry counts. Also an open environment (no credentials
    /// configured at all, local development), which has nothing else.
    Reporter,
    /// An SDK key where the environment opted in: anyone holds it (it
    /// ships in client apps), so each entry is one outcome and every
    /// client and targeting key is bounded (`ramp::outcome_gate`).
    Public,
}

/// Why a request could not be given an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// No key was sent (and evaluation is not open).
    Missing,
    /// The key selects no environment.
    Unknown,
    /// An admin token, where an SDK or reporter key belongs.
    AdminToken,
    /// An SDK key, where the environment takes outcome reports only from
    /// reporter keys (the default).
    NotAReporter,
    /// A relay that has not yet received its environments' keys from the
    /// upstream: it cannot tell a valid key from an invalid one yet, so it
    /// answers "not ready, retry" (503) rather than "never" (401, which
    /// SDKs take as permanent).
    NotReady,
}

impl KeyRejection {
    /// What the client is told, the same on every transport.
    pub fn message(self) -> &'static str {
        match self {
            KeyRejection::Missing => {
                "an SDK key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' \
                 (streams also take ?key=, gRPC the flagd selector)"
            }
            KeyRejection::Unknown => "the SDK key is not valid for any environment",
            KeyRejection::AdminToken => {
                "admin tokens are for the admin API: use an SDK key (or a reporter key for outcome reports)"
            }
            KeyRejection::NotReady => {
                "this relay has not received its environments' keys from its upstream yet; retry shortly"
            }
            KeyRejection::NotAReporter => {
                "SDK keys are public (they ship in client apps), so this environment does not let them feed its \
                 ramps: configure reporterKeys for it and report with one from your servers (or, knowing the \
                 risk, set sdkKeyOutcomes: true)"
            }
        }
    }

    /// Whether the caller is known but not allowed (403, `PERMISSION_DENIED`)
    /// rather than not authenticated (401, `UNAUTHENTICATED`).
    pub fn is_forbidden(self) -> bool {
        matches!(self, KeyRejection::AdminToken | KeyRejection::NotAReporter)
    }

    /// Whether asking again shortly may succeed (503, `UNAVAILABLE`).
    pub fn is_temporary(self) -> bool {
        self == KeyRejection::NotReady
    }
}

impl Environments {
    /// The environment `key` reaches for `purpose`. With open evaluation
    /// (no keys configured, a single environment) no key is needed.
    pub fn authenticate(&self, key: Option<&str>, purpose: Purpose) -> Result<&Arc<Environment>, KeyRejection> {
        self.authenticate_with_trust(key, purpose).map(|(environment, _)| environment)
    }

    /// The environment an outcome report's key reaches, and how far the
    /// key is trusted.
    pub fn reporter(&self, key: Option<&str>) -> Result<(&Arc<Environment>, Trust), KeyRejection> {
        self.authenticate_with_trust(key, Purpose::Report)
    }

    /// The environment an OpenFeature `track` event's key reaches: apps
    /// track with the SDK key they evaluate with (trusted as public), a
    /// reporter key is trusted further.
    pub fn tracker(&self, key: Option<&str>) -> Result<(&Arc<Environment>, Trust), KeyRejection> {
        match self.reporter(key) {
            Err(KeyRejection::NotAReporter) => self.authenticate(key, Purpose::Evaluate).map(|e| (e, Trust::Public)),
            other => other,
        }
    }

    fn authenticate_with_trust(
        &self,
        key: Option<&str>,
        purpose: Purpose,
    ) -> Result<(&Arc<Environment>, Trust), KeyRejection> {
        let keys = self.keys.load();
        let resolved = key.map(|key| keys.resolve(key));
        if resolved.is_some_and(|resolved| resolved.admin) {
            return Err(KeyRejection::AdminToken);
        }
        if purpose == Purpose::Report
            && let Some(index) = resolved.and_then(|resolved| resolved.reporter)
        {
            return Ok((&self.list[index], Trust::Reporter));
        }
        let unknown = if keys.waiting { KeyRejection::NotReady } else { KeyRejection::Unknown };
        let index = match resolved {
            _ if keys.open => return Ok((&self.list[0], Trust::Reporter)),
            None if keys.waiting => return Err(KeyRejection::NotReady),
            None => return Err(KeyRejection::Missing),
            Some(resolved) => resolved.sdk.ok_or(unknown)?,
        };
        if purpose == Purpose::Report && !keys.sdk_key_outcomes.get(index).copied().unwrap_or(false) {
            return Err(KeyRejection::NotAReporter);
        }
        Ok((&self.list[index], Trust::Public))
    }
}

/// Why a relay may not follow an environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayRejection {
    #[error("a relay token is required to follow an environment")]
    NotARelayToken,
    #[error("relay token '{relay}' may not follow the environment '{environment}'")]
    OutOfScope { relay: String, environment: String },
}

impl Environments {
    /// The relay a token belongs to, or `None` when it is not a relay token.
    pub fn relay_name(&self, token: &str) -> Option<String> {
        self.keys.load().relay_tokens.get(&KeyDigest::of(token)).map(|(name, _)| name.clone())
    }

    /// The environment a relay token may follow, by name.
    pub fn relay(&self, token: &str, environment: &str) -> Result<(String, &Arc<Environment>), RelayRejection> {
        let keys = self.keys.load();
        let (relay, scope) = keys.relay_tokens.get(&KeyDigest::of(token)).ok_or(RelayRejection::NotARelayToken)?;
        let out_of_scope = || RelayRejection::OutOfScope { relay: relay.clone(), environment: environment.to_owned() };
        let index = self.list.iter().position(|e| e.name == environment).ok_or_else(out_of_scope)?;
        if !scope.contains(&index) {
            return Err(out_of_scope());
        }
        Ok((relay.clone(), &self.list[index]))
    }

    /// Who may use the environment, for a relay that serves it.
    pub fn credentials(&self, environment: &str) -> Credentials {
        let keys = self.keys.load();
        let Some(index) = self.list.iter().position(|e| e.name == environment) else { return Credentials::default() };
        let of = |map: &std::collections::HashMap<KeyDigest, usize>| {
            let mut digests: Vec<KeyDigest> = map.iter().filter(|(_, i)| **i == index).map(|(d, _)| *d).collect();
            digests.sort_by_key(|digest| digest.0);
            digests
        };
        let mut relay_tokens: Vec<KeyDigest> =
            keys.relay_tokens.iter().filter(|(_, (_, scope))| scope.contains(&index)).map(|(d, _)| *d).collect();
        relay_tokens.sort_by_key(|digest| digest.0);
        Credentials {
            open: keys.open,
            sdk_keys: of(&keys.by_key),
            reporter_keys: of(&keys.reporters),
            relay_tokens,
            sdk_key_outcomes: keys.sdk_key_outcomes.get(index).copied().unwrap_or(false),
        }
    }

    /// On a relay: the credentials the upstream last sent for an environment.
    pub fn relayed_credentials(&self, environment: &str) -> Credentials {
        let Some(index) = self.list.iter().position(|e| e.name == environment) else { return Credentials::default() };
        self.relayed.lock().unwrap_or_else(|e| e.into_inner())[index].clone().unwrap_or_default()
    }

    /// On a relay: takes the credentials the upstream sent for one
    /// environment and rebuilds which key reaches what.
    pub fn set_credentials(&self, environment: &str, credentials: Credentials) {
        let Some(index) = self.list.iter().position(|e| e.name == environment) else { return };
        let mut relayed = self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        if relayed[index].as_ref() == Some(&credentials) {
            return;
        }
        relayed[index] = Some(credentials);
        let current = self.keys.load();
        let mut table = KeyTable {
            admin_tokens: current.admin_tokens.clone(),
            local_relay_tokens: current.local_relay_tokens.clone(),
            relay_tokens: current.local_relay_tokens.clone(),
            sdk_key_outcomes: vec![false; self.list.len()],
            open: self.list.len() == 1 && relayed[0].as_ref().is_some_and(|c| c.open),
            waiting: relayed.iter().any(Option::is_none),
            ..KeyTable::default()
        };
        for (index, credentials) in relayed.iter().enumerate() {
            let Some(credentials) = credentials else { continue };
            table.by_key.extend(credentials.sdk_keys.iter().map(|digest| (*digest, index)));
            table.reporters.extend(credentials.reporter_keys.iter().map(|digest| (*digest, index)));
            table.sdk_key_outcomes[index] = credentials.sdk_key_outcomes;
            for digest in &credentials.relay_tokens {
                let entry = table.relay_tokens.entry(*digest).or_insert_with(|| ("relay".to_owned(), Vec::new()));
                entry.1.push(index);
            }
        }
        self.keys.store(Arc::new(table));
    }
}
