//! The bench's own first-fit-decreasing count, what the autoscaler's node
//! counts are judged by. Written here from the textbook rule, not taken from
//! `sks-autoscaler`, so a mistake shared by both cannot hide.
//!
//! Each pod may go to some pools (its nodeSelector, and whether it fits an
//! empty node of the pool at all). Pods that may go to one pool only go
//! there; the others ("flexible") all go to one pool, chosen as the
//! documented rule says (docs/api.md, Autoscaling): the choice that leaves
//! the least CPU and memory unrequested (as shares of all the nodes it
//! needs), then the one with fewer nodes.

use serde::Serialize;

/// What a pod requests, or what a node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Size {
    /// CPU, millicores.
    pub cpu_millis: i64,
    /// Memory, bytes.
    pub memory_bytes: i64,
    /// Pod slots (1 per pod; a node's `pods` allocatable).
    pub pods: i64,
}

impl Size {
    /// A pod's requests.
    pub fn pod(cpu_millis: i64, memory_bytes: i64) -> Self {
        Size { cpu_millis, memory_bytes, pods: 1 }
    }

    fn plus(self, o: Size) -> Size {
        Size {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
            pods: self.pods + o.pods,
        }
    }

    /// Whether `self` fits within `room`.
    pub fn within(self, room: Size) -> bool {
        self.cpu_millis <= room.cpu_millis && self.memory_bytes <= room.memory_bytes && self.pods <= room.pods
    }

    /// The larger of its CPU and memory shares of `bin`.
    fn share_of(self, bin: Size) -> f64 {
        let share = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        share(self.cpu_millis, bin.cpu_millis).max(share(self.memory_bytes, bin.memory_bytes))
    }
}

/// How many nodes of size `bin` first-fit-decreasing needs for `pods`, and what they request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Packing {
    /// Nodes opened.
    pub nodes: usize,
    /// What the packed pods request in all.
    pub requested: Size,
    /// Pods that fit no empty node.
    pub unplaced: usize,
}

/// Unrequested share of the CPU of all the nodes of `packings` (on nodes of
/// `pools`), plus that of their memory.
fn waste(packings: &[Packing], pools: &[Pool]) -> f64 {
    let (mut offered, mut requested) = (Size::default(), Size::default());
    for (k, p) in packings.iter().zip(pools) {
        let n = i64::try_from(k.nodes).unwrap_or(i64::MAX);
        offered =
            offered.plus(Size { cpu_millis: p.node.cpu_millis * n, memory_bytes: p.node.memory_bytes * n, pods: 0 });
        requested = requested.plus(k.requested);
    }
    let unused = |req: i64, total: i64| if total > 0 { (total - req) as f64 / total as f64 } else { 0.0 };
    unused(requested.cpu_millis, offered.cpu_millis) + unused(requested.memory_bytes, offered.memory_bytes)
}

/// First-fit-decreasing: pods largest share first, each on the first node with room, a new node when none has.
pub fn pack(pods: &[Size], bin: Size) -> Packing {
    let mut order: Vec<Size> = pods.to_vec();
    order.sort_by(|a, b| b.share_of(bin).total_cmp(&a.share_of(bin)));
    let mut nodes: Vec<Size> = Vec::new();
    let mut out = Packing::default();
    for pod in order {
        if !pod.within(bin) {
            out.unplaced += 1;
            continue;
        }
        match nodes.iter_mut().find(|used| used.plus(pod).within(bin)) {
            Some(used) => *used = used.plus(pod),
            None => nodes.push(pod),
        }
        out.requested = out.requested.plus(pod);
    }
    out.nodes = nodes.len();
    out
}

/// A pool pods may go to.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// What one of its nodes offers (a Node's allocatable).
    pub node: Size,
}

/// A pod and the pools its nodeSelector allows (indices into the pools).
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its requests.
    pub size: Size,
    /// Pools whose labels its nodeSelector matches.
    pub allowed: Vec<usize>,
}

/// The reference: FFD nodes per pool under the chosen placement of flexible pods.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    /// Nodes per pool, in the pools' order.
    pub nodes: Vec<usize>,
    /// Their sum.
    pub total: usize,
    /// The pool flexible pods went to (`None`: there were none).
    pub flexible_to: Option<String>,
    /// Every choice tried: (flexible pods' pool, nodes per pool, waste).
    pub choices: Vec<(String, Vec<usize>, f64)>,
    /// Pods no pool can host.
    pub unplaced: usize,
}

impl Reference {
    /// Nodes per pool when flexible pods go to pool `choice` (its only packing without flexible pods).
    pub fn nodes_for(&self, choice: Option<&str>) -> Vec<usize> {
        choice
            .and_then(|c| self.choices.iter().find(|(name, ..)| name == c))
            .map_or_else(|| self.nodes.clone(), |(_, nodes, _)| nodes.clone())
    }

    /// The choice whose nodes per pool are nearest to `asked` (the one an autoscaler that asked for them made).
    pub fn nearest(&self, asked: &[i64]) -> Option<String> {
        let distance = |nodes: &[usize]| -> i64 {
            nodes.iter().zip(asked).map(|(&n, &a)| (i64::try_from(n).unwrap_or(i64::MAX) - a).abs()).sum()
        };
        self.choices.iter().min_by_key(|(_, nodes, _)| distance(nodes)).map(|(name, ..)| name.clone())
    }
}

