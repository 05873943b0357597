//! Scale-up planning: which pools grow, by how many nodes, for which pending
//! pods, and why the others cannot be helped.
//!
//! The plan is a simulation of kube-scheduler placing the pending pods, largest
//! first ([`crate::binpack`]):
//!
//! 1. A pod that fits the free capacity of an existing node in service (Ready,
//!    not cordoned, not being replaced or removed) needs nothing; the capacity
//!    it takes is gone for the pods after it.
//! 2. Each pool's nodes on their way (`upcoming`) and the nodes this plan adds
//!    are template nodes, its DaemonSet pods on them. Pods are placed first-fit
//!    on them, trying pools in the order the expander would grow them and each
//!    pool's nodes in order, upcoming ones first.
//! 3. Pods left over are packed first-fit-decreasing onto new nodes of the pool
//!    the expander ([`crate::expander`]) picks among those that can host some
//!    of them, up to the pool's maximum, again and again until no pool with
//!    room can host any; the new nodes join step 2, which runs again, until it
//!    places every pod it can.
//!
//! Because the plan's own nodes are placed exactly as upcoming ones are,
//! planning again with them counted as upcoming places every pod the same way
//! and asks for nothing more: a second decision while nodes boot never
//! overshoots. A pool grows by the nodes its pods use beyond its upcoming ones.
//!
//! A pod no pool can help gets, per pool, the first scheduler filter its empty
//! template node fails (its taints, its labels, too small for the instance
//! type), or cluster-autoscaler's `max node group size reached` when it would
//! fit but the pool is at its maximum. DaemonSet pods are left to their
//! controller, as cluster-autoscaler leaves them.

use std::collections::BTreeMap;

use crate::binpack::{Bins, sort_decreasing};
use crate::events::{ScaleUpInfo, not_triggered_scale_up, scaled_up_group, triggered_scale_up};
use crate::expander::{Expansion, best};
use crate::pod::PodInfo;
use crate::predicates::{Unfit, fits, placement, resources};
use crate::resources::Resources;
use crate::snapshot::ClusterSnapshot;
use crate::template::Template;

/// cluster-autoscaler's reason for a pool at its maximum.
pub const MAX_SIZE_REACHED: &str = "max node group size reached";

/// How to choose between pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleUpOptions {
    /// Priority of pools by name, higher first; unlisted pools have 0.
    pub priorities: BTreeMap<String, i32>,
}

/// Why a pool cannot help a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolReason {
    /// The pod does not fit a new node of the pool.
    Unfit(Unfit),
    /// It would, but the pool is at its maximum.
    MaxSizeReached,
}

impl PoolReason {
    /// cluster-autoscaler's reasons for it.
    pub fn reasons(self) -> impl Iterator<Item = &'static str> {
        let (unfit, max) = match self {
            PoolReason::Unfit(u) => (Some(u), None),
            PoolReason::MaxSizeReached => (None, Some(MAX_SIZE_REACHED)),
        };
        unfit.into_iter().flat_map(Unfit::reasons).chain(max)
    }
}

/// A pool growing.
#[derive(Debug, Clone, PartialEq)]
pub struct Increase<'a> {
    /// The pool.
    pub template: &'a Template,
    /// Its target size now.
    pub from: u32,
    /// Its new target size.
    pub to: u32,
    /// The pending pods its new nodes are for.
    pub pods: Vec<&'a PodInfo>,
}

impl Increase<'_> {
    /// As cluster-autoscaler prints it.
    pub fn info(&self) -> ScaleUpInfo<'_> {
        ScaleUpInfo { group: &self.template.name, current: self.from, new: self.to, max: self.template.max }
    }

    /// The `TriggeredScaleUp` message for each of its pods.
    pub fn pod_message(&self) -> String {
        triggered_scale_up(&[self.info()])
    }

    /// The `ScaledUpGroup` message for the NodePool.
    pub fn pool_message(&self) -> String {
        scaled_up_group(&self.info())
    }
}

