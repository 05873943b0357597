//! The HTTP/1.1 listener with the limits a public endpoint needs: a request
//! head must arrive within the header timeout (which also closes idle
//! keep-alive connections, and connections that never send anything), and a
//! body larger than the limit is answered 413 with a JSON message.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::app::ApiError;

/// Connection and request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request head, counted from the
    /// connection's start or the end of the previous answer.
    pub header_read_timeout: Duration,
}

/// How much of a refused body is still read (and dropped) so the client, which
/// is still sending it, reads the 413 instead of a connection reset.
const DRAIN_BYTES: usize = 64 << 20;
/// And for how long at most.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// connections finish their current request for at most a second.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router
        .layer(axum::middleware::from_fn_with_state(limits.max_body_bytes, body_limit))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = sks_process::accept(&listener) => accepted,
            _ = &mut shutdown => break,
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        // The connection runs in its own task: a handler that unwinds (the connection-reset fault) ends
        // only this connection.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    Ok(())
}

fn too_large(limit: usize, size: Option<u64>) -> Response {
    let size = size.map(|n| format!(" of {n} bytes")).unwrap_or_default();
    let mut resp = ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body{size} is larger than the limit of {limit} bytes"),
    }
    .into_response();
    resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    resp
}

/// Reads the body up to `limit` before the handlers see it; a larger one is
/// answered 413 (after reading the rest, within bounds, so the client sees the answer).
async fn body_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (parts, mut body) = req.into_parts();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return too_large(limit, declared);
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return ApiError::bad_request("the request body could not be read").into_response();
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return too_large(limit, None);
            }
            buf.extend_from_slice(&data);
        }
    }
    next.run(Request::from_parts(parts, Body::from(buf))).await
}

async fn drain(mut body: Body) {
    let read = async {
        let mut n = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, axum::body::Bytes::len);
            if n > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}
