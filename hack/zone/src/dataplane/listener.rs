//! Binding a service's socket, and retrying until it works: the address may
//! be taken by another process (or, for a moment, by the listener this one
//! replaces). A failure is logged with the NLB, address and error (at warn
//! level once per distinct error, so a port held for hours is not a line every
//! few seconds) and never stops anything else.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use super::health::HealthBoard;
use super::plan::{Bind, Route, Transport};
use super::{tcp, udp};

/// First pause after a failed bind; it doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between two binds.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Binds `bind` (retrying) and serves it with the current `route`, until aborted.
pub async fn run(bind: Bind, route: watch::Receiver<Arc<Route>>, board: HealthBoard) {
    let mut pause = FIRST_RETRY;
    let mut last_error: Option<String> = None;
    loop {
        let bound = match bind.transport {
            Transport::Tcp => TcpListener::bind(bind.addr).await.map(Socket::Tcp),
            Transport::Udp => UdpSocket::bind(bind.addr).await.map(Socket::Udp),
        };
        let (lb, service) = {
            let r = route.borrow();
            (r.lb, r.service)
        };
        match bound {
            Ok(socket) => {
                tracing::info!(%lb, %service, ip = %bind.addr.ip(), port = bind.addr.port(), protocol = bind.transport.as_str(), "NLB service listening");
                match socket {
                    Socket::Tcp(listener) => tcp::serve(listener, route, board).await,
                    Socket::Udp(socket) => udp::serve(socket, route, board).await,
                }
                return;
            }
            Err(error) => {
                let message = error.to_string();
                let (ip, port, protocol) = (bind.addr.ip(), bind.addr.port(), bind.transport.as_str());
                let retry_in_ms = pause.as_millis() as u64;
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(%lb, %service, %ip, port, protocol, %error, retry_in_ms, "NLB service cannot listen; retrying");
                } else {
                    tracing::debug!(%lb, %service, %ip, port, protocol, %error, retry_in_ms, "NLB service still cannot listen");
                }
                last_error = Some(message);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
            }
        }
    }
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}
