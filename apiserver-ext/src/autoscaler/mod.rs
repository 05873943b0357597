//! Nodepool autoscaling, built into sks-apiserver next to the NodePools it
//! scales (their `spec.autoscaling` is its configuration, their
//! `status.autoscaling` its report) and the upgrade roll it must not fight.
//! The replica that holds the upgrade Lease acts; the others only watch.
//!
//! The decisions are the pure `sks-autoscaler` crate's; this is the shell:
//! it watches Pods, Nodes, DaemonSets and PodDisruptionBudgets once
//! (`cache`), wakes on a pod turning unschedulable, batches a burst into one
//! decision, asks the orchestrator once per nodepool, reports as
//! cluster-autoscaler does (events, metrics), and removes unneeded nodes
//! write-ahead (`removal`).
//!
//! Nodepools it leaves alone: those an upgrade is rolling (the roll owns their
//! size until done), and, for scale-down, those with a node being replaced by
//! auto-heal or the roll. A node being replaced counts neither as capacity
//! nor as removable; its replacement counts as capacity on its way.

mod cache;
pub mod metrics;
pub mod removal;
mod scale_down;
mod scale_up;
pub mod templates;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use sks_autoscaler::{ClusterSnapshot, NodeInfo, PodInfo, ScaleDownOptions, SlimNode, Template, UnneededTracker};
use sks_kubeclient::events::{EventType, Publisher};
use uuid::Uuid;

use self::metrics::Metrics;
use self::removal::Nodes;
use crate::resources::nodepool::NodePools;
use crate::resources::nodepool::autoscaling::Autoscaled;
use crate::resources::nodepool::def::{GROUP, VERSION};
use crate::resources::upgrade::Upgrades;

/// The autoscaler's settings (cluster-autoscaler's flags, with its defaults
/// unless said otherwise).
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the cluster is looked at without a trigger (CA: 10 s; the
    /// loop is event-driven and cheap, so 1 s by default).
    pub scan_interval: Duration,
    /// A burst of pods turning unschedulable is one decision: the loop waits
    /// until none has come for this long...
    pub batch_quiet: Duration,
    /// ...but never longer than this after the first.
    pub batch_max: Duration,
    /// Scale-down rules.
    pub scale_down: ScaleDownOptions,
    /// Whether nodes are removed at all.
    pub scale_down_enabled: bool,
    /// How long requested nodes may take to become Ready before the scale-up
    /// is given up on and the nodepool backed off (CA: 15 min).
    pub max_node_provision_time: Duration,
    /// How long a backed-off nodepool is left out of scale-ups.
    pub backoff: Duration,
    /// How long a removal waits for its pods to be evicted (CA's --max-pod-eviction-time, 2 min).
    pub max_pod_eviction_time: Duration,
    /// The priority expander's priorities, by nodepool name (higher wins; least waste breaks ties).
    pub priorities: BTreeMap<String, i32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scan_interval: Duration::from_secs(1),
            batch_quiet: Duration::from_millis(100),
            batch_max: Duration::from_millis(500),
            scale_down: ScaleDownOptions::default(),
            scale_down_enabled: true,
            max_node_provision_time: Duration::from_secs(15 * 60),
            backoff: Duration::from_secs(5 * 60),
            max_pod_eviction_time: Duration::from_secs(120),
            priorities: BTreeMap::new(),
        }
    }
}

/// A scale-up whose nodes are not all Ready yet.
#[derive(Debug, Clone, Copy)]
struct Provisioning {
    since: Instant,
}

/// What the loop remembers between rounds.
#[derive(Default)]
struct State {
    unneeded: UnneededTracker,
    /// Last scale-up of each nodepool, by id (for `delay_after_add`).
    last_scale_up: BTreeMap<String, jiff::Timestamp>,
    provisioning: BTreeMap<Uuid, Provisioning>,
    /// Nodepools left out of scale-ups until then.
    backed_off: BTreeMap<Uuid, Instant>,
    /// Nodes being removed now.
    removing: BTreeSet<String>,
    /// The last NotTriggerScaleUp message per pod uid, and when, so a pod is not told every round.
    reported: HashMap<String, (String, Instant)>,
    /// Whether removals found recorded after gaining the lead were dealt with.
    recovered: bool,
}

/// How often the same NotTriggerScaleUp is repeated to a pod (CA: at most every 10 minutes... per pod).
const REPORT_EVERY: Duration = Duration::from_secs(600);

/// The autoscaler.
pub struct Autoscaler {
    options: Options,
    orchestrator: orchestrator::Client,
    cluster: Uuid,
    zone: String,
    nodepools: Arc<NodePools>,
    upgrades: Arc<Upgrades>,
    cache: cache::Cache,
    nodes: Nodes,
    events: Publisher,
    metrics: Metrics,
    state: Mutex<State>,
    /// One per nodepool: removals check its size and evict from it one at a
    /// time, so two of them never both see room above the minimum.
    pool_locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

fn pod_ref(p: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(p.namespace.to_string()),
        name: Some(p.name.to_string()),
        uid: Some(p.uid.to_string()),
        ..Default::default()
    }
}

fn nodepool_ref(id: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some("NodePool".into()),
        name: Some(name.to_owned()),
        uid: Some(id.to_owned()),
        ..Default::default()
    }
}

fn node_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid: Some(name.to_owned()),
        ..Default::default()
    }
}

