//! A TCP service: accept on the NLB's address, pick a healthy backend, and
//! copy bytes both ways until either side closes.
//!
//! With no healthy backend (or a backend that refuses), the client's
//! connection is reset at once with no data, the closest a user-space
//! listener gets to a refused connection. Connections belong to their
//! listener: when it stops (service deleted, port changed) they end with it;
//! a route change (strategy, target port, members, health) only affects new
//! connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::balance;
use super::health::HealthBoard;
use super::plan::Route;

/// How long connecting to a backend may take before the client is reset.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors), so it is no busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` with the current `route`, forever.
pub async fn serve(listener: TcpListener, route: watch::Receiver<Arc<Route>>, board: HealthBoard) {
    let mut turn = 0usize;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let route = route.borrow().clone();
                    let chosen = balance::pick(route.pick, &board.healthy(&route), peer.ip(), &mut turn);
                    let Some(backend) = chosen else {
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
            // Reaps finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
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
