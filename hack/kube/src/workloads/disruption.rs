//! The disruption controller (kubernetes' `pkg/controller/disruption`): the
//! status of every PodDisruptionBudget from the pods its selector matches.
//! `expectedPods` is the number of those pods for an integer
//! `minAvailable`, else the scale of their controllers (a Deployment's
//! replicas for its ReplicaSets' pods, a ReplicaSet's own; pods without a
//! controller are left out, any other controller is an error, as a
//! DaemonSet's pods are: kube reads a scale subresource DaemonSets do not
//! have). `currentHealthy` counts Ready pods not being deleted and not
//! recently evicted (`disruptedPods`, kept 2 minutes), `desiredHealthy`
//! comes from `minAvailable` or `maxUnavailable` (percentages rounded up),
//! `disruptionsAllowed` is their difference (0 with no expected pods), and
//! the `DisruptionAllowed` condition says whether it is positive. A budget
//! that cannot be computed allows nothing (`SyncFailed`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sks_rest::storage::Storage as _;

use super::{Cluster, Wake, controller_of, deleting, int, log_failure, name};
use crate::conditions;
use crate::selector;
use crate::validation::pdb::percent;

/// How long an evicted pod is not counted healthy while it is not deleted (`DeletionTimeout`).
const DELETION_TIMEOUT_SECONDS: i64 = 120;

/// The controllers pods may have, for the expected scale: (kind, namespace, name) to replicas, and
/// ReplicaSets owned by Deployments to them.
#[derive(Debug, Default)]
pub struct Scales {
    /// ReplicaSet uid → (the uid of the controller whose scale counts, that scale).
    replica_sets: BTreeMap<String, (String, i64)>,
}

impl Scales {
    /// The scales of `sets` and of the Deployments among `deployments` owning them.
    pub fn new(sets: &[Arc<Value>], deployments: &[Arc<Value>]) -> Self {
        let mut replica_sets = BTreeMap::new();
        for rs in sets {
            let by = controller_of(rs)
                .filter(|r| r["kind"] == "Deployment")
                .and_then(|r| deployments.iter().find(|d| d["metadata"]["uid"] == r["uid"]));
            let entry = match by {
                Some(d) => (super::uid(d).to_owned(), int(d, "/spec/replicas")),
                None => (super::uid(rs).to_owned(), int(rs, "/spec/replicas")),
            };
            replica_sets.insert(super::uid(rs).to_owned(), entry);
        }
        Scales { replica_sets }
    }

    /// `getExpectedScale`: the summed scale of the pods' controllers (each once), or why it cannot be known.
    fn expected(&self, pods: &[&Value]) -> Result<i64, String> {
        let mut counted: BTreeMap<&str, i64> = BTreeMap::new();
        for p in pods {
            let Some(owner) = controller_of(p) else { continue };
            let found = (owner["kind"] == "ReplicaSet")
                .then(|| owner["uid"].as_str().and_then(|u| self.replica_sets.get(u)))
                .flatten();
            match found {
                Some((controller, scale)) => {
                    counted.insert(controller, *scale);
                }
                None => return Err(format!("found no controllers for pod {:?}", name(p))),
            }
        }
        Ok(counted.values().sum())
    }
}

fn scaled(v: &Value, of: i64) -> Option<i64> {
    match v {
        Value::String(s) => percent(s).map(|p| (i64::try_from(p).unwrap_or(i64::MAX).saturating_mul(of) + 99) / 100),
        other => other.as_i64(),
    }
}

