//! SDK errors: only set-up and readiness can fail; evaluation never does
//! (it answers the caller's default with a reason instead).

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the client needs a Tokio runtime: build it inside one")]
    NoRuntime,
    #[error("no endpoint and no bootstrap file: the client would have no flags")]
    NothingToServe,
    #[error("invalid endpoint '{0}': use an http:// or https:// URI with a host, e.g. http://127.0.0.1:8015")]
    Endpoint(String),
    #[error("cannot read the bootstrap file {path}: {message}")]
    Bootstrap { path: String, message: String },
    #[error("not ready after {0:?}")]
    Timeout(std::time::Duration),
    #[error("the client is closed")]
    Closed,
    #[error("cannot report outcomes: {0}")]
    Outcomes(String),
}
