//! Every error as a `metav1.Status`, with the reasons and messages kube-apiserver uses.

use serde_json::{Value, json};

/// A field-level cause of an `Invalid` (422) error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueForbidden`...
    pub reason: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
    /// The field path, e.g. `spec.replicas`.
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &Value, detail: impl std::fmt::Display) -> Self {
        Cause { reason: "FieldValueInvalid", message: format!("Invalid value: {value}: {detail}"), field: field.into() }
    }
    /// `field: Required value`.
    pub fn required(field: &str) -> Self {
        Cause { reason: "FieldValueRequired", message: "Required value".into(), field: field.into() }
    }
    /// `field: Required value: <detail>`.
    pub fn required_because(field: &str, detail: impl std::fmt::Display) -> Self {
        Cause { reason: "FieldValueRequired", message: format!("Required value: {detail}"), field: field.into() }
    }
    /// `field: Too long: must have at most <max> bytes`.
    pub fn too_long(field: &str, max: usize) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: must have at most {max} bytes"),
            field: field.into(),
        }
    }
    /// `field: Duplicate value: <value>`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Cause { reason: "FieldValueDuplicate", message: format!("Duplicate value: {value}"), field: field.into() }
    }
    /// `field: Unsupported value: <value>: supported values: ...`.
    pub fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
            field: field.into(),
        }
    }
    /// `field: Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: impl std::fmt::Display) -> Self {
        Cause { reason: "FieldValueForbidden", message: format!("Forbidden: {detail}"), field: field.into() }
    }
}

/// `details` of a Status; boxed in [`ApiError`] so errors stay small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource plural or kind).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds` and the `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// An API error: status code, reason, message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// The `metav1.StatusReason`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details`, when there are any.
    pub details: Option<Box<Details>>,
}

/// Result of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

/// A group and a resource, as errors name them (`nodepools.sks.exoscale.net`).
#[derive(Debug, Clone, Copy)]
pub struct GroupResource<'a> {
    /// API group ("" for core).
    pub group: &'a str,
    /// Resource plural.
    pub resource: &'a str,
}

impl std::fmt::Display for GroupResource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() { f.write_str(self.resource) } else { write!(f, "{}.{}", self.resource, self.group) }
    }
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    fn details_mut(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Default::default)
    }

    fn about(mut self, gr: GroupResource<'_>, name: &str) -> Self {
        let d = self.details_mut();
        d.name = Some(name.to_owned());
        d.group = Some(gr.group.to_owned());
        d.kind = Some(gr.resource.to_owned());
        self
    }

    /// The field causes, if any.
    pub fn causes(&self) -> &[Cause] {
        self.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default()
    }

    /// `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.details.as_ref().and_then(|d| d.retry_after)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", message)
    }
    /// 403 Forbidden, in kube-apiserver's words.
    pub fn forbidden(gr: GroupResource<'_>, name: &str, user: &str, verb: &str, reason: &str) -> Self {
        let target = if name.is_empty() { gr.to_string() } else { format!("{gr} \"{name}\"") };
        let mut msg = format!(
            "{target} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" at the cluster scope",
            gr.resource, gr.group
        );
        if !reason.is_empty() {
            msg.push_str(": ");
            msg.push_str(reason);
        }
        Self::new(403, "Forbidden", msg).about(gr, name)
    }
    /// 404 NotFound: `<res>.<group> "<name>" not found`.
    pub fn not_found(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found")).about(gr, name)
    }
    /// 404 for a path no resource serves.
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }
    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, gr: GroupResource<'_>) -> Self {
        Self::new(405, "MethodNotAllowed", format!("{verb} is not supported on resources of kind \"{gr}\""))
    }
    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 409 AlreadyExists.
    pub fn already_exists(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{gr} \"{name}\" already exists")).about(gr, name)
    }
    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {gr} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(gr, name)
    }
    /// 409 Conflict with a message of the backend's.
    pub fn conflict_message(gr: GroupResource<'_>, name: &str, message: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {gr} \"{name}\": {message}"))
            .about(gr, name)
    }
    /// 410 Expired: a resourceVersion too old to serve.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("the request body is larger than the limit of {limit} bytes"))
    }
    /// 415 UnsupportedMediaType, listing what is accepted.
    pub fn unsupported_media_type(got: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {} (got {got:?})",
                accepted.join(", ")
            ),
        )
    }
    /// 422 Invalid with field causes.
    pub fn invalid(kind: &str, group: &str, resource: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let qualified = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
        let mut e = Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {}", render_list(&list)))
            .about(GroupResource { group, resource }, name);
        let d = e.details_mut();
        d.kind = Some(kind.to_owned());
        d.causes = causes;
        e
    }
    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>, retry_after: Option<u64>) -> Self {
        let mut e = Self::new(429, "TooManyRequests", message);
        e.details_mut().retry_after = retry_after.or(Some(1));
        e
    }
    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }
    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        let d = self.details.as_deref().cloned().unwrap_or_default();
        // Empty ones are left out, as Go's `omitempty` does (the core group is "").
        for (key, value) in [("name", &d.name), ("group", &d.group), ("kind", &d.kind)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                details.insert(key.into(), json!(v));
            }
        }
        if !d.causes.is_empty() {
            // `field` is left out when empty, as Go's `omitempty` does (a DisruptionBudget cause has none).
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| {
                    let mut cause = json!({"reason": c.reason, "message": c.message});
                    if !c.field.is_empty() {
                        cause["field"] = json!(c.field);
                    }
                    cause
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = d.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// An aggregate of errors as kube-apiserver prints it: repeats once, several in brackets.
fn render_list(items: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for i in items {
        if !unique.contains(&i.as_str()) {
            unique.push(i);
        }
    }
    if unique.len() == 1 { unique[0].to_owned() } else { format!("[{}]", unique.join(", ")) }
}

/// A `Status` of success with a message, as answered to actions (an eviction).
pub fn success_message(gr: GroupResource<'_>, name: &str, message: impl Into<String>) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "message": message.into(),
        "details": {"name": name, "group": gr.group, "kind": gr.resource},
    })
}

