//! The ReplicaSet controller (kubernetes' `pkg/controller/replicaset`):
//! each ReplicaSet claims the pods its selector matches (adopting orphans,
//! releasing pods that no longer match), creates pods from its template
//! until `spec.replicas` are active (named `<rs>-<5 random>`, its labels,
//! controlled by it), deletes the surplus in kube's order (unscheduled,
//! then Pending, not Ready, more colocated, lower deletion cost, Ready for
//! the shortest time, most restarted, newest first), and reports
//! replicas, fully labelled, ready and available counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sks_rest::storage::Storage as _;

use super::{Cluster, Wake, controlled_by, controller_of, controller_ref, deleting, int, log_failure, name};
use crate::conditions;
use crate::selector;

/// The annotation that orders pods for deletion (lower goes first).
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What one pass does for one ReplicaSet.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphans to adopt.
    pub adopt: Vec<Arc<Value>>,
    /// Pods to release (no longer matching the selector).
    pub release: Vec<Arc<Value>>,
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete.
    pub delete: Vec<Arc<Value>>,
    /// The status it should report.
    pub status: Value,
}

/// Decides a pass for `rs` given the pods of its namespace, at `now`.
pub fn plan(rs: &Value, pods: &[Arc<Value>], now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let selector = selector::Selector::new(&rs["spec"]["selector"]);
    let mut owned: Vec<Arc<Value>> = Vec::new();
    for p in pods {
        let matches = selector.selects(&p["metadata"]["labels"]);
        if controlled_by(p, rs) {
            if matches {
                owned.push(p.clone());
            } else if !deleting(rs) && !deleting(p) {
                plan.release.push(p.clone());
            }
        } else if controller_of(p).is_none() && matches && !deleting(rs) && !deleting(p) {
            plan.adopt.push(p.clone());
            owned.push(p.clone());
        }
    }
    let active: Vec<Arc<Value>> = owned.iter().filter(|p| conditions::is_active(p)).cloned().collect();
    let replicas = usize::try_from(int(rs, "/spec/replicas")).unwrap_or(0);
    if !deleting(rs) {
        if active.len() < replicas {
            plan.create = (replicas - active.len()).min(super::BURST);
        } else if active.len() > replicas {
            plan.delete = to_delete(&active, active.len() - replicas);
        }
    }
    plan.status = status(rs, &active, now);
    plan
}

/// The status `calculateStatus` reports for `active`, the active pods of `rs`.
pub fn status(rs: &Value, active: &[Arc<Value>], now: jiff::Timestamp) -> Value {
    let template_labels = &rs["spec"]["template"]["metadata"]["labels"];
    let labelled = active
        .iter()
        .filter(|p| selector::labels(template_labels).is_subset_of(&selector::labels(&p["metadata"]["labels"])))
        .count();
    let ready = active.iter().filter(|p| conditions::is_ready(p)).count();
    let min_ready = int(rs, "/spec/minReadySeconds");
    let available = active.iter().filter(|p| conditions::is_available(p, min_ready, now)).count();
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": labelled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": int(rs, "/metadata/generation"),
    });
    if let Some(conditions) = rs["status"]["conditions"].as_array().filter(|c| !c.is_empty()) {
        status["conditions"] = json!(conditions);
    }
    status
}

fn phase_ordinal(p: &Value) -> u8 {
    match p["status"]["phase"].as_str() {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    }
}