/// The nodes as plans must see them: one this replica is removing counts as
/// being deleted before the watch shows its mark, so a round in between
/// neither plans it again nor counts it towards its nodepool's minimum.
fn as_planned<'a>(nodes: &'a [Arc<SlimNode>], removing: &BTreeSet<String>) -> Vec<Cow<'a, NodeInfo>> {
    nodes
        .iter()
        .map(|n| match removing.contains(&*n.info.name) && !n.info.being_deleted() {
            true => Cow::Owned(NodeInfo { removing: Some("in progress".into()), ..n.info.clone() }),
            false => Cow::Borrowed(&n.info),
        })
        .collect()
}

/// When a Node must have been created to be Ready now, `startup` ago:
/// older NotReady Nodes are broken, not on their way.
fn started_by(startup: Duration) -> jiff::Timestamp {
    let startup = jiff::SignedDuration::try_from(startup).unwrap_or(jiff::SignedDuration::MAX);
    now().checked_sub(startup).unwrap_or(jiff::Timestamp::MIN)
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

impl Autoscaler {
    /// An autoscaler of `cluster`'s nodepools; call [`Autoscaler::run`].
    #[expect(clippy::too_many_arguments, reason = "the shell's collaborators, each built once at start")]
    pub fn new(
        options: Options,
        kube: kube::Client,
        orchestrator: orchestrator::Client,
        cluster: Uuid,
        zone: String,
        nodepools: Arc<NodePools>,
        upgrades: Arc<Upgrades>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let identity = sks_lease::default_identity("sks-apiserver");
        Arc::new(Autoscaler {
            options,
            cache: cache::Cache::start(&kube),
            nodes: Nodes::new(kube.clone()),
            events: Publisher::new(kube, "sks-autoscaler", &identity),
            orchestrator,
            cluster,
            zone,
            nodepools,
            upgrades,
            metrics,
            state: Mutex::new(State::default()),
            pool_locks: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lock serializing removals from nodepool `id`.
    fn pool_lock(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pool_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(id).or_default())
    }

    async fn event(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        if let Err(e) = self.events.publish(regarding, type_, reason, note).await {
            tracing::debug!(error = %e, reason, "publishing an autoscaler event failed");
        }
    }

    /// Runs until the process ends, acting while `leading` is true.
    pub async fn run(self: Arc<Self>, leading: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.cache.changed() => self.batch().await,
                () = tokio::time::sleep(self.options.scan_interval) => {}
            }
            if !*leading.borrow() {
                self.state().recovered = false;
                continue;
            }
            if !self.cache.synced() || !sks_rest::storage::Storage::ready(&*self.nodepools) {
                continue;
            }
            let started = Instant::now();
            if !self.state().recovered {
                self.recover().await;
            }
            self.round().await;
            self.metrics.ran("main", started.elapsed().as_secs_f64());
        }
    }

    /// Waits out a burst: until nothing changed for `batch_quiet`, at most `batch_max`.
    async fn batch(&self) {
        let deadline = Instant::now() + self.options.batch_max;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::select! {
                () = self.cache.changed() => {}
                () = tokio::time::sleep(self.options.batch_quiet.min(left)) => return,
            }
        }
    }

    /// One look at the cluster: scale up what pending pods need, then down what is unneeded.
    async fn round(self: &Arc<Self>) {
        let pools = self.nodepools.autoscaled();
        let rolling = self.upgrades.rolling_nodepools();
        let pools: Vec<Autoscaled> = pools.into_iter().filter(|p| !rolling.contains(&p.name)).collect();
        let slim_nodes = self.cache.nodes();
        let slim_pods = self.cache.pods();
        let removing = self.state().removing.clone();
        let planned = as_planned(&slim_nodes, &removing);
        let nodes: Vec<&NodeInfo> = planned.iter().map(AsRef::as_ref).collect();
        let pods: Vec<&PodInfo> = slim_pods.iter().map(|p| &p.info).collect();
        let daemonsets = self.cache.daemonset_pods();
        self.follow_provisioning(&pools, &nodes).await;
        let backed_off: BTreeSet<Uuid> = {
            let mut state = self.state();
            let now = Instant::now();
            state.backed_off.retain(|_, until| *until > now);
            state.backed_off.keys().copied().collect()
        };
        let started_by = started_by(self.options.max_node_provision_time);
        let templates: Vec<Template> = pools
            .iter()
            .map(|p| Template::new(templates::spec(p, &self.zone, &nodes, started_by), &daemonsets))
            .collect();
        let snapshot =
            ClusterSnapshot::new(nodes.iter().copied(), pods.iter().copied().filter(|p| p.node_name.is_some()));
        let pending: Vec<&PodInfo> = pods.iter().copied().filter(|p| p.is_unschedulable()).collect();
        self.metrics.unschedulable_pods.set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        let up_templates: Vec<Template> = templates
            .iter()
            .filter(|t| !backed_off.contains(&t.nodepool_id.parse().unwrap_or_default()))
            .cloned()
            .collect();
        let started = Instant::now();
        let pods_landing = self.scale_up(&pending, &snapshot, &up_templates, &pools).await;
        self.metrics.ran("scaleUp", started.elapsed().as_secs_f64());
        if self.options.scale_down_enabled {
            let started = Instant::now();
            self.scale_down(&snapshot, &templates, &pools, &nodes, pods_landing).await;
            self.metrics.ran("scaleDown", started.elapsed().as_secs_f64());
        }
    }
}
