//! The HTTP front: zone prefixes, signature checks, validation against the
//! OpenAPI spec, and dispatch by operation id. Routing *is* the spec: a path
//! the spec does not describe does not exist here.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use exo_openapi::{Spec, Violation};
use orchestrator::model::{Operation, OperationReason, OperationState, Reference};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::app::{ApiError, ApiResult, App};
use crate::faults::{Answer, StuckState};
use crate::handlers;
use crate::world::{Completion, OpRec};

/// One validated API call, ready for its handler.
pub struct Call {
    /// Zone the call is for.
    pub zone: String,
    /// The spec's operationId.
    pub operation: String,
    /// Path parameters by name.
    pub params: Vec<(String, String)>,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// The JSON body, if one was sent.
    pub body: Option<serde_json::Value>,
}

impl Call {
    /// A path parameter as sent.
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// A path parameter that is an id; `kind` names the resource in a 404.
    pub fn id(&self, name: &str, kind: &str) -> ApiResult<Uuid> {
        let raw = self.param(name);
        Uuid::parse_str(raw).map_err(|_| ApiError::not_found(kind, raw))
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as `T`; the spec check already ran, so failures are rare.
    pub fn body<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let value = self.body.clone().unwrap_or(serde_json::Value::Object(Default::default()));
        serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}

/// The zone's HTTP service.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Splits `/<zone>/v2/...` or `/v2/...` (the first zone) into zone and API path.
fn split_zone<'p>(app: &App, path: &'p str) -> Option<(String, &'p str)> {
    if let Some(rest) = path.strip_prefix("/v2") {
        return Some((app.config.zones[0].clone(), rest));
    }
    let rest = path.strip_prefix('/')?;
    let (zone, rest) = rest.split_once('/')?;
    let api = rest.strip_prefix("v2")?;
    app.config.zones.iter().any(|z| z == zone).then(|| (zone.to_owned(), api))
}

fn violations(what: &str, v: Vec<Violation>) -> String {
    let list: Vec<String> = v.iter().map(ToString::to_string).collect();
    format!("invalid {what}: {}", list.join("; "))
}

