//! The Deployment controller (kubernetes' `pkg/controller/deployment`), with
//! one rollout for both strategies, kube's `Recreate`: a Deployment owns one
//! ReplicaSet per pod template (`<deployment>-<pod-template-hash>`, the hash
//! also a label of the set, its selector and its pods); when the template
//! changes, the old sets are scaled to 0, and the new one is created and
//! scaled to `spec.replicas` once their pods are gone. (A `RollingUpdate`
//! Deployment is rolled out the same way: no surge, everything replaced at
//! once.) Scaling changes the current set's replicas. The status sums the
//! sets' counts, with kube's `Available` and `Progressing` conditions
//! (`ProgressDeadlineExceeded` is not reported).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sks_rest::storage::Storage as _;

use super::{
    Cluster, Wake, controlled_by, controller_of, controller_ref, deleting, int, log_failure, name, template_hash,
};
use crate::conditions;
use crate::selector;
use crate::validation::pdb::percent;

/// The label that ties a ReplicaSet and its pods to one template of its Deployment.
pub const TEMPLATE_HASH: &str = "pod-template-hash";
/// A ReplicaSet's revision within its Deployment.
const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// What one pass does for one Deployment.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphan ReplicaSets to adopt.
    pub adopt: Vec<Arc<Value>>,
    /// The ReplicaSet to create for the current template.
    pub create: Option<Value>,
    /// ReplicaSets to scale: (set, replicas, annotations to set).
    pub scale: Vec<(Arc<Value>, i64, Map<String, Value>)>,
    /// Collisions of the template hash: the status then counts one more.
    pub collision: bool,
    /// The revision the Deployment is at (its annotation).
    pub revision: Option<String>,
    /// The status it should report.
    pub status: Value,
}

/// A template as a ReplicaSet of the Deployment carries it, without the hash label.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    let emptied = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut).is_some_and(|labels| {
        labels.remove(TEMPLATE_HASH);
        labels.is_empty()
    });
    if emptied && let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
    }
    t
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// `maxSurge` and `maxUnavailable` of `d` resolved against its replicas (ResolveFenceposts).
fn fenceposts(d: &Value) -> (i64, i64) {
    let replicas = int(d, "/spec/replicas");
    if d["spec"]["strategy"]["type"] == "Recreate" {
        return (0, 0);
    }
    let resolve = |v: &Value, round_up: bool| -> i64 {
        match v {
            Value::String(s) => percent(s).map_or(0, |p| {
                let scaled = i64::try_from(p).unwrap_or(i64::MAX).saturating_mul(replicas);
                if round_up { (scaled + 99) / 100 } else { scaled / 100 }
            }),
            other => other.as_i64().unwrap_or(0),
        }
    };
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = resolve(&rolling["maxSurge"], true);
    let unavailable = resolve(&rolling["maxUnavailable"], false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// A new ReplicaSet of `d` for its template with `hash`, at `revision`, with `replicas`.
fn new_replica_set(d: &Value, hash: &str, revision: i64, replicas: i64) -> Value {
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][TEMPLATE_HASH] = json!(hash);
    let mut sel = d["spec"]["selector"].clone();
    sel["matchLabels"][TEMPLATE_HASH] = json!(hash);
    let (surge, _) = fenceposts(d);
    let desired = int(d, "/spec/replicas");
    let mut spec = json!({"replicas": replicas, "selector": sel, "template": template});
    if let Some(m) = d["spec"]["minReadySeconds"].as_i64() {
        spec["minReadySeconds"] = json!(m);
    }
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{}-{hash}", name(d)), "namespace": d["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": {REVISION: revision.to_string(), DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: (desired + surge).to_string()},
            "ownerReferences": [controller_ref(d, "apps/v1", "Deployment")]},
        "spec": spec})
}

