//! Errors of the admin API, rendered in one place as
//! `{"error": {"code", "message", "details"}}` with a 4xx (or 503) status.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use rampart_engine::LoadErrors;
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::StoreError;
use crate::writes::WriteError;

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Value,
    /// For 405: the methods the resource allows.
    pub(crate) allow: Option<&'static str>,
    /// For 429: when to try again.
    pub(crate) retry_after: Option<std::time::Duration>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorFields,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorFields {
    /// A stable, machine-readable code, e.g. `FLAG_NOT_FOUND`.
    pub(crate) code: String,
    pub(crate) message: String,
    /// Where and what exactly: e.g. one entry per problem in a flag.
    pub(crate) details: Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Value::Null, allow: None, retry_after: None }
    }

    pub(crate) fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub(crate) fn with_allow(mut self, allow: &'static str) -> ApiError {
        self.allow = Some(allow);
        self
    }

    pub(crate) fn with_retry_after(mut self, after: std::time::Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// `404 FLAG_NOT_FOUND`: no flag `key` in `environment`.
    pub(crate) fn flag_not_found(environment: &str, key: &str) -> ApiError {
        ApiError::not_found("FLAG_NOT_FOUND", format!("no flag '{key}' in environment '{environment}'"))
    }

    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn admin_disabled() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ADMIN_DISABLED",
            "the admin API is off: configure an admin token (adminTokens, --admin-tokens or RAMPART_ADMIN_TOKEN), \
             or pass --admin-insecure-local on a loopback address",
        )
    }

    /// A flag definition the engine rejects: one detail per problem.
    pub(crate) fn invalid_flag(errors: &LoadErrors) -> ApiError {
        let details: Vec<Value> = errors
            .iter()
            .map(|e| json!({"file": e.file, "line": e.line, "flag": e.flag, "message": e.message}))
            .collect();
        let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_FLAG", message).with_details(Value::Array(details))
    }
}

impl From<super::body::BodyError> for ApiError {
    fn from(error: super::body::BodyError) -> ApiError {
        let (status, message) = error.describe();
        let code = match error {
            super::body::BodyError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            super::body::BodyError::Timeout(_) => "REQUEST_TIMEOUT",
            super::body::BodyError::Read(_) => "BAD_REQUEST",
        };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED", error.to_string())
            }
            StoreError::Fenced { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "CONCURRENT_CHANGE",
                format!("{error}; the change was not applied, retry it"),
            ),
            StoreError::Corrupt { .. } => {
                tracing::error!(%error, "the store holds a record this server cannot read");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "STORE_CORRUPT",
                    format!("{error}; retrying will not help: restore the store or run the version that wrote it"),
                )
            }
            StoreError::Unavailable { .. } => {
                tracing::error!(%error, "store write failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                    format!("{error}; nothing was changed unless the flag's history shows it, retry later"),
                )
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> ApiError {
        let message = error.to_string();
        match error {
            WriteError::NotFound { .. } => ApiError::not_found("FLAG_NOT_FOUND", message),
            WriteError::FileOwned { file, .. } => {
                ApiError::conflict("FILE_OWNED", message).with_details(json!({ "file": file }))
            }
            WriteError::Precondition { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED", message)
            }
            WriteError::TooManyFlags { .. } => ApiError::unprocessable("LIMIT_REACHED", message),
            WriteError::Invalid(errors) => ApiError::invalid_flag(&errors),
            WriteError::VersionNotFound { .. } => ApiError::not_found("VERSION_NOT_FOUND", message),
            WriteError::VersionDeleted { .. } => ApiError::conflict("VERSION_DELETED", message),
            WriteError::SourceFileOwned { .. } => ApiError::conflict("SOURCE_FILE_OWNED", message),
            WriteError::SameEnvironment => ApiError::bad_request(message),
            WriteError::RateLimited { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message).with_retry_after(retry_after)
            }
            WriteError::Store(error) => error.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Some(allow) = self.allow {
            response.insert_header((header::ALLOW, allow));
        }
        if let Some(after) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, after.as_secs_f64().ceil().max(1.0).to_string()));
        }
        response.json(json!({"error": {"code": self.code, "message": self.message, "details": self.details}}))
    }
}
