//! Admin API authentication: bearer tokens with roles, compared by SHA-256
//! digest (a lookup never depends on how much of a guessed token is right,
//! and tokens are never kept or logged).

use super::policy::Action;
use std::collections::HashMap;

use actix_web::HttpRequest;
use actix_web::http::header;

use super::error::ApiError;
use crate::config::{KeyDigest, Role, ServerConfig};

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The token's name: the actor in the audit log.
    pub(crate) name: String,
    pub(crate) role: Role,
}

#[derive(Debug)]
pub(crate) enum AdminAccess {
    /// Tokens are configured: every request needs one.
    Tokens(HashMap<KeyDigest, Caller>),
    /// `--admin-insecure-local` on a loopback listener: everyone is admin.
    InsecureLocal,
    /// No tokens and no opt-out: the admin API is off.
    Disabled,
}

impl AdminAccess {
    pub(crate) fn new(config: &ServerConfig) -> AdminAccess {
        if !config.admin_tokens.is_empty() {
            let tokens =
                config.admin_tokens.iter().map(|t| (t.digest, Caller { name: t.name.clone(), role: t.role })).collect();
            AdminAccess::Tokens(tokens)
        } else if config.admin_insecure_local {
            AdminAccess::InsecureLocal
        } else {
            AdminAccess::Disabled
        }
    }

    /// The caller, if its token allows `needed`.
    pub(crate) fn authorize(&self, request: &HttpRequest, action: Action) -> Result<Caller, ApiError> {
        let needed = action.required();
        let tokens = match self {
            AdminAccess::Disabled => return Err(ApiError::admin_disabled()),
            AdminAccess::InsecureLocal => return Ok(Caller { name: "local".into(), role: Role::Admin }),
            AdminAccess::Tokens(tokens) => tokens,
        };
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(ApiError::unauthorized("an admin token is required: send 'Authorization: Bearer <token>'"));
        };
        let Some(caller) = tokens.get(&KeyDigest::of(token)) else {
            return Err(ApiError::unauthorized("the token is not a valid admin token"));
        };
        if !action.allows(caller.role) {
            return Err(ApiError::forbidden(format!(
                "token '{}' has the role '{}'; this needs '{}'",
                caller.name,
                caller.role.as_str(),
                needed.as_str()
            )));
        }
        Ok(caller.clone())
    }
}
