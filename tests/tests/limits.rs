//! Request limits of `sks-apiserver` and `sks-zone` against hostile clients:
//! bodies over the limit are 413 and the server keeps serving; slow and silent
//! clients (slowloris) are disconnected within the header timeout while other
//! clients are served; idle connections are closed; a user's open watches are
//! bounded (429) without affecting other users.

use std::time::{Duration, Instant};

use serde_json::Value;
use sks_e2e::apiserver::ApiServer;
use sks_e2e::env::TestEnv;
use sks_e2e::pki::TestPki;
use sks_e2e::raw::{addr_of, time_to_close, tls_client, tls_connect};
use sks_e2e::wait_for;
use sks_e2e::zone::{Zone, ZoneOptions, signed_request};
use tokio::net::TcpStream;

const MIB: usize = 1 << 20;
const NODEPOOLS: &str = "/apis/sks.exoscale.net/v1alpha1/nodepools";

fn https(api: &ApiServer, identity: Option<&sks_pki::IssuedCert>) -> reqwest::Client {
    orchestrator::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(api.pki.serving_ca.cert_pem.as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{}{}", id.cert_pem, id.key_pem).as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// A JSON object of about `size` bytes.
fn big_object(size: usize) -> String {
    format!(
        r#"{{"apiVersion":"sks.exoscale.net/v1alpha1","kind":"NodePool","metadata":{{"name":"big"}},"pad":"{}"}}"#,
        "x".repeat(size)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_refuses_bodies_over_3_mib_and_keeps_serving() {
    let env = TestEnv::builder().apiserver(&[]).start().await;
    let api = env.sks();
    let admin = TestPki::client(&api.pki.client_ca, "admin", &["system:masters"]);
    let http = https(api, Some(&admin));
    let url = format!("{}{NODEPOOLS}", api.url);
    for (method, content_type) in [("POST", "application/json"), ("PATCH", "application/merge-patch+json")] {
        let target = if method == "POST" { url.clone() } else { format!("{url}/workers") };
        let resp = http
            .request(method.parse().unwrap(), &target)
            .header("content-type", content_type)
            .body(big_object(4 * MIB))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} with a 4 MiB body: no answer: {e}"));
        assert_eq!(resp.status(), 413, "{method}");
        let status: Value = resp.json().await.unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("RequestEntityTooLarge"))
        );
        assert_eq!(status["code"], 413);
        assert!(status["message"].as_str().unwrap().contains("3145728 bytes"), "{status}");
    }
    // Just under the limit is read (and refused for what it is, not for its size).
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body(big_object(3 * MIB - 1024))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 413);
    // The server keeps serving, on the same client and on new ones.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(https(api, Some(&admin)).get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_refuses_bodies_over_its_limit_and_keeps_serving() {
    let zone = Zone::start(ZoneOptions::default());
    let body = format!(r#"{{"name":"big","description":"{}"}}"#, "x".repeat(4 * MIB));
    let (status, answer) = signed_request(&zone.endpoint(), "POST", "/load-balancer", Some(&body), None, 600).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(
        answer["message"],
        format!("request body of {} bytes is larger than the limit of 1048576 bytes", body.len())
    );
    // A chunked body (no Content-Length) over the limit too.
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; MIB]))));
    let resp = reqwest::Client::new()
        .post(format!("{}/load-balancer", zone.endpoint()))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["message"], "request body is larger than the limit of 1048576 bytes");
    let (status, _) = signed_request(&zone.endpoint(), "GET", "/load-balancer", None, None, 600).await;
    assert_eq!(status, 200);
    let (status, answer) =
        signed_request(&zone.endpoint(), "POST", "/load-balancer", Some(r#"{"name":"small"}"#), None, 600).await;
    assert_eq!(status, 200, "{answer}");
}

/// Serves plain requests to `check` every 100 ms until told to stop; returns the slowest answer.
fn keep_asking<F, Fut>(check: F) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<(usize, Duration)>)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (mut n, mut slowest) = (0, Duration::ZERO);
        loop {
            let started = Instant::now();
            assert!(check().await, "a normal request failed while slow clients held connections");
            slowest = slowest.max(started.elapsed());
            n += 1;
            tokio::select! {
                _ = &mut stopped => return (n, slowest),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (stop, task)
}

const SLOW_HEAD: &[u8] =
    b"GET /v2/zone HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_disconnects_slow_and_silent_clients() {
    let zone = Zone::start(ZoneOptions {
        extra: vec!["--header-read-timeout-ms".into(), "1000".into()],
        ..Default::default()
    });
    let addr = addr_of(&zone.url);
    let url = format!("{}/v2/zone", zone.url);
    orchestrator::install_crypto_provider();
    let client = reqwest::Client::new();
    let (stop, asking) = keep_asking(move || {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
    });
    let limit = Duration::from_secs(5);
    let every = Duration::from_millis(100);
    let mut slow = Vec::new();
    for i in 0..60 {
        let conn = TcpStream::connect(&addr).await.unwrap();
        // Half send nothing, half send a request head one byte at a time, never finishing it.
        let dribble: &'static [u8] = if i % 2 == 0 { b"" } else { SLOW_HEAD };
        slow.push(tokio::spawn(time_to_close(conn, dribble, every, limit)));
    }
    // A keep-alive connection left idle after one answer is closed too.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut idle, b"GET /v2/zone HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let idle = tokio::spawn(time_to_close(idle, b"", every, limit));
    for (i, s) in slow.into_iter().enumerate() {
        let took = s.await.unwrap().unwrap_or_else(|| panic!("slow client {i} still connected after {limit:?}"));
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "slow client {i} closed after {took:?}"
        );
    }
    let took = idle.await.unwrap().expect("idle connection still open");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "idle connection closed after {took:?}"
    );
    let _ = stop.send(());
    let (served, slowest) = asking.await.unwrap();
    assert!(served >= 3, "only {served} normal requests answered meanwhile");
    assert!(slowest < Duration::from_secs(2), "a normal request took {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_disconnects_slow_and_silent_clients() {
    let env = TestEnv::builder()
        .apiserver(&["--tls-handshake-timeout", "1s", "--header-read-timeout", "1s", "--idle-connection-timeout", "2s"])
        .start()
        .await;
    let api = env.sks();
    let ca = api.pki.serving_ca.cert_pem.clone();
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let h1 = tls_client(&ca, &versions, &[b"http/1.1"], None);
    let h2 = tls_client(&ca, &versions, &[b"h2"], None);
    let readyz = format!("{}/readyz", api.url);
    let client = https(api, None);
    let (stop, asking) = keep_asking(move || {
        let (client, readyz) = (client.clone(), readyz.clone());
        async move { client.get(&readyz).send().await.is_ok_and(|r| r.status() == 200) }
    });
    let limit = Duration::from_secs(6);
    let every = Duration::from_millis(100);
    let mut cases: Vec<(&str, tokio::task::JoinHandle<Option<Duration>>)> = Vec::new();
    for _ in 0..10 {
        // No TLS handshake at all, or one sent a byte at a time.
        let tcp = TcpStream::connect(addr_of(&api.url)).await.unwrap();
        cases.push(("silent TCP", tokio::spawn(time_to_close(tcp, b"", every, limit))));
        let tcp = TcpStream::connect(addr_of(&api.url)).await.unwrap();
        cases.push((
            "slow handshake",
            tokio::spawn(time_to_close(tcp, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", every, limit)),
        ));
        // TLS, then nothing; TLS, then a request head a byte at a time.
        let tls = tls_connect(&api.url, h1.clone()).await.unwrap();
        cases.push(("silent HTTP/1.1", tokio::spawn(time_to_close(tls, b"", every, limit))));
        let tls = tls_connect(&api.url, h1.clone()).await.unwrap();
        cases.push((
            "slow HTTP/1.1 head",
            tokio::spawn(time_to_close(
                tls,
                b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaa\r\n",
                every,
                limit,
            )),
        ));
        // HTTP/2: nothing after TLS, or the preface and settings, then no request.
        let tls = tls_connect(&api.url, h2.clone()).await.unwrap();
        cases.push(("silent HTTP/2", tokio::spawn(time_to_close(tls, b"", every, limit))));
        let mut tls = tls_connect(&api.url, h2.clone()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut tls,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        )
        .await
        .unwrap();
        cases.push(("HTTP/2 without requests", tokio::spawn(time_to_close(tls, b"", every, limit))));
    }
    for (what, case) in cases {
        let took = case.await.unwrap().unwrap_or_else(|| panic!("{what}: still connected after {limit:?}"));
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "{what}: closed after {took:?}");
    }
    // An HTTP/2 connection idle after a request is closed at the idle timeout (2 s), not before.
    let tls = tls_connect(&api.url, h2.clone()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req =
        http::Request::get(format!("{}/readyz", api.url)).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let idle_since = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), conn).await.expect("idle HTTP/2 connection still open").unwrap().ok();
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "idle HTTP/2 connection closed after {took:?}"
    );

    let _ = stop.send(());
    let (served, slowest) = asking.await.unwrap();
    assert!(served >= 5, "only {served} normal requests answered meanwhile");
    assert!(slowest < Duration::from_secs(2), "a normal request took {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_watches_are_bounded_per_user() {
    let env = TestEnv::builder().apiserver(&["--max-watches-per-user", "3"]).start().await;
    let api = env.sks();
    let proxy = TestPki::client(&api.pki.proxy_ca, "front-proxy-client", &[]);
    let http = https(api, Some(&proxy));
    let watch = |user: &str| {
        http.get(format!("{}{NODEPOOLS}?watch=1", api.url))
            .header("X-Remote-User", user)
            .header("X-Remote-Group", "system:masters")
            .send()
    };
    let mut alice = Vec::new();
    for _ in 0..3 {
        let resp = watch("alice").await.unwrap();
        assert_eq!(resp.status(), 200);
        alice.push(resp);
    }
    let refused = watch("alice").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let status: Value = refused.json().await.unwrap();
    assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("TooManyRequests")));
    assert_eq!(status["message"], "too many open watches: user \"alice\" has 3 open, the limit is 3");
    // Another user still can watch, and alice can still list.
    let bob = watch("bob").await.unwrap();
    assert_eq!(bob.status(), 200);
    let list = http
        .get(format!("{}{NODEPOOLS}", api.url))
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    // Closing one of alice's watches frees its place.
    drop(alice.pop());
    wait_for("a closed watch to be released", Duration::from_secs(10), || async {
        let resp = watch("alice").await.ok()?;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    drop(bob);
}