/// Decides a pass for `d` given the ReplicaSets and pods of its namespace, at `now`.
pub fn plan(d: &Value, sets: &[Arc<Value>], pods: &[Arc<Value>], now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let sel = selector::Selector::new(&d["spec"]["selector"]);
    let mut owned: Vec<Arc<Value>> = Vec::new();
    for rs in sets {
        let matches = sel.selects(&rs["metadata"]["labels"]);
        if controlled_by(rs, d) {
            owned.push(rs.clone());
        } else if controller_of(rs).is_none() && matches && !deleting(d) && !deleting(rs) {
            plan.adopt.push(rs.clone());
            owned.push(rs.clone());
        }
    }
    let collisions = int(d, "/status/collisionCount");
    let template = &d["spec"]["template"];
    let current = owned.iter().find(|rs| without_hash(&rs["spec"]["template"]) == *template).cloned();
    let old: Vec<Arc<Value>> =
        owned.iter().filter(|rs| current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, rs))).cloned().collect();
    let replicas = int(d, "/spec/replicas");
    let (surge, max_unavailable) = fenceposts(d);
    let old_running = pods.iter().any(|p| old.iter().any(|rs| controlled_by(p, rs)) && !conditions::is_terminal(p));
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let mut created_name = None;
    if !deleting(d) {
        for rs in old.iter().filter(|rs| int(rs, "/spec/replicas") != 0) {
            plan.scale.push((rs.clone(), 0, Map::new()));
        }
        let scaled = |rs: &Arc<Value>| {
            let mut annotations = Map::new();
            annotations.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
            annotations.insert(MAX_REPLICAS.into(), json!((replicas + surge).to_string()));
            (rs.clone(), replicas, annotations)
        };
        match &current {
            Some(rs) if !old_running && int(rs, "/spec/replicas") != replicas => plan.scale.push(scaled(rs)),
            Some(_) => {}
            None if old_running => {}
            None => {
                let hash = template_hash(template, collisions);
                let rs_name = format!("{}-{hash}", name(d));
                if sets.iter().any(|rs| name(rs) == rs_name) {
                    plan.collision = true;
                } else {
                    plan.create = Some(new_replica_set(d, &hash, max_revision + 1, replicas));
                    created_name = Some(rs_name);
                }
            }
        }
    }
    plan.revision = current
        .as_ref()
        .map(|rs| revision(rs).to_string())
        .or_else(|| plan.create.as_ref().map(|_| (max_revision + 1).to_string()));
    plan.status = status(
        d,
        current.as_deref(),
        &owned,
        created_name.as_deref(),
        max_unavailable,
        collisions + i64::from(plan.collision),
        now,
    );
    plan
}

/// A Deployment condition, keeping the old one's times when nothing changed (SetDeploymentCondition).
fn condition(old: &[Value], type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    let previous = old.iter().find(|c| c["type"] == type_);
    if let Some(p) = previous.filter(|p| p["status"] == status && p["reason"] == reason && p["message"] == message) {
        return p.clone();
    }
    let transition = match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition, "reason": reason, "message": message})
}

/// The status of `d` from its sets (`current` the one of its template).
fn status(
    d: &Value,
    current: Option<&Value>,
    sets: &[Arc<Value>],
    created: Option<&str>,
    max_unavailable: i64,
    collisions: i64,
    now: jiff::Timestamp,
) -> Value {
    let sum = |pointer: &str| sets.iter().map(|rs| int(rs, pointer)).sum::<i64>();
    let replicas = int(d, "/spec/replicas");
    let (total, updated, ready, available) = (
        sum("/status/replicas"),
        current.map_or(0, |rs| int(rs, "/status/replicas")),
        sum("/status/readyReplicas"),
        sum("/status/availableReplicas"),
    );
    let desired_total = sum("/spec/replicas");
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string();
    let old = d["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let available_condition = if available >= replicas - max_unavailable {
        condition(old, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", &now)
    } else {
        condition(
            old,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
        )
    };
    let mut conditions = vec![available_condition];
    let progressing = match (created, current) {
        (Some(rs), _) => Some(("NewReplicaSetCreated", format!("Created new replica set {rs:?}"))),
        (None, Some(rs)) if updated == replicas && total == replicas && available == replicas => {
            Some(("NewReplicaSetAvailable", format!("ReplicaSet {:?} has successfully progressed.", name(rs))))
        }
        (None, Some(rs)) => Some(("ReplicaSetUpdated", format!("ReplicaSet {:?} is progressing.", name(rs)))),
        (None, None) => None,
    };
    match progressing {
        Some((reason, message)) => conditions.push(condition(old, "Progressing", "True", reason, &message, &now)),
        None => conditions.extend(old.iter().find(|c| c["type"] == "Progressing").cloned()),
    }
    let mut out = json!({
        "observedGeneration": int(d, "/metadata/generation"),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired_total - available).max(0),
        "conditions": conditions,
    });
    if collisions > 0 {
        out["collisionCount"] = json!(collisions);
    }
    out
}

/// Runs the controller. Never returns.
pub async fn run(cluster: Cluster) {
    let wake = Wake::on(&[cluster.deployments.cache(), cluster.replicasets.cache(), cluster.pods.cache()]);
    loop {
        pass(&cluster).await;
        wake.next(Duration::from_secs(1)).await;
    }
}

async fn pass(cluster: &Cluster) {
    let pods = super::pods_by_namespace(&cluster.pods);
    let all_sets = cluster.replicasets.all();
    let now = jiff::Timestamp::now();
    for d in cluster.deployments.all() {
        let ns = super::namespace(&d);
        let sets: Vec<Arc<Value>> = all_sets.iter().filter(|rs| super::namespace(rs) == ns).cloned().collect();
        let in_ns = pods.get(ns).map(Vec::as_slice).unwrap_or_default();
        let plan = plan(&d, &sets, in_ns, now);
        apply(cluster, &d, plan).await;
    }
}

