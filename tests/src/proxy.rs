//! A proxy in front of a zone that records every exchange (for the spec
//! conformance check, and when each request arrived), can answer 503 itself
//! (for retry tests), and can stand in the zone's place for clients that
//! switch zones ([`Proxy::start_in_place_of`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// When the request arrived at the proxy, before it was forwarded.
    pub received: Instant,
}

impl Exchange {
    /// The request's path as the spec names it: after the endpoint's `/v2`
    /// (or, once a client switched zones, `/<zone>/v2`) prefix.
    pub fn api_path(&self) -> &str {
        self.path.split_once("/v2").map_or(self.path.as_str(), |(_, rest)| rest)
    }

    /// The spec's operationId of the request (`scale-sks-nodepool`), if the spec has its path.
    pub fn operation(&self) -> Option<&'static str> {
        exo_openapi::Spec::embedded().operation(&self.method, self.api_path()).map(|op| op.id)
    }
}

#[derive(Clone)]
struct Shared {
    target: String,
    http: reqwest::Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    fail_posts: Arc<AtomicU32>,
    /// Answers name the proxy's URL wherever they named the target's.
    in_place: Option<String>,
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
        Self::spawn(target, false).await
    }

    /// Starts a proxy to `target` (a zone's base URL) whose answers name the
    /// proxy wherever they named the zone, as the `api-endpoint` of `GET /zone`
    /// does: a client that switches zones (as sks-apiserver and sks-ccm do)
    /// then keeps talking through the proxy.
    pub async fn start_in_place_of(target: &str) -> Proxy {
        Self::spawn(target, true).await
    }

    async fn spawn(target: &str, in_place: bool) -> Proxy {
        orchestrator::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Shared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            exchanges: Arc::default(),
            fail_posts: Arc::default(),
            in_place: in_place.then(|| url.clone()),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { url, shared }
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges_from(0)
    }

    /// How many exchanges there were so far: a mark for [`Proxy::exchanges_from`].
    pub fn count(&self) -> usize {
        self.shared.exchanges.lock().unwrap().len()
    }

    /// The exchanges after the first `mark`, in the order they were answered.
    pub fn exchanges_from(&self, mark: usize) -> Vec<Exchange> {
        self.shared.exchanges.lock().unwrap().get(mark..).map(<[Exchange]>::to_vec).unwrap_or_default()
    }

    /// Answers the next `n` POSTs with 503 without forwarding them.
    pub fn fail_next_posts(&self, n: u32) {
        self.shared.fail_posts.store(n, Ordering::SeqCst);
    }
}

async fn forward(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
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
        received,
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
    let mut bytes = resp.bytes().await.unwrap_or_default();
    if let Some(url) = &s.in_place {
        let text = String::from_utf8_lossy(&bytes);
        if text.contains(&s.target) {
            bytes = Bytes::from(text.replace(&s.target, url));
        }
    }
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
        let Some(op) = spec.operation(&ex.method, ex.api_path()) else {
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
