//! The client against a scripted fake orchestrator: retries, Retry-After,
//! timeouts, typed errors, operation polling and metrics.
#![expect(clippy::unwrap_used, reason = "test support: a panic is how a check fails")]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orchestrator::model::{LoadBalancerSpec, OperationReason, OperationState};
use orchestrator::{Client, ClientConfig, ClientMetrics, CredentialSource, Credentials, Error, RetryPolicy};
use serde_json::json;

/// One scripted answer: status, extra headers, body, delay.
#[derive(Clone)]
struct Answer(u16, Vec<(&'static str, String)>, serde_json::Value, Duration);

fn ok(body: serde_json::Value) -> Answer {
    Answer(200, vec![], body, Duration::ZERO)
}

fn status(code: u16) -> Answer {
    Answer(code, vec![], json!({"message": format!("scripted {code}")}), Duration::ZERO)
}

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<(String, String, bool)>>>,
}

async fn serve(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2", listener.local_addr().unwrap());
    let app =
        axum::Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let script = script.clone();
            async move {
                let signed = headers
                    .get("authorization")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("EXO2-HMAC-SHA256 credential=EXOk,"));
                script.seen.lock().unwrap().push((method.to_string(), uri.path().to_owned(), signed));
                let answer = script.answers.lock().unwrap().pop_front().unwrap_or_else(|| status(500));
                tokio::time::sleep(answer.3).await;
                let mut resp: Response =
                    (StatusCode::from_u16(answer.0).unwrap(), axum::Json(answer.2)).into_response();
                for (k, v) in answer.1 {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn client(url: String, registry: &prometheus::Registry) -> Client {
    let config = ClientConfig {
        endpoint: url,
        zone: None,
        request_timeout: Duration::from_millis(300),
        retry: RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_secs(2) },
        operation_poll_interval: Duration::from_millis(10),
        operation_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let creds = CredentialSource::Static(Credentials::new("EXOk", "s").unwrap());
    Client::connect(config, creds, Some(ClientMetrics::register(registry).unwrap())).await.unwrap()
}

fn script(answers: Vec<Answer>) -> Script {
    Script { answers: Arc::new(Mutex::new(answers.into())), ..Default::default() }
}

const OP: &str = "0b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11";
const LB: &str = "1b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11";

fn op(state: &str) -> serde_json::Value {
    json!({"id": OP, "state": state, "reference": {"id": LB}, "reason": "busy", "message": "scripted"})
}

fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn retries_5xx_then_succeeds_once_and_counts() {
    let s = script(vec![status(503), status(503), ok(op("success"))]);
    let registry = prometheus::Registry::new();
    let c = client(serve(s.clone()).await, &registry).await;
    let done =
        c.create_load_balancer(&LoadBalancerSpec { name: Some("x".into()), ..Default::default() }).await.unwrap();
    assert_eq!(done.reference_id().unwrap().to_string(), LB);
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(m, p, signed)| m == "POST" && p == "/v2/load-balancer" && *signed));
    assert_eq!(
        counter(&registry, "orchestrator_requests_total", &[("operation", "create-load-balancer"), ("code", "503")]),
        2
    );
    assert_eq!(counter(&registry, "orchestrator_requests_total", &[("code", "200")]), 1);
    assert_eq!(counter(&registry, "orchestrator_retries_total", &[("operation", "create-load-balancer")]), 2);
}

#[tokio::test]
async fn a_post_answered_502_is_not_repeated_but_a_get_is() {
    // A proxy's 502 may follow a create the orchestrator carried out: repeating it could duplicate.
    let s = script(vec![status(502), ok(op("success"))]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    let err = c.create_load_balancer(&LoadBalancerSpec { name: Some("x".into()), ..Default::default() }).await;
    assert!(matches!(err, Err(Error::Unavailable { status: 502, .. })), "{err:?}");
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    let s = script(vec![status(502), ok(json!({"load-balancers": []}))]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    assert!(c.list_load_balancers().await.unwrap().is_empty());
    assert_eq!(s.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let throttled = Answer(429, vec![("retry-after", "1".into())], json!({"error": "slow down"}), Duration::ZERO);
    let s = script(vec![throttled, ok(json!({"load-balancers": []}))]);
    let c = client(serve(s).await, &prometheus::Registry::new()).await;
    let started = Instant::now();
    assert!(c.list_load_balancers().await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn gives_up_with_typed_errors() {
    let s = script(vec![status(501)]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    let err = c.list_load_balancers().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { status: 501, .. }), "{err}");
    assert_eq!(s.seen.lock().unwrap().len(), 1, "501 is not retried");

    let s = script(vec![status(503); 4]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    let err = c.list_load_balancers().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { status: 503, .. }) && err.is_transient(), "{err}");
    assert!(err.to_string().contains("scripted 503"), "{err}");
    assert_eq!(s.seen.lock().unwrap().len(), 4, "1 attempt + 3 retries");

    for (code, check) in [
        (404, (|e: &Error| e.is_not_found()) as fn(&Error) -> bool),
        (409, |e| matches!(e, Error::Conflict { .. })),
        (403, |e| matches!(e, Error::Forbidden { .. })),
        (400, |e| matches!(e, Error::Invalid { .. })),
    ] {
        let s = script(vec![status(code)]);
        let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
        let err = c.get_load_balancer(uuid::Uuid::nil()).await.unwrap_err();
        assert!(check(&err), "{code}: {err}");
        assert_eq!(s.seen.lock().unwrap().len(), 1, "{code} is not retried");
    }
}

#[tokio::test]
async fn a_timed_out_post_is_not_retried_but_a_get_is() {
    let slow = Answer(200, vec![], op("success"), Duration::from_millis(800));
    let s = script(vec![slow.clone(), ok(op("success"))]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    let err = c.create_load_balancer(&LoadBalancerSpec::default()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(s.seen.lock().unwrap().len(), 1, "the create may have happened: no retry");

    let s = script(vec![slow, ok(json!({"load-balancers": []}))]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    assert!(c.list_load_balancers().await.is_ok());
    assert_eq!(s.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn waits_on_operations_and_reports_failures() {
    let s = script(vec![ok(op("pending")), ok(op("pending")), ok(op("failure"))]);
    let c = client(serve(s.clone()).await, &prometheus::Registry::new()).await;
    match c.delete_load_balancer(uuid::Uuid::nil()).await.unwrap_err() {
        Error::OperationFailed { state, reason, message, .. } => {
            assert_eq!(
                (state, reason, message.as_str()),
                (OperationState::Failure, Some(OperationReason::Busy), "scripted")
            );
        }
        other => panic!("expected OperationFailed, got {other}"),
    }
    let paths: Vec<String> = s.seen.lock().unwrap().iter().map(|(_, p, _)| p.clone()).collect();
    assert_eq!(paths[1..], [format!("/v2/operation/{OP}"), format!("/v2/operation/{OP}")]);

    let s = script(std::iter::repeat_n(ok(op("pending")), 200).collect());
    let c = client(serve(s).await, &prometheus::Registry::new()).await;
    let err = c.delete_load_balancer(uuid::Uuid::nil()).await.unwrap_err();
    assert!(matches!(err, Error::OperationTimeout { .. }), "{err}");

    let s = script(vec![ok(op("timeout"))]);
    let c = client(serve(s).await, &prometheus::Registry::new()).await;
    let err = c.delete_load_balancer(uuid::Uuid::nil()).await.unwrap_err();
    assert!(matches!(err, Error::OperationFailed { state: OperationState::Timeout, .. }), "{err}");
}