async fn apply(cluster: &Cluster, d: &Value, plan: Plan) {
    let reference = controller_ref(d, "apps/v1", "Deployment");
    for rs in &plan.adopt {
        super::adopt(&cluster.replicasets, rs, reference.clone(), "adopting a ReplicaSet").await;
    }
    if let Some(rs) = plan.create {
        log_failure("creating a ReplicaSet", super::create(&cluster.replicasets, rs).await);
    }
    for (rs, replicas, annotations) in plan.scale {
        let scaled = super::update(&cluster.replicasets, &rs, None, move |o| {
            o["spec"]["replicas"] = json!(replicas);
            for (k, v) in annotations {
                o["metadata"]["annotations"][k] = v;
            }
        });
        log_failure("scaling a ReplicaSet", scaled.await);
    }
    if let Some(rev) = plan.revision.filter(|r| d["metadata"]["annotations"][REVISION] != r.as_str()) {
        let annotated = super::update(&cluster.deployments, d, None, move |o| {
            if !o["metadata"]["annotations"].is_object() {
                o["metadata"]["annotations"] = json!({});
            }
            o["metadata"]["annotations"][REVISION] = json!(rev);
        });
        log_failure("annotating a Deployment", annotated.await);
    }
    if plan.status != d["status"] {
        let status = plan.status;
        let written = super::update(&cluster.deployments, d, Some("status"), move |o| o["status"] = status);
        log_failure("updating a Deployment's status", written.await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn stored(rs: Value, status_replicas: i64) -> Arc<Value> {
        let mut rs = rs;
        rs["metadata"]["uid"] = json!(format!("uid-{}", name(&rs)));
        rs["status"] = json!({"replicas": status_replicas, "readyReplicas": status_replicas, "availableReplicas": status_replicas});
        Arc::new(rs)
    }

    #[test]
    fn a_new_deployment_gets_one_replica_set_per_template() {
        let d = deployment(3, "web:1");
        let p = plan(&d, &[], &[], jiff::Timestamp::now());
        let rs = p.create.expect("a ReplicaSet");
        let hash = rs["metadata"]["labels"][TEMPLATE_HASH].as_str().unwrap().to_owned();
        assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(rs["spec"]["replicas"], 3);
        assert_eq!(rs["spec"]["selector"]["matchLabels"], json!({"app": "web", TEMPLATE_HASH: hash}));
        assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
        assert_eq!(p.status["conditions"][1]["reason"], "NewReplicaSetCreated");
        // Once it exists, scaling the Deployment scales it.
        let existing = stored(rs, 3);
        let p = plan(&deployment(5, "web:1"), std::slice::from_ref(&existing), &[], jiff::Timestamp::now());
        assert!(p.create.is_none());
        assert_eq!(
            p.scale.iter().map(|(rs, n, _)| (name(rs).to_owned(), *n)).collect::<Vec<_>>(),
            [(name(&existing).to_owned(), 5)]
        );
        let done = plan(&deployment(3, "web:1"), &[existing], &[], jiff::Timestamp::now());
        assert_eq!(done.status["availableReplicas"], 3);
        assert_eq!(done.status["conditions"][0]["reason"], "MinimumReplicasAvailable");
        assert_eq!(done.status["conditions"][1]["reason"], "NewReplicaSetAvailable");
    }

    #[test]
    fn a_new_template_replaces_the_old_set_once_its_pods_are_gone() {
        let old = stored(plan(&deployment(2, "web:1"), &[], &[], jiff::Timestamp::now()).create.unwrap(), 2);
        let d = deployment(2, "web:2");
        let old_pod = Arc::new(
            json!({"metadata": {"name": "p", "ownerReferences": [{"uid": old["metadata"]["uid"], "controller": true}]},
            "status": {"phase": "Running"}}),
        );
        let p = plan(&d, std::slice::from_ref(&old), &[old_pod], jiff::Timestamp::now());
        assert!(p.create.is_none(), "not while old pods run");
        assert_eq!(p.scale.iter().map(|(_, n, _)| *n).collect::<Vec<_>>(), [0]);
        let mut drained = (*old).clone();
        drained["spec"]["replicas"] = json!(0);
        let p = plan(&d, &[Arc::new(drained)], &[], jiff::Timestamp::now());
        let new = p.create.expect("the new set");
        assert_eq!(new["metadata"]["annotations"][REVISION], "2");
        assert_ne!(new["metadata"]["name"], old["metadata"]["name"]);
    }
}
