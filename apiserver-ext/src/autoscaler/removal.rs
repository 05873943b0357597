//! Removing one node, write-ahead as auto-heal replaces one: the Node is
//! first marked (the `scale-down-removing` record with its nodepool and
//! size, the `ToBeDeletedByClusterAutoscaler:NoSchedule` taint, cordoned),
//! then its pods are evicted through the Eviction API (a PodDisruptionBudget's
//! 429 is waited out, up to a timeout), then exactly its instance is evicted
//! from the nodepool (the pool shrinks by one, no other node is touched); the
//! Node, NotReady once its instance is gone, is deleted by sks-ccm. Whatever
//! fails, and whatever a restart finds half done, ends with the node back in
//! service (taint, cordon and record removed) or its instance gone: never a
//! pool one node too small.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sks_autoscaler::{PodInfo, SlimPod};
use sks_keys::{annotation, taint};
use uuid::Uuid;

/// The Node annotation recording a removal under way: `<nodepool id>:<size before>`.
pub fn record(nodepool: Uuid, size: i64) -> String {
    format!("{nodepool}:{size}")
}

/// The nodepool and size of a removal record.
pub fn parse_record(value: &str) -> Option<(Uuid, i64)> {
    let (nodepool, size) = value.split_once(':')?;
    Some((nodepool.parse().ok()?, size.parse().ok()?))
}

/// What a restarted leader does with a removal it finds recorded on a Node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The instance is still a member of its nodepool: put the node back in
    /// service; the next round decides afresh.
    Restore,
    /// The instance is gone: the removal happened; sks-ccm deletes the Node.
    Done,
}

/// What to do with a recorded removal whose instance is (or is not) still in its pool.
pub fn after_restart(instance_in_pool: bool) -> Recovery {
    if instance_in_pool { Recovery::Restore } else { Recovery::Done }
}

/// The taints of a Node being removed: its own plus ours, as cluster-autoscaler writes it.
pub fn marked_taints(current: &[Taint], now: jiff::Timestamp) -> Vec<Taint> {
    let mut out: Vec<Taint> = current.iter().filter(|t| t.key != taint::TO_BE_DELETED).cloned().collect();
    out.push(Taint {
        key: taint::TO_BE_DELETED.to_owned(),
        value: Some(now.as_second().to_string()),
        effect: "NoSchedule".to_owned(),
        time_added: None,
    });
    out
}

/// The taints of a Node put back in service: its own without ours.
pub fn restored_taints(current: &[Taint]) -> Vec<Taint> {
    current.iter().filter(|t| t.key != taint::TO_BE_DELETED).cloned().collect()
}

/// Why a removal stopped before the instance was evicted.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// The Kubernetes API refused or failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The orchestrator refused or failed.
    #[error("orchestrator: {0}")]
    Cloud(#[from] orchestrator::Error),
    /// Pods could not all be evicted in time.
    #[error("{0}")]
    Drain(String),
    /// The removal no longer holds (the pool shrank meanwhile, the node changed).
    #[error("{0}")]
    Stale(String),
}

/// The Kubernetes side of a removal: the Node and its pods.
pub struct Nodes {
    nodes: Api<Node>,
    client: kube::Client,
}

impl Nodes {
    /// Nodes of the cluster `client` talks to.
    pub fn new(client: kube::Client) -> Self {
        Nodes { nodes: Api::all(client.clone()), client }
    }

    /// Marks Node `name` for removal (record, taint, cordon), if it is
    /// still as the decision saw it: not cordoned, not marked, not replaced.
    pub async fn mark(&self, name: &str, nodepool: Uuid, size: i64) -> Result<(), Stopped> {
        let node = self.nodes.get(name).await?;
        let spec = node.spec.clone().unwrap_or_default();
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        if spec.unschedulable == Some(true)
            || annotations.contains_key(annotation::SCALE_DOWN_REMOVING)
            || annotations.contains_key(annotation::AUTO_HEAL_REPLACING)
            || annotations.contains_key(annotation::UPGRADE_REPLACING)
        {
            return Err(Stopped::Stale(format!("node {name} changed since it was found unneeded")));
        }
        let taints = marked_taints(spec.taints.as_deref().unwrap_or_default(), jiff::Timestamp::now());
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version,
                "annotations": {annotation::SCALE_DOWN_REMOVING: record(nodepool, size)}},
            "spec": {"unschedulable": true, "taints": taints},
        });
        self.nodes.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// Puts Node `name` back in service: record, taint and cordon removed.
    pub async fn restore(&self, name: &str) -> Result<(), kube::Error> {
        let node = match self.nodes.get(name).await {
            Ok(n) => n,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let spec = node.spec.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version,
                "annotations": {annotation::SCALE_DOWN_REMOVING: Value::Null}},
            "spec": {"unschedulable": Value::Null, "taints": restored_taints(spec.taints.as_deref().unwrap_or_default())},
        });
        self.nodes.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// The pods the API shows on Node `name` that a drain must move (not
    /// DaemonSet or mirror pods, not ended), as `namespace/name`: read from
    /// the API, not the cache, as the last look before the instance goes.
    pub async fn pods_to_move(&self, name: &str) -> Result<Vec<String>, kube::Error> {
        let pods: Api<SlimPod> = Api::all(self.client.clone());
        let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={name}"))).await?;
        Ok(on_node
            .items
            .iter()
            .map(|p| &p.info)
            .filter(|p| !p.daemonset && !p.mirror && !p.phase.is_terminal())
            .map(PodInfo::key)
            .collect())
    }

    /// Evicts pod `namespace/name` through the Eviction API, retrying while a
    /// PodDisruptionBudget refuses (429) until `deadline`; answers whether it
    /// was evicted (false: it was gone already).
    pub async fn evict(&self, namespace: &str, name: &str, deadline: Instant) -> Result<bool, Stopped> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        loop {
            match api.evict(name, &EvictParams::default()).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
                Err(kube::Error::Api(e)) if e.code == 429 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(kube::Error::Api(e)) if e.code == 429 => {
                    return Err(Stopped::Drain(format!(
                        "pod {namespace}/{name} could not be evicted in time: {}",
                        e.message
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(key: &str) -> Taint {
        Taint { key: key.into(), value: None, effect: "NoSchedule".into(), time_added: None }
    }

    #[test]
    fn records_round_trip_and_recovery_keeps_the_pool_whole() {
        let np = Uuid::new_v4();
        assert_eq!(parse_record(&record(np, 4)), Some((np, 4)));
        assert_eq!(parse_record("garbage"), None);
        assert_eq!(after_restart(true), Recovery::Restore, "instance still there: back in service");
        assert_eq!(after_restart(false), Recovery::Done, "instance gone: the pool already shrank by it");
    }

    #[test]
    fn marking_adds_one_taint_and_restoring_removes_only_it() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let own = [t("dedicated")];
        let marked = marked_taints(&own, now);
        assert_eq!(marked.len(), 2);
        assert_eq!(marked[1].key, taint::TO_BE_DELETED);
        assert_eq!(marked[1].value.as_deref(), Some("1796083200"));
        assert_eq!(marked_taints(&marked, now).len(), 2, "marking twice keeps one");
        assert_eq!(restored_taints(&marked), own);
    }
}
