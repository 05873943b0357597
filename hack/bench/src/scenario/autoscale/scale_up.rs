//! Scale-up rounds. Each round starts with both pools at 0 nodes and sends
//! bursts of pending pods (the first the big one, the others while the
//! nodes asked for the earlier ones still boot), then waits until every pod
//! runs, and takes the pools back to 0 (by hand, as a user would) for the
//! next round.
//!
//! Per burst: when the bench's pod watch saw the first and last pod turn
//! Unschedulable, when the scale calls reached the zone (the recording
//! proxy), how many there were per pool, the sizes asked for, and the
//! bench's own first-fit-decreasing count for the round's pods so far.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt as _;
use serde::Serialize;
use uuid::Uuid;

use super::calls::{self, Call, SCALE};
use super::ffd::{self, Size};
use super::nodes;
use super::pods::{Board, Seen};
use super::system::System;
use super::workload::{self, NAMESPACE, POOLS};
use super::{CONCURRENCY, Params, ms, secs};
use crate::requests::Counts;

/// Quiet time after a round before its closing reading, so trailing calls are counted in it.
const TRAIL: Duration = Duration::from_secs(2);
/// What a Node of each pool offers when none registered yet, from docs/operations.md's table
/// (standard.medium, standard.extra-large); the Nodes' own allocatable replaces it once seen.
const DOCUMENTED: [Size; 2] = [
    Size { cpu_millis: 1930, memory_bytes: 2972 << 20, pods: 110 },
    Size { cpu_millis: 3920, memory_bytes: 13622 << 20, pods: 110 },
];

/// The two autoscaled pools, by `POOLS` index.
pub struct Pools {
    /// Their orchestrator ids.
    pub ids: [Uuid; 2],
    /// What one Node of each offers (`status.allocatable`), as last seen.
    pub node: [Size; 2],
}

impl Pools {
    /// Creates both pools through sks-apiserver (autoscaled from 0 to `max`) and takes them to 0 nodes.
    pub async fn create(sys: &System, max: i64) -> anyhow::Result<Pools> {
        let mut ids = [Uuid::nil(); 2];
        for (i, spec) in POOLS.iter().enumerate() {
            // A NodePool is created with at least one node: 1, then 0 by hand.
            ids[i] = sys.sks.create_pool(&workload::nodepool(spec, 1, 0, max, true)).await?;
            sys.sks.scale(spec.name, 0).await?;
            eprintln!("nodepool {} ({}): {}", spec.name, spec.instance_type, ids[i]);
        }
        Ok(Pools { ids, node: DOCUMENTED })
    }

    /// The pools as the reference packs onto them.
    fn reference_pools(&self) -> Vec<ffd::Pool> {
        POOLS.iter().zip(self.node).map(|(s, node)| ffd::Pool { name: s.name.to_owned(), node }).collect()
    }

    /// Learns each pool's Node allocatable from its Nodes, if it has any.
    async fn learn_allocatable(&mut self, sys: &System) -> anyhow::Result<()> {
        for (i, id) in self.ids.iter().enumerate() {
            if let Some(size) = nodes::of_pool(&sys.kube, *id).await?.iter().find_map(|n| n.allocatable) {
                self.node[i] = size;
            }
        }
        Ok(())
    }

    /// Whether pods of `shape` fit either pool (selector and size): where they go is the autoscaler's choice.
    fn flexible(&self, shape: &workload::Shape) -> bool {
        let fits = shape.allowed().into_iter().filter(|&p| shape.size().within(self.node[p])).count();
        fits == POOLS.len()
    }

    /// Nodes of each pool in service now.
    async fn in_service(&self, sys: &System) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::new();
        for id in self.ids {
            out.push(nodes::of_pool(&sys.kube, id).await?.iter().filter(|n| n.in_service()).count());
        }
        Ok(out)
    }
}