/// A `Status` of success, as answered to some deletes.
pub fn success_status(gr: GroupResource<'_>, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": gr.group, "kind": gr.resource, "uid": uid},
    })
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    const NP: GroupResource<'static> = GroupResource { group: "sks.exoscale.net", resource: "nodepools" };

    #[test]
    fn messages_match_kube_apiserver() {
        assert_eq!(ApiError::not_found(NP, "x").message, "nodepools.sks.exoscale.net \"x\" not found");
        let e = ApiError::invalid(
            "NodePool",
            "sks.exoscale.net",
            "nodepools",
            "x",
            vec![
                Cause::invalid("spec.replicas", &json!(-1), "must be greater than or equal to 0"),
                Cause::required("spec.instanceType"),
            ],
        );
        assert_eq!(
            e.message,
            "NodePool.sks.exoscale.net \"x\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.instanceType: Required value]"
        );
        let s = e.to_status();
        assert_eq!((s["code"].as_u64(), s["reason"].as_str()), (Some(422), Some("Invalid")));
        assert_eq!(s["details"]["causes"][1]["field"], "spec.instanceType");
        assert_eq!(s["details"]["kind"], "NodePool");
        let core = ApiError::invalid(
            "Event",
            "",
            "events",
            "e",
            vec![Cause::required("reason"), Cause::required("reason"), Cause::required("action")],
        );
        assert_eq!(core.message, "Event \"e\" is invalid: [reason: Required value, action: Required value]");
        assert_eq!(core.to_status()["details"].get("group"), None, "the core group is left out");
        assert_eq!(core.to_status()["details"]["causes"].as_array().map(Vec::len), Some(3), "causes keep repeats");
        let mut budget = ApiError::new(429, "TooManyRequests", "Cannot evict pod");
        budget.details = Some(Box::new(Details {
            causes: vec![Cause { reason: "DisruptionBudget", message: "needs 2".into(), field: String::new() }],
            ..Details::default()
        }));
        assert_eq!(
            budget.to_status()["details"]["causes"],
            json!([{"reason": "DisruptionBudget", "message": "needs 2"}])
        );
    }
}
