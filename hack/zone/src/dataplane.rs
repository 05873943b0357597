//! The NLB data plane: every running NLB listens on its loopback address, on
//! each service's port (TCP or UDP), and forwards to the running members of
//! the service's instance pool at `public IPv4 : target-port`, choosing among
//! those that pass the service's health check. A TCP service with no healthy
//! backend (or no running member) closes its listener, so connections are
//! refused, and listens again once a backend is healthy; a UDP service drops
//! the datagrams that would open a session.
//!
//! - `plan`: what should run, derived from the zone's state (pure).
//! - `supervisor`: the reconcile loop that makes sockets and checks match the plan.
//! - `listener`: binding a service's socket, retrying while it is taken.
//! - `tcp`, `udp`: forwarding connections and datagrams (`tcp` also opens and
//!   closes its listener as health changes).
//! - `balance`: round-robin and source-hash (`maglev-hash` shares source-hash).
//! - `health`, `probe`: the per-backend check loop and one check (tcp, http, https).
//! - `report`: `healthcheck-status` in API answers.
//!
//! The loop follows state changes through [`App::changes`], a generation
//! bumped by every committed write, so it learns of a new NLB, service or pool
//! member at once, and of everything else (a restart included: listeners come
//! back from the persisted state) on its first pass; a 1 s tick is a safety net.
//! Nothing here writes the zone's state.

mod balance;
mod health;
mod listener;
mod plan;
mod probe;
mod report;
mod supervisor;
mod tcp;
mod udp;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::app::App;

pub use health::HealthBoard;
pub use report::decorate;

/// Settings of the data plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one second of a healthcheck's `interval` and `timeout` lasts.
    /// The API allows no interval under 5 s; tests shorten the second instead.
    pub healthcheck_second: Duration,
}

/// Starts the data plane; its health verdicts go to `app.health`.
pub fn spawn(app: Arc<App>, options: Options) -> anyhow::Result<JoinHandle<()>> {
    let prober = probe::Prober::new()?;
    tracing::info!(healthcheck_second_ms = options.healthcheck_second.as_millis() as u64, "NLB data plane enabled");
    let supervisor = supervisor::Supervisor::new(app.health.clone(), prober, options.healthcheck_second);
    Ok(tokio::spawn(supervisor.run(app)))
}
