//! Backend health: the board every listener and the API read, and the loop
//! that checks one backend of one service and writes its verdict there.
//!
//! A backend nobody has checked yet counts as unhealthy, so a new member gets
//! traffic only once it answers (its first check runs at once), and the API
//! reports `failure` rather than a success nobody saw. A healthy backend turns
//! unhealthy after `retries` consecutive failed checks and healthy again after
//! one success, as the orchestrator API documents. Every change of a verdict
//! is announced on the board's [`HealthBoard::changes`], which TCP listeners
//! follow to close while no backend is healthy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::plan::{Backend, Check, Route};
use super::probe::Prober;

/// Which backends of which services passed their checks; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct HealthBoard {
    healthy: Arc<Mutex<HashMap<(Uuid, Uuid), bool>>>,
    /// A generation bumped after every change of `healthy`.
    changes: Arc<watch::Sender<u64>>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        HealthBoard { healthy: Arc::default(), changes: Arc::new(watch::Sender::new(0)) }
    }
}

impl HealthBoard {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), bool>> {
        self.healthy.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `instance` passes the checks of `service`; unchecked means no.
    pub fn is_healthy(&self, service: Uuid, instance: Uuid) -> bool {
        self.map().get(&(service, instance)).copied().unwrap_or(false)
    }

    /// The backends of `route` that pass their checks, in the route's order.
    pub fn healthy(&self, route: &Route) -> Vec<Backend> {
        let map = self.map();
        route
            .backends
            .iter()
            .copied()
            .filter(|b| map.get(&(route.service, b.instance)).copied() == Some(true))
            .collect()
    }

    /// Wakes on every change of a verdict made after it last looked, of any
    /// service: mark the current one seen, then read the board, and no change
    /// is missed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records a verdict; returns the previous one (`None`: never checked).
    fn set(&self, service: Uuid, instance: Uuid, healthy: bool) -> Option<bool> {
        let before = self.map().insert((service, instance), healthy);
        if before != Some(healthy) {
            self.announce();
        }
        before
    }

    /// Forgets a backend that left the service (or a service that went away).
    pub fn forget(&self, service: Uuid, instance: Uuid) {
        let removed = self.map().remove(&(service, instance));
        if removed.is_some() {
            self.announce();
        }
    }

    /// Tells the listeners the board changed; called once the map is unlocked.
    fn announce(&self) {
        self.changes.send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// Consecutive-failure bookkeeping of one backend: the pure part of the loop.
#[derive(Debug, Default)]
struct Verdict {
    failures: u32,
}

impl Verdict {
    /// The backend's health after a check, given its health before.
    fn after(&mut self, passed: bool, was_healthy: bool, retries: u32) -> bool {
        if passed {
            self.failures = 0;
            return true;
        }
        self.failures = self.failures.saturating_add(1);
        was_healthy && self.failures < retries
    }
}

/// Checks `backend` for `service` of `lb` every `check.interval_s` API
/// seconds (each lasting `second`), forever; the supervisor aborts it when the
/// backend leaves or the check changes. Health changes are logged.
pub async fn run(
    board: HealthBoard,
    prober: Prober,
    lb: Uuid,
    service: Uuid,
    backend: Backend,
    check: Check,
    second: Duration,
) {
    let interval = second.saturating_mul(u32::try_from(check.interval_s).unwrap_or(u32::MAX));
    let timeout = second.saturating_mul(u32::try_from(check.timeout_s).unwrap_or(u32::MAX));
    let mut ticks = tokio::time::interval(interval);
    // A check that overran must not be followed by a burst of catch-up checks.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut verdict = Verdict::default();
    loop {
        ticks.tick().await;
        let outcome = match tokio::time::timeout(timeout, prober.probe(&check, backend.ip)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", check.timeout_s)),
        };
        let was = board.is_healthy(service, backend.instance);
        let now = verdict.after(outcome.is_ok(), was, check.retries);
        let before = board.set(service, backend.instance, now);
        if before != Some(now) {
            let ip = backend.ip;
            let port = check.port;
            match &outcome {
                Ok(()) => tracing::info!(%lb, %service, backend = %ip, port, "NLB backend healthy"),
                Err(error) => {
                    tracing::info!(%lb, %service, backend = %ip, port, %error, "NLB backend unhealthy");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_after_retries_consecutive_failures_and_healthy_after_one_success() {
        let mut v = Verdict::default();
        assert!(!v.after(false, false, 3), "never checked and failing: unhealthy");
        assert!(v.after(true, false, 3), "one success is enough");
        assert!(v.after(false, true, 3));
        assert!(v.after(false, true, 3));
        assert!(!v.after(false, true, 3), "third consecutive failure");
        assert!(v.after(true, false, 3));
        assert!(v.after(false, true, 3), "the count restarted after the success");
        let mut once = Verdict::default();
        assert!(!once.after(false, true, 1), "retries 1: the first failure is enough");
    }

    #[test]
    fn the_board_counts_unchecked_backends_as_unhealthy() {
        let board = HealthBoard::default();
        let (svc, inst) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(!board.is_healthy(svc, inst));
        assert_eq!(board.set(svc, inst, true), None);
        assert!(board.is_healthy(svc, inst));
        board.forget(svc, inst);
        assert!(!board.is_healthy(svc, inst));
    }

    #[test]
    fn only_a_changed_verdict_is_announced() {
        let board = HealthBoard::default();
        let mut changes = board.changes();
        let (svc, inst) = (Uuid::new_v4(), Uuid::new_v4());
        board.set(svc, inst, false);
        assert!(changes.has_changed().unwrap(), "a first verdict");
        changes.borrow_and_update();
        board.set(svc, inst, false);
        assert!(!changes.has_changed().unwrap(), "the same verdict again");
        board.set(svc, inst, true);
        assert!(changes.has_changed().unwrap(), "healthy now");
        changes.borrow_and_update();
        board.forget(svc, inst);
        assert!(changes.has_changed().unwrap(), "forgotten");
        changes.borrow_and_update();
        board.forget(svc, inst);
        assert!(!changes.has_changed().unwrap(), "nothing left to forget");
    }
}