/// A template node the plan puts pending pods on: one on its way, or a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateNode<'a> {
    /// Its pool.
    pub template: &'a Template,
    /// Its index among the pool's upcoming-then-new nodes.
    pub index: usize,
    /// Whether it is on its way already (else the plan adds it).
    pub upcoming: bool,
    /// The pending pods placed on it, besides the pool's DaemonSet pods.
    pub pods: Vec<&'a PodInfo>,
}

/// A pod no pool can help, and why, per pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Unhelped<'a> {
    /// The pod.
    pub pod: &'a PodInfo,
    /// Each pool, in the templates' order, with its reason.
    pub reasons: Vec<(&'a Template, PoolReason)>,
}

impl Unhelped<'_> {
    /// The `NotTriggerScaleUp` message.
    pub fn message(&self) -> String {
        not_triggered_scale_up(self.reasons.iter().flat_map(|(_, r)| r.reasons()))
    }
}

/// A scale-up plan; every list is in a deterministic order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleUp<'a> {
    /// The pools to grow, by name.
    pub increases: Vec<Increase<'a>>,
    /// Pending pods that fit existing nodes already.
    pub fits_existing: Vec<&'a PodInfo>,
    /// Pending pods that nodes on their way will take.
    pub awaiting_upcoming: Vec<&'a PodInfo>,
    /// The template nodes pending pods are placed on, by pool name and index.
    pub template_nodes: Vec<TemplateNode<'a>>,
    /// Pending pods no pool can help.
    pub unhelped: Vec<Unhelped<'a>>,
    /// Pools at their maximum with pending pods they could otherwise take, by name.
    pub limited: Vec<&'a Template>,
    /// Pending DaemonSet pods, left to their controller.
    pub ignored: Vec<&'a PodInfo>,
}

/// Plans the scale-up for `pending` pods (those kube-scheduler reports
/// unschedulable) in `cluster`, over the autoscaled pools' `templates`.
pub fn plan_scale_up<'a>(
    pending: impl IntoIterator<Item = &'a PodInfo>,
    cluster: &ClusterSnapshot<'a>,
    templates: &'a [Template],
    options: &ScaleUpOptions,
) -> ScaleUp<'a> {
    let mut plan = ScaleUp::default();
    let (ignored, mut pods): (Vec<&PodInfo>, Vec<&PodInfo>) = pending.into_iter().partition(|p| p.daemonset);
    plan.ignored = ignored;
    sort_decreasing(&mut pods, reference(cluster, templates));
    let (fit, left) = place_on_existing(&pods, cluster);
    plan.fits_existing = fit;
    let pools = Pools::new(&left, templates, &options.priorities);
    let placed = pools.place();
    let mut on_nodes: BTreeMap<(&str, usize, usize), Vec<&PodInfo>> = BTreeMap::new();
    for (i, (&pod, at)) in left.iter().zip(&placed).enumerate() {
        match *at {
            Some((t, index)) => on_nodes.entry((&templates[t].name, t, index)).or_default().push(pod),
            None => plan.unhelped.push(Unhelped {
                pod,
                reasons: templates
                    .iter()
                    .zip(&pools.eligible[i])
                    .map(|(t, e)| (t, e.map_or_else(PoolReason::Unfit, |()| PoolReason::MaxSizeReached)))
                    .collect(),
            }),
        }
    }
    for ((_, t, index), pods) in on_nodes {
        let template = &templates[t];
        let upcoming = index < template.upcoming as usize;
        if upcoming {
            plan.awaiting_upcoming.extend(&pods);
        } else {
            // Nodes are used in order, upcoming ones first: the last one used sets the size.
            let to = template.target_size + (index + 1 - template.upcoming as usize) as u32;
            match plan.increases.last_mut().filter(|inc| std::ptr::eq(inc.template, template)) {
                Some(inc) => {
                    inc.pods.extend(&pods);
                    inc.to = to;
                }
                None => plan.increases.push(Increase { template, from: template.target_size, to, pods: pods.clone() }),
            }
        }
        plan.template_nodes.push(TemplateNode { template, index, upcoming, pods });
    }
    plan.limited = templates
        .iter()
        .filter(|t| {
            plan.unhelped
                .iter()
                .any(|u| u.reasons.iter().any(|(p, r)| std::ptr::eq(*p, *t) && *r == PoolReason::MaxSizeReached))
        })
        .collect();
    plan.limited.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

