//! sks-zone's fault injection as a client meets it: added latency, 5xx and 429
//! with `Retry-After` in the configured shares, connections closed without an
//! answer (before or after the call is carried out), operations that fail
//! without applying the write or never complete, per operation or globally,
//! set at start (`--faults`) or at run time (`PUT /admin/faults`, the original
//! single-rule body included); the journal of calls (`GET /admin/requests`)
//! tells injected answers from the handlers'.

use std::time::{Duration, Instant};

use orchestrator::model::{LoadBalancerSpec, OperationReason, OperationState};
use serde_json::{Value, json};
use sks_e2e::zone::{TEST_KEY, TEST_SECRET, Zone, ZoneOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn lb(name: &str) -> LoadBalancerSpec {
    LoadBalancerSpec { name: Some(name.to_owned()), ..Default::default() }
}

/// The signature header of a call to `path` (under the zone's URL) with `body`.
fn authorization(method: &str, path: &str, body: &str) -> String {
    let req = orchestrator::signing::Request { method, path, query: &[], body: body.as_bytes() };
    orchestrator::signing::authorization(TEST_KEY, TEST_SECRET, &req, jiff::Timestamp::now().as_second() + 600)
}

/// One signed call: status and `Retry-After`, or the transport error.
async fn call(zone: &Zone, method: &str, path: &str, body: &str) -> Result<(u16, Option<String>), reqwest::Error> {
    let resp = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", zone.url))
        .header("authorization", authorization(method, path, body))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    Ok((resp.status().as_u16(), retry_after))
}

/// Sends one signed call over a fresh TCP connection and returns every byte the zone sent back.
async fn raw_bytes(zone: &Zone, method: &str, path: &str, body: &str) -> Vec<u8> {
    let addr = zone.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        authorization(method, path, body),
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A connection closed with an RST reads as an error: nothing was answered either way.
    let _ =
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await.expect("an answer or EOF");
    answer
}

async fn nlb_names(zone: &Zone) -> Vec<String> {
    zone.clear_faults().await;
    let mut names: Vec<String> =
        zone.client().await.list_load_balancers().await.unwrap().into_iter().filter_map(|l| l.spec.name).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_reaches_the_client_as_configured() {
    // Set at start: every list-instance-types call takes 300 ms more.
    let start_rules = json!({"rules": [{"operations": ["list-instance-types"], "latency-ms": 300}]}).to_string();
    let zone =
        Zone::start(ZoneOptions { seed: true, extra: vec!["--faults".into(), start_rules], ..Default::default() });
    let (_, active) = zone.admin("GET", "/admin/faults", None).await;
    assert_eq!(active["rules"], json!([{"operations": ["list-instance-types"], "latency-ms": 300}]));
    let c = zone.client().await;
    let t = Instant::now();
    c.list_instance_types().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "latency from --faults: {:?}", t.elapsed());
    let counts = zone.fault_counts().await;
    assert_eq!(counts["delayed"], 1, "only the matching operation is delayed: {counts}");

    // A latency range.
    zone.set_fault_rules(json!({"latency-ms": [200, 400]})).await;
    let t = Instant::now();
    assert_eq!(call(&zone, "GET", "/v2/load-balancer", "").await.unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200), "{:?}", t.elapsed());

    // 429 with Retry-After, and the original single-rule body.
    zone.set_fault_rules(json!({"ratio": 1, "status": 429, "retry-after": 7, "operations": ["list-load-balancers"]}))
        .await;
    assert_eq!(call(&zone, "GET", "/v2/load-balancer", "").await.unwrap(), (429, Some("7".to_owned())));
    assert_eq!(call(&zone, "GET", "/v2/instance", "").await.unwrap(), (200, None), "other operations are untouched");
    zone.set_faults(1.0, 502, Some(&["list-instances"])).await;
    assert_eq!(call(&zone, "GET", "/v2/instance", "").await.unwrap(), (502, None));

    // Shares: one draw for the answering rules, so 20% 503 and 10% 429 exactly in expectation.
    zone.set_fault_rules(
        json!({"rules": [{"ratio": 0.2, "status": 503}, {"ratio": 0.1, "status": 429, "retry-after": 1}]}),
    )
    .await;
    let before = zone.fault_counts().await;
    let mut seen = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..400 {
        *seen.entry(call(&zone, "GET", "/v2/zone", "").await.unwrap().0).or_default() += 1;
    }
    // Binomial(400, 0.2): mean 80, sd 8; (400, 0.1): mean 40, sd 6. Bounds at about 5 sd.
    assert!((40..=120).contains(&seen[&503]), "{seen:?}");
    assert!((12..=70).contains(&seen[&429]), "{seen:?}");
    let after = zone.fault_counts().await;
    let delta = |code: &str| after["status"][code].as_u64().unwrap_or(0) - before["status"][code].as_u64().unwrap_or(0);
    assert_eq!((delta("503"), delta("429")), (u64::from(seen[&503]), u64::from(seen[&429])), "counted as answered");

    // A reset: the connection is closed and not one byte answered; the zone carries on.
    zone.set_fault_rules(json!({"operations": ["list-load-balancers"], "reset": true})).await;
    assert_eq!(raw_bytes(&zone, "GET", "/v2/load-balancer", "").await, b"", "no answer at all");
    let e = call(&zone, "GET", "/v2/load-balancer", "").await.unwrap_err();
    assert!(!e.is_connect() && !e.is_status(), "the client sees the request fail in flight: {e:?}");
    let answer = raw_bytes(&zone, "GET", "/v2/zone", "").await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // ... after carrying the call out: the NLB exists although nobody was told.
    zone.set_fault_rules(json!({"operations": ["create-load-balancer"], "reset": true, "after": true})).await;
    assert_eq!(raw_bytes(&zone, "POST", "/v2/load-balancer", r#"{"name":"unanswered"}"#).await, b"");
    // ... and before: nothing was done.
    zone.set_fault_rules(json!({"operations": ["create-load-balancer"], "reset": true})).await;
    assert_eq!(raw_bytes(&zone, "POST", "/v2/load-balancer", r#"{"name":"never"}"#).await, b"");
    // A 5xx after carrying out, through the client: it does not repeat the POST.
    zone.set_fault_rules(json!({"operations": ["create-load-balancer"], "status": 500, "after": true})).await;
    assert!(c.create_load_balancer(&lb("lost-answer")).await.is_err());
    assert_eq!(nlb_names(&zone).await, vec!["lost-answer", "unanswered"]);

    // An operation that fails: answered pending, failure at the first poll, nothing applied.
    zone.set_fault_rules(json!({"operations": ["create-load-balancer"], "operation-state": "failure"})).await;
    match c.create_load_balancer(&lb("failed")).await {
        Err(orchestrator::Error::OperationFailed { state, reason, message, .. }) => {
            assert_eq!((state, reason), (OperationState::Failure, Some(OperationReason::Fault)));
            assert!(message.contains("injected fault"), "{message}");
        }
        other => panic!("expected a failed operation, got {other:?}"),
    }
    assert_eq!(nlb_names(&zone).await, vec!["lost-answer", "unanswered"], "a failed create creates nothing");

    // An operation that never completes: the client's wait times out, the nodepool keeps its size.
    let cluster = c.list_sks_clusters().await.unwrap().remove(0);
    let np = cluster.nodepools[0].id;
    zone.set_fault_rules(json!({"rules": [{"operation-state": "pending"}]})).await;
    let impatient = sks_e2e::zone::client_for(orchestrator::ClientConfig {
        operation_timeout: Duration::from_secs(1),
        ..zone.client_config()
    })
    .await;
    let stuck = match impatient.scale_sks_nodepool(cluster.id, np, 5).await {
        Err(orchestrator::Error::OperationTimeout { id, .. }) => id,
        other => panic!("expected the wait to time out, got {other:?}"),
    };
    // GETs do not answer operations: the rule leaves them alone.
    assert_eq!(c.get_sks_nodepool(cluster.id, np).await.unwrap().size, 3, "a pending fault applies nothing");
    let op = c.get_operation(stuck).await.unwrap();
    assert_eq!((op.reference_id(), op.state), (Some(np), OperationState::Pending));

    // Bad rules are refused and leave the active ones as they were.
    let (code, answer) =
        zone.admin("PUT", "/admin/faults", Some(&json!({"rules": [{"ratio": 0.5, "stauts": 503}]}))).await;
    assert_eq!(code, 400);
    assert!(answer["message"].as_str().unwrap().contains("unknown field `stauts`"), "{answer}");
    let (_, active) = zone.admin("GET", "/admin/faults", None).await;
    assert_eq!(active["rules"], json!([{"operation-state": "pending"}]));
    let counts: Value = active["counts"].clone();
    assert_eq!((counts["resets"].as_u64(), counts["pending-operations"].as_u64()), (Some(4), Some(1)), "{counts}");
}

#[test]
fn a_bad_faults_flag_stops_the_zone_at_start() {
    let dir = sks_e2e::TempDir::new("faults-flag");
    let out = std::process::Command::new(sks_e2e::bin("sks-zone"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .args(["--faults", r#"{"rules": [{"ratio": 2, "status": 503}]}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--faults") && stderr.contains("ratio: 2 is not between 0 and 1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_lists_every_answered_call_with_its_answer() {
    orchestrator::install_crypto_provider();
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let missing = uuid::Uuid::new_v4();
    assert_eq!(call(&zone, "GET", "/v2/sks-cluster", "").await.unwrap().0, 200);
    assert_eq!(call(&zone, "GET", &format!("/v2/instance/{missing}"), "").await.unwrap().0, 404);
    zone.set_fault_rules(json!({"rules": [{"operations": ["get-instance"], "status": 503}]})).await;
    assert_eq!(call(&zone, "GET", &format!("/v2/instance/{missing}"), "").await.unwrap().0, 503);
    assert_eq!(call(&zone, "GET", "/v2/no-such-thing", "").await.unwrap().0, 404);
    zone.clear_faults().await;

    let all = zone.requests(&[]).await;
    let seen: Vec<(&str, u64, bool)> = all
        .iter()
        .map(|e| (e["operation"].as_str().unwrap(), e["status"].as_u64().unwrap(), e["injected"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [("list-sks-clusters", 200, false), ("get-instance", 404, false), ("get-instance", 503, true)],
        "admin calls and paths outside the spec are not kept: {all:#?}"
    );
    assert!(all.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "oldest first");
    let gets = zone.requests(&["get-instance"]).await;
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0]["params"]["id"], missing.to_string());
    assert_eq!((gets[0]["zone"].as_str(), gets[0]["body"].is_null()), (Some("ch-gva-2"), true));
}
