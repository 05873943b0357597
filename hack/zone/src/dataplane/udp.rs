//! A UDP service: datagrams from each client address form a session with one
//! backend, relayed through a socket of its own so the backend's replies can
//! be told apart and sent back to that client from the NLB's address.
//!
//! A session picks its backend on its first datagram (no healthy backend: the
//! datagram is dropped) and ends after `SESSION_IDLE` without traffic either
//! way; the next datagram then picks again. Sessions belong to their
//! listener and end with it.
//!
//! Unlike a TCP listener, the socket stays bound with no healthy backend: the
//! open sessions' replies leave through it, and datagrams of those sessions
//! keep arriving on it, so closing it (which would make the kernel answer ICMP
//! port unreachable) would cut them. A client sees silence, not a refusal.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::balance;
use super::health::HealthBoard;
use super::plan::Route;

/// A session without a datagram either way for this long ends.
const SESSION_IDLE: Duration = Duration::from_secs(30);
/// Datagrams waiting for a session's relay; more are dropped, as a full queue would.
const SESSION_QUEUE: usize = 256;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Pause after a failed receive, so it is no busy loop.
const RECV_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `socket` with the current `route`, forever.
pub async fn serve(socket: UdpSocket, route: watch::Receiver<Arc<Route>>, board: HealthBoard) {
    let socket = Arc::new(socket);
    let mut sessions =
        Sessions { socket: socket.clone(), route, board, turn: 0, open: HashMap::new(), relays: JoinSet::new() };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, client)) => sessions.deliver(client, buf[..n].to_vec()),
                Err(error) => {
                    // An ICMP error from an earlier reply surfaces here on some systems; nothing to do.
                    tracing::debug!(%error, "NLB UDP receive failed");
                    tokio::time::sleep(RECV_BACKOFF).await;
                }
            },
            Some(ended) = sessions.relays.join_next(), if !sessions.relays.is_empty() => {
                if let Ok(client) = ended {
                    sessions.forget_if_over(client);
                }
            }
        }
    }
}

/// The sessions of one listener, by client address.
struct Sessions {
    socket: Arc<UdpSocket>,
    route: watch::Receiver<Arc<Route>>,
    board: HealthBoard,
    /// Round-robin counter of new sessions.
    turn: usize,
    /// Queues of the running relays.
    open: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// The relays; each returns its client's address when it ends.
    relays: JoinSet<SocketAddr>,
}

impl Sessions {
    /// Hands a datagram from `client` to its session, opening one if needed.
    fn deliver(&mut self, client: SocketAddr, datagram: Vec<u8>) {
        let datagram = match self.open.get(&client) {
            Some(session) => match session.try_send(datagram) {
                // Queued, or dropped on a full queue as a congested link would.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return,
                // The relay just ended (idle): start over with a new pick.
                Err(mpsc::error::TrySendError::Closed(datagram)) => datagram,
            },
            None => datagram,
        };
        let route = self.route.borrow().clone();
        let Some(backend) = balance::pick(route.pick, &self.board.healthy(&route), client.ip(), &mut self.turn) else {
            tracing::debug!(lb = %route.lb, service = %route.service, %client, "no healthy backend: datagram dropped");
            self.open.remove(&client);
            return;
        };
        let target = SocketAddr::from((backend.ip, route.target_port));
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let _ = tx.try_send(datagram);
        self.open.insert(client, tx);
        self.relays.spawn(relay(self.socket.clone(), client, target, rx, route));
    }

    /// Drops the queue of `client` once its relay has ended (a newer one may have replaced it).
    fn forget_if_over(&mut self, client: SocketAddr) {
        if self.open.get(&client).is_some_and(tokio::sync::mpsc::Sender::is_closed) {
            self.open.remove(&client);
        }
    }
}

/// Relays one session until it is idle; returns the client's address.
async fn relay(
    nlb: Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    route: Arc<Route>,
) -> SocketAddr {
    let upstream = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(lb = %route.lb, service = %route.service, %error, "cannot open a UDP relay socket");
            return client;
        }
    };
    if let Err(error) = upstream.connect(target).await {
        tracing::debug!(lb = %route.lb, service = %route.service, backend = %target, %error, "cannot reach UDP backend");
        return client;
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut deadline = Instant::now() + SESSION_IDLE;
    loop {
        tokio::select! {
            datagram = from_client.recv() => {
                let Some(datagram) = datagram else { break };
                // A lost datagram is UDP's normal failure; the client retries if it cares.
                let _ = upstream.send(&datagram).await;
                deadline = Instant::now() + SESSION_IDLE;
            }
            reply = upstream.recv(&mut buf) => {
                // An error is the backend's port being closed (ICMP); later replies may still come.
                if let Ok(n) = reply {
                    let _ = nlb.send_to(&buf[..n], client).await;
                    deadline = Instant::now() + SESSION_IDLE;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    // Closing the queue tells the listener this session is over.
    from_client.close();
    client
}
