//! The node controller: one watch and one cache of every Node, and a
//! reconcile that looks the Node's instance up once and runs the enabled
//! steps on it in a fixed order: initialization (`cloud-node`), lifecycle
//! (`cloud-node-lifecycle`), auto-healing (`node-auto-heal`), then keeping
//! addresses and labels current (`cloud-node`). Each step is its own module
//! and `--controllers` turns each off; they share the watch because a watch
//! per concern would cost its requests and a copy of every Node each.

pub mod cached;
#[cfg(test)]
mod fixtures;
pub mod heal;
pub mod init;
pub mod lifecycle;
pub mod patch;
pub mod ready;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use orchestrator::model::Instance;

use self::cached::CachedNode;
use crate::cloud::{MISS_REFRESH, Snapshot, fresh_since};
use crate::context::Context;
use crate::queue::{self, Pending};
use crate::reconcile::{self, Error, measured};
use crate::superseded::{Superseded, Writes};

/// How old a cloud snapshot may be when a NotReady Node is looked at (NotReady
/// Nodes reconciled together share one refresh).
const NOT_READY_FRESHNESS: Duration = Duration::from_secs(5);
/// How soon a Node no instance of ours matches is looked at again.
const UNMATCHED_RETRY: Duration = Duration::from_secs(30);

/// The steps `--controllers` turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// `cloud-node`: initialize Nodes, keep their addresses and labels current.
    pub init: bool,
    /// `cloud-node-lifecycle`: delete Nodes whose instance is gone, taint stopped ones.
    pub lifecycle: bool,
    /// `node-auto-heal`: reboot, then replace, instances of Nodes that stay NotReady.
    pub heal: bool,
}

impl Steps {
    /// Whether any step runs (else the controller need not watch Nodes at all).
    pub fn any(self) -> bool {
        self.init || self.lifecycle || self.heal
    }
}

/// The node controller's settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The steps that run.
    pub steps: Steps,
    /// How often initialized Nodes are re-checked.
    pub sync_period: Duration,
    /// Auto-healing thresholds.
    pub heal: heal::Config,
    /// Concurrent reconciles.
    pub workers: u16,
}

/// The node controller, built once and run while this replica leads.
pub struct Nodes {
    ctx: Arc<Context>,
    config: Config,
    queue: Pending,
    reported: init::Reported,
    superseded: Superseded,
}

impl Nodes {
    /// A node controller running the steps of `config`.
    pub fn new(ctx: Arc<Context>, config: Config) -> Self {
        let queue = Pending::new(ctx.metrics.queue_depth.with_label_values(&["node"]));
        Nodes { ctx, config, queue, reported: init::Reported::default(), superseded: Superseded::default() }
    }

    /// Runs until the future is dropped.
    pub async fn run(self: Arc<Self>) {
        let (store, changes) = queue::watched(
            Api::<CachedNode>::all(self.ctx.client.clone()),
            watcher::Config::default(),
            self.queue.clone(),
            CachedNode::prune,
        );
        let workers = self.config.workers;
        let term = Arc::new(Term { nodes: self, cache: store.clone() });
        Controller::for_stream(changes, store)
            .with_config(kube::runtime::controller::Config::default().concurrency(workers))
            .run(reconcile, reconcile::retry, term)
            .for_each(|_| async {})
            .await;
    }

    /// A snapshot recent enough for `node`: a Node no instance matches may be
    /// newer than the snapshot; a Node that turned NotReady may have lost its
    /// instance (a scale-down), so it is judged on a recent look, not one up to
    /// a sync period old (NotReady Nodes reconciled together share one refresh).
    async fn snapshot_for(&self, node: &Node) -> Result<Arc<Snapshot>, Error> {
        let cloud = &self.ctx.cloud;
        let now = jiff::Timestamp::now();
        let lost = !init::uninitialized(node) && !ready::is_ready(node);
        if init::instance_for(node, &cloud.snapshot()).is_none() {
            cloud.ensure_fresh(fresh_since(node.metadata.creation_timestamp.as_ref(), MISS_REFRESH, now)).await?;
        } else if lost {
            cloud.ensure_fresh(fresh_since(ready::changed_at(node), NOT_READY_FRESHNESS, now)).await?;
        }
        Ok(cloud.snapshot())
    }

    /// The instance of an initialized Node: from the snapshot, else asked by
    /// its providerID (`Ok(None)`: a confirmed 404); `None` without one.
    async fn lookup(&self, node: &Node, found: Option<&Instance>) -> Option<Result<Option<Instance>, String>> {
        if let Some(i) = found {
            return Some(Ok(Some(i.clone())));
        }
        let id = init::provider_id(node)?;
        Some(match self.ctx.cloud.client().get_instance(id).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Runs the enabled steps on `node`, recording its writes' answers in
    /// `writes`; `cache` holds every Node (auto-healing counts those being healed).
    async fn step(&self, node: &Node, cache: &Store<CachedNode>, writes: &Writes) -> Result<Action, Error> {
        let (ctx, steps) = (&*self.ctx, self.config.steps);
        let sync = Action::requeue(self.config.sync_period);
        if init::uninitialized(node) {
            if !steps.init {
                // Nothing else looks at an uninitialized Node; its initialization is a change.
                return Ok(Action::await_change());
            }
            let snapshot = self.snapshot_for(node).await?;
            let found = init::instance_for(node, &snapshot);
            return Ok(match init::initialize(ctx, node, found, &snapshot, &self.reported, writes).await? {
                init::Initialized::Done => sync,
                init::Initialized::NoMatch => Action::requeue(UNMATCHED_RETRY),
            });
        }
        let snapshot = self.snapshot_for(node).await?;
        let Some(lookup) = self.lookup(node, init::instance_for(node, &snapshot)).await else {
            return Ok(sync);
        };
        if steps.lifecycle && lifecycle::follow(ctx, node, &lookup, writes).await? == lifecycle::Followed::Deleted {
            return Ok(Action::await_change());
        }
        if let Ok(Some(instance)) = &lookup {
            let nodepool = snapshot.nodepool_of(instance);
            if steps.heal
                && let Some(nodepool) = nodepool
            {
                heal::heal(ctx, &self.config.heal, node, instance, nodepool, &cache.state(), writes).await?;
            }
            if steps.init {
                init::keep_current(ctx, node, instance, nodepool, writes).await?;
            }
        }
        Ok(sync)
    }
}

/// The controller while this replica leads: the node controller and its cache.
struct Term {
    nodes: Arc<Nodes>,
    cache: Store<CachedNode>,
}

/// One reconcile of a Node, measured as the `node` controller's, unless the
/// cached version is one its own writes replaced.
async fn reconcile(node: Arc<CachedNode>, term: Arc<Term>) -> Result<Action, Error> {
    let nodes = &term.nodes;
    nodes.queue.started(node.as_ref());
    if let Some(skip) = reconcile::skip_superseded(&nodes.ctx.metrics, "node", &nodes.superseded, node.as_ref()) {
        return Ok(skip);
    }
    let writes = Writes::default();
    let result = measured(&nodes.ctx.metrics, "node", nodes.step(&node.to_node(), &term.cache, &writes)).await;
    nodes.superseded.record(node.as_ref(), writes);
    result
}