/// `getExpectedPodCount`: (expectedPods, desiredHealthy).
fn expected_and_desired(pdb: &Value, pods: &[&Value], scales: &Scales) -> Result<(i64, i64), String> {
    let spec = &pdb["spec"];
    if !spec["maxUnavailable"].is_null() {
        let expected = scales.expected(pods)?;
        let unavailable = scaled(&spec["maxUnavailable"], expected).ok_or("invalid maxUnavailable")?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match &spec["minAvailable"] {
        Value::Null => Ok((0, 0)),
        Value::String(_) => {
            let expected = scales.expected(pods)?;
            Ok((expected, scaled(&spec["minAvailable"], expected).ok_or("invalid minAvailable")?))
        }
        n => Ok((i64::try_from(pods.len()).unwrap_or(i64::MAX), n.as_i64().unwrap_or(0))),
    }
}

fn seconds(t: &Value) -> Option<i64> {
    t.as_str()?.parse::<jiff::Timestamp>().ok().map(jiff::Timestamp::as_second)
}

/// The `DisruptionAllowed` condition for the status of `pdb` (`UpdateDisruptionAllowedCondition`),
/// keeping its transition time while its status holds.
pub fn set_allowed_condition(pdb: &mut Value) {
    let allowed = int(pdb, "/status/disruptionsAllowed") > 0;
    let (status, reason) = if allowed { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    set_condition(pdb, status, reason, "");
}

fn set_condition(pdb: &mut Value, status: &str, reason: &str, message: &str) {
    let observed = pdb["status"]["observedGeneration"].clone();
    let mut list = pdb["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let now = conditions::now();
    let condition = |since: Value| json!({"type": "DisruptionAllowed", "status": status, "observedGeneration": observed, "lastTransitionTime": since, "reason": reason, "message": message});
    match list.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) => {
            let since = if c["status"] == status { c["lastTransitionTime"].clone() } else { json!(now) };
            *c = condition(since);
        }
        None => list.push(condition(json!(now))),
    }
    pdb["status"]["conditions"] = json!(list);
}

/// The status `pdb` should have, given the pods of its namespace, at `now`.
pub fn status(pdb: &Value, pods: &[Arc<Value>], scales: &Scales, now: jiff::Timestamp) -> Value {
    let sel = selector::Selector::new(&pdb["spec"]["selector"]);
    let selected: Vec<&Value> =
        pods.iter().map(AsRef::as_ref).filter(|p| sel.selects(&p["metadata"]["labels"])).collect();
    let mut out = pdb.clone();
    let generation = int(pdb, "/metadata/generation");
    let (expected, desired) = match expected_and_desired(pdb, &selected, scales) {
        Ok(v) => v,
        Err(why) => {
            // failSafe: nothing may be disrupted while the budget cannot be computed.
            out["status"]["disruptionsAllowed"] = json!(0);
            out["status"]["observedGeneration"] = json!(generation);
            set_condition(&mut out, "False", "SyncFailed", &why);
            return out["status"].clone();
        }
    };
    let previous = pdb["status"]["disruptedPods"].as_object().cloned().unwrap_or_default();
    let mut disrupted = Map::new();
    for p in &selected {
        let (Some(at), false) = (previous.get(name(p)), deleting(p)) else { continue };
        if seconds(at).is_some_and(|s| s + DELETION_TIMEOUT_SECONDS > now.as_second()) {
            disrupted.insert(name(p).to_owned(), at.clone());
        }
    }
    let healthy =
        selected.iter().filter(|p| !deleting(p) && !disrupted.contains_key(name(p)) && conditions::is_ready(p)).count();
    let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
    let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
    let status = &mut out["status"];
    if !status.is_object() {
        *status = json!({});
    }
    status["observedGeneration"] = json!(generation);
    status["expectedPods"] = json!(expected);
    status["currentHealthy"] = json!(healthy);
    status["desiredHealthy"] = json!(desired);
    status["disruptionsAllowed"] = json!(allowed);
    match disrupted.is_empty() {
        true => {
            status.as_object_mut().map(|m| m.remove("disruptedPods"));
        }
        false => status["disruptedPods"] = Value::Object(disrupted),
    }
    set_allowed_condition(&mut out);
    out["status"].clone()
}

/// Runs the controller. Never returns.
pub async fn run(cluster: Cluster) {
    let wake = Wake::on(&[
        cluster.budgets.cache(),
        cluster.pods.cache(),
        cluster.replicasets.cache(),
        cluster.deployments.cache(),
    ]);
    loop {
        pass(&cluster).await;
        // Evictions not followed by a deletion stop counting after the timeout: look again meanwhile.
        wake.next(Duration::from_secs(5)).await;
    }
}

async fn pass(cluster: &Cluster) {
    let budgets = cluster.budgets.all();
    if budgets.is_empty() {
        return;
    }
    let scales = Scales::new(&cluster.replicasets.all(), &cluster.deployments.all());
    let pods = super::pods_by_namespace(&cluster.pods);
    let now = jiff::Timestamp::now();
    for pdb in budgets {
        let in_ns = pods.get(super::namespace(&pdb)).map(Vec::as_slice).unwrap_or_default();
        let status = status(&pdb, in_ns, &scales, now);
        if status != pdb["status"] {
            let written = super::update(&cluster.budgets, &pdb, Some("status"), move |o| o["status"] = status);
            log_failure("updating a PodDisruptionBudget's status", written.await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Value> {
        let refs = owner.map(|o| json!([{"kind": "ReplicaSet", "uid": o, "controller": true}])).unwrap_or(json!([]));
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, "ownerReferences": refs},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        )
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 2}, "spec": spec})
    }

    fn scales() -> Scales {
        let rs = Arc::new(
            json!({"metadata": {"uid": "rs-1", "ownerReferences": [{"kind": "Deployment", "uid": "d-1", "controller": true}]}, "spec": {"replicas": 3}}),
        );
        let d = Arc::new(json!({"metadata": {"uid": "d-1"}, "spec": {"replicas": 4}}));
        Scales::new(&[rs], &[d])
    }

    #[test]
    fn budgets_count_healthy_pods_against_what_they_need() {
        let pods = [pod("a", true, Some("rs-1")), pod("b", true, Some("rs-1")), pod("c", false, Some("rs-1"))];
        let now = jiff::Timestamp::now();
        let s = status(&pdb(json!({"minAvailable": 2})), &pods, &scales(), now);
        assert_eq!(
            (s["expectedPods"].as_i64(), s["currentHealthy"].as_i64(), s["desiredHealthy"].as_i64()),
            (Some(3), Some(2), Some(2))
        );
        assert_eq!((s["disruptionsAllowed"].as_i64(), s["observedGeneration"].as_i64()), (Some(0), Some(2)));
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        let s = status(&pdb(json!({"minAvailable": "50%"})), &pods, &scales(), now);
        assert_eq!(
            (s["expectedPods"].as_i64(), s["desiredHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()),
            (Some(4), Some(2), Some(0)),
            "the Deployment's scale"
        );
        let s = status(&pdb(json!({"maxUnavailable": 1})), &pods, &scales(), now);
        assert_eq!((s["desiredHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(3), Some(0)));
        let s = status(&pdb(json!({"maxUnavailable": "50%"})), &pods, &scales(), now);
        assert_eq!(
            (s["desiredHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()),
            (Some(2), Some(0)),
            "50% of 4 is 2"
        );
        let s = status(&pdb(json!({"minAvailable": 1})), &pods, &scales(), now);
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
    }

    #[test]
    fn evicted_pods_stop_counting_until_the_timeout() {
        let pods = [pod("a", true, Some("rs-1")), pod("b", true, Some("rs-1"))];
        let now = jiff::Timestamp::now();
        let mut budget = pdb(json!({"minAvailable": 1}));
        budget["status"]["disruptedPods"] = json!({"a": conditions::now()});
        let s = status(&budget, &pods, &scales(), now);
        assert_eq!((s["currentHealthy"].as_i64(), s["disruptionsAllowed"].as_i64()), (Some(1), Some(0)));
        budget["status"]["disruptedPods"] = json!({"a": "2020-01-01T00:00:00Z"});
        let s = status(&budget, &pods, &scales(), now);
        assert_eq!(s["currentHealthy"], 2);
        assert!(s.get("disruptedPods").is_none());
    }

    #[test]
    fn pods_of_unknown_controllers_fail_safe() {
        let daemon = Arc::new(
            json!({"metadata": {"name": "d", "labels": {"app": "web"}, "ownerReferences": [{"kind": "DaemonSet", "uid": "x", "controller": true}]},
            "status": {"phase": "Running"}}),
        );
        let s = status(&pdb(json!({"maxUnavailable": 1})), &[daemon], &scales(), jiff::Timestamp::now());
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
        assert_eq!(s["conditions"][0]["message"], "found no controllers for pod \"d\"");
        let orphan = [pod("o", true, None)];
        let s = status(&pdb(json!({"maxUnavailable": 1})), &orphan, &scales(), jiff::Timestamp::now());
        assert_eq!(
            (s["expectedPods"].as_i64(), s["disruptionsAllowed"].as_i64()),
            (Some(0), Some(0)),
            "unmanaged pods are left out"
        );
    }
}
