//! Typed errors of orchestrator calls.

use std::time::Duration;

use uuid::Uuid;

use crate::model::{OperationReason, OperationState};

/// What went wrong with an orchestrator call. Messages are the orchestrator's
/// own, prefixed with the operation that failed; they never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the resource does not exist.
    #[error("{operation}: not found: {message}")]
    NotFound { operation: &'static str, message: String },
    /// 409: conflicting or busy state.
    #[error("{operation}: conflict: {message}")]
    Conflict { operation: &'static str, message: String },
    /// 401 or 403: credentials rejected or not allowed.
    #[error("{operation}: forbidden ({status}): {message}")]
    Forbidden { operation: &'static str, status: u16, message: String },
    /// 400 or 422: the request was invalid.
    #[error("{operation}: invalid request: {message}")]
    Invalid { operation: &'static str, message: String },
    /// 429 after every retry.
    #[error("{operation}: rate limited: {message}")]
    RateLimited { operation: &'static str, message: String, retry_after: Option<Duration> },
    /// 5xx after every retry, or 501.
    #[error("{operation}: orchestrator unavailable ({status}): {message}")]
    Unavailable { operation: &'static str, status: u16, message: String },
    /// Any other unexpected status.
    #[error("{operation}: unexpected status {status}: {message}")]
    Status { operation: &'static str, status: u16, message: String },
    /// The request timed out after every retry.
    #[error("{operation}: timed out after {after:?}")]
    Timeout { operation: &'static str, after: Duration },
    /// The connection failed after every retry.
    #[error("{operation}: connection failed: {message}")]
    Transport { operation: &'static str, message: String },
    /// The answer did not parse.
    #[error("{operation}: cannot decode response: {message}")]
    Decode { operation: &'static str, message: String },
    /// An operation ended in `failure` or `timeout`.
    #[error("operation {id} ended in state {state}{}: {message}", reason.as_ref().map(|r| format!(" (reason {r})")).unwrap_or_default())]
    OperationFailed { id: Uuid, state: OperationState, reason: Option<OperationReason>, message: String },
    /// An operation was still pending when the wait gave up.
    #[error("operation {id} still pending after {after:?}")]
    OperationTimeout { id: Uuid, after: Duration },
    /// No usable credentials.
    #[error("credentials: {0}")]
    Credentials(String),
    /// Bad client configuration (endpoint, zone, TLS).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the error says the resource does not exist (and nothing else).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether the error is the orchestrator's or the network's fault and
    /// the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Unavailable { .. }
                | Error::Timeout { .. }
                | Error::Transport { .. }
                | Error::OperationTimeout { .. }
        )
    }

    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Forbidden { .. } => "forbidden",
            Error::Invalid { .. } => "invalid",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable { .. } => "unavailable",
            Error::Status { .. } => "status",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::OperationFailed { .. } => "operation_failed",
            Error::OperationTimeout { .. } => "operation_timeout",
            Error::Credentials(_) => "credentials",
            Error::Config(_) => "config",
        }
    }
}

/// Result of orchestrator calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
