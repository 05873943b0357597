//! `/healthz`, `/readyz` and `/metrics` over plain HTTP on the bind address.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Binds `address`, reports it on stdout (the first line, which tests and
/// tools read) and serves health and metrics there in the background.
pub async fn start(address: SocketAddr, registry: prometheus::Registry, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    println!("sks-ccm serving health and metrics on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    tokio::spawn(serve(listener, registry, ready));
    Ok(())
}

/// Serves health and metrics until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, registry: prometheus::Registry, ready: Arc<AtomicBool>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (registry, ready) = (registry.clone(), ready.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (registry, ready) = (registry.clone(), ready.clone());
                async move {
                    let (code, body) = match req.uri().path() {
                        "/healthz" | "/livez" => (StatusCode::OK, "ok".to_owned()),
                        "/readyz" if ready.load(Ordering::SeqCst) => (StatusCode::OK, "ok".to_owned()),
                        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready: cloud cache not filled".to_owned()),
                        "/metrics" => {
                            let mut out = String::new();
                            let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
                            (StatusCode::OK, out)
                        }
                        _ => (StatusCode::NOT_FOUND, "not found".to_owned()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = code;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
