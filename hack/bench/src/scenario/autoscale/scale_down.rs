//! Scale-down of an empty node: a third autoscaled pool (min 1, max 2) of
//! two nodes, each holding one pod bound to it from the start (above the
//! utilization threshold, so neither is ever unneeded). Each cycle deletes
//! one node's pod; the node is empty once the pod watch sees it deleted, and
//! the autoscaler should evict exactly that instance from the nodepool
//! `--scale-down-unneeded-time` later. The cycle measures when the
//! eviction call reached the zone, then scales the pool back to 2 through
//! the zone (a manual scale: no scale-up of the autoscaler's, so
//! `--scale-down-delay-after-add` does not apply) with a new pod on the new node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use uuid::Uuid;

use super::calls::{self, EVICT};
use super::pods::Board;
use super::system::System;
use super::workload::{self, HOLD, NAMESPACE, SCALE_DOWN_POOL};
use super::{Params, ms};
use crate::requests::Counts;

/// How long a node keeps its pod before it is deleted, so the autoscaler has seen it in use.
const SETTLE: Duration = Duration::from_secs(1);

/// One removal.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    /// The node emptied.
    pub node: String,
    /// From the DELETE of its pod being sent to the pod seen deleted (the node empty), ms.
    pub delete_ms: f64,
    /// From the node empty to the nodepool eviction arriving at the zone, ms.
    pub empty_to_evict_ms: Option<f64>,
    /// The same minus `--scale-down-unneeded-time`.
    pub beyond_unneeded_ms: Option<f64>,
    /// Nodepool evictions in the cycle (1: the node removed once).
    pub evictions: usize,
    /// Orchestrator calls from the DELETE until the eviction was seen, by operation.
    pub calls: BTreeMap<String, u64>,
    /// What sks-apiserver sent to the Kubernetes API meanwhile.
    #[serde(skip)]
    pub sent: Counts,
}

/// Creates pod `name` of the hold shape bound to node `node`.
async fn hold(sys: &System, name: &str, node: &str) -> anyhow::Result<()> {
    let body = workload::bound_pod(name, "scale-down", &HOLD, node);
    match sys.kube.send("POST", &format!("/api/v1/namespaces/{NAMESPACE}/pods"), Some(&body)).await? {
        (201, _) => Ok(()),
        (status, answer) => bail!("creating pod {name} on {node}: {status}: {answer}"),
    }
}

/// Waits until pod `name` runs.
async fn running(board: &Board, name: &str, timeout: Duration) -> anyhow::Result<String> {
    let names = [name.to_owned()];
    if board.wait(&names, timeout, |s| s.running.is_some()).await < 1 {
        bail!("pod {name} not running within {timeout:?}");
    }
    board.of(&names)[0].node.clone().context("the running pod's node")
}

/// The instances of `id` not in `known`, once there is one, at most `timeout`.
async fn new_instance(sys: &System, id: Uuid, known: &[String], timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(n) = sys.instances(id).await?.into_iter().find(|n| !known.contains(n)) {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            bail!("no new instance in nodepool {id} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `p.scale_down_cycles` removals; the cycles.
pub async fn run(sys: &System, board: &Arc<Board>, p: &Params) -> anyhow::Result<Vec<Cycle>> {
    let timeout = Duration::from_secs(p.timeout_s);
    let id = sys.sks.create_pool(&workload::nodepool(&SCALE_DOWN_POOL, 2, 1, 2, false)).await?;
    // Pods bound as soon as the instances exist, before their Nodes join: no node is ever empty unless emptied.
    let mut known = sys.instances(id).await?;
    if known.len() != 2 {
        bail!("nodepool {} has {} instances, not 2", SCALE_DOWN_POOL.name, known.len());
    }
    hold(sys, "c-keep", &known[0]).await?;
    let mut victim = (String::from("c-hold-1"), known[1].clone());
    hold(sys, &victim.0, &victim.1).await?;
    running(board, "c-keep", timeout).await?;
    let mut cycles = Vec::new();
    for cycle in 1..=p.scale_down_cycles {
        let node = running(board, &victim.0, timeout).await?;
        tokio::time::sleep(SETTLE).await;
        let mark = sys.mark();
        let before = Counts::sent(&sys.sks.metrics().await?);
        eprintln!("scale-down {cycle}: emptying node {node}");
        let sent = Instant::now();
        match sys.kube.send("DELETE", &format!("/api/v1/namespaces/{NAMESPACE}/pods/{}", victim.0), None).await? {
            (200 | 202, _) => {}
            (status, answer) => bail!("deleting pod {}: {status}: {answer}", victim.0),
        }
        let names = [victim.0.clone()];
        board.wait(&names, timeout, |s| s.deleted.is_some()).await;
        let empty = board.of(&names)[0].deleted.context("the pod was not seen deleted")?;
        let deadline = Instant::now() + Duration::from_secs(p.unneeded_s) + timeout;
        let evict = loop {
            if let Some(c) = sys.calls_from(mark).into_iter().find(|c| c.is(EVICT, id)) {
                break Some(c);
            }
            if Instant::now() >= deadline {
                eprintln!("scale-down {cycle}: no nodepool eviction within {timeout:?} of the unneeded time");
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let calls = sys.calls_from(mark);
        let after = Counts::sent(&sys.sks.metrics().await?);
        let to_evict = evict.as_ref().map(|c| ms(c.at.saturating_duration_since(empty)));
        cycles.push(Cycle {
            node: node.clone(),
            delete_ms: ms(empty.saturating_duration_since(sent)),
            empty_to_evict_ms: to_evict,
            beyond_unneeded_ms: to_evict.map(|t| t - p.unneeded_s as f64 * 1000.0),
            evictions: calls.iter().filter(|c| c.operation == EVICT).count(),
            calls: calls::by_operation(&calls),
            sent: after.since(&before),
        });
        board.forget(&names);
        if evict.is_none() || cycle == p.scale_down_cycles {
            break;
        }
        // Back to two nodes by hand, the new one with its pod from the start.
        sys.scale_in_zone(id, 2).await?;
        let fresh = new_instance(sys, id, &known, timeout).await?;
        known.push(fresh.clone());
        victim = (format!("c-hold-{}", cycle + 1), fresh);
        hold(sys, &victim.0, &victim.1).await?;
    }
    Ok(cycles)
}
