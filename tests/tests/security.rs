//! Security tests: authorization denials and their cache, secrets in logs, TLS
//! versions, and signatures the zone must refuse.
//!
//! Covered elsewhere, not repeated here:
//! - front-proxy header forgery (no client certificate, a front-proxy CN from
//!   another CA, a CN outside `--requestheader-allowed-names`: each 401, the
//!   real front proxy trusted): `apiserver_nodepools.rs`
//!   (`forged_front_proxy_headers_are_refused`), and headers forged through the
//!   aggregator in `aggregation.rs`;
//! - the CSR attack matrix (wrong requester, group, usages, subject, SANs,
//!   unknown or stopped instance, other signers): `ccm_nodes.rs`;
//! - bad signatures on reads (wrong secret, unknown key, expired, too far
//!   ahead, unsigned): `zone_input.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sks_e2e::env::{ApiAccess, ApiServerOptions, TestEnv};
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::logs::Logs;
use sks_e2e::pki::TestPki;
use sks_e2e::raw::{addr_of, tls_client, tls_connect};
use sks_e2e::zone::{TEST_KEY, TEST_SECRET, Zone, ZoneOptions};
use sks_e2e::{TempDir, wait_for};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NODEPOOLS: &str = "/apis/sks.exoscale.net/v1alpha1/nodepools";

fn https(ca_pem: &str, identity: Option<&sks_pki::IssuedCert>) -> reqwest::Client {
    orchestrator::install_crypto_provider();
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{}{}", id.cert_pem, id.key_pem).as_bytes()).unwrap());
    }
    b.build().unwrap()
}

// ---------------------------------------------------------------------------
// SubjectAccessReview denials and their cache

/// A plain-HTTP front of the cluster API for sks-apiserver: SubjectAccessReviews
/// of user `carol` are answered here (allowed or not, as the test says, counted);
/// everything else goes to the real API as an admin.
#[derive(Clone)]
struct SarFront {
    target: String,
    http: reqwest::Client,
    allow_carol: Arc<AtomicBool>,
    carol_reviews: Arc<AtomicUsize>,
}

