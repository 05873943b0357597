use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::string_enum;

string_enum! {
    /// Where an asynchronous operation stands.
    OperationState { Pending => "pending", Success => "success", Failure => "failure", Timeout => "timeout" }
}

string_enum! {
    /// Why an operation failed.
    OperationReason {
        Incorrect => "incorrect", UnknownReason => "unknown", Unavailable => "unavailable",
        Forbidden => "forbidden", Busy => "busy", Fault => "fault", Partial => "partial",
        NotFound => "not-found", Interrupted => "interrupted", Unsupported => "unsupported",
        Conflict => "conflict",
    }
}

/// The resource an operation acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The resource's id (for `add-service-to-load-balancer`: the NLB's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// A link to the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The command that started the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// An asynchronous operation, returned by every mutating call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The operation's id, for `GET /operation/{id}`.
    pub id: Uuid,
    /// Its state.
    pub state: OperationState,
    /// The resource it acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OperationReason>,
}

impl Operation {
    /// The id of the resource the operation refers to, if any.
    pub fn reference_id(&self) -> Option<Uuid> {
        self.reference.as_ref().and_then(|r| r.id)
    }
}
