//! Orchestrator failures as API errors, per request: they never touch readiness.

use orchestrator::Error;
use orchestrator::model::OperationReason;

use sks_rest::status::{ApiError, GroupResource};

/// The API error of an orchestrator failure while acting on `gr` named `name`.
pub fn from_orchestrator(e: &Error, gr: GroupResource<'_>, name: &str) -> ApiError {
    match e {
        Error::NotFound { .. } => ApiError::not_found(gr, name),
        Error::Conflict { message, .. } => ApiError::conflict_message(gr, name, message),
        Error::Invalid { message, .. } => {
            ApiError::new(422, "Invalid", format!("the orchestrator refused the change to {gr} \"{name}\": {message}"))
        }
        Error::RateLimited { retry_after, .. } => ApiError::too_many_requests(
            "the orchestrator is rate limiting requests; try again later",
            retry_after.map(|d| d.as_secs().max(1)),
        ),
        Error::Timeout { .. } | Error::OperationTimeout { .. } => {
            ApiError::timeout(format!("the orchestrator did not answer in time: {e}"))
        }
        Error::OperationFailed { reason: Some(OperationReason::Busy | OperationReason::Conflict), message, .. } => {
            ApiError::conflict_message(gr, name, message)
        }
        Error::OperationFailed { reason: Some(OperationReason::Incorrect), message, .. } => {
            ApiError::new(422, "Invalid", format!("the orchestrator refused the change to {gr} \"{name}\": {message}"))
        }
        Error::Unavailable { .. } | Error::Transport { .. } => {
            ApiError::unavailable(format!("the orchestrator is unavailable: {e}"))
        }
        Error::Forbidden { .. } | Error::Credentials(_) => {
            ApiError::internal("the orchestrator refused this server's credentials; see the server log")
        }
        _ => ApiError::internal(format!("orchestrator call failed: {e}")),
    }
}
