//! Scale-down: which unneeded nodes go now, each removed write-ahead in
//! its own task (see `removal`), and what a new leader finds half done.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use sks_autoscaler::drain::{BlockingReason, Disposition, disposition};
use sks_autoscaler::pdb::Budgets;
use sks_autoscaler::{ClusterSnapshot, NodeInfo, SlimPod, Template, events, plan_scale_down};
use sks_kubeclient::events::EventType;
use uuid::Uuid;

use super::removal::{self, Recovery, Stopped};
use super::{Autoscaler, node_ref, nodepool_ref, now, pod_ref};
use crate::resources::metadata::ScaleChange;
use crate::resources::nodepool::autoscaling::Autoscaled;

impl Autoscaler {
    pub(super) async fn scale_down(
        self: &Arc<Self>,
        snapshot: &ClusterSnapshot<'_>,
        templates: &[Template],
        pools: &[Autoscaled],
        nodes: &[&NodeInfo],
        pods_landing: bool,
    ) {
        // Nodepools with a node being replaced keep their nodes: the size is the replacement's.
        let replacing: BTreeSet<&str> =
            nodes.iter().filter(|n| n.replacement.is_some()).filter_map(|n| n.nodepool_id()).collect();
        let templates: Vec<Template> =
            templates.iter().filter(|t| !replacing.contains(t.nodepool_id.as_str())).cloned().collect();
        let pdbs = self.cache.pdbs();
        let mut options = self.options.scale_down.clone();
        options.pods_landing = pods_landing;
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
            let pods: Vec<ObjectReference> = snapshot
                .node(&name)
                .map(|n| n.pods.iter().filter(|p| !p.daemonset && !p.mirror).map(|p| pod_ref(p)).collect())
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
    pub(super) async fn remove(
        &self,
        name: &str,
        pool: &Autoscaled,
        instance: Uuid,
        pods: Vec<ObjectReference>,
        reason: &str,
        utilization: f64,
    ) {
        let regarding = nodepool_ref(&pool.id.to_string(), &pool.name);
        let result = self.remove_steps(name, pool, instance, &pods).await;
        match result {
            Ok(size) => {
                // Scale-ups plan from the size just set, not from the cache's older one.
                if let Err(e) = self.nodepools.refresh().await {
                    tracing::warn!(error = %e, "refreshing nodepools after a scale-down failed");
                }
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
                self.event(&node_ref(name), EventType::Normal, events::SCALE_DOWN, &note).await;
                self.event(&regarding, EventType::Normal, events::SCALE_DOWN, &note).await;
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
                let note = match &why {
                    Stopped::Drain(_) => format!("{}: {why}; the node is back in service", events::DRAIN_FAILED),
                    _ => format!("Scale-down of node {name} stopped and the node is back in service: {why}"),
                };
                self.event(&node_ref(name), EventType::Warning, events::SCALE_DOWN_FAILED, &note).await;
            }
        }
    }

    /// The steps of a removal; the pool's size before it, once its instance is evicted.
    pub(super) async fn remove_steps(
        &self,
        name: &str,
        pool: &Autoscaled,
        instance: Uuid,
        pods: &[ObjectReference],
    ) -> Result<i64, Stopped> {
        let size = self.orchestrator.get_sks_nodepool(self.cluster, pool.id).await?.size;
        if size - 1 < pool.bounds.min_replicas {
            return Err(Stopped::Stale(format!(
                "nodepool {} has {size} nodes, its minimum is {}",
                pool.name, pool.bounds.min_replicas
            )));
        }
        self.nodes.mark(name, pool.id, size).await?;
        self.event(&node_ref(name), EventType::Normal, events::SCALE_DOWN, events::MARKED_FOR_DELETION).await;
        self.drain(name, pods).await?;
        // The size again, right before, and one removal at a time: neither a
        // manual scale meanwhile nor another removal may take the pool below its minimum.
        let lock = self.pool_lock(pool.id);
        let _one_at_a_time = lock.lock().await;
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

    /// Evicts the pods of node `name`: `planned`, then any the cache shows
    /// there that were bound before the taint and were not in the plan (a
    /// ReplicaSet's replacement landing on a node chosen as empty), until the
    /// node runs no pod but DaemonSet and mirror pods. A newcomer that must
    /// not be evicted (no controller, local storage...) stops the removal:
    /// the node goes back in service rather than lose it.
    async fn drain(&self, name: &str, planned: &[ObjectReference]) -> Result<(), Stopped> {
        let timeout = self.options.max_pod_eviction_time;
        let deadline = Instant::now() + timeout;
        let mut asked: BTreeSet<String> = BTreeSet::new();
        for pod in planned {
            let (Some(namespace), Some(pod_name)) = (&pod.namespace, &pod.name) else { continue };
            asked.insert(format!("{namespace}/{pod_name}"));
            self.evict(pod, deadline).await?;
        }
        loop {
            let pdbs = self.cache.pdbs();
            let budgets = Budgets::new(&pdbs);
            let on_node: Vec<Arc<SlimPod>> = self
                .cache
                .pods()
                .into_iter()
                .filter(|p| p.info.node_name.as_deref() == Some(name) && !p.info.daemonset && !p.info.mirror)
                .filter(|p| !p.info.phase.is_terminal())
                .collect();
            // The cache may not show a pod bound a moment ago yet; the API does.
            if on_node.is_empty() && self.nodes.pods_to_move(name).await?.is_empty() {
                return Ok(());
            }
            for pod in on_node.iter().map(|p| &p.info) {
                if asked.contains(&pod.key()) {
                    continue;
                }
                match disposition(pod, &budgets) {
                    Disposition::Stays => {}
                    // Its budget is waited for by the eviction, as for the planned pods.
                    Disposition::Moves | Disposition::Blocks(BlockingReason::NotEnoughPdb) => {
                        asked.insert(pod.key());
                        self.evict(&pod_ref(pod), deadline).await?;
                    }
                    Disposition::Blocks(why) => {
                        return Err(Stopped::Drain(format!(
                            "pod {} landed on node {name} after it was chosen and cannot move ({why})",
                            pod.key()
                        )));
                    }
                }
            }
            if Instant::now() > deadline {
                let left = on_node.len();
                return Err(Stopped::Drain(format!("{left} pod(s) still on node {name} after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Evicts `pod` through the Eviction API (budgets waited for until `deadline`).
    async fn evict(&self, pod: &ObjectReference, deadline: Instant) -> Result<(), Stopped> {
        let (Some(namespace), Some(pod_name)) = (&pod.namespace, &pod.name) else { return Ok(()) };
        if self.nodes.evict(namespace, pod_name, deadline).await? {
            self.metrics.evicted_pods.inc();
            self.event(pod, EventType::Normal, events::SCALE_DOWN, events::DELETING_POD).await;
        }
        Ok(())
    }

    /// After gaining the lead: removals found recorded on Nodes are finished
    /// (their instance is gone) or undone (it is not), never left half done.
    pub(super) async fn recover(&self) {
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
    pub(super) async fn pool_members(&self, id: Uuid) -> Result<Vec<Uuid>, orchestrator::Error> {
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
