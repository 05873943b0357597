//! The reconcile loop: after every committed change of the zone's state (and
//! once a second as a safety net) it compares the plan with what runs, and
//! starts, moves, updates or stops listeners and health checks to match.
//!
//! A change of where a service listens (port, protocol) replaces its socket;
//! anything else (strategy, target port, members) is swapped into the running
//! listener, so its address and open connections stay. A changed health check
//! restarts that backend's checks but keeps its last verdict, so an update
//! does not interrupt traffic.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::health::{self, HealthBoard};
use super::listener;
use super::plan::{self, Backend, Bind, Check, Route, ServicePlan};
use super::probe::Prober;
use crate::app::App;

/// How often the plan is compared with what runs when nothing is committed.
const SAFETY_TICK: Duration = Duration::from_secs(1);

/// A spawned task that stops when this handle is dropped.
struct Task(JoinHandle<()>);

impl Task {
    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Task(tokio::spawn(future))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One backend's running checks.
struct RunningCheck {
    backend: Backend,
    check: Check,
    _task: Task,
}

/// One service's running listener and checks.
struct RunningService {
    bind: Bind,
    route: watch::Sender<Arc<Route>>,
    _listener: Task,
    checks: BTreeMap<Uuid, RunningCheck>,
}

/// What runs, and what it needs to start more.
pub struct Supervisor {
    board: HealthBoard,
    prober: Prober,
    /// Length of one healthcheck second.
    second: Duration,
    running: BTreeMap<Uuid, RunningService>,
}

impl Supervisor {
    /// A supervisor with nothing running yet.
    pub fn new(board: HealthBoard, prober: Prober, second: Duration) -> Self {
        Supervisor { board, prober, second, running: BTreeMap::new() }
    }

    /// Follows `app`'s state forever.
    pub async fn run(mut self, app: Arc<App>) {
        let mut changes = app.changes();
        let mut safety = tokio::time::interval(SAFETY_TICK);
        safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Marks the current generation seen before reading, so no commit is missed.
            changes.borrow_and_update();
            let desired = app.read(plan::desired);
            self.reconcile(desired);
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = safety.tick() => {}
            }
        }
    }

    /// Makes what runs match `desired`.
    fn reconcile(&mut self, desired: BTreeMap<Uuid, ServicePlan>) {
        let board = &self.board;
        self.running.retain(|id, r| {
            if desired.contains_key(id) {
                return true;
            }
            let route = r.route.borrow();
            tracing::info!(lb = %route.lb, service = %id, ip = %r.bind.addr.ip(), port = r.bind.addr.port(), "NLB service stops listening");
            for instance in r.checks.keys() {
                board.forget(*id, *instance);
            }
            false
        });
        for (id, plan) in desired {
            let service = match self.running.entry(id) {
                Entry::Occupied(e) => {
                    let r = e.into_mut();
                    r.route.send_if_modified(|current| {
                        let changed = **current != plan.route;
                        if changed {
                            *current = Arc::new(plan.route.clone());
                        }
                        changed
                    });
                    if r.bind != plan.bind {
                        tracing::info!(lb = %plan.route.lb, service = %id, from = %r.bind.addr, to = %plan.bind.addr, "NLB service moves");
                        r.bind = plan.bind;
                        r._listener = Task::spawn(listener::run(plan.bind, r.route.subscribe(), board.clone()));
                    }
                    r
                }
                Entry::Vacant(e) => {
                    let (route, watching) = watch::channel(Arc::new(plan.route.clone()));
                    e.insert(RunningService {
                        bind: plan.bind,
                        route,
                        _listener: Task::spawn(listener::run(plan.bind, watching, board.clone())),
                        checks: BTreeMap::new(),
                    })
                }
            };
            let wanted: BTreeMap<Uuid, Backend> = plan.route.backends.iter().map(|b| (b.instance, *b)).collect();
            service.checks.retain(|instance, c| {
                let keep = wanted.get(instance) == Some(&c.backend) && c.check == plan.check;
                if !wanted.contains_key(instance) {
                    board.forget(id, *instance);
                }
                keep
            });
            for (instance, backend) in wanted {
                service.checks.entry(instance).or_insert_with(|| RunningCheck {
                    backend,
                    check: plan.check.clone(),
                    _task: Task::spawn(health::run(
                        board.clone(),
                        self.prober.clone(),
                        plan.route.lb,
                        id,
                        backend,
                        plan.check.clone(),
                        self.second,
                    )),
                });
            }
        }
    }
}
