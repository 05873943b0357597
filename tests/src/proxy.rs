//! A proxy in front of a zone that records every exchange (for the spec
//! conformance check) and can answer 503 itself (for retry tests).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Request method.
    pub method: String,
    /// Request path as sent.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Request body, when one was sent.
    pub request: Option<serde_json::Value>,
    /// Answer status.
    pub status: u16,
    /// Answer body.
    pub response: serde_json::Value,
}

#[derive(Clone)]
struct Shared {
    target: String,
    http: reqwest::Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    fail_posts: Arc<AtomicU32>,
}

/// A running proxy; stops with the test's runtime.
pub struct Proxy {
    /// Base URL of the proxy.
    pub url: String,
    shared: Shared,
}

impl Proxy {
    /// Starts a proxy to `target` (a base URL) on a free port.
    pub async fn start(target: &str) -> Proxy {
        orchestrator::install_crypto_provider();
        let shared = Shared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            exchanges: Arc::default(),
            fail_posts: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { url, shared }
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.exchanges.lock().unwrap().clone()
    }

    /// Answers the next `n` POSTs with 503 without forwarding them.
    pub fn fail_next_posts(&self, n: u32) {
        self.shared.fail_posts.store(n, Ordering::SeqCst);
    }
}

async fn forward(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let request = (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
    let record = |status: u16, response: serde_json::Value| Exchange {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        request: request.clone(),
        status,
        response,
    };
    if method == Method::POST
        && s.fail_posts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        let body = serde_json::json!({"message": "injected: service unavailable"});
        s.exchanges.lock().unwrap().push(record(503, body.clone()));
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let target = format!("{}{}", s.target, uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str));
    let mut req = s.http.request(method.clone(), target).body(body.to_vec());
    for name in [http::header::AUTHORIZATION, http::header::CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    s.exchanges.lock().unwrap().push(record(status, value));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), [("content-type", "application/json")], bytes)
        .into_response()
}

/// An exchange as the spec sees it: the operation it called and the status it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The spec's operationId.
    pub operation: String,
    /// Answer status.
    pub status: u16,
}

/// Matches each exchange to its operation and reviews it: what the spec
/// refuses in requests and 200 answers, and what a 200 answer lacks of the
/// properties the zone's completeness rule asks for (`sks_zone::completeness`).
/// Returns the calls and the problems found.
pub fn review(exchanges: &[Exchange]) -> (Vec<Call>, Vec<String>) {
    let spec = exo_openapi::Spec::embedded();
    let list = |v: Vec<exo_openapi::Violation>| v.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let mut calls = Vec::new();
    let mut problems = Vec::new();
    for ex in exchanges {
        let api_path = ex.path.strip_prefix("/v2").unwrap_or(&ex.path);
        let Some(op) = spec.operation(&ex.method, api_path) else {
            problems.push(format!("{} {}: not in the spec", ex.method, ex.path));
            continue;
        };
        calls.push(Call { operation: op.id.to_owned(), status: ex.status });
        if let Err(v) = op.validate_query(&ex.query) {
            problems.push(format!("{} query: {}", op.id, list(v)));
        }
        if let Err(v) = op.validate_request_body(ex.request.as_ref()) {
            problems.push(format!("{} request: {}", op.id, list(v)));
        }
        if ex.status != 200 {
            continue;
        }
        if let Err(v) = op.validate_response_body(200, &ex.response) {
            problems.push(format!("{} response: {}", op.id, list(v)));
        }
        let missing = sks_zone::completeness::missing_in_answer(op.id, &ex.response);
        if !missing.is_empty() {
            problems.push(format!("{} response lacks {}", op.id, missing.join(", ")));
        }
    }
    (calls, problems)
}
