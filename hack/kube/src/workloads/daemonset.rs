//! The DaemonSet controller (kubernetes' `pkg/controller/daemon`): one pod
//! per node the pod should run on, by the controller's own predicates
//! (`NodeShouldRunDaemonPod`: the template's node selector and required
//! affinity, the node's NoSchedule and NoExecute taints against the
//! template's tolerations plus those the controller adds), created with a
//! required node affinity `metadata.name In [<node>]` for the scheduler to
//! honour (the scheduler binds it); a pod on a node that should no longer
//! run one (or a NoExecute taint it does not tolerate) is deleted, as are
//! extra pods, failed pods (replaced) and pods of an older template (the
//! update deletes them all at once, not `maxUnavailable` at a time).
//! Matching reuses `sks_autoscaler`'s selectors and tolerations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Value, json};
use sks_autoscaler::taints::{Effect, Taint, tolerated};
use sks_autoscaler::{NodeInfo, PodInfo};
use sks_rest::storage::Storage as _;

use super::{Cluster, Wake, controlled_by, deleting, int, log_failure, name, template_hash};
use crate::conditions;

/// The label of a daemon pod's template revision.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// The label of the DaemonSet generation a daemon pod was made from.
const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The tolerations the DaemonSet controller adds to its pods (`AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(host_network: bool) -> Vec<Value> {
    let mut out = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        out.push(
            json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}),
        );
    }
    out
}

/// Adds the daemon tolerations `spec` lacks (same key, operator and effect).
fn add_tolerations(spec: &mut Value) {
    let host_network = spec["hostNetwork"] == true;
    let mut list = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for t in daemon_tolerations(host_network) {
        let same = |x: &Value| x["key"] == t["key"] && x["effect"] == t["effect"] && x["operator"] == t["operator"];
        if !list.iter().any(same) {
            list.push(t);
        }
    }
    spec["tolerations"] = json!(list);
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the spec's required node
/// affinity pins the pod to `node` (each term's `matchFields` replaced, or one term added).
fn pin_to_node(spec: &mut Value, node: &str) {
    let field = json!([{"key": "metadata.name", "operator": "In", "values": [node]}]);
    let required = &mut spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    let terms = required["nodeSelectorTerms"].as_array_mut().filter(|t| !t.is_empty());
    match terms {
        Some(terms) => {
            for t in terms {
                t["matchFields"] = field.clone();
            }
        }
        None => required["nodeSelectorTerms"] = json!([{"matchFields": field}]),
    }
}

/// The pod `ds` runs on `node`, its template revision `hash`.
pub fn daemon_pod(ds: &Value, node: &str, hash: &str) -> Value {
    let mut pod = super::replicaset::pod_from_template(ds, "apps/v1", "DaemonSet");
    pod["metadata"]["labels"][REVISION_HASH] = json!(hash);
    pod["metadata"]["labels"][TEMPLATE_GENERATION] = json!(int(ds, "/metadata/generation").to_string());
    add_tolerations(&mut pod["spec"]);
    pin_to_node(&mut pod["spec"], node);
    pod
}

/// The template as the DaemonSet's pods see it (with the added tolerations), for the predicates.
fn template_pod(ds: &Value) -> Option<PodInfo> {
    let mut spec = ds["spec"]["template"]["spec"].clone();
    add_tolerations(&mut spec);
    PodInfo::deserialize(&json!({"metadata": ds["spec"]["template"]["metadata"], "spec": spec})).ok()
}

/// `NodeShouldRunDaemonPod`: whether the pod should run on `node`, and
/// whether one already there may stay (only NoExecute taints count then).
pub fn should_run(pod: &PodInfo, node: &NodeInfo) -> (bool, bool) {
    let placed = pod.node_selector.is_subset_of(&node.labels)
        && pod.required_affinity.as_ref().is_none_or(|a| a.matches(&node.labels, &node.name));
    let tolerates = |only_no_execute: bool| {
        node.taints.iter().filter(|t| is_blocking(t, only_no_execute)).all(|t| tolerated(&pod.tolerations, t))
    };
    (placed && tolerates(false), placed && tolerates(true))
}

fn is_blocking(t: &Taint, only_no_execute: bool) -> bool {
    t.effect == Effect::NoExecute || (!only_no_execute && t.effect == Effect::NoSchedule)
}

/// What one pass does for one DaemonSet.
#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Value>>,
    /// The status it should report.
    pub status: Value,
}

/// The node a daemon pod is bound or pinned to.
fn node_of(pod: &Value) -> Option<String> {
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(n.to_owned());
    }
    let terms =
        pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?;
    terms.as_array()?.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find(|f| f["key"] == "metadata.name")?["values"][0]
            .as_str()
            .map(str::to_owned)
    })
}

/// Decides a pass for `ds` given the nodes and the pods of its namespace, at `now`.
pub fn plan(ds: &Value, nodes: &[NodeInfo], pods: &[Arc<Value>], now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(template) = template_pod(ds) else { return plan };
    let hash = template_hash(&ds["spec"]["template"], int(ds, "/status/collisionCount"));
    let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for p in pods.iter().filter(|p| controlled_by(p, ds) && !deleting(p)) {
        by_node.entry(node_of(p).unwrap_or_default()).or_default().push(p.clone());
    }
    let min_ready = int(ds, "/spec/minReadySeconds");
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) = (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let (run, stay) = should_run(&template, node);
        let mut here = by_node.remove(&*node.name).unwrap_or_default();
        if run {
            desired += 1;
        }
        if !stay {
            if !here.is_empty() {
                misscheduled += 1;
            }
            plan.delete.extend(here);
            continue;
        }
        // Failed pods are replaced.
        let (failed, alive): (Vec<_>, Vec<_>) = here.drain(..).partition(|p| p["status"]["phase"] == "Failed");
        plan.delete.extend(failed);
        let (fresh, stale): (Vec<_>, Vec<_>) =
            alive.into_iter().partition(|p| p["metadata"]["labels"][REVISION_HASH] == hash.as_str());
        plan.delete.extend(stale.iter().cloned());
        if let Some(keep) = fresh.first() {
            current += 1;
            updated += 1;
            if conditions::is_ready(keep) {
                ready += 1;
            }
            if conditions::is_available(keep, min_ready, now) {
                available += 1;
            }
            plan.delete.extend(fresh.iter().skip(1).cloned());
        } else if !stale.is_empty() {
            current += 1;
        } else if run && !deleting(ds) {
            plan.create.push(node.name.to_string());
        }
    }
    // Pods of nodes that are gone (or never pinned anywhere).
    plan.delete.extend(by_node.into_values().flatten());
    if deleting(ds) {
        plan.create.clear();
    }
    plan.create.truncate(super::BURST);
    plan.status = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "observedGeneration": int(ds, "/metadata/generation"),
    });
    plan
}

/// Runs the controller. Never returns.
pub async fn run(cluster: Cluster) {
    let wake = Wake::on(&[cluster.daemonsets.cache(), cluster.nodes.cache(), cluster.pods.cache()]);
    loop {
        pass(&cluster).await;
        wake.next(Duration::from_secs(1)).await;
    }
}

async fn pass(cluster: &Cluster) {
    let daemonsets = cluster.daemonsets.all();
    if daemonsets.is_empty() {
        return;
    }
    let nodes: Vec<NodeInfo> =
        cluster.nodes.all().iter().filter_map(|n| NodeInfo::deserialize(n.as_ref()).ok()).collect();
    let pods = super::pods_by_namespace(&cluster.pods);
    let now = jiff::Timestamp::now();
    for ds in daemonsets {
        let in_ns = pods.get(super::namespace(&ds)).map(Vec::as_slice).unwrap_or_default();
        let plan = plan(&ds, &nodes, in_ns, now);
        let hash = template_hash(&ds["spec"]["template"], int(&ds, "/status/collisionCount"));
        for node in &plan.create {
            if log_failure("creating a daemon pod", super::create(&cluster.pods, daemon_pod(&ds, node, &hash)).await)
                .is_none()
            {
                break;
            }
        }
        for p in &plan.delete {
            log_failure("deleting a daemon pod", super::delete(&cluster.pods, p, None).await);
        }
        if plan.status != ds["status"] {
            let status = plan.status;
            let written = super::update(&cluster.daemonsets, &ds, Some("status"), move |o| o["status"] = status);
            log_failure("updating a DaemonSet's status", written.await);
        }
        tracing::trace!(daemonset = %name(&ds), "synced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> NodeInfo {
        NodeInfo::deserialize(&json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn ds(template_spec: Value) -> Value {
        json!({"metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-1", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": template_spec}}})
    }

    #[test]
    fn one_pod_per_fitting_node_pinned_by_affinity() {
        let nodes = [
            node("n1", json!({"disk": "ssd"}), json!([])),
            node(
                "n2",
                json!({"disk": "ssd"}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
            node("n3", json!({"disk": "hdd"}), json!([])),
            node("n4", json!({"disk": "ssd"}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
        ];
        let d = ds(json!({"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "image": "x"}]}));
        let p = plan(&d, &nodes, &[], jiff::Timestamp::now());
        assert_eq!(p.create, ["n1", "n2"], "a cordoned node gets one, a mismatched or tainted one none");
        assert_eq!(p.status["desiredNumberScheduled"], 2);
        let pod = daemon_pod(&d, "n1", "h");
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        );
        let keys: Vec<&str> =
            pod["spec"]["tolerations"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys.len(), 6);
        assert!(keys.contains(&"node.kubernetes.io/unschedulable"));
        assert_eq!(pod["metadata"]["labels"][TEMPLATE_GENERATION], "3");
        assert_eq!(pod["metadata"]["generateName"], "agent-");
    }

    #[test]
    fn misplaced_extra_and_stale_pods_go() {
        let nodes =
            [node("n1", json!({}), json!([])), node("n2", json!({}), json!([{"key": "evict", "effect": "NoExecute"}]))];
        let d = ds(json!({"containers": [{"name": "a", "image": "x"}]}));
        let hash = template_hash(&d["spec"]["template"], 0);
        let pod = |name: &str, node: &str, h: &str| {
            let mut p = daemon_pod(&d, node, h);
            p["metadata"]["name"] = json!(name);
            p["metadata"]["namespace"] = json!("kube-system");
            p["spec"]["nodeName"] = json!(node);
            p["metadata"]["ownerReferences"][0]["uid"] = json!("ds-1");
            Arc::new(p)
        };
        let pods = [pod("a", "n1", &hash), pod("b", "n1", &hash), pod("c", "n2", &hash), pod("d", "gone", &hash)];
        let p = plan(&d, &nodes, &pods, jiff::Timestamp::now());
        let mut deleted: Vec<&str> = p.delete.iter().map(|p| name(p)).collect();
        deleted.sort_unstable();
        assert_eq!(deleted, ["b", "c", "d"]);
        assert_eq!(p.status["numberMisscheduled"], 1);
        let stale = [pod("a", "n1", "old")];
        let p = plan(&d, &nodes, &stale, jiff::Timestamp::now());
        assert_eq!((p.delete.len(), p.create.len()), (1, 0), "replaced once it is gone");
    }
}