async fn handle(State(app): State<Arc<App>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/admin/") {
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        let result = authenticate(&app, "admin", &method, path, &query, &headers, &body)
            .and_then(|()| crate::admin::handle(&app, &method, rest, &query, &body));
        return match result {
            Ok(value) => axum::Json(value).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let Some((zone, api_path)) = split_zone(&app, path) else {
        return ApiError { status: StatusCode::NOT_FOUND, message: format!("no such endpoint: {method} {path}") }
            .into_response();
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    match prepare(&app, &method, path, api_path, zone, query, &headers, &body) {
        Ok((call, answers_operation)) => {
            let decision = app.faults().draw(&call.operation, answers_operation, &mut || rand::random::<f64>());
            crate::faults::count(&decision);
            if !decision.delay.is_zero() {
                tokio::time::sleep(decision.delay).await;
            }
            match decision.answer {
                None => {}
                Some(Answer::Status { status, retry_after, after }) => {
                    if after {
                        carry_out_before_the_fault(&app, &call);
                    }
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    let mut resp = ApiError { status, message: format!("injected fault: {status}") }.into_response();
                    if let Some(secs) = retry_after {
                        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
                    }
                    app.journal.record(&call, Some(status.as_u16()), true);
                    return resp;
                }
                Some(Answer::Reset { after }) => {
                    if after {
                        carry_out_before_the_fault(&app, &call);
                    }
                    app.journal.record(&call, None, true);
                    reset_connection(&call.operation);
                }
                Some(Answer::Operation(state)) => {
                    let resp = stuck_operation(&app, &call, state);
                    app.journal.record(&call, Some(resp.status().as_u16()), true);
                    return resp;
                }
            }
            let result = tokio::task::block_in_place(|| app.journal.answer(&call, || handlers::dispatch(&app, &call)));
            match result {
                Ok(value) => axum::Json(value).into_response(),
                Err(e) => {
                    tracing::debug!(operation = call.operation, status = %e.status, message = %e.message, "request refused");
                    e.into_response()
                }
            }
        }
        Err(e) => e.into_response(),
    }
}

/// The `after` faults: the call is handled, its answer dropped.
fn carry_out_before_the_fault(app: &App, call: &Call) {
    let done = tokio::task::block_in_place(|| handlers::dispatch(app, call));
    tracing::warn!(operation = call.operation, ok = done.is_ok(), "answering a fault after carrying the request out");
}

/// Ends the connection without any answer, as a peer that resets it.
///
/// The handler runs inside the connection's task (hyper polls it there), so
/// unwinding out of it ends that task: the socket is closed with nothing
/// written, and no other connection is affected. `resume_unwind` skips the
/// panic hook, so nothing is printed; tokio catches the unwind at the task.
fn reset_connection(operation: &str) -> ! {
    tracing::warn!(operation, "injected fault: closing the connection without an answer");
    std::panic::resume_unwind(Box::new("injected connection reset"))
}

/// Answers a `pending` operation that is stored as ending in `failure` (seen at
/// the first poll) or as never ending; the call itself is not carried out.
fn stuck_operation(app: &App, call: &Call, state: StuckState) -> Response {
    // The innermost resource named in the path (the nodepool of a nodepool call).
    let reference = call.params.iter().rev().find_map(|(_, v)| Uuid::parse_str(v).ok()).map(|id| Reference {
        id: Some(id),
        link: None,
        command: Some(call.operation.clone()),
    });
    let answered =
        Operation { id: Uuid::new_v4(), state: OperationState::Pending, reference, message: None, reason: None };
    let mut stored = answered.clone();
    let due_ms = match state {
        StuckState::Failure => {
            stored.state = OperationState::Failure;
            stored.reason = Some(OperationReason::Fault);
            stored.message = Some(format!("injected fault: {} failed; nothing was changed", call.operation));
            crate::lifecycle::now_ms()
        }
        // Never due: the tick loop leaves it pending.
        StuckState::Pending => i64::MAX,
    };
    tracing::warn!(operation = call.operation, id = %answered.id, ?state, "injected fault: an operation that does not succeed");
    let zone = call.zone.clone();
    let written = app.write(move |tx| {
        tx.put(&zone, OpRec { op: stored, due_ms, completion: Completion::Nothing });
        Ok(())
    });
    match written {
        Ok(()) => axum::Json(answered).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A body shaped like an operation, to tell which calls answer one: the spec's
/// schemas refuse properties they do not list, so only `operation` accepts it.
fn answers_operation(op: &exo_openapi::Operation<'_>) -> bool {
    static SAMPLE: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let sample = SAMPLE.get_or_init(|| {
        serde_json::json!({"id": Uuid::nil(), "state": "pending",
            "reference": {"id": Uuid::nil(), "link": "/v2/x", "command": "x"}, "message": "m", "reason": "fault"})
    });
    op.method != "GET" && op.validate_response_body(200, sample).is_ok()
}

#[expect(clippy::too_many_arguments, reason = "the parts of one request, checked in the order the spec lists them")]
fn prepare(
    app: &App,
    method: &Method,
    path: &str,
    api_path: &str,
    zone: String,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(Call, bool)> {
    let spec = Spec::embedded();
    let Some(op) = spec.operation(method.as_str(), api_path) else {
        return Err(ApiError { status: StatusCode::NOT_FOUND, message: format!("no such endpoint: {method} {path}") });
    };
    authenticate(app, op.id, method, path, &query, headers, body)?;
    if let Err(v) = op.validate_path_params() {
        // An id that is not even a UUID names nothing that exists.
        if v.iter().all(|v| v.message.contains("uuid")) {
            return Err(ApiError { status: StatusCode::NOT_FOUND, message: violations("path", v) });
        }
        return Err(ApiError::bad_request(violations("path", v)));
    }
    op.validate_query(&query).map_err(|v| ApiError::bad_request(violations("query", v)))?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?,
        )
    };
    op.validate_request_body(body.as_ref()).map_err(|v| ApiError::bad_request(violations("request body", v)))?;
    let answers = answers_operation(&op);
    Ok((Call { zone, operation: op.id.to_owned(), params: op.path_params.clone(), query, body }, answers))
}

/// Checks the EXO2 signature (and that a write is not a replay: `crate::auth`);
/// `GET /zone` may come unsigned (it reveals nothing).
fn authenticate(
    app: &App,
    operation: &str,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<()> {
    let authorization = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let req = crate::auth::Signed { method: method.as_str(), path, query, authorization, body };
    crate::auth::check(&app.keys, &app.replays, &req, operation == "list-zones", jiff::Timestamp::now().as_second())
}

#[cfg(test)]
mod tests {
    use super::answers_operation;

    #[test]
    fn tells_the_calls_that_answer_an_operation() {
        let spec = exo_openapi::Spec::embedded();
        let id = uuid::Uuid::nil();
        let answers = |method: &str, path: &str| answers_operation(&spec.operation(method, path).expect(path));
        assert!(answers("POST", "/load-balancer"));
        assert!(answers("PUT", &format!("/sks-cluster/{id}/nodepool/{id}:scale")));
        assert!(answers("DELETE", &format!("/load-balancer/{id}")));
        assert!(!answers("GET", "/load-balancer"));
        assert!(!answers("GET", &format!("/operation/{id}")));
        assert!(!answers("POST", &format!("/sks-cluster-kubeconfig/{id}")));
    }
}