/// The pools each pod can go to: allowed by its selector and fitting an empty node.
fn eligible(pod: &Pod, pools: &[Pool]) -> Vec<usize> {
    pod.allowed.iter().copied().filter(|&i| pools.get(i).is_some_and(|p| pod.size.within(p.node))).collect()
}

/// FFD per pool when flexible pods go to `flexible_to` where they can.
fn assign(pods: &[Pod], pools: &[Pool], flexible_to: usize) -> (Vec<Packing>, usize) {
    let mut per_pool: Vec<Vec<Size>> = vec![Vec::new(); pools.len()];
    let mut unplaced = 0;
    for pod in pods {
        let can = eligible(pod, pools);
        let to = if can.contains(&flexible_to) { Some(flexible_to) } else { can.first().copied() };
        match to {
            Some(i) => per_pool[i].push(pod.size),
            None => unplaced += 1,
        }
    }
    (per_pool.iter().zip(pools).map(|(sizes, p)| pack(sizes, p.node)).collect(), unplaced)
}

/// The bench's reference count for `pods` over `pools`.
pub fn reference(pods: &[Pod], pools: &[Pool]) -> Reference {
    let flexible = pods.iter().any(|p| eligible(p, pools).len() > 1);
    let candidates: Vec<usize> = if flexible { (0..pools.len()).collect() } else { vec![0] };
    let mut best: Option<(f64, usize, usize, Vec<usize>, usize)> = None;
    let mut choices = Vec::new();
    for to in candidates {
        let (packings, unplaced) = assign(pods, pools, to);
        let waste = waste(&packings, pools);
        let nodes: Vec<usize> = packings.iter().map(|k| k.nodes).collect();
        let total: usize = nodes.iter().sum();
        choices.push((pools[to].name.clone(), nodes.clone(), (waste * 1000.0).round() / 1000.0));
        let better =
            best.as_ref().is_none_or(|(w, t, ..)| waste < *w - 1e-9 || ((waste - *w).abs() <= 1e-9 && total < *t));
        if better {
            best = Some((waste, total, to, nodes, unplaced));
        }
    }
    let (_, total, to, nodes, unplaced) = best.unwrap_or((0.0, 0, 0, vec![0; pools.len()], 0));
    Reference {
        nodes,
        total,
        flexible_to: flexible.then(|| pools[to].name.clone()),
        choices: if flexible { choices } else { Vec::new() },
        unplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: i64 = 1 << 20;

    #[test]
    fn first_fit_decreasing_fills_gaps_with_small_pods() {
        let node = Size { cpu_millis: 1930, memory_bytes: 2972 * MI, pods: 110 };
        // Three 1200m pods need three nodes; six 300m pods fill the gaps (730m each).
        let mut pods: Vec<Size> = (0..6).map(|_| Size::pod(300, 64 * MI)).collect();
        pods.extend((0..3).map(|_| Size::pod(1200, 64 * MI)));
        let p = pack(&pods, node);
        assert_eq!((p.nodes, p.unplaced), (3, 0));
        assert_eq!(p.requested.cpu_millis, 5400);
        let too_big = pack(&[Size::pod(2000, MI)], node);
        assert_eq!((too_big.nodes, too_big.unplaced), (0, 1));
        let slots = pack(&vec![Size::pod(0, 0); 111], node);
        assert_eq!(slots.nodes, 2, "110 pods a node");
    }

    #[test]
    fn flexible_pods_go_where_least_is_left_unrequested() {
        let medium = Pool { name: "a".into(), node: Size { cpu_millis: 1930, memory_bytes: 2972 * MI, pods: 110 } };
        let memory_rich =
            Pool { name: "b".into(), node: Size { cpu_millis: 3920, memory_bytes: 13622 * MI, pods: 110 } };
        let pools = [medium, memory_rich];
        // CPU-heavy flexible pods waste the memory of b's nodes: they go to a; b-only pods to b.
        let mut pods: Vec<Pod> = (0..10).map(|_| Pod { size: Size::pod(900, 256 * MI), allowed: vec![0, 1] }).collect();
        pods.push(Pod { size: Size::pod(500, 4096 * MI), allowed: vec![1] });
        // Too large for a: b whatever the choice.
        pods.push(Pod { size: Size::pod(2500, 1024 * MI), allowed: vec![0, 1] });
        let r = reference(&pods, &pools);
        assert_eq!(r.flexible_to.as_deref(), Some("a"));
        assert_eq!(r.nodes, [5, 1]);
        assert_eq!(r.total, 6);
        assert_eq!(r.choices.len(), 2);
        assert_eq!(r.choices[1].1, [0, 4], "all on b: 9000m + 500m + 2500m over 3920m nodes");
        assert_eq!(r.nearest(&[0, 5]).as_deref(), Some("b"));
        assert_eq!(r.nodes_for(Some("b")), [0, 4]);
        assert_eq!(r.nodes_for(None), [5, 1]);
        let fixed = reference(&pods[10..11], &pools);
        assert_eq!((fixed.flexible_to.as_deref(), fixed.nearest(&[3, 3])), (None, None));
        assert_eq!(fixed.nodes_for(Some("a")), [0, 1], "without flexible pods, the one packing");
    }
}