/// The node shape dominant shares are measured against: the largest template
/// (or node) in each resource.
fn reference(cluster: &ClusterSnapshot<'_>, templates: &[Template]) -> Resources {
    let largest = templates.iter().map(|t| t.allocatable).fold(Resources::ZERO, Resources::max);
    if largest == Resources::ZERO {
        cluster.nodes().iter().map(|n| n.info.allocatable).fold(Resources::ZERO, Resources::max)
    } else {
        largest
    }
}

/// Places pods (in order) on existing nodes in service, first-fit by node
/// name; returns those placed and those left.
fn place_on_existing<'a>(pods: &[&'a PodInfo], cluster: &ClusterSnapshot<'a>) -> (Vec<&'a PodInfo>, Vec<&'a PodInfo>) {
    let nodes: Vec<_> = cluster.nodes().iter().filter(|n| n.info.in_service()).collect();
    let mut requested: Vec<Resources> = nodes.iter().map(|n| n.requested).collect();
    let (mut fit, mut left) = (Vec::new(), Vec::new());
    for &pod in pods {
        // Resources first: the cheap test that rejects most nodes.
        let spot = nodes.iter().zip(&requested).position(|(n, &on)| {
            resources(pod.requests, n.info.allocatable - on).is_ok() && placement(pod, &n.view_with(on)).is_ok()
        });
        match spot {
            Some(i) => {
                requested[i] += pod.requests;
                fit.push(pod);
            }
            None => left.push(pod),
        }
    }
    (fit, left)
}

/// The pods left after existing nodes, and the pools that may take them.
struct Pools<'p, 'a> {
    pods: &'p [&'a PodInfo],
    templates: &'a [Template],
    priorities: &'p BTreeMap<String, i32>,
    /// Per pod, per pool: whether the pod fits a new node of the pool.
    eligible: Vec<Vec<Result<(), Unfit>>>,
    /// Per pool: nodes it may have in all for these pods (upcoming plus headroom).
    capacity: Vec<usize>,
    /// Pools in the order pods try them.
    order: Vec<usize>,
}

