//! The client never sends the same signature twice: retries and repeated
//! writes are re-signed with a fresh expiry (a zone with replay protection
//! refuses a repeated signature as a replay).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use orchestrator::{Client, ClientConfig, CredentialSource, Credentials, RetryPolicy};
use serde_json::json;

const OP: &str = "0b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11";
const POOL: &str = "1b7a2d5e-1f3c-4c1e-9a39-3c6f0e0b9a11";

#[tokio::test]
async fn retries_and_repeated_writes_carry_new_signatures() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2", listener.local_addr().unwrap());
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |method: axum::http::Method, headers: HeaderMap| {
        let seen = record.clone();
        async move {
            let auth = headers.get("authorization").unwrap().to_str().unwrap().to_owned();
            let mut seen = seen.lock().unwrap();
            seen.push((method.to_string(), auth));
            // Every other write is answered 503 (retried at once), the rest succeed.
            if method != "GET" && seen.len() % 2 == 1 {
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"message": "busy"}))).into_response();
            }
            axum::Json(json!({"id": OP, "state": "success", "reference": {"id": POOL}})).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = ClientConfig {
        endpoint: url,
        zone: None,
        retry: RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        ..ClientConfig::default()
    };
    let creds = CredentialSource::Static(Credentials::new("EXOk", "s").unwrap());
    let client = Client::connect(config, creds, None).await.unwrap();
    let pool = POOL.parse().unwrap();
    // The same scale, five times within well under a second, each retried once.
    for _ in 0..5 {
        client.scale_instance_pool(pool, 3).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    let writes: Vec<&String> = seen.iter().filter(|(m, _)| m == "PUT").map(|(_, a)| a).collect();
    assert_eq!(writes.len(), 10, "{seen:?}");
    let distinct: HashSet<&&String> = writes.iter().collect();
    assert_eq!(distinct.len(), writes.len(), "a signature was sent twice: {writes:#?}");
}
