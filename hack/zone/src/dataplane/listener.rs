//! Binding a service's socket, and retrying until it works: the address may
//! be taken by another process (or, for a moment, by the listener this one
//! replaces). A failure is logged with the NLB, address and error (at warn
//! level once per distinct error, so a port held for hours is not a line every
//! few seconds) and never stops anything else.
//!
//! A UDP socket is bound once, here. A TCP listener is bound and closed again
//! by `tcp` as its backends' health changes, with the same [`Retry`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::health::HealthBoard;
use super::plan::{Bind, Route, Transport};
use super::{tcp, udp};

/// First pause after a failed bind; it doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between two binds.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Serves `bind` with the current `route`, until aborted.
pub async fn run(bind: Bind, route: watch::Receiver<Arc<Route>>, board: HealthBoard) {
    match bind.transport {
        Transport::Tcp => tcp::serve(bind, route, board).await,
        Transport::Udp => {
            let mut retry = Retry::new(bind);
            let socket = loop {
                let bound = UdpSocket::bind(bind.addr).await;
                let outcome = retry.outcome(bound, &route.borrow());
                match outcome {
                    Ok(socket) => break socket,
                    Err(pause) => tokio::time::sleep(pause).await,
                }
            };
            udp::serve(socket, route, board).await;
        }
    }
}

/// The bind attempts of one service's address: logs each outcome and paces
/// the next attempt after a failure.
#[derive(Debug)]
pub struct Retry {
    bind: Bind,
    pause: Duration,
    last_error: Option<String>,
}

impl Retry {
    /// No attempt made yet.
    pub fn new(bind: Bind) -> Self {
        Retry { bind, pause: FIRST_RETRY, last_error: None }
    }

    /// Logs the outcome of an attempt to bind; a failure gives the pause before
    /// the next one (doubling up to `MAX_RETRY`), a success starts over.
    pub fn outcome<S>(&mut self, bound: io::Result<S>, route: &Route) -> Result<S, Duration> {
        let (lb, service) = (route.lb, route.service);
        let (ip, port, protocol) = (self.bind.addr.ip(), self.bind.addr.port(), self.bind.transport.as_str());
        match bound {
            Ok(socket) => {
                tracing::info!(%lb, %service, %ip, port, protocol, "NLB service listening");
                *self = Retry::new(self.bind);
                Ok(socket)
            }
            Err(error) => {
                let message = error.to_string();
                let pause = self.pause;
                let retry_in_ms = pause.as_millis() as u64;
                if self.last_error.as_ref() != Some(&message) {
                    tracing::warn!(%lb, %service, %ip, port, protocol, %error, retry_in_ms, "NLB service cannot listen; retrying");
                } else {
                    tracing::debug!(%lb, %service, %ip, port, protocol, %error, retry_in_ms, "NLB service still cannot listen");
                }
                self.last_error = Some(message);
                self.pause = (pause * 2).min(MAX_RETRY);
                Err(pause)
            }
        }
    }
}
