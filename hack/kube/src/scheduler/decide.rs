//! The scheduling decisions, pure: which pods wait for a node and in which
//! order (kube-scheduler's PrioritySort: priority, then age), where one
//! goes (kube-scheduler's filters through `sks_autoscaler::fits`, then the
//! feasible node with the most left over, NodeResourcesFit's
//! `LeastAllocated` score, ties to the first node by name where
//! kube-scheduler draws one at random), and, when it fits nowhere,
//! kube-scheduler's message (`sks_autoscaler::messages::failed_scheduling`).
//! Not modelled: the other scores (balanced allocation, topology spread,
//! image locality, preferred affinities), preemption (a pod that fits
//! nowhere waits, even where lower-priority pods could make room),
//! volumes, host ports and inter-pod affinity.

use std::sync::Arc;

use serde::Deserialize as _;
use serde_json::Value;
use sks_autoscaler::messages::{PreemptionPolicy, failed_scheduling};
use sks_autoscaler::{NodeInfo, PodInfo, Resources, Unfit, fits};

use crate::conditions;

/// The scheduler a pod names when it is ours.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// CPU and memory a pod without requests is counted for when scoring (`GetNonzeroRequests`).
const NON_ZERO_CPU_MILLIS: i64 = 100;
const NON_ZERO_MEMORY_BYTES: i64 = 200 << 20;

/// A node with what its pods request: as the filters count it, and as the score does.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub info: NodeInfo,
    /// What its pods request.
    pub requested: Resources,
    /// What its pods request, a pod without CPU or memory requests counting the defaults.
    pub scored: Resources,
}

fn non_zero(r: Resources) -> Resources {
    Resources {
        cpu_millis: if r.cpu_millis == 0 { NON_ZERO_CPU_MILLIS } else { r.cpu_millis },
        memory_bytes: if r.memory_bytes == 0 { NON_ZERO_MEMORY_BYTES } else { r.memory_bytes },
        pods: r.pods,
    }
}

impl Candidate {
    /// Counts `pod`'s requests on the node.
    pub fn add(&mut self, pod: &PodInfo) {
        self.requested += pod.requests;
        self.scored += non_zero(pod.requests);
    }
}

/// The nodes (sorted by name) with the pods bound to them: every pod that
/// has not ended counts, a terminating one too (it holds its resources until
/// it is gone); `decode` gives a pod's slim form.
pub fn candidates(
    nodes: &[Arc<Value>],
    pods: &[Arc<Value>],
    mut decode: impl FnMut(&Value) -> Option<Arc<PodInfo>>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = nodes
        .iter()
        .filter_map(|n| NodeInfo::deserialize(n.as_ref()).ok())
        .map(|info| Candidate { info, requested: Resources::ZERO, scored: Resources::ZERO })
        .collect();
    out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    for p in pods.iter().filter(|p| !conditions::is_terminal(p)) {
        let Some(node) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { continue };
        let Ok(i) = out.binary_search_by(|c| (*c.info.name).cmp(node)) else { continue };
        if let Some(info) = decode(p) {
            out[i].add(&info);
        }
    }
    out
}

/// Whether the default scheduler places `pod` now: not bound, ours, not
/// being deleted, not ended, not gated.
pub fn waits(pod: &Value) -> bool {
    let spec = &pod["spec"];
    spec["nodeName"].as_str().is_none_or(str::is_empty)
        && spec["schedulerName"].as_str().is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER)
        && conditions::is_active(pod)
        && spec["schedulingGates"].as_array().is_none_or(Vec::is_empty)
}