async fn sar_front(
    axum::extract::State(front): axum::extract::State<SarFront>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if method == "POST" && uri.path() == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
        let mut review: Value = serde_json::from_slice(&body).unwrap_or_default();
        if review["spec"]["user"] == "carol" {
            front.carol_reviews.fetch_add(1, Ordering::SeqCst);
            let allowed = front.allow_carol.load(Ordering::SeqCst);
            let reason = if allowed { "granted by the test" } else { "carol has no rights yet" };
            review["status"] = json!({"allowed": allowed, "reason": reason});
            return (axum::http::StatusCode::CREATED, axum::Json(review)).into_response();
        }
    }
    let url = format!("{}{}", front.target, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut req = front.http.request(method, url).body(body);
    for name in ["content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let mut out = axum::response::Response::builder().status(resp.status().as_u16());
            if let Some(ct) = resp.headers().get("content-type") {
                out = out.header("content-type", ct);
            }
            out.body(axum::body::Body::from_stream(resp.bytes_stream())).unwrap()
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Starts the front; returns it and a kubeconfig pointing at it.
async fn start_sar_front(kube: &KubeApi, dir: &Path) -> (SarFront, PathBuf) {
    orchestrator::install_crypto_provider();
    let read = |f: &str| std::fs::read_to_string(kube.cert_dir.join(f)).unwrap();
    let ca = sks_pki::CertificateAuthority::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let admin = ca.issue_client("sar-front", &["system:masters".to_owned()], Duration::from_secs(86400)).unwrap();
    let front = SarFront {
        target: kube.url.clone(),
        http: https(&read("ca.crt"), Some(&admin)),
        allow_carol: Arc::default(),
        carol_reviews: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(sar_front).with_state(front.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let kubeconfig = dir.join("sar-front.kubeconfig");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: front\n  cluster:\n    server: http://{addr}\nusers:\n- name: none\n  user: {{}}\ncontexts:\n- name: front\n  context:\n    cluster: front\n    user: none\ncurrent-context: front\n"
    );
    std::fs::write(&kubeconfig, yaml).unwrap();
    (front, kubeconfig)
}

/// Polls `status()` every 100 ms until it differs from `from`; returns when it did, relative to `since`.
async fn until_status_changes<F, Fut>(from: u16, since: Instant, limit: Duration, status: F) -> (u16, Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    loop {
        let s = status().await;
        if s != from {
            return (s, since.elapsed());
        }
        assert!(since.elapsed() < limit, "still {from} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sar_denials_are_403_and_cached_no_longer_than_configured() {
    const TTL: Duration = Duration::from_secs(3);
    let env = TestEnv::builder().kube(KubeOptions::default()).start().await;
    let (front, kubeconfig) = start_sar_front(env.kube(), env.kube().dir()).await;
    let ttls =
        ["--authorization-webhook-cache-unauthorized-ttl", "3s", "--authorization-webhook-cache-authorized-ttl", "3s"];
    let sks = ApiServerOptions {
        direct: true,
        kubeconfig: ApiAccess::Kubeconfig(kubeconfig),
        ..ApiServerOptions::args(&ttls)
    };
    let api = env.start_apiserver(&sks).await;
    let carol = TestPki::client(&api.pki.client_ca, "carol", &[]);
    let http = https(&api.pki.serving_ca.cert_pem, Some(&carol));
    let url = format!("{}{NODEPOOLS}", api.url);
    let status = || async { http.get(&url).send().await.unwrap().status().as_u16() };

    // Denied: 403 with a Status naming the user, the verb and the resource.
    let denied_at = Instant::now();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("Forbidden")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("User \"carol\" cannot list resource \"nodepools\""), "{message}");
    assert!(message.contains("carol has no rights yet"), "{message}");
    assert_eq!(front.carol_reviews.load(Ordering::SeqCst), 1);

    // Granted now: the cached denial holds for the unauthorized TTL, not longer, with no new review meanwhile.
    front.allow_carol.store(true, Ordering::SeqCst);
    let (now, after) = until_status_changes(403, denied_at, TTL * 3, status).await;
    assert_eq!(now, 200);
    assert!(after >= TTL - Duration::from_millis(50), "the denial was not cached: allowed after {after:?}");
    assert!(after <= TTL + Duration::from_millis(1500), "the denial was cached for {after:?}, beyond its {TTL:?}");
    assert_eq!(front.carol_reviews.load(Ordering::SeqCst), 2, "one review per TTL");

    // Revoked: the cached grant holds for the authorized TTL, not longer.
    let allowed_at = Instant::now();
    front.allow_carol.store(false, Ordering::SeqCst);
    let (now, after) = until_status_changes(200, allowed_at, TTL * 3, status).await;
    assert_eq!(now, 403);
    assert!(after <= TTL + Duration::from_millis(1500), "the grant was cached for {after:?}, beyond its {TTL:?}");
    assert_eq!(front.carol_reviews.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------
// Secrets in logs

/// The base64 lines of a PEM block (what a leaked key would look like in a log, whole or in part).
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_at_trace_level() {
    orchestrator::install_crypto_provider();
    let dir = TempDir::new("secret-logs");
    let logs = dir.path().join("logs");
    let token = format!("dave-token-{}", uuid::Uuid::new_v4().simple());
    let wrong_token = format!("wrong-token-{}", uuid::Uuid::new_v4().simple());

    // The cluster API: dave's bearer token, and the rights to list nodepools and request kubeconfigs.
    let policy = json!({"rules": [{"users": ["dave"], "verbs": ["get", "list", "create"], "apiGroups": ["sks.exoscale.net"], "resources": ["nodepools", "kubeconfigrequests"]}]});
    let kube = KubeOptions {
        policy: Some(policy.to_string()),
        tokens: Some(format!("{token},dave,4,\"devs\"\n")),
        ..Default::default()
    };
    // The zone (the API secret on its command line), sks-ccm, and sks-apiserver reached
    // directly (TokenReview and SubjectAccessReview through the cluster API, the
    // orchestrator secret in env), each logging at trace level to a file.
    let sks = ApiServerOptions { direct: true, ..ApiServerOptions::args(&["--refresh-interval", "1s"]) };
    let mut env = TestEnv::builder()
        .logs(Logs::Files { dir: logs.clone(), level: "trace".into() })
        .kube(kube)
        .ccm(&[])
        .apiserver_with(sks)
        .start()
        .await;
    let zone_url = env.zone.url.clone();
    let dev: Value =
        serde_json::from_slice(&std::fs::read(env.zone.state_dir().join("credentials.json")).unwrap()).unwrap();
    let dev_secret = dev["api_secret"].as_str().unwrap().to_owned();
    let (api_url, serving_ca) = (env.sks().url.clone(), env.sks().pki.serving_ca.cert_pem.clone());

    // Bearer tokens, good and bad; a kubeconfig issued through a KubeconfigRequest.
    let http = https(&serving_ca, None);
    let nodepools = format!("{api_url}{NODEPOOLS}");
    wait_for("dave to list nodepools with his token", Duration::from_secs(30), || async {
        let resp = http.get(&nodepools).bearer_auth(&token).send().await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    let resp = http.get(&nodepools).bearer_auth(&wrong_token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let request = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "KubeconfigRequest", "metadata": {"name": "dave"},
        "spec": {"user": "erin", "groups": ["testers"]}});
    let resp = http
        .post(format!("{api_url}/apis/sks.exoscale.net/v1alpha1/kubeconfigrequests"))
        .bearer_auth(&token)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let issued: Value = resp.json().await.unwrap();
    let kubeconfig = issued["status"]["kubeconfig"].as_str().expect("a kubeconfig").to_owned();
    let doc: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).unwrap();
    let key_data = doc["users"][0]["user"]["client-key-data"].as_str().expect("client-key-data").to_owned();
    let key_pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&key_data).unwrap()).unwrap();
    // The orchestrator answers with the kubeconfig in base64.
    let kubeconfig_b64 = base64::engine::general_purpose::STANDARD.encode(&kubeconfig);
    // Let the controllers run a little at trace level.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Stopped gracefully, so every line is written.
    env.ccm.as_mut().unwrap().stop();
    env.sks_mut().stop();
    env.zone.stop();
    drop(env);

    let mut secrets: BTreeMap<String, String> = BTreeMap::from([
        ("the zone's dev API secret".to_owned(), dev_secret),
        ("a bearer token".to_owned(), token.clone()),
        ("a wrong bearer token".to_owned(), wrong_token.clone()),
        ("the kubeconfig's client-key-data".to_owned(), key_data.clone()),
        ("the kubeconfig, base64".to_owned(), kubeconfig_b64[..64].to_owned()),
        ("the orchestrator API secret (the test zone's)".to_owned(), TEST_SECRET.to_owned()),
    ]);
    for (i, line) in pem_body_lines(&key_pem).into_iter().enumerate() {
        secrets.insert(format!("line {i} of the kubeconfig's private key"), line);
    }
    let mut total_lines = 0;
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        total_lines += text.lines().count();
        for (what, secret) in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let line = text[..at].lines().count() + 1;
                panic!("{what} appears in {} at line {line}", path.display());
            }
        }
    }
    // The run was logged at trace level, through the flows that handle the secrets.
    let all: String =
        std::fs::read_dir(&logs).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(total_lines > 200, "only {total_lines} log lines: was trace logging on?");
    assert!(all.contains("\"level\":\"TRACE\""), "no trace-level line logged");
    assert!(all.contains("issued a kubeconfig"), "the kubeconfig request was not logged at all");
    assert!(all.contains(&format!("connecting to {}", addr_of(&zone_url))), "no orchestrator connection was logged");
}

// ---------------------------------------------------------------------------
// TLS versions

/// A ClientHello of TLS `minor` (1: TLS 1.0, 2: TLS 1.1) without the
/// supported_versions extension, as an old client sends it.
fn legacy_client_hello(minor: u8) -> Vec<u8> {
    let mut hello = vec![3, minor];
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // session id
    // TLS 1.0/1.1 suites, and TLS 1.2 AEAD ones the server has.
    let suites: &[u16] = &[0xc02b, 0xc02f, 0xc009, 0xc00a, 0xc013, 0xc014, 0x002f, 0x0035];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // null compression
    let name = b"localhost";
    let mut sni = vec![0, 0];
    sni.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let groups = [0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]; // supported_groups: secp256r1
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256 (so the refusal
    // can only be about the version).
    let sig_algs = [0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01];
    let points = [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats: uncompressed
    let ext_len = sni.len() + groups.len() + sig_algs.len() + points.len();
    hello.extend_from_slice(&(ext_len as u16).to_be_bytes());
    hello.extend_from_slice(&sni);
    hello.extend_from_slice(&groups);
    hello.extend_from_slice(&sig_algs);
    hello.extend_from_slice(&points);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_are_offered() {
    let env = TestEnv::builder().apiserver(&[]).start().await;
    let api = env.sks();
    let ca = api.pki.serving_ca.cert_pem.clone();

    // TLS 1.0 and 1.1: the server answers the ClientHello with an alert (protocol_version), never a ServerHello.
    for (minor, name) in [(1u8, "TLS 1.0"), (2, "TLS 1.1")] {
        let mut tcp = tokio::net::TcpStream::connect(addr_of(&api.url)).await.unwrap();
        tcp.write_all(&legacy_client_hello(minor)).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(!answer.is_empty() && answer[0] == 0x15, "{name}: expected an alert record, got {answer:02x?}");
        assert_eq!(answer.get(6), Some(&70), "{name}: expected the protocol_version alert, got {answer:02x?}");
    }
    // The same with openssl, when it is installed (and still able to offer TLS 1.1).
    if Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        for flag in ["-tls1", "-tls1_1"] {
            let out = Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr_of(&api.url),
                    flag,
                    "-cipher",
                    "DEFAULT:@SECLEVEL=0",
                    "-servername",
                    "localhost",
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!out.status.success(), "openssl s_client {flag} connected:\n{text}");
            assert!(!text.contains("BEGIN CERTIFICATE") && !text.contains("Server certificate"), "{flag}:\n{text}");
            // The hello reached the server, which answered it with an alert (not a client-side refusal).
            assert!(text.contains("SSL alert number"), "{flag}: no alert from the server:\n{text}");
        }
    }
    // TLS 1.2 and 1.3 each work on their own, over HTTP/1.1 and HTTP/2.
    for (version, name) in [(&rustls::version::TLS12, "TLS 1.2"), (&rustls::version::TLS13, "TLS 1.3")] {
        let config = tls_client(&ca, &[version], &[b"http/1.1"], None);
        let mut tls = tls_connect(&api.url, config).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
        let config = tls_client(&ca, &[version], &[b"h2"], None);
        let tls = tls_connect(&api.url, config).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "{name}");
    }
}

// ---------------------------------------------------------------------------
// Expired and replayed signatures

fn signed(method: &str, url: &str, body: &str, expires: i64) -> String {
    let url = url::Url::parse(url).unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let req = orchestrator::signing::Request { method, path: url.path(), query: &query, body: body.as_bytes() };
    orchestrator::signing::authorization(TEST_KEY, TEST_SECRET, &req, expires)
}

async fn send(http: &reqwest::Client, method: &str, url: &str, body: &str, authorization: &str) -> (u16, Value) {
    let resp = http
        .request(method.parse().unwrap(), url)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_refuses_expired_and_replayed_signatures() {
    orchestrator::install_crypto_provider();
    let zone = Zone::start(ZoneOptions::default());
    let http = reqwest::Client::new();
    let now = jiff::Timestamp::now().as_second();
    let lbs = format!("{}/load-balancer", zone.endpoint());
    let body = r#"{"name":"replayed"}"#;

    // Expired, or too far ahead: 403, nothing created.
    for (expires, needle) in [(now - 5, "signature expired"), (now + 7200, "in the future")] {
        let (status, answer) = send(&http, "POST", &lbs, body, &signed("POST", &lbs, body, expires)).await;
        assert_eq!(status, 403, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(needle), "{answer}");
    }
    // A signed create, sent twice: the second is a replay, refused before it is carried out.
    let auth = signed("POST", &lbs, body, now + 600);
    let (status, answer) = send(&http, "POST", &lbs, body, &auth).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send(&http, "POST", &lbs, body, &auth).await;
    assert_eq!(status, 403, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.starts_with("replayed request: this signature (key EXOtestkey"), "{message}");
    let client = zone.client().await;
    let all = client.list_load_balancers().await.unwrap();
    let created: Vec<_> = all.iter().filter(|lb| lb.spec.name.as_deref() == Some("replayed")).collect();
    assert_eq!(created.len(), 1, "the replay created another NLB");
    // A delete replayed is refused too (403, not 404: it is not even looked at).
    let one = format!("{lbs}/{}", created[0].id);
    let auth = signed("DELETE", &one, "", now + 600);
    assert_eq!(send(&http, "DELETE", &one, "", &auth).await.0, 200);
    let (status, answer) = send(&http, "DELETE", &one, "", &auth).await;
    assert_eq!(status, 403, "{answer}");
    // Reads may repeat (a replayed read changes nothing; clients poll faster than once a second).
    let auth = signed("GET", &lbs, "", now + 600);
    assert_eq!(send(&http, "GET", &lbs, "", &auth).await.0, 200);
    assert_eq!(send(&http, "GET", &lbs, "", &auth).await.0, 200);
    // A query parameter added to a signed request is refused.
    let instances = format!("{}/instance", zone.endpoint());
    let auth = signed("GET", &instances, "", now + 600);
    let (status, answer) = send(&http, "GET", &format!("{instances}?manager-type=instance-pool"), "", &auth).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("not covered by the signature"), "{answer}");
    // The orchestrator client never repeats a signature: the same write five times in a row succeeds each time.
    let op = client
        .create_load_balancer(&orchestrator::model::LoadBalancerSpec {
            name: Some("again".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = op.reference.and_then(|r| r.id).unwrap();
    let update = orchestrator::model::LoadBalancerSpec { description: Some("same".into()), ..Default::default() };
    for _ in 0..5 {
        client.update_load_balancer(id, &update).await.unwrap();
    }
}
