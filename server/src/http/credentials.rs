//! Keys on the application listener: where HTTP requests carry them, and
//! how a refusal is answered (see `environment::access` for the decision).

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap};

use super::error::ApiError;
use crate::environment::KeyRejection;

/// `Authorization: Bearer <key>`, else `X-API-Key: <key>`.
pub(crate) fn sdk_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)).filter(|k| !k.is_empty())
}

/// The answer of the evaluation endpoints (OFREP, streams): OFREP's error
/// shape, 401 with a `WWW-Authenticate` challenge or 403.
pub(crate) fn evaluation_refused(rejection: KeyRejection) -> HttpResponse {
    let body = serde_json::json!({"errorCode": "GENERAL", "errorDetails": rejection.message()});
    if rejection.is_temporary() {
        HttpResponse::ServiceUnavailable().insert_header((header::RETRY_AFTER, "1")).json(body)
    } else if rejection.is_forbidden() {
        HttpResponse::Forbidden().json(body)
    } else {
        HttpResponse::Unauthorized().insert_header((header::WWW_AUTHENTICATE, "Bearer")).json(body)
    }
}

impl From<KeyRejection> for ApiError {
    fn from(rejection: KeyRejection) -> ApiError {
        if rejection.is_temporary() {
            ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", rejection.message())
                .with_retry_after(std::time::Duration::from_secs(1))
        } else if rejection.is_forbidden() {
            ApiError::forbidden(rejection.message())
        } else {
            ApiError::unauthorized(rejection.message())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn sdk_key_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(sdk_key(&headers), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.insert(header::HeaderName::from_static("x-api-key"), HeaderValue::from_static("xyz"));
        assert_eq!(sdk_key(&headers), Some("xyz"));
        assert_eq!(sdk_key(&HeaderMap::new()), None);
    }
}
