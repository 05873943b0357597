//! The HTTPS listener: TLS handshakes (with optional client certificates),
//! HTTP/1.1 and HTTP/2, and the API server behind them, with the limits that
//! keep a slow or silent client from holding a connection: a handshake
//! timeout, a deadline for the first request, and an idle timeout.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::ApiServer;
use super::limits::guarded;

/// How long a client may hold a connection without using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// To finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// To send a request's headers (HTTP/1.1: counted from the connection's
    /// start or the end of the previous answer, so it also ends idle keep-alive
    /// connections), and, on any protocol, to start a first request.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/2: GOAWAY); open watches are requests in progress.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// 10 s for the handshake and the headers; 90 s idle, as kube-apiserver.
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Serves `api` on `listener` over TLS until `shutdown` completes, with the default limits.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<ApiServer>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, tls, api, ConnectionLimits::default(), shutdown).await
}

/// What a connection is doing, for its deadlines.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// When the last request finished, in ms since `opened`.
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let age = self.opened.elapsed();
        if self.started.load(Ordering::SeqCst) == 0 {
            return (age >= limits.header_read_timeout).then_some("no request within the header read timeout");
        }
        let idle = age.saturating_sub(Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst)));
        (idle >= limits.idle_timeout).then_some("idle")
    }
}

/// A request in progress; done when its response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_done_ms.store(a.opened.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `api` on `listener` over TLS until `shutdown` completes.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<ApiServer>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = sks_process::accept(&listener) => accepted,
            _ = &mut shutdown => return Ok(()),
        };
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer: Arc<Vec<CertificateDer<'static>>> = Arc::new(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default(),
            );
            let activity = Activity::new();
            let tracked = activity.clone();
            let service = service_fn(move |req| {
                let (api, peer) = (api.clone(), peer.clone());
                let in_flight = tracked.begin();
                let req = req.map(|body: hyper::body::Incoming| {
                    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>).boxed_unsync()
                });
                async move {
                    let resp = api.handle(req, peer).await;
                    Ok::<_, Infallible>(resp.map(|body| guarded(body, Box::new(in_flight))))
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            // kube-apiserver's proxy multiplexes many watches over few connections: hyper's default of 200 streams
            // would refuse the 201st, so allow as many as k8s.io/apiserver does for aggregated servers.
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .max_concurrent_streams(1000);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            // HTTP/1.1 enforces the header timeout itself; these checks also cover HTTP/2 (whose pings keep
            // a silent client's connection alive) and a client that completes TLS and then sends nothing.
            let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            let mut closing: Option<Instant> = None;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = tokio::time::sleep(tick) => {
                        match closing {
                            // A client that ignores the shutdown loses the connection a little later.
                            Some(since) if since.elapsed() > limits.handshake_timeout => {
                                tracing::debug!(%remote, "connection dropped after a graceful close timed out");
                                return;
                            }
                            Some(_) => {}
                            None => {
                                if let Some(why) = activity.expired(&limits) {
                                    tracing::debug!(%remote, reason = why, "closing the connection");
                                    conn.as_mut().graceful_shutdown();
                                    closing = Some(Instant::now());
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}