impl<'p, 'a> Pools<'p, 'a> {
    fn new(pods: &'p [&'a PodInfo], templates: &'a [Template], priorities: &'p BTreeMap<String, i32>) -> Self {
        let eligible = pods.iter().map(|p| templates.iter().map(|t| fits(p, &t.view())).collect()).collect();
        let capacity = templates.iter().map(|t| t.upcoming as usize + t.headroom() as usize).collect();
        let mut pools = Pools { pods, templates, priorities, eligible, capacity, order: Vec::new() };
        // The order only depends on what stays the same when planned nodes
        // become upcoming ones (pods, templates, capacities), so planning again
        // tries pools in the same order.
        let everyone: Vec<usize> = (0..pods.len()).collect();
        let (_, chosen) = pools.expand(&everyone, &pools.capacity);
        let mut by_name: Vec<usize> = (0..templates.len()).collect();
        by_name.sort_by(|&a, &b| templates[a].name.cmp(&templates[b].name));
        pools.order = chosen;
        for t in by_name {
            if !pools.order.contains(&t) {
                pools.order.push(t);
            }
        }
        pools
    }

    /// Where each pod goes: `(pool, node index)`, upcoming nodes first; `None`
    /// when no pool can take it.
    fn place(&self) -> Vec<Option<(usize, usize)>> {
        let upcoming: Vec<usize> = self.templates.iter().map(|t| t.upcoming as usize).collect();
        let mut nodes: Vec<usize> = upcoming.iter().zip(&self.capacity).map(|(&u, &c)| u.min(c)).collect();
        // Each round adds at least one node to a pool below its capacity, so it ends.
        loop {
            let placed = self.place_on(&nodes);
            let left: Vec<usize> = (0..self.pods.len()).filter(|&i| placed[i].is_none()).collect();
            let room: Vec<usize> = self.capacity.iter().zip(&nodes).map(|(c, n)| c - n).collect();
            let (add, _) = self.expand(&left, &room);
            if add.iter().all(|&a| a == 0) {
                return placed;
            }
            for (n, a) in nodes.iter_mut().zip(add) {
                *n += a;
            }
        }
    }

    /// First-fit of every pod on `nodes[pool]` template nodes of each pool,
    /// trying pools in order; opens none.
    fn place_on(&self, nodes: &[usize]) -> Vec<Option<(usize, usize)>> {
        let mut bins: Vec<Bins> = self
            .templates
            .iter()
            .zip(nodes)
            .map(|(t, &n)| Bins::new(t.allocatable, t.daemonset_requests, n, n))
            .collect();
        (0..self.pods.len())
            .map(|i| {
                self.order.iter().filter(|&&t| self.eligible[i][t].is_ok()).find_map(|&t| {
                    let slot = bins[t].first_fit(self.pods[i].requests)?;
                    Some((t, slot))
                })
            })
            .collect()
    }

    /// The expander's choices for pods `left` (indices, in placement order)
    /// with `room[pool]` new nodes allowed: nodes to add per pool, and the
    /// pools in the order chosen.
    fn expand(&self, left: &[usize], room: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut waiting = vec![false; self.pods.len()];
        for &i in left {
            waiting[i] = true;
        }
        let mut add = vec![0; self.templates.len()];
        let mut chosen = Vec::new();
        loop {
            let options: Vec<Expansion> =
                (0..self.templates.len()).filter_map(|t| self.option(t, room[t] - add[t], left, &waiting)).collect();
            let Some(pick) = best(&options, self.templates, self.priorities) else { break };
            add[pick.pool] += pick.nodes as usize;
            if !chosen.contains(&pick.pool) {
                chosen.push(pick.pool);
            }
            for &i in &pick.pods {
                waiting[i] = false;
            }
        }
        (add, chosen)
    }

    /// Growing `pool` by at most `room` nodes for the waiting pods it can host,
    /// packed first-fit-decreasing.
    fn option(&self, pool: usize, room: usize, left: &[usize], waiting: &[bool]) -> Option<Expansion> {
        if room == 0 {
            return None;
        }
        let t = &self.templates[pool];
        let mut bins = Bins::new(t.allocatable, t.daemonset_requests, 0, room);
        let mut hosted = Vec::new();
        let mut requested = Resources::ZERO;
        for &i in left.iter().filter(|&&i| waiting[i] && self.eligible[i][pool].is_ok()) {
            if bins.first_fit(self.pods[i].requests).is_some() {
                hosted.push(i);
                requested += self.pods[i].requests;
            }
        }
        (!hosted.is_empty()).then(|| Expansion { pool, nodes: bins.len() as u32, requested, pods: hosted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, MI, node, pod, spec, template};
    use crate::template::TemplateSpec;
    use sks_keys::label;

    fn plan<'a>(pending: &'a [PodInfo], cluster: &ClusterSnapshot<'a>, templates: &'a [Template]) -> ScaleUp<'a> {
        plan_scale_up(pending, cluster, templates, &ScaleUpOptions::default())
    }

    fn sizes(p: &ScaleUp<'_>) -> Vec<(String, u32, u32)> {
        p.increases.iter().map(|i| (i.template.name.clone(), i.from, i.to)).collect()
    }

    fn names(pods: &[&PodInfo]) -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p.name.to_string()).collect();
        n.sort();
        n
    }

    fn sized(mut s: TemplateSpec, target: u32, upcoming: u32, max: u32) -> TemplateSpec {
        (s.target_size, s.upcoming, s.max) = (target, upcoming, max);
        s
    }

    #[test]
    fn pods_are_bin_packed_onto_as_few_new_nodes_as_first_fit_decreasing_needs() {
        // medium: 1930m allocatable. Three 1200m pods need three nodes; six 300m pods fill the gaps.
        let templates = [template(spec("medium", 2, 4 * GI))];
        let mut pending: Vec<PodInfo> = (0..3).map(|i| pod(&format!("big-{i}")).cpu(1200).build()).collect();
        pending.extend((0..6).map(|i| pod(&format!("small-{i}")).cpu(300).build()));
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("medium".to_owned(), 0, 3)]);
        assert_eq!(p.increases[0].pods.len(), 9);
        assert_eq!(p.increases[0].pod_message(), "pod triggered scale-up: [{medium 0->3 (max: 10)}]");
        assert_eq!(p.increases[0].pool_message(), "Scale-up: setting group medium size to 3 instead of 0 (max: 10)");
        assert!(p.unhelped.is_empty() && p.fits_existing.is_empty() && p.awaiting_upcoming.is_empty());
    }

    #[test]
    fn pods_that_fit_existing_nodes_need_nothing() {
        let nodes = [node("n1", 2000, 4 * GI).build(), node("n2", 2000, 4 * GI).cordoned().build()];
        let running = [pod("running").cpu(1000).on("n1").build()];
        let cluster = ClusterSnapshot::new(&nodes, &running);
        let templates = [template(spec("medium", 2, 4 * GI))];
        let pending = [pod("a").cpu(600).build(), pod("b").cpu(600).build()];
        let p = plan(&pending, &cluster, &templates);
        assert_eq!(names(&p.fits_existing), ["a"], "one fits beside the running pod; the cordoned node takes none");
        assert_eq!(sizes(&p), [("medium".to_owned(), 0, 1)]);
        assert_eq!(names(&p.increases[0].pods), ["b"]);
    }

    #[test]
    fn nodes_on_their_way_count_as_capacity() {
        let templates = [template(sized(spec("medium", 2, 4 * GI), 2, 2, 10))];
        let pending: Vec<PodInfo> = (0..5).map(|i| pod(&format!("p{i}")).cpu(600).build()).collect();
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        // Two upcoming nodes take three pods each (1800m of 1930m): five pods need nothing more.
        assert!(p.increases.is_empty(), "{:?}", sizes(&p));
        assert_eq!(p.awaiting_upcoming.len(), 5);
        let more: Vec<PodInfo> = (0..8).map(|i| pod(&format!("p{i}")).cpu(600).build()).collect();
        let p = plan(&more, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("medium".to_owned(), 2, 3)], "six on the way, two on one new node");
        assert_eq!(p.awaiting_upcoming.len(), 6);
    }

    #[test]
    fn the_pool_comes_from_the_expander() {
        let templates = [template(spec("big", 8, 32 * GI)), template(spec("small", 2, 4 * GI))];
        let pending = [pod("web").cpu(1500).memory(2 * GI).build()];
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("small".to_owned(), 0, 1)], "least waste");
        let priorities = BTreeMap::from([("big".to_owned(), 5)]);
        let p = plan_scale_up(&pending, &ClusterSnapshot::default(), &templates, &ScaleUpOptions { priorities });
        assert_eq!(sizes(&p), [("big".to_owned(), 0, 1)], "priority first");
    }

    #[test]
    fn selectors_and_tolerations_send_pods_to_their_pools() {
        let mut gpu = spec("gpu", 8, 32 * GI);
        gpu.taints = vec![crate::taints::Taint::new("dedicated", "gpu", crate::taints::Effect::NoSchedule)];
        gpu.labels = [("accelerator", "a100")].into_iter().collect();
        let templates = [template(gpu), template(spec("workers", 4, 8 * GI))];
        let pending = [
            pod("trainer").cpu(4000).toleration("dedicated", "gpu").selector("accelerator", "a100").build(),
            pod("web").cpu(500).build(),
        ];
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("gpu".to_owned(), 0, 1), ("workers".to_owned(), 0, 1)]);
        assert_eq!(names(&p.increases[0].pods), ["trainer"]);
        assert_eq!(names(&p.increases[1].pods), ["web"]);
    }

    #[test]
    fn a_pod_no_pool_can_help_gets_a_reason_per_pool() {
        let mut tainted = spec("tainted", 2, 4 * GI);
        tainted.taints = vec![crate::taints::Taint::new("dedicated", "db", crate::taints::Effect::NoSchedule)];
        let full = sized(spec("full", 8, 32 * GI), 3, 0, 3);
        let templates =
            [template(tainted), template(full), template(spec("tiny", 1, GI)), template(spec("zoned", 8, 32 * GI))];
        let wanted = pod("wanted").cpu(1500).memory(2 * GI).selector(label::ZONE, "ch-gva-2").build();
        let elsewhere = pod("elsewhere").selector(label::ZONE, "de-fra-1").build();
        let pending = [wanted.clone(), elsewhere];
        let full_only: [Template; 3] = [templates[0].clone(), templates[1].clone(), templates[2].clone()];
        let p = plan(&pending, &ClusterSnapshot::default(), &full_only);
        let messages: Vec<(String, String)> =
            p.unhelped.iter().map(|u| (u.pod.name.to_string(), u.message())).collect();
        assert_eq!(
            messages,
            [
                (
                    "wanted".to_owned(),
                    "pod didn't trigger scale-up: 1 Insufficient cpu, 1 Insufficient memory, 1 max node group size reached, \
                     1 node(s) had untolerated taint(s)"
                        .to_owned()
                ),
                (
                    "elsewhere".to_owned(),
                    "pod didn't trigger scale-up: 1 node(s) had untolerated taint(s), \
                     2 node(s) didn't match Pod's node affinity/selector"
                        .to_owned()
                ),
            ]
        );
        assert_eq!(p.limited.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["full"]);
        assert!(p.increases.is_empty());
        // With a pool that can take it, the pod is helped and the full pool is not limiting anyone.
        let alone = [wanted];
        let p = plan(&alone, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("zoned".to_owned(), 0, 1)]);
        assert!(p.limited.is_empty());
    }

    #[test]
    fn the_maximum_caps_a_pool_and_the_rest_is_reported() {
        let templates = [template(sized(spec("medium", 2, 4 * GI), 1, 0, 3))];
        let pending: Vec<PodInfo> = (0..4).map(|i| pod(&format!("p{i}")).cpu(1500).build()).collect();
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("medium".to_owned(), 1, 3)]);
        assert_eq!(p.unhelped.len(), 2);
        assert_eq!(p.unhelped[0].message(), "pod didn't trigger scale-up: 1 max node group size reached");
        assert_eq!(p.limited.len(), 1);
    }

    #[test]
    fn daemonset_pods_are_carried_by_templates_and_never_scaled_for() {
        let ds = pod("agent").owner("DaemonSet").cpu(500).memory(512 * MI).build();
        let templates = [Template::new(spec("medium", 2, 4 * GI), std::slice::from_ref(&ds))];
        // 1930m - 500m leaves 1430m: two 700m pods per node.
        let pending: Vec<PodInfo> =
            (0..4).map(|i| pod(&format!("p{i}")).cpu(700).build()).chain([ds.clone()]).collect();
        let p = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert_eq!(sizes(&p), [("medium".to_owned(), 0, 2)]);
        assert_eq!(names(&p.ignored), ["agent"]);
    }

    #[test]
    fn planning_again_with_the_plan_on_its_way_asks_nothing_more() {
        let templates = [template(spec("big", 8, 32 * GI)), template(spec("small", 2, 4 * GI))];
        let pending: Vec<PodInfo> =
            (0..40).map(|i| pod(&format!("p{i:02}")).cpu(100 + 37 * i).memory((64 + 50 * i) * MI).build()).collect();
        let first = plan(&pending, &ClusterSnapshot::default(), &templates);
        assert!(!first.increases.is_empty());
        let after: Vec<Template> = templates
            .iter()
            .map(|t| {
                let added = first.increases.iter().find(|i| i.template.name == t.name).map_or(0, |i| i.to - i.from);
                Template { target_size: t.target_size + added, upcoming: t.upcoming + added, ..t.clone() }
            })
            .collect();
        let second = plan(&pending, &ClusterSnapshot::default(), &after);
        assert!(second.increases.is_empty(), "{:?}", sizes(&second));
        assert_eq!(second.awaiting_upcoming.len(), pending.len());
    }
}