fn deletion_cost(p: &Value) -> i64 {
    p["metadata"]["annotations"][DELETION_COST].as_str().and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn max_restarts(p: &Value) -> i64 {
    p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .max()
        .unwrap_or(0)
}

fn created(p: &Value) -> Option<jiff::Timestamp> {
    p["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse().ok())
}

/// `getPodsToDelete`: the `n` pods of `active` to delete first, ranked as
/// kube's `ActivePodsWithRanks` ranks them (the rank: how many of these pods
/// share the pod's node).
pub fn to_delete(active: &[Arc<Value>], n: usize) -> Vec<Arc<Value>> {
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in active {
        if let Some(node) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Value| p["spec"]["nodeName"].as_str().and_then(|n| on_node.get(n)).copied().unwrap_or(0);
    let mut ranked: Vec<&Arc<Value>> = active.iter().collect();
    ranked.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        let unassigned = |p: &Value| p["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
        unassigned(b)
            .cmp(&unassigned(a))
            .then(phase_ordinal(a).cmp(&phase_ordinal(b)))
            .then(conditions::is_ready(a).cmp(&conditions::is_ready(b)))
            .then(deletion_cost(a).cmp(&deletion_cost(b)))
            .then(rank(b).cmp(&rank(a)))
            .then_with(|| match (conditions::ready_since(a), conditions::ready_since(b)) {
                // Ready for the shortest time first.
                (Some(x), Some(y)) => y.cmp(&x),
                _ => std::cmp::Ordering::Equal,
            })
            .then(max_restarts(b).cmp(&max_restarts(a)))
            // Newest first; no creation time before any.
            .then_with(|| match (created(a), created(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
    });
    ranked.into_iter().take(n).cloned().collect()
}

/// A pod of `owner` (kind `kind` of `api_version`) from its `spec.template`
/// (`GetPodFromTemplate`): its labels, annotations and spec, named
/// `<owner>-<random>`, controlled by the owner.
pub fn pod_from_template(owner: &Value, api_version: &str, kind: &str) -> Value {
    let template = &owner["spec"]["template"];
    let prefix = format!("{}-", name(owner));
    let mut meta = json!({
        "generateName": prefix,
        "namespace": owner["metadata"]["namespace"],
        "ownerReferences": [controller_ref(owner, api_version, kind)],
    });
    for field in ["labels", "annotations", "finalizers"] {
        if !template["metadata"][field].is_null() {
            meta[field] = template["metadata"][field].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// Runs the controller. Never returns.
pub async fn run(cluster: Cluster) {
    let wake = Wake::on(&[cluster.replicasets.cache(), cluster.pods.cache()]);
    loop {
        pass(&cluster).await;
        wake.next(Duration::from_secs(1)).await;
    }
}

async fn pass(cluster: &Cluster) {
    let pods = super::pods_by_namespace(&cluster.pods);
    let now = jiff::Timestamp::now();
    for rs in cluster.replicasets.all() {
        let in_ns = pods.get(super::namespace(&rs)).map(Vec::as_slice).unwrap_or_default();
        let plan = plan(&rs, in_ns, now);
        apply(cluster, &rs, plan).await;
    }
}

async fn apply(cluster: &Cluster, rs: &Value, plan: Plan) {
    let reference = controller_ref(rs, "apps/v1", "ReplicaSet");
    for p in &plan.adopt {
        super::adopt(&cluster.pods, p, reference.clone(), "adopting a pod").await;
    }
    for p in &plan.release {
        super::release(&cluster.pods, p, vec![super::uid(rs).to_owned()], "releasing a pod").await;
    }
    for _ in 0..plan.create {
        if log_failure(
            "creating a pod",
            super::create(&cluster.pods, pod_from_template(rs, "apps/v1", "ReplicaSet")).await,
        )
        .is_none()
        {
            break;
        }
    }
    for p in &plan.delete {
        log_failure("deleting a pod", super::delete(&cluster.pods, p, None).await);
    }
    if plan.status != rs["status"] {
        let status = plan.status;
        log_failure(
            "updating a ReplicaSet's status",
            super::update(&cluster.replicasets, rs, Some("status"), move |o| o["status"] = status).await,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-1", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}}}})
    }

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}, "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs-1", "controller": true}]},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": created}]}}),
        )
    }

    #[test]
    fn replicas_are_created_and_surplus_deleted_in_kubes_order() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("a", "n1", "Running", true, "2026-01-01T00:00:00Z"),
            pod("b", "n1", "Running", true, "2026-01-01T00:01:00Z"),
            pod("c", "n3", "Running", true, "2026-01-01T00:02:00Z"),
            pod("d", "", "Pending", false, "2026-01-01T00:00:00Z"),
            pod("e", "n2", "Running", false, "2026-01-01T00:00:00Z"),
        ];
        let p = plan(&rs(2), &pods, now);
        let names: Vec<&str> = p.delete.iter().map(|p| name(p)).collect();
        assert_eq!(names, ["d", "e", "b"], "unscheduled, not ready, then doubled up and newest");
        assert_eq!(p.status["replicas"], 5);
        assert_eq!(p.status["readyReplicas"], 3);
        assert_eq!(p.status["observedGeneration"], 2);
        assert_eq!(plan(&rs(7), &pods, now).create, 2);
    }

    #[test]
    fn orphans_are_adopted_and_strays_released() {
        let mut orphan = (*pod("o", "", "Pending", false, "2026-01-01T00:00:00Z")).clone();
        orphan["metadata"]["ownerReferences"] = json!([]);
        let mut stray = (*pod("s", "", "Pending", false, "2026-01-01T00:00:00Z")).clone();
        stray["metadata"]["labels"] = json!({"app": "db"});
        let mut gone = (*pod("g", "", "Failed", false, "2026-01-01T00:00:00Z")).clone();
        gone["status"]["phase"] = json!("Failed");
        let p = plan(&rs(1), &[Arc::new(orphan), Arc::new(stray), Arc::new(gone)], jiff::Timestamp::now());
        assert_eq!(p.adopt.iter().map(|p| name(p)).collect::<Vec<_>>(), ["o"]);
        assert_eq!(p.release.iter().map(|p| name(p)).collect::<Vec<_>>(), ["s"]);
        assert_eq!(
            (p.create, p.delete.len()),
            (0, 0),
            "the adopted pod is the one replica; a failed one does not count"
        );
    }

    #[test]
    fn pods_come_from_the_template() {
        let p = pod_from_template(&rs(1), "apps/v1", "ReplicaSet");
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["spec"]["containers"][0]["name"], "web");
    }
}