/// The pods waiting for a node, in the order they are scheduled.
pub fn queue(pods: &[Arc<Value>]) -> Vec<Arc<Value>> {
    let mut out: Vec<Arc<Value>> = pods.iter().filter(|p| waits(p)).cloned().collect();
    out.sort_by(|a, b| {
        let priority = |p: &Value| p["spec"]["priority"].as_i64().unwrap_or(0);
        let created = |p: &Value| p["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_owned();
        let key = |p: &Value| {
            (
                p["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            )
        };
        priority(b).cmp(&priority(a)).then_with(|| created(a).cmp(&created(b))).then_with(|| key(a).cmp(&key(b)))
    });
    out
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bind it to this node (its index among the candidates, and its name).
    Bind(usize, String),
    /// It fits no node: kube-scheduler's message.
    Unschedulable(String),
}

/// `LeastAllocated` for CPU and memory, each weighted 1: 0 to 100.
fn score(c: &Candidate, pod: &PodInfo) -> i64 {
    let after = c.scored + non_zero(pod.requests);
    let part = |capacity: i64, requested: i64| {
        if capacity <= 0 || requested > capacity { 0 } else { (capacity - requested) * 100 / capacity }
    };
    (part(c.info.allocatable.cpu_millis, after.cpu_millis) + part(c.info.allocatable.memory_bytes, after.memory_bytes))
        / 2
}

/// Schedules `pod` (its JSON `raw`) on `candidates`.
pub fn schedule(pod: &PodInfo, raw: &Value, candidates: &[Candidate]) -> Outcome {
    let mut best: Option<(i64, usize)> = None;
    let mut unfits: Vec<Unfit> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        match fits(pod, &c.info.view(c.requested)) {
            Ok(()) => {
                let s = score(c, pod);
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            Err(u) => unfits.push(u),
        }
    }
    match best {
        Some((_, i)) => Outcome::Bind(i, candidates[i].info.name.to_string()),
        None => {
            let policy = match raw["spec"]["preemptionPolicy"].as_str() {
                Some("Never") => PreemptionPolicy::Never,
                _ => PreemptionPolicy::PreemptLowerPriority,
            };
            Outcome::Unschedulable(failed_scheduling(candidates.len(), &unfits, policy, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, memory: &str, taints: Value) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn pod(name: &str, cpu: &str, node: &str, extra: Value) -> Arc<Value> {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "schedulerName": "default-scheduler",
                "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]},
            "status": {"phase": "Pending"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            p["spec"][k] = v.clone();
        }
        Arc::new(p)
    }

    fn decode(p: &Value) -> Option<Arc<PodInfo>> {
        PodInfo::deserialize(p).ok().map(Arc::new)
    }

    fn place(p: &Arc<Value>, cands: &[Candidate]) -> Outcome {
        schedule(&PodInfo::deserialize(p.as_ref()).unwrap(), p, cands)
    }

    #[test]
    fn the_least_allocated_feasible_node_wins_ties_by_name() {
        let nodes =
            [node("b", "2", "4Gi", json!([])), node("a", "2", "4Gi", json!([])), node("c", "4", "8Gi", json!([]))];
        let bound = [pod("x", "1", "c", json!({})), pod("y", "1500m", "c", json!({}))];
        let cands = candidates(&nodes, &bound, decode);
        assert_eq!(cands.iter().map(|c| &*c.info.name).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            place(&pod("p", "500m", "", json!({})), &cands),
            Outcome::Bind(0, "a".into()),
            "a and b tie, c is fuller"
        );
    }

    #[test]
    fn a_pod_that_fits_nowhere_gets_kube_schedulers_message() {
        let nodes = [
            node("a", "1", "4Gi", json!([])),
            node("b", "1", "4Gi", json!([])),
            node("c", "8", "4Gi", json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
        ];
        let cands = candidates(&nodes, &[], decode);
        assert_eq!(
            place(&pod("p", "2", "", json!({})), &cands),
            Outcome::Unschedulable(
                "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. no new claims to deallocate, \
                 preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
                    .into()
            )
        );
        let tolerant = pod("p", "2", "", json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(place(&tolerant, &cands), Outcome::Bind(2, "c".into()));
        let never = pod("p", "2", "", json!({"preemptionPolicy": "Never", "nodeSelector": {"disk": "ssd"}}));
        assert!(
            matches!(place(&never, &cands), Outcome::Unschedulable(m) if m.ends_with("preemption: not eligible due to preemptionPolicy=Never."))
        );
    }

    #[test]
    fn pods_wait_in_priority_then_age_order() {
        let mut high = (*pod("high", "1", "", json!({"priority": 10}))).clone();
        high["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
        let pods = [
            pod("old", "1", "", json!({})),
            Arc::new(high),
            pod("bound", "1", "a", json!({})),
            pod("other", "1", "", json!({"schedulerName": "custom"})),
        ];
        let order: Vec<String> =
            queue(&pods).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(order, ["high", "old"]);
    }
}
