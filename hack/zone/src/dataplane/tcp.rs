//! A TCP service: accept on the NLB's address, pick a healthy backend, and
//! copy bytes both ways until either side closes.
//!
//! The listener is bound only while at least one backend is healthy. With
//! none (every check failing, or no running member at all) nothing listens
//! on the address, so the kernel refuses a client's connect (`ECONNREFUSED`)
//! as a real NLB does; the listener is bound again as soon as one backend
//! passes its check. Closing stops only new connections: open ones keep going
//! to their backend. Whether to bind or close is [`step`], a pure function of
//! what the loop sees; the loop wakes on every verdict ([`HealthBoard::changes`])
//! and route change.
//!
//! Two windows remain, each as long as the loop takes to react to a verdict:
//! a connection accepted just after the last healthy backend failed finds
//! nothing to pick and is reset at once (as is one whose backend refuses), and
//! connections the kernel completed but nobody accepted yet are reset when the
//! listener closes. While closed, the port is free for another process to
//! take; binding is then retried as at startup ([`Retry`]). Binding next to
//! open connections on the same port works because tokio sets `SO_REUSEADDR`
//! on listeners (Unix), which accepted sockets inherit.
//!
//! Connections belong to the service's task: when it stops (service deleted,
//! port changed) they end with it; a route change (strategy, target port,
//! members, health) only affects new connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::balance;
use super::health::HealthBoard;
use super::listener::Retry;
use super::plan::{Bind, Route};

/// How long connecting to a backend may take before the client is reset.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors), so it is no busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the listener does about its socket next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Bind: a backend is healthy and nothing listens.
    Bind,
    /// Close: no backend is healthy, so the kernel should refuse connections.
    Close,
    /// Leave the socket as it is.
    Stay,
}

/// The listener's next step, given whether it is bound and how many of its
/// backends are healthy (none when the service has no running member).
fn step(bound: bool, healthy: usize) -> Step {
    match (bound, healthy > 0) {
        (false, true) => Step::Bind,
        (true, false) => Step::Close,
        (true, true) | (false, false) => Step::Stay,
    }
}

/// Serves `bind` with the current `route`, forever, listening only while a
/// backend is healthy.
pub async fn serve(bind: Bind, mut route: watch::Receiver<Arc<Route>>, board: HealthBoard) {
    let mut health = board.changes();
    let mut retry = Retry::new(bind);
    // When the next bind may be tried after a failed one.
    let mut retry_at: Option<Instant> = None;
    let mut listener: Option<TcpListener> = None;
    let mut turn = 0usize;
    let mut connections = JoinSet::new();
    {
        let r = route.borrow();
        tracing::debug!(lb = %r.lb, service = %r.service, addr = %bind.addr, "NLB service listens once a backend is healthy");
    }
    loop {
        // Marks both seen before reading them, so no change is missed.
        health.borrow_and_update();
        let current = route.borrow_and_update().clone();
        let healthy = board.healthy(&current).len();
        match step(listener.is_some(), healthy) {
            Step::Bind if retry_at.is_none_or(|at| at <= Instant::now()) => {
                let bound = TcpListener::bind(bind.addr).await;
                match retry.outcome(bound, &current) {
                    Ok(bound) => {
                        listener = Some(bound);
                        retry_at = None;
                    }
                    Err(pause) => retry_at = Some(Instant::now() + pause),
                }
            }
            Step::Close => {
                tracing::info!(lb = %current.lb, service = %current.service, addr = %bind.addr, "no healthy backend: NLB service stops listening, connections are refused");
                listener = None;
            }
            Step::Bind | Step::Stay => {}
        }
        // A failed bind is retried only while it is still wanted.
        let retry_due = retry_at.filter(|_| listener.is_none() && healthy > 0);
        tokio::select! {
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((client, peer)) => {
                    let route = route.borrow().clone();
                    let chosen = balance::pick(route.pick, &board.healthy(&route), peer.ip(), &mut turn);
                    let Some(backend) = chosen else {
                        // The last healthy backend failed since the loop looked; the next pass closes.
                        tracing::debug!(lb = %route.lb, service = %route.service, client = %peer, "no healthy backend: connection reset");
                        reset(client);
                        continue;
                    };
                    let target = SocketAddr::from((backend.ip, route.target_port));
                    connections.spawn(forward(client, peer, target, route));
                }
                Err(error) => {
                    tracing::warn!(%error, "NLB listener cannot accept; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // The board's sender lives as long as `board`: this never fails.
            _ = health.changed() => {}
            // The supervisor dropped the service: this task is being stopped.
            changed = route.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(retry_due.unwrap_or_else(Instant::now)), if retry_due.is_some() => {}
            // Reaps finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The next connection on `listener`; never, while nothing listens.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Proxies one connection; resets the client if the backend cannot be reached.
async fn forward(mut client: TcpStream, peer: SocketAddr, target: SocketAddr, route: Arc<Route>) {
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            tracing::debug!(lb = %route.lb, service = %route.service, client = %peer, backend = %target, error = %e, "backend refused: connection reset");
            reset(client);
            return;
        }
        Err(_) => {
            tracing::debug!(lb = %route.lb, service = %route.service, client = %peer, backend = %target, "backend connect timed out: connection reset");
            reset(client);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let mut upstream = upstream;
    // Errors here are a peer going away, the normal end of a proxied connection.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Closes `stream` with a RST rather than a FIN: the client sees a reset, not an empty answer.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_only_while_a_backend_is_healthy() {
        assert_eq!(step(false, 0), Step::Stay, "no running member, or none healthy yet: nothing listens");
        assert_eq!(step(false, 1), Step::Bind, "the first healthy backend opens the port");
        assert_eq!(step(true, 2), Step::Stay);
        assert_eq!(step(true, 0), Step::Close, "the last healthy backend failed: connections are refused");
    }
}
