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
pub mod templates;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use sks_autoscaler::{
    ClusterSnapshot, NodeInfo, PodInfo, ScaleDownOptions, ScaleUpOptions, Template, UnneededTracker, plan_scale_down,
    plan_scale_up,
};
use sks_kubeclient::events::{EventType, Publisher};
use uuid::Uuid;

use self::metrics::Metrics;
use self::removal::{Nodes, Recovery, Stopped};
use crate::resources::metadata::ScaleChange;
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
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let nodes: Vec<&NodeInfo> = slim_nodes.iter().map(|n| &n.info).collect();
        let pods: Vec<&PodInfo> = slim_pods.iter().map(|p| &p.info).collect();
        let daemonsets = self.cache.daemonset_pods();
        self.follow_provisioning(&pools, &nodes).await;
        let backed_off: BTreeSet<Uuid> = {
            let mut state = self.state();
            let now = Instant::now();
            state.backed_off.retain(|_, until| *until > now);
            state.backed_off.keys().copied().collect()
        };
        let templates: Vec<Template> =
            pools.iter().map(|p| Template::new(templates::spec(p, &self.zone, &nodes), &daemonsets)).collect();
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
        self.scale_up(&pending, &snapshot, &up_templates, &pools).await;
        self.metrics.ran("scaleUp", started.elapsed().as_secs_f64());
        if self.options.scale_down_enabled {
            let started = Instant::now();
            self.scale_down(&snapshot, &templates, &pools, &nodes).await;
            self.metrics.ran("scaleDown", started.elapsed().as_secs_f64());
        }
    }

    /// Notices scale-ups whose nodes did not come in time: the nodepool is
    /// backed off and the failure reported, instead of asked again and again.
    async fn follow_provisioning(&self, pools: &[Autoscaled], nodes: &[&NodeInfo]) {
        let mut timed_out = Vec::new();
        {
            let mut state = self.state();
            for pool in pools {
                let waiting = templates::upcoming(pool, nodes) > 0;
                match (waiting, state.provisioning.get(&pool.id).copied()) {
                    (false, _) => {
                        state.provisioning.remove(&pool.id);
                    }
                    (true, Some(p)) if p.since.elapsed() > self.options.max_node_provision_time => {
                        state.provisioning.remove(&pool.id);
                        state.backed_off.insert(pool.id, Instant::now() + self.options.backoff);
                        timed_out.push(pool.clone());
                    }
                    (true, Some(_)) => {}
                    (true, None) => {
                        state.provisioning.insert(pool.id, Provisioning { since: Instant::now() });
                    }
                }
            }
        }
        for pool in timed_out {
            let note = format!(
                "nodes requested for nodepool {} did not become Ready within {:?}: no scale-up of it for {:?}",
                pool.name, self.options.max_node_provision_time, self.options.backoff
            );
            tracing::warn!(nodepool = %pool.name, "{note}");
            self.metrics.failed_scale_ups.with_label_values(&["timeout"]).inc();
            self.metrics.decided("backoff", "MaxNodeProvisionTime");
            self.event(&nodepool_ref(&pool.id.to_string(), &pool.name), EventType::Warning, "ScaleUpTimedOut", &note)
                .await;
        }
    }

    async fn scale_up(
        &self,
        pending: &[&PodInfo],
        snapshot: &ClusterSnapshot<'_>,
        templates: &[Template],
        pools: &[Autoscaled],
    ) {
        let options = ScaleUpOptions { priorities: self.options.priorities.clone() };
        let plan = plan_scale_up(pending.iter().copied(), snapshot, templates, &options);
        let mut targets: BTreeMap<Uuid, (i64, i64, String)> = BTreeMap::new();
        for inc in &plan.increases {
            let Ok(id) = inc.template.nodepool_id.parse::<Uuid>() else { continue };
            let reason = format!("{} pending pod(s)", inc.pods.len());
            targets.insert(id, (i64::from(inc.from), i64::from(inc.to), reason));
        }
        // Below its minimum (set, or raised, after it was smaller): up to it.
        for pool in pools {
            if pool.size < pool.bounds.min_replicas && !targets.contains_key(&pool.id) {
                targets.insert(
                    pool.id,
                    (pool.size, pool.bounds.min_replicas, "below spec.autoscaling.minReplicas".into()),
                );
            }
        }
        for (id, (from, to, reason)) in &targets {
            let Some(pool) = pools.iter().find(|p| p.id == *id) else { continue };
            let increase = plan.increases.iter().find(|i| i.template.nodepool_id == id.to_string());
            match self.orchestrator.scale_sks_nodepool(self.cluster, *id, *to).await {
                Ok(_) => {
                    tracing::info!(nodepool = %pool.name, from, to, %reason, "scaled up");
                    self.metrics
                        .scaled_up_nodes
                        .with_label_values(&[&pool.name])
                        .inc_by(u64::try_from(to - from).unwrap_or(0));
                    self.metrics.decided("scale_up", "PendingPods");
                    let stamp = now();
                    {
                        let mut state = self.state();
                        state.last_scale_up.insert(id.to_string(), stamp);
                        state.provisioning.insert(*id, Provisioning { since: Instant::now() });
                    }
                    let change = ScaleChange { time: stamp.to_string(), from: *from, to: *to, reason: reason.clone() };
                    if let Err(e) = self.nodepools.record_autoscaling(*id, |s| s.last_scale_up = Some(change)).await {
                        tracing::warn!(nodepool = %pool.name, error = %e.message, "recording a scale-up failed");
                    }
                    let regarding = nodepool_ref(&id.to_string(), &pool.name);
                    let note = increase.map_or_else(
                        || {
                            format!(
                                "Scale-up: setting group {} size to {to} instead of {from} (max: {})",
                                pool.name, pool.bounds.max_replicas
                            )
                        },
                        sks_autoscaler::scale_up::Increase::pool_message,
                    );
                    self.event(&regarding, EventType::Normal, "ScaledUpGroup", &note).await;
                    if let Some(inc) = increase {
                        let message = inc.pod_message();
                        for pod in &inc.pods {
                            self.event(&pod_ref(pod), EventType::Normal, "TriggeredScaleUp", &message).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(nodepool = %pool.name, error = %e, "a scale-up failed; backing the nodepool off");
                    self.metrics.failed_scale_ups.with_label_values(&["cloudProviderError"]).inc();
                    self.state()
                        .backed_off
                        .insert(*id, Instant::now() + self.options.backoff.min(Duration::from_secs(30)));
                    let note = format!("scaling nodepool {} to {to} failed: {e}", pool.name);
                    self.event(
                        &nodepool_ref(&id.to_string(), &pool.name),
                        EventType::Warning,
                        "FailedToScaleUpGroup",
                        &note,
                    )
                    .await;
                }
            }
        }
        for unhelped in &plan.unhelped {
            let message = unhelped.message();
            let due = {
                let mut state = self.state();
                let key = unhelped.pod.uid.to_string();
                let due = state.reported.get(&key).is_none_or(|(m, at)| *m != message || at.elapsed() > REPORT_EVERY);
                if due {
                    state.reported.insert(key, (message.clone(), Instant::now()));
                }
                due
            };
            if due {
                self.metrics.decided("not_triggered", "NoNodepoolFits");
                self.event(&pod_ref(unhelped.pod), EventType::Normal, "NotTriggerScaleUp", &message).await;
            }
        }
        {
            let live: BTreeSet<String> = pending.iter().map(|p| p.uid.to_string()).collect();
            self.state().reported.retain(|uid, _| live.contains(uid));
        }
        // ScalingLimited: pools at their maximum with pods waiting for them.
        let limited: BTreeSet<&str> = plan.limited.iter().map(|t| t.nodepool_id.as_str()).collect();
        for pool in pools {
            let id = pool.id.to_string();
            let message = limited.contains(id.as_str()).then(|| {
                format!(
                    "pods wait: nodepool {} is at spec.autoscaling.maxReplicas ({})",
                    pool.name, pool.bounds.max_replicas
                )
            });
            if let Err(e) = self.nodepools.record_autoscaling(pool.id, |s| s.limited = message).await {
                tracing::debug!(nodepool = %pool.name, error = %e.message, "recording ScalingLimited failed");
            }
        }
    }

    async fn scale_down(
        self: &Arc<Self>,
        snapshot: &ClusterSnapshot<'_>,
        templates: &[Template],
        pools: &[Autoscaled],
        nodes: &[&NodeInfo],
    ) {
        // Nodepools with a node being replaced keep their nodes: the size is the replacement's.
        let replacing: BTreeSet<&str> =
            nodes.iter().filter(|n| n.replacement.is_some()).filter_map(|n| n.nodepool_id()).collect();
        let templates: Vec<Template> =
            templates.iter().filter(|t| !replacing.contains(t.nodepool_id.as_str())).cloned().collect();
        let pdbs = self.cache.pdbs();
        let mut options = self.options.scale_down.clone();
        let plan = {
            let mut state = self.state();
            options.last_scale_up = state.last_scale_up.clone();
            plan_scale_down(snapshot, &templates, &pdbs, &mut state.unneeded, now(), &options)
        };
        self.metrics.unneeded_nodes.set(i64::try_from(plan.unneeded.len()).unwrap_or(i64::MAX));
        for (_, why) in &plan.unremovable {
            self.metrics.decided("unremovable", why.as_str());
        }
        for removal in plan.removals {
            let name = removal.node.name.to_string();
            let Some(pool) = pools.iter().find(|p| p.id.to_string() == removal.template.nodepool_id).cloned() else {
                continue;
            };
            let Some(instance) = removal.node.instance.as_deref().and_then(|i| i.parse::<Uuid>().ok()) else {
                continue;
            };
            if !self.state().removing.insert(name.clone()) {
                continue;
            }
            let pods: Vec<(String, String)> = snapshot
                .node(&name)
                .map(|n| {
                    n.pods
                        .iter()
                        .filter(|p| !p.daemonset && !p.mirror)
                        .map(|p| (p.namespace.to_string(), p.name.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let reason = if removal.is_empty() { "empty" } else { "underutilized" };
            let utilization = removal.utilization;
            let me = Arc::clone(self);
            tokio::spawn(async move {
                me.remove(&name, &pool, instance, pods, reason, utilization).await;
                me.state().removing.remove(&name);
                me.state().unneeded.forget(&name);
            });
        }
    }

    /// Removes node `name` (instance `instance` of `pool`), write-ahead.
    async fn remove(
        &self,
        name: &str,
        pool: &Autoscaled,
        instance: Uuid,
        pods: Vec<(String, String)>,
        reason: &str,
        utilization: f64,
    ) {
        let regarding = nodepool_ref(&pool.id.to_string(), &pool.name);
        let result = self.remove_steps(name, pool, instance, &pods).await;
        match result {
            Ok(size) => {
                let note = format!(
                    "Scale-down: node {name} removed ({reason}, utilization {utilization:.2}); nodepool {} {} -> {}",
                    pool.name,
                    size,
                    size - 1
                );
                tracing::info!(node = %name, nodepool = %pool.name, reason, "scaled down");
                self.metrics.scaled_down_nodes.with_label_values(&[&pool.name, reason]).inc();
                self.metrics.decided("scale_down", reason);
                let change = ScaleChange {
                    time: now().to_string(),
                    from: size,
                    to: size - 1,
                    reason: format!("node {name} {reason} (utilization {utilization:.2})"),
                };
                if let Err(e) = self.nodepools.record_autoscaling(pool.id, |s| s.last_scale_down = Some(change)).await {
                    tracing::warn!(nodepool = %pool.name, error = %e.message, "recording a scale-down failed");
                }
                self.event(&node_ref(name), EventType::Normal, "ScaleDown", &note).await;
                self.event(&regarding, EventType::Normal, "ScaleDown", &note).await;
            }
            Err(why) => {
                tracing::warn!(node = %name, nodepool = %pool.name, error = %why, "a scale-down stopped; the node is put back in service");
                self.metrics.decided(
                    "scale_down_failed",
                    match &why {
                        Stopped::Drain(_) => "DrainFailed",
                        Stopped::Stale(_) => "Stale",
                        Stopped::Kube(_) | Stopped::Cloud(_) => "ApiError",
                    },
                );
                if let Err(e) = self.nodes.restore(name).await {
                    tracing::warn!(node = %name, error = %e, "putting the node back in service failed; retried after a restart or the next lead");
                }
                let note = format!("Scale-down of node {name} stopped and the node is back in service: {why}");
                self.event(&node_ref(name), EventType::Warning, "ScaleDownFailed", &note).await;
            }
        }
    }

    /// The steps of a removal; the pool's size before it, once its instance is evicted.
    async fn remove_steps(
        &self,
        name: &str,
        pool: &Autoscaled,
        instance: Uuid,
        pods: &[(String, String)],
    ) -> Result<i64, Stopped> {
        let size = self.orchestrator.get_sks_nodepool(self.cluster, pool.id).await?.size;
        if size - 1 < pool.bounds.min_replicas {
            return Err(Stopped::Stale(format!(
                "nodepool {} has {size} nodes, its minimum is {}",
                pool.name, pool.bounds.min_replicas
            )));
        }
        self.nodes.mark(name, pool.id, size).await?;
        self.event(
            &node_ref(name),
            EventType::Normal,
            "ScaleDown",
            &format!("marked the node as toBeDeleted/unschedulable; evicting {} pod(s)", pods.len()),
        )
        .await;
        let evicted = self.nodes.evict(pods, self.options.max_pod_eviction_time).await?;
        self.metrics.evicted_pods.inc_by(evicted);
        self.wait_gone(name, self.options.max_pod_eviction_time).await?;
        // The size again, right before: a manual scale meanwhile must not take the pool below its minimum.
        let size = self.orchestrator.get_sks_nodepool(self.cluster, pool.id).await?.size;
        if size - 1 < pool.bounds.min_replicas {
            return Err(Stopped::Stale(format!(
                "nodepool {} has {size} nodes, its minimum is {}",
                pool.name, pool.bounds.min_replicas
            )));
        }
        self.orchestrator.evict_sks_nodepool_members(self.cluster, pool.id, vec![instance]).await?;
        Ok(size)
    }

    /// Waits until node `name` runs no pod but DaemonSet and mirror pods.
    async fn wait_gone(&self, name: &str, timeout: Duration) -> Result<(), Stopped> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self
                .cache
                .pods()
                .iter()
                .filter(|p| p.info.node_name.as_deref() == Some(name) && !p.info.daemonset && !p.info.mirror)
                .count();
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Stopped::Drain(format!("{left} pod(s) still on node {name} after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After gaining the lead: removals found recorded on Nodes are finished
    /// (their instance is gone) or undone (it is not), never left half done.
    async fn recover(&self) {
        let recorded: Vec<(String, Uuid, Option<String>)> = self
            .cache
            .nodes()
            .iter()
            .filter(|n| !self.state().removing.contains(&*n.info.name))
            .filter_map(|n| {
                let (pool, _) = removal::parse_record(n.info.removing.as_deref()?)?;
                Some((n.info.name.to_string(), pool, n.info.instance.as_deref().map(str::to_owned)))
            })
            .collect();
        for (name, pool, instance) in recorded {
            let in_pool = match self.pool_members(pool).await {
                Ok(members) => instance.is_some_and(|i| members.iter().any(|m| m.to_string() == i)),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot tell whether a recorded removal happened; retrying");
                    return;
                }
            };
            match removal::after_restart(in_pool) {
                Recovery::Restore => {
                    tracing::info!(node = %name, "a removal was interrupted before its instance was evicted; the node is back in service");
                    if let Err(e) = self.nodes.restore(&name).await {
                        tracing::warn!(node = %name, error = %e, "putting the node back in service failed; retrying");
                        return;
                    }
                }
                Recovery::Done => {
                    tracing::info!(node = %name, "a removal was interrupted after its instance was evicted; nothing left to do");
                }
            }
        }
        self.state().recovered = true;
    }

    /// The instance ids of nodepool `id`'s members.
    async fn pool_members(&self, id: Uuid) -> Result<Vec<Uuid>, orchestrator::Error> {
        let np = match self.orchestrator.get_sks_nodepool(self.cluster, id).await {
            Ok(np) => np,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(pool) = np.instance_pool else { return Ok(Vec::new()) };
        let members = self.orchestrator.get_instance_pool(pool.id).await?;
        Ok(members.instances.iter().map(|r| r.id).collect())
    }
}
