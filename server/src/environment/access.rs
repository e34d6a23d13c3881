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

use super::{Environment, Environments};
use crate::config::KeyDigest;

/// What the key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Evaluating flags and following their changes: an SDK key.
    Evaluate,
    /// Reporting outcomes: a reporter key, or an SDK key where the
    /// environment has no reporter keys.
    Report,
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
    /// An SDK key, where the environment accepts outcomes only from its
    /// reporter keys.
    NotAReporter,
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
            KeyRejection::NotAReporter => {
                "this environment accepts outcome reports only from its reporter keys (reporterKeys), not SDK keys"
            }
        }
    }

    /// Whether the caller is known but not allowed (403, `PERMISSION_DENIED`)
    /// rather than not authenticated (401, `UNAUTHENTICATED`).
    pub fn is_forbidden(self) -> bool {
        matches!(self, KeyRejection::AdminToken | KeyRejection::NotAReporter)
    }
}

impl Environments {
    /// The environment `key` reaches for `purpose`. With open evaluation
    /// (no keys configured, a single environment) no key is needed.
    pub fn authenticate(&self, key: Option<&str>, purpose: Purpose) -> Result<&Arc<Environment>, KeyRejection> {
        let digest = key.map(KeyDigest::of);
        if digest.is_some_and(|digest| self.admin_tokens.contains(&digest)) {
            return Err(KeyRejection::AdminToken);
        }
        if purpose == Purpose::Report
            && let Some(&index) = digest.and_then(|digest| self.reporters.get(&digest))
        {
            return Ok(&self.list[index]);
        }
        let index = match digest {
            _ if self.open => 0,
            None => return Err(KeyRejection::Missing),
            Some(digest) => *self.by_key.get(&digest).ok_or(KeyRejection::Unknown)?,
        };
        if purpose == Purpose::Report && self.reporters_only[index] {
            return Err(KeyRejection::NotAReporter);
        }
        Ok(&self.list[index])
    }
}