/// One burst's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    /// Pods sent.
    pub pods: usize,
    /// Seconds from the first POST to the last answer.
    pub create_s: f64,
    /// Nodes of each pool in service when it was sent.
    pub in_service_at_start: Vec<usize>,
    /// Nodes of each pool asked for when it was sent.
    pub requested_at_start: Vec<i64>,
    /// Its pods seen Unschedulable (the others were bound at once).
    pub unschedulable: usize,
    /// From its start to the first and the last of its pods seen Unschedulable, ms.
    pub unschedulable_first_ms: Option<f64>,
    /// See `unschedulable_first_ms`.
    pub unschedulable_last_ms: Option<f64>,
    /// The sizes its scale calls asked for, per pool, in order.
    pub scale_sizes: Vec<Vec<i64>>,
    /// From the last of its pods turning Unschedulable to the first scale call
    /// at or after it, ms; without one (the last pods needed nothing more),
    /// to the last scale call before it (negative).
    pub last_unschedulable_to_scale_ms: Option<f64>,
    /// From the first of its pods turning Unschedulable to the first scale call, ms.
    pub first_unschedulable_to_first_scale_ms: Option<f64>,
    /// Nodes of each pool asked for at the end of its window.
    pub requested_after: Vec<i64>,
    /// Decisions (scale calls less than 50 ms apart) in its window.
    pub decisions: usize,
    /// The most scale calls one of those decisions made to one pool.
    pub most_per_pool: usize,
    /// The bench's FFD references for the round's pods up to and with this
    /// burst, and for this burst's pods alone (every choice of where flexible pods go).
    pub reference: ffd::Reference,
    /// See `reference`.
    pub alone: ffd::Reference,
    /// The FFD count per pool of the round's pods so far, flexible pods where the round's first decision put them.
    pub ffd_so_far: Vec<usize>,
    /// The same for this burst's pods alone: the most a decision for them
    /// should add (nodes on their way for earlier bursts only lower it).
    pub ffd_alone: Vec<usize>,
    /// Orchestrator calls in its window, by operation.
    pub calls: BTreeMap<String, u64>,
}

/// One round's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Its number, from 1.
    pub round: usize,
    /// Its bursts.
    pub bursts: Vec<Burst>,
    /// Pods sent, and how many of them ran in the end.
    pub pods: usize,
    /// See `pods`.
    pub running: usize,
    /// From the first burst to every pod Running, s.
    pub all_running_s: Option<f64>,
    /// Nodes of each pool asked for in the end.
    pub requested: Vec<i64>,
    /// Where the round's first decision put the flexible pods (the FFD choice nearest to what it asked).
    pub flexible_to: Option<String>,
    /// The bench's FFD count per pool for all the round's pods, flexible pods there.
    pub ffd: Vec<usize>,
    /// Nodes asked for beyond `ffd` in all (negative: fewer).
    pub beyond_ffd: i64,
    /// The bench's FFD reference for all the round's pods, every choice, and the least-waste one.
    pub least_waste: ffd::Reference,
    /// Scale calls after the first pod was bound (nodes had joined), and the nodes they added:
    /// pods the scheduler placed otherwise than the plan, left without room.
    pub late_scale_calls: usize,
    /// See `late_scale_calls`.
    pub late_nodes: i64,
    /// Nodes of the pools in service at the end that hold none of the round's pods.
    pub empty_nodes: usize,
    /// Where the scheduler put the flexible pods (those both pools can take), per pool.
    pub flexible_on: Vec<usize>,
    /// What the Nodes offered (the reference's bins).
    pub node_allocatable: Vec<Size>,
    /// Every orchestrator call of the round, by operation.
    pub calls: BTreeMap<String, u64>,
    /// Every scale call of the round: nodepool (name, or id if not one of the pools), size, ms from the round's start, status.
    pub scale_calls: Vec<(String, Option<i64>, f64, u16)>,
    /// The round's duration until every pod ran, s.
    pub seconds: f64,
    /// sks-apiserver's CPU time over the round, s.
    pub sks_cpu_s: f64,
    /// sks-apiserver's RSS at the end of the round, MiB.
    pub sks_rss_mib: f64,
    /// What sks-apiserver sent to the Kubernetes API during it.
    #[serde(skip)]
    pub sent: Counts,
}

