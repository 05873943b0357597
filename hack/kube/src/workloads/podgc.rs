//! Pod garbage collection (kubernetes' `pkg/controller/podgc`): pods bound
//! to a Node that has not existed for the quarantine time (40 s) are marked
//! `Failed` with `DisruptionTarget=True` (`DeletionByPodGC`) and force
//! deleted; terminating pods never scheduled are force deleted; ended pods
//! beyond `--terminated-pod-gc-threshold` are deleted, oldest first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Cluster, deleting, log_failure, uid};
use crate::conditions;

/// How long a pod's node must stay missing before the pod is collected (`quarantineTime`).
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// How often the collector looks (kube-controller-manager: every 20 s).
const PERIOD: Duration = Duration::from_secs(2);

/// What one pass deletes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods whose node is gone: marked Failed, then force deleted.
    pub orphaned: Vec<Arc<Value>>,
    /// Terminating pods never bound: force deleted.
    pub unscheduled: Vec<Arc<Value>>,
    /// Ended pods over the threshold: deleted.
    pub terminated: Vec<Arc<Value>>,
}

/// Decides a pass: `nodes` the names of the Nodes, `missing_since` when each
/// pod (by uid) was first seen bound to a missing node (updated here).
pub fn plan(
    pods: &[Arc<Value>],
    nodes: &BTreeSet<&str>,
    threshold: usize,
    missing_since: &mut BTreeMap<String, Instant>,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    let mut still_missing = BTreeMap::new();
    for p in pods {
        let node = p["spec"]["nodeName"].as_str().unwrap_or("");
        if node.is_empty() {
            if deleting(p) {
                plan.unscheduled.push(p.clone());
            }
            continue;
        }
        if nodes.contains(node) {
            continue;
        }
        let since = missing_since.get(uid(p)).copied().unwrap_or(now);
        still_missing.insert(uid(p).to_owned(), since);
        if now.duration_since(since) >= QUARANTINE {
            plan.orphaned.push(p.clone());
        }
    }
    *missing_since = still_missing;
    let mut ended: Vec<&Arc<Value>> = pods.iter().filter(|p| conditions::is_terminal(p) && !deleting(p)).collect();
    if ended.len() > threshold {
        ended.sort_by(|a, b| {
            a["metadata"]["creationTimestamp"].as_str().cmp(&b["metadata"]["creationTimestamp"].as_str())
        });
        let excess = ended.len() - threshold;
        plan.terminated = ended.into_iter().take(excess).cloned().collect();
    }
    plan
}

/// Runs the collector with the `terminated-pod-gc-threshold`. Never returns.
pub async fn run(cluster: Cluster, threshold: usize) {
    let mut missing_since = BTreeMap::new();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let node_objects = cluster.nodes.all();
        let nodes: BTreeSet<&str> = node_objects.iter().map(|n| super::name(n)).collect();
        let plan = plan(&cluster.pods.all(), &nodes, threshold, &mut missing_since, Instant::now());
        for p in &plan.orphaned {
            if !conditions::is_terminal(p) {
                let failed = super::update(&cluster.pods, p, Some("status"), |pod: &mut Value| {
                    pod["status"]["phase"] = json!("Failed");
                    conditions::set(pod, "DisruptionTarget", "True", "DeletionByPodGC", "PodGC: node no longer exists");
                });
                log_failure("marking an orphaned pod Failed", failed.await);
            }
            log_failure("collecting an orphaned pod", super::delete(&cluster.pods, p, Some(0)).await);
        }
        for p in plan.unscheduled.iter().chain(&plan.terminated) {
            log_failure("collecting a pod", super::delete(&cluster.pods, p, Some(0)).await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, created: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "uid": name, "creationTimestamp": created}, "spec": {"nodeName": node}, "status": {"phase": phase}}),
        )
    }

    #[test]
    fn orphans_go_after_the_quarantine_and_ended_pods_beyond_the_threshold() {
        let pods = [
            pod("a", "n1", "Running", "2026-01-01T00:00:00Z"),
            pod("b", "gone", "Running", "2026-01-01T00:00:00Z"),
            pod("c", "n1", "Succeeded", "2026-01-01T00:02:00Z"),
            pod("d", "n1", "Failed", "2026-01-01T00:01:00Z"),
        ];
        let nodes = BTreeSet::from(["n1"]);
        let mut since = BTreeMap::new();
        let t0 = Instant::now();
        let first = plan(&pods, &nodes, 1, &mut since, t0);
        assert!(first.orphaned.is_empty(), "quarantined first");
        assert_eq!(
            first.terminated.iter().map(|p| super::super::name(p)).collect::<Vec<_>>(),
            ["d"],
            "the oldest ended pod"
        );
        let later = plan(&pods, &nodes, 1, &mut since, t0 + QUARANTINE);
        assert_eq!(later.orphaned.iter().map(|p| super::super::name(p)).collect::<Vec<_>>(), ["b"]);
        let back = BTreeSet::from(["n1", "gone"]);
        plan(&pods, &back, 10, &mut since, t0 + QUARANTINE);
        assert!(since.is_empty(), "a node that came back clears the quarantine");
    }
}