/// What was noted when a burst was sent.
struct Sent {
    names: Vec<String>,
    first: usize,
    started: Instant,
    create_s: f64,
    in_service: Vec<usize>,
    requested: Vec<i64>,
}

/// Creates the pods of `names`, the `first`th of the round onwards; the errors.
async fn create(sys: &System, round: usize, names: &[String], first: usize) -> Vec<String> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let results: Vec<Option<String>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let body = workload::burst_pod(name, round, &workload::shape_of(first + i));
            let path = &path;
            async move {
                match sys.kube.send("POST", path, Some(&body)).await {
                    Ok((201, _)) => None,
                    Ok((status, answer)) => Some(format!("creating pod {name}: {status}: {answer}")),
                    Err(e) => Some(format!("creating pod {name}: {e:#}")),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// Deletes the pods of `names` (those already gone are fine); the errors.
pub async fn delete(sys: &System, names: &[String]) -> Vec<String> {
    let results: Vec<Option<String>> = futures::stream::iter(names)
        .map(|name| async move {
            match sys.kube.send("DELETE", &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}"), None).await {
                Ok((200 | 202 | 404, _)) => None,
                Ok((status, answer)) => Some(format!("deleting pod {name}: {status}: {answer}")),
                Err(e) => Some(format!("deleting pod {name}: {e:#}")),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// The size asked of each pool by the last scale call among `calls` (0 without one).
fn asked(calls: &[Call], pools: &Pools) -> Vec<i64> {
    pools.ids.iter().map(|id| calls::last_size(calls, *id).unwrap_or(0)).collect()
}

/// The reference for pods `range` of a round.
fn reference(range: std::ops::Range<usize>, pools: &Pools) -> ffd::Reference {
    let pods: Vec<ffd::Pod> = range
        .map(|i| {
            let shape = workload::shape_of(i);
            ffd::Pod { size: shape.size(), allowed: shape.allowed() }
        })
        .collect();
    ffd::reference(&pods, &pools.reference_pools())
}

fn since(t: Option<Instant>, from: Instant) -> Option<f64> {
    t.map(|t| ms(t.saturating_duration_since(from)))
}

/// Signed `b - a`, ms.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if b >= a { ms(b - a) } else { -ms(a - b) }
}

/// A burst's figures, from what was sent, seen and called in its window `[started, end)`.
fn burst_figures(sent: &Sent, seen: &[Seen], window: &[Call], upto: &[Call], pools: &Pools) -> Burst {
    let unsched: Vec<Instant> = seen.iter().filter_map(|s| s.unschedulable).collect();
    let (first, last) = (unsched.iter().min().copied(), unsched.iter().max().copied());
    let scales: Vec<&Call> = window.iter().filter(|c| c.operation == SCALE).collect();
    let scale_sizes: Vec<Vec<i64>> = pools
        .ids
        .iter()
        .map(|id| scales.iter().filter(|c| c.nodepool == Some(*id)).filter_map(|c| c.size).collect())
        .collect();
    // The decision that reacted to the last pod: the first at or after it; else (the last pods needed
    // nothing more) the last one before it.
    let reaction = last.and_then(|l| {
        let after = scales.iter().map(|c| c.at).filter(|&t| t >= l).min();
        after.or_else(|| scales.iter().map(|c| c.at).max())
    });
    let first_scale = scales.iter().map(|c| c.at).min();
    let requested_after = asked(upto, pools);
    Burst {
        pods: sent.names.len(),
        create_s: sent.create_s,
        in_service_at_start: sent.in_service.clone(),
        requested_at_start: sent.requested.clone(),
        unschedulable: unsched.len(),
        unschedulable_first_ms: since(first, sent.started),
        unschedulable_last_ms: since(last, sent.started),
        scale_sizes,
        last_unschedulable_to_scale_ms: last.zip(reaction).map(|(l, r)| signed_ms(l, r)),
        first_unschedulable_to_first_scale_ms: first.zip(first_scale).map(|(f, s)| signed_ms(f, s)),
        requested_after,
        decisions: calls::decisions(window).len(),
        most_per_pool: calls::most_per_pool(window),
        reference: reference(0..sent.first + sent.names.len(), pools),
        alone: reference(sent.first..sent.first + sent.names.len(), pools),
        ffd_so_far: Vec::new(),
        ffd_alone: Vec::new(),
        calls: calls::by_operation(window),
    }
}

/// The scale calls among `calls` that came at or after `joined` (the first
/// pod bound in the round), and the nodes they added.
fn late(calls: &[Call], pools: &Pools, joined: Option<Instant>) -> (usize, i64) {
    let (mut count, mut added) = (0, 0);
    for id in pools.ids {
        let mut size = 0;
        for c in calls.iter().filter(|c| c.is(SCALE, id) && c.status < 300) {
            let to = c.size.unwrap_or(size);
            if joined.is_some_and(|j| c.at >= j) {
                count += 1;
                added += to - size;
            }
            size = to;
        }
    }
    (count, added)
}

/// Waits until a scale call after `mark` arrived at or after `from`, at most `timeout`.
async fn wait_scale(sys: &System, mark: usize, from: Instant, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if sys.calls_from(mark).iter().any(|c| c.operation == SCALE && c.at >= from) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Runs round `round`; the pools are at 0 nodes and hold no pod when it starts, and again when it ends.
pub async fn round(
    sys: &System,
    board: &Arc<Board>,
    pools: &mut Pools,
    p: &Params,
    round: usize,
) -> anyhow::Result<Round> {
    let timeout = Duration::from_secs(p.timeout_s);
    let mark = sys.mark();
    let before = Counts::sent(&sys.sks.metrics().await?);
    let cpu_before = sys.sks_proc.cpu_seconds()?;
    let started = Instant::now();
    let mut sent: Vec<Sent> = Vec::new();
    let mut all: Vec<String> = Vec::new();
    for (b, &count) in p.bursts.iter().enumerate() {
        let first = all.len();
        let names: Vec<String> = (first..first + count).map(|i| workload::pod_name(round, b + 1, i)).collect();
        let in_service = pools.in_service(sys).await?;
        let requested = asked(&sys.calls_from(mark), pools);
        eprintln!(
            "round {round}, burst {}: {count} pods (pools in service {in_service:?}, asked {requested:?})",
            b + 1
        );
        let at = Instant::now();
        let errors = create(sys, round, &names, first).await;
        if let Some(e) = errors.first() {
            bail!("{} of {count} pods not created, e.g. {e}", errors.len());
        }
        let create_s = secs(at.elapsed());
        all.extend(names.iter().cloned());
        let seen = board.wait(&names, timeout, |s| s.unschedulable.is_some() || s.bound.is_some()).await;
        if seen < names.len() {
            eprintln!("round {round}, burst {}: only {seen} of {count} pods unschedulable or bound", b + 1);
        }
        sent.push(Sent { names, first, started: at, create_s, in_service, requested });
        // The next burst comes while the nodes asked for this one boot.
        if b + 1 < p.bursts.len() {
            wait_scale(sys, mark, at, Duration::from_secs(10)).await;
            tokio::time::sleep(Duration::from_millis(p.burst_gap_ms)).await;
        }
    }
    let running = board.wait(&all, timeout, |s| s.running.is_some()).await;
    let seconds = secs(started.elapsed());
    if running < all.len() {
        eprintln!("round {round}: only {running} of {} pods running after {timeout:?}", all.len());
    }
    tokio::time::sleep(TRAIL).await;
    let after = Counts::sent(&sys.sks.metrics().await?);
    let sks_cpu_s = secs(Duration::from_secs_f64(sys.sks_proc.cpu_seconds()? - cpu_before));
    let sks_rss_mib = sys.sks_proc.memory()?.rss_mib;
    pools.learn_allocatable(sys).await?;
    let calls = sys.calls_from(mark);
    let seen_all = board.of(&all);
    let mut bursts: Vec<Burst> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let end = sent.get(i + 1).map(|n| n.started);
            let window = calls::between(&calls, s.started, end);
            let upto = calls::between(&calls, started, end);
            burst_figures(s, &seen_all[s.first..s.first + s.names.len()], &window, &upto, pools)
        })
        .collect();
    let requested = asked(&calls, pools);
    let least_waste = reference(0..all.len(), pools);
    let flexible_to = bursts.first().and_then(|b| b.reference.nearest(&b.requested_after));
    for b in &mut bursts {
        b.ffd_so_far = b.reference.nodes_for(flexible_to.as_deref());
        b.ffd_alone = b.alone.nodes_for(flexible_to.as_deref());
    }
    let ffd = least_waste.nodes_for(flexible_to.as_deref());
    let (late_scale_calls, late_nodes) = late(&calls, pools, seen_all.iter().filter_map(|s| s.bound).min());
    let mut empty_nodes = 0;
    let mut flexible_on = vec![0; POOLS.len()];
    for (p, id) in pools.ids.iter().enumerate() {
        for node in nodes::of_pool(&sys.kube, *id).await?.iter().filter(|n| n.in_service()) {
            let on = |s: &Seen| s.node.as_deref() == Some(node.name.as_str());
            empty_nodes += usize::from(!seen_all.iter().any(on));
            flexible_on[p] +=
                (0..all.len()).filter(|&i| on(&seen_all[i]) && pools.flexible(&workload::shape_of(i))).count();
        }
    }
    let total: i64 = requested.iter().sum();
    let result = Round {
        round,
        pods: all.len(),
        running,
        all_running_s: (running == all.len()).then(|| {
            secs(seen_all.iter().filter_map(|s| s.running).max().unwrap_or(started).saturating_duration_since(started))
        }),
        beyond_ffd: total - i64::try_from(ffd.iter().sum::<usize>()).unwrap_or(i64::MAX),
        ffd,
        flexible_to,
        least_waste,
        late_scale_calls,
        late_nodes,
        requested,
        empty_nodes,
        flexible_on,
        node_allocatable: pools.node.to_vec(),
        calls: calls::by_operation(&calls),
        scale_calls: calls
            .iter()
            .filter(|c| c.operation == SCALE)
            .map(|c| {
                let pool = pools.ids.iter().position(|id| c.nodepool == Some(*id));
                let name = pool.map_or_else(|| format!("{:?}", c.nodepool), |i| POOLS[i].name.to_owned());
                (name, c.size, signed_ms(started, c.at), c.status)
            })
            .collect(),
        seconds,
        sks_cpu_s,
        sks_rss_mib,
        sent: after.since(&before),
        bursts,
    };
    teardown(sys, board, pools, &all, timeout).await?;
    Ok(result)
}

/// Deletes the round's pods and takes both pools back to 0 nodes, waiting until their Nodes are gone.
async fn teardown(
    sys: &System,
    board: &Board,
    pools: &Pools,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    if let Some(e) = delete(sys, names).await.first() {
        bail!("tearing the round down: {e}");
    }
    board.wait(names, timeout, |s| s.deleted.is_some()).await;
    board.forget(names);
    for spec in &POOLS {
        sys.sks.scale(spec.name, 0).await?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = 0;
        for id in pools.ids {
            left += nodes::of_pool(&sys.kube, id).await?.len();
        }
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{left} Nodes of the bursts' pools still there {timeout:?} after scaling them to 0");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
