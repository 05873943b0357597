//! Scale-down planning: which nodes are unneeded, which may be removed this
//! round, and why each other node stays (cluster-autoscaler's
//! `UnremovableReason` names, for events and metrics).
//!
//! A round takes every node of an autoscaled pool that is in service and not
//! annotated `scale-down-disabled`, nodes with nothing to move first, then by
//! utilization ([`crate::utilization`]), lowest first. A node is unneeded when
//! its utilization is below the threshold, none of its pods keeps it
//! ([`crate::drain`]), and its pods fit on other nodes in service that this
//! round does not already empty, placed one after the other as kube-scheduler
//! would place them, busiest nodes first. Its pods then count on the nodes they
//! would land on, so every unneeded node can go at once, and a node taking
//! pods is judged with them.
//!
//! Of the unneeded nodes, the empty ones first, a node is removed when it has
//! been unneeded for `unneeded_time`, its pool has not grown within
//! `delay_after_add`, its pool stays at or above its minimum (counting
//! removals under way and those chosen before it), and the round's limits
//! (`max_removals`, and `max_drains` for nodes with pods to move) allow.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::binpack::sort_decreasing;
use crate::drain::{BlockingReason, Disposition, disposition};
use crate::node::NodeInfo;
use crate::pdb::{Budgets, PdbInfo};
use crate::pod::PodInfo;
use crate::predicates::fits;
use crate::resources::Resources;
use crate::snapshot::ClusterSnapshot;
use crate::template::Template;
use crate::unneeded::{UnneededTracker, at_least};
use crate::utilization::utilization;

/// The knobs of scale-down, cluster-autoscaler's flags and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleDownOptions {
    /// `--scale-down-utilization-threshold` (0.5).
    pub utilization_threshold: f64,
    /// `--scale-down-unneeded-time` (10 minutes).
    pub unneeded_time: Duration,
    /// `--scale-down-delay-after-add` (10 minutes), per pool here.
    pub delay_after_add: Duration,
    /// The last scale-up of each pool, by nodepool id.
    pub last_scale_up: BTreeMap<String, Timestamp>,
    /// Removals per round (`--max-empty-bulk-delete`, 10).
    pub max_removals: usize,
    /// Removals of nodes with pods to move per round (`--max-drain-parallelism`, 1).
    pub max_drains: usize,
    /// Pending pods will run on existing nodes or on nodes on their way: no
    /// removal this round (cluster-autoscaler's `DisableScaleDownForLoop`),
    /// or a node that just came up, still empty, goes before they land on it.
    pub pods_landing: bool,
}

impl Default for ScaleDownOptions {
    fn default() -> Self {
        ScaleDownOptions {
            utilization_threshold: 0.5,
            unneeded_time: Duration::from_secs(600),
            delay_after_add: Duration::from_secs(600),
            last_scale_up: BTreeMap::new(),
            max_removals: 10,
            max_drains: 1,
            pods_landing: false,
        }
    }
}

/// Why a node stays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unremovable<'a> {
    /// Its pool is not autoscaled.
    NotAutoscaled,
    /// Being removed, replaced (auto-heal, upgrade) or cordoned already.
    CurrentlyBeingDeleted,
    /// Not Ready: auto-heal's business, not scale-down's.
    NotReady,
    /// Annotated `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`.
    ScaleDownDisabledAnnotation,
    /// Its utilization is at or above the threshold.
    NotUnderutilized,
    /// A pod keeps it.
    BlockedByPod {
        /// The pod.
        pod: &'a PodInfo,
        /// Why.
        reason: BlockingReason,
    },
    /// Its pods would not all fit elsewhere.
    NoPlaceToMovePods,
    /// Unneeded, but not for `unneeded_time` yet.
    NotUnneededLongEnough,
    /// Its pool grew within `delay_after_add`.
    ScaleDownInCooldown,
    /// Its pool would go below its minimum.
    NodeGroupMinSizeReached,
}

impl Unremovable<'_> {
    /// The reason's name: cluster-autoscaler's `UnremovableReason`, except
    /// `NotReady` and `ScaleDownInCooldown` (a cluster-wide scale-down status
    /// there, a per-pool reason here).
    pub fn as_str(&self) -> &'static str {
        match self {
            Unremovable::NotAutoscaled => "NotAutoscaled",
            Unremovable::CurrentlyBeingDeleted => "CurrentlyBeingDeleted",
            Unremovable::NotReady => "NotReady",
            Unremovable::ScaleDownDisabledAnnotation => "ScaleDownDisabledAnnotation",
            Unremovable::NotUnderutilized => "NotUnderutilized",
            Unremovable::BlockedByPod { .. } => "BlockedByPod",
            Unremovable::NoPlaceToMovePods => "NoPlaceToMovePods",
            Unremovable::NotUnneededLongEnough => "NotUnneededLongEnough",
            Unremovable::ScaleDownInCooldown => "ScaleDownInCooldown",
            Unremovable::NodeGroupMinSizeReached => "NodeGroupMinSizeReached",
        }
    }
}

impl fmt::Display for Unremovable<'_> {
    /// The name, and for a blocking pod the pod and its reason:
    /// `BlockedByPod: default/web (NotReplicated)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if let Unremovable::BlockedByPod { pod, reason } = self {
            write!(f, ": {}/{} ({reason})", pod.namespace, pod.name)?;
        }
        Ok(())
    }
}

/// A node to remove now.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal<'a> {
    /// The node.
    pub node: &'a NodeInfo,
    /// Its pool.
    pub template: &'a Template,
    /// Its utilization.
    pub utilization: f64,
    /// Its pods to evict, each with the node it was found room on.
    pub moves: Vec<(&'a PodInfo, &'a NodeInfo)>,
}

impl Removal<'_> {
    /// Whether it has no pods to move (cluster-autoscaler's empty node).
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// A scale-down round's decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleDown<'a> {
    /// Nodes to remove now, empty ones first.
    pub removals: Vec<Removal<'a>>,
    /// Every node found unneeded this round, removed now or not.
    pub unneeded: Vec<&'a NodeInfo>,
    /// Every other node of the cluster and why it stays, by node name.
    pub unremovable: Vec<(&'a NodeInfo, Unremovable<'a>)>,
}

/// Plans a scale-down round at `now`; records the unneeded nodes in `tracker`.
pub fn plan_scale_down<'a>(
    cluster: &ClusterSnapshot<'a>,
    templates: &'a [Template],
    pdbs: &[PdbInfo],
    tracker: &mut UnneededTracker,
    now: Timestamp,
    options: &ScaleDownOptions,
) -> ScaleDown<'a> {
    let mut round = Round::new(cluster, templates, pdbs);
    let mut plan = ScaleDown::default();
    let unneeded = round.find_unneeded(options.utilization_threshold, &mut plan.unremovable);
    tracker.update(unneeded.iter().map(|u| &*cluster.nodes()[u.node].info.name), now);
    plan.unneeded = unneeded.iter().map(|u| cluster.nodes()[u.node].info).collect();
    round.choose_removals(unneeded, tracker, now, options, &mut plan);
    plan.unremovable.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    plan
}

/// A node found unneeded: its index, its pool's and its utilization.
struct Unneeded {
    node: usize,
    pool: usize,
    utilization: f64,
}

/// The simulated cluster of one round: nodes found unneeded are gone and
/// their pods are on the nodes they would land on.
struct Round<'c, 'a> {
    cluster: &'c ClusterSnapshot<'a>,
    templates: &'a [Template],
    budgets: Budgets<'c>,
    /// Each node's pool, as an index into the templates.
    pool: Vec<Option<usize>>,
    /// Per pool: nodes being removed already.
    deleting: Vec<u32>,
    /// Per node: what its pods request, and its pods, as simulated.
    requested: Vec<Resources>,
    pods: Vec<Vec<&'a PodInfo>>,
    /// Per node: found unneeded, with the pods moved off it.
    moved_from: Vec<Option<Vec<&'a PodInfo>>>,
    /// Nodes pods may move to, busiest first.
    destinations: Vec<usize>,
}

impl<'c, 'a> Round<'c, 'a> {
    fn new(cluster: &'c ClusterSnapshot<'a>, templates: &'a [Template], pdbs: &'c [PdbInfo]) -> Self {
        let nodes = cluster.nodes();
        let pool: Vec<Option<usize>> = nodes
            .iter()
            .map(|n| n.info.nodepool_id().and_then(|id| templates.iter().position(|t| t.nodepool_id == id)))
            .collect();
        let mut deleting = vec![0; templates.len()];
        for (n, p) in nodes.iter().zip(&pool) {
            if let Some(p) = p.filter(|_| n.info.being_deleted()) {
                deleting[p] += 1;
            }
        }
        let mut round = Round {
            cluster,
            templates,
            budgets: Budgets::new(pdbs),
            pool,
            deleting,
            requested: nodes.iter().map(|n| n.requested).collect(),
            pods: nodes.iter().map(|n| n.pods.clone()).collect(),
            moved_from: vec![None; nodes.len()],
            destinations: Vec::new(),
        };
        let mut destinations: Vec<(f64, usize)> =
            (0..nodes.len()).filter(|&i| nodes[i].info.in_service()).map(|i| (round.utilization(i), i)).collect();
        destinations.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        round.destinations = destinations.into_iter().map(|(_, i)| i).collect();
        round
    }

    /// Node `i`'s pool if it is a candidate for removal, or why it is not.
    fn candidate(&self, i: usize) -> Result<usize, Unremovable<'a>> {
        let info = self.cluster.nodes()[i].info;
        let pool = self.pool[i].ok_or(Unremovable::NotAutoscaled)?;
        if info.being_deleted() || info.replacement.is_some() || info.unschedulable {
            Err(Unremovable::CurrentlyBeingDeleted)
        } else if !info.ready {
            Err(Unremovable::NotReady)
        } else if info.scale_down_disabled {
            Err(Unremovable::ScaleDownDisabledAnnotation)
        } else {
            Ok(pool)
        }
    }

    /// The candidates that are unneeded, empty ones first then by utilization;
    /// why each other node is not goes to `unremovable`.
    fn find_unneeded(
        &mut self,
        threshold: f64,
        unremovable: &mut Vec<(&'a NodeInfo, Unremovable<'a>)>,
    ) -> Vec<Unneeded> {
        let nodes = self.cluster.nodes();
        let mut order = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            match self.candidate(i) {
                Ok(pool) => order.push((self.has_moves(i), self.utilization(i), i, pool)),
                Err(reason) => unremovable.push((node.info, reason)),
            }
        }
        order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut unneeded = Vec::new();
        for (_, _, node, pool) in order {
            match self.try_empty(node, threshold) {
                Ok(utilization) => unneeded.push(Unneeded { node, pool, utilization }),
                Err(reason) => unremovable.push((nodes[node].info, reason)),
            }
        }
        unneeded
    }

    /// Of the `unneeded` nodes, empty ones first, those that may go now.
    fn choose_removals(
        &self,
        mut unneeded: Vec<Unneeded>,
        tracker: &UnneededTracker,
        now: Timestamp,
        options: &ScaleDownOptions,
        plan: &mut ScaleDown<'a>,
    ) {
        let homes = self.homes();
        let moved = |u: &Unneeded| self.moved_from[u.node].as_deref().unwrap_or_default();
        // The sort is stable: each group keeps the evaluation order.
        unneeded.sort_by_key(|u| !moved(u).is_empty());
        let mut chosen = vec![0u32; self.templates.len()];
        let mut drains = 0;
        for u in &unneeded {
            let node = self.cluster.nodes()[u.node].info;
            let template = &self.templates[u.pool];
            // Removals under way and those chosen before it count against the minimum.
            let remaining =
                i64::from(template.target_size) - i64::from(self.deleting[u.pool]) - i64::from(chosen[u.pool]);
            let stays_above_min = remaining > i64::from(template.min);
            let cooling = options.pods_landing
                || options
                    .last_scale_up
                    .get(&template.nodepool_id)
                    .is_some_and(|&at| !at_least(at, now, options.delay_after_add));
            let reason = if !tracker.unneeded_for(&node.name, options.unneeded_time, now) {
                Some(Unremovable::NotUnneededLongEnough)
            } else if cooling {
                Some(Unremovable::ScaleDownInCooldown)
            } else if !stays_above_min {
                Some(Unremovable::NodeGroupMinSizeReached)
            } else {
                None
            };
            if let Some(reason) = reason {
                plan.unremovable.push((node, reason));
                continue;
            }
            let drain = !moved(u).is_empty();
            // Past the round's limits the node stays unneeded, for the next round.
            if plan.removals.len() >= options.max_removals || (drain && drains >= options.max_drains) {
                continue;
            }
            chosen[u.pool] += 1;
            drains += usize::from(drain);
            // Every moved pod is on a staying node at the end of the round.
            let moves = moved(u)
                .iter()
                .filter_map(|&p| homes.get(&(p as *const PodInfo)).map(|&d| (p, self.cluster.nodes()[d].info)))
                .collect();
            plan.removals.push(Removal { node, template, utilization: u.utilization, moves });
        }
    }

    fn utilization(&self, i: usize) -> f64 {
        utilization(self.cluster.nodes()[i].info.allocatable, self.pods[i].iter().copied())
    }

    fn has_moves(&self, i: usize) -> bool {
        self.pods[i].iter().any(|p| disposition(p, &self.budgets) != Disposition::Stays)
    }

    /// Whether node `i` is unneeded; if so, moves its pods and returns its utilization.
    fn try_empty(&mut self, i: usize, threshold: f64) -> Result<f64, Unremovable<'a>> {
        let util = self.utilization(i);
        if util >= threshold {
            return Err(Unremovable::NotUnderutilized);
        }
        let mut moving = Vec::new();
        for &pod in &self.pods[i] {
            match disposition(pod, &self.budgets) {
                Disposition::Stays => {}
                Disposition::Moves => moving.push(pod),
                Disposition::Blocks(reason) => return Err(Unremovable::BlockedByPod { pod, reason }),
            }
        }
        sort_decreasing(&mut moving, self.cluster.nodes()[i].info.allocatable);
        let nodes = self.cluster.nodes();
        let mut requested = self.requested.clone();
        let mut landing = Vec::with_capacity(moving.len());
        for &pod in &moving {
            let spot = self.destinations.iter().copied().find(|&d| {
                d != i && self.moved_from[d].is_none() && fits(pod, &nodes[d].view_with(requested[d])).is_ok()
            });
            let Some(d) = spot else { return Err(Unremovable::NoPlaceToMovePods) };
            requested[d] += pod.requests;
            landing.push(d);
        }
        self.requested = requested;
        for (&pod, d) in moving.iter().zip(landing) {
            self.pods[d].push(pod);
            self.budgets.consume(pod);
        }
        self.moved_from[i] = Some(moving);
        Ok(util)
    }

    /// Where each moved pod is at the end of the round.
    fn homes(&self) -> HashMap<*const PodInfo, usize> {
        let mut homes = HashMap::new();
        for (d, pods) in self.pods.iter().enumerate().filter(|(d, _)| self.moved_from[*d].is_none()) {
            for &p in pods {
                homes.insert(p as *const PodInfo, d);
            }
        }
        homes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, NodeFixture, node, pod, spec, template};
    use crate::node::Replacement;
    use crate::selector::LabelSelector;
    use crate::template::Template;

    const T0: &str = "2026-11-21T10:00:00Z";
    const T11: &str = "2026-11-21T10:11:00Z";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pool(min: u32, target: u32) -> Template {
        let mut s = spec("workers", 2, 4 * GI);
        (s.min, s.target_size) = (min, target);
        template(s)
    }

    fn worker(name: &str) -> NodeFixture {
        node(name, 2000, 4 * GI).pool("np-workers")
    }

    /// Two rounds, 11 minutes apart: the second one may remove.
    fn plan_twice<'a>(
        cluster: &ClusterSnapshot<'a>,
        templates: &'a [Template],
        pdbs: &[PdbInfo],
        options: &ScaleDownOptions,
    ) -> ScaleDown<'a> {
        let mut tracker = UnneededTracker::new();
        plan_scale_down(cluster, templates, pdbs, &mut tracker, at(T0), options);
        plan_scale_down(cluster, templates, pdbs, &mut tracker, at(T11), options)
    }

    fn removed(p: &ScaleDown<'_>) -> Vec<String> {
        p.removals.iter().map(|r| r.node.name.to_string()).collect()
    }

    fn reasons(p: &ScaleDown<'_>) -> Vec<(String, String)> {
        p.unremovable.iter().map(|(n, r)| (n.name.to_string(), r.to_string())).collect()
    }

    #[test]
    fn an_empty_node_goes_once_unneeded_long_enough() {
        let nodes = [worker("a").build(), worker("b").build()];
        let pods = [pod("web").cpu(500).on("a").build(), pod("agent").owner("DaemonSet").cpu(100).on("b").build()];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let templates = [pool(0, 2)];
        let mut tracker = UnneededTracker::new();
        let options = ScaleDownOptions::default();
        let first = plan_scale_down(&cluster, &templates, &[], &mut tracker, at(T0), &options);
        assert!(first.removals.is_empty());
        assert_eq!(
            reasons(&first),
            [("a".into(), "NoPlaceToMovePods".into()), ("b".into(), "NotUnneededLongEnough".into())]
        );
        let second = plan_scale_down(&cluster, &templates, &[], &mut tracker, at(T11), &options);
        assert_eq!(removed(&second), ["b"]);
        assert!(second.removals[0].is_empty(), "only a DaemonSet pod: nothing to move");
    }

    #[test]
    fn a_half_used_node_goes_when_its_pods_fit_elsewhere() {
        let nodes = [worker("a").build(), worker("b").build(), worker("c").build()];
        let pods = [
            pod("a1").cpu(900).on("a").build(),
            pod("b1").cpu(300).on("b").build(),
            pod("b2").cpu(300).on("b").build(),
            pod("c1").cpu(1200).on("c").build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let templates = [pool(0, 3)];
        let p = plan_twice(&cluster, &templates, &[], &ScaleDownOptions::default());
        // b (30%) goes first, its pods onto the busiest node with room (c, then c again);
        // a (45%) would need 900m elsewhere: c has 200m left, so a stays.
        assert_eq!(removed(&p), ["b"]);
        let moves: Vec<(String, String)> =
            p.removals[0].moves.iter().map(|(p, n)| (p.name.to_string(), n.name.to_string())).collect();
        assert_eq!(moves, [("b1".into(), "c".into()), ("b2".into(), "c".into())]);
        assert_eq!(reasons(&p), [("a".into(), "NoPlaceToMovePods".into()), ("c".into(), "NotUnderutilized".into())]);
    }

    #[test]
    fn never_removed_nodes_say_why() {
        let nodes = [
            worker("disabled").scale_down_disabled().build(),
            worker("healed").replaced(Replacement::AutoHeal).build(),
            worker("upgraded").replaced(Replacement::Upgrade).build(),
            worker("cordoned").cordoned().build(),
            worker("down").not_ready().build(),
            node("other-pool", 2000, 4 * GI).pool("np-manual").build(),
            worker("bare").build(),
            worker("unsafe").build(),
            worker("storage").build(),
            worker("system").build(),
            worker("room").build(),
        ];
        let pods = [
            pod("bare").bare().on("bare").build(),
            pod("unsafe").safe_to_evict(false).on("unsafe").build(),
            pod("storage").local_storage().on("storage").build(),
            pod("dns").namespace("kube-system").on("system").build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let templates = [pool(0, 10)];
        let p = plan_twice(&cluster, &templates, &[], &ScaleDownOptions::default());
        assert_eq!(removed(&p), ["room"]);
        assert_eq!(
            reasons(&p),
            [
                ("bare".into(), "BlockedByPod: default/bare (NotReplicated)".into()),
                ("cordoned".into(), "CurrentlyBeingDeleted".into()),
                ("disabled".into(), "ScaleDownDisabledAnnotation".into()),
                ("down".into(), "NotReady".into()),
                ("healed".into(), "CurrentlyBeingDeleted".into()),
                ("other-pool".into(), "NotAutoscaled".into()),
                ("storage".into(), "BlockedByPod: default/storage (LocalStorageRequested)".into()),
                ("system".into(), "BlockedByPod: kube-system/dns (UnmovableKubeSystemPod)".into()),
                ("unsafe".into(), "BlockedByPod: default/unsafe (NotSafeToEvictAnnotation)".into()),
                ("upgraded".into(), "CurrentlyBeingDeleted".into()),
            ]
        );
    }

    #[test]
    fn a_pdb_lets_kube_system_pods_move_and_an_exhausted_one_blocks() {
        let nodes = [worker("a").build(), worker("b").build()];
        let pods = [pod("dns").namespace("kube-system").label("app", "dns").on("a").build()];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let templates = [pool(0, 2)];
        let budget = |allowed: i32| PdbInfo {
            namespace: "kube-system".into(),
            name: "dns".into(),
            selector: Some(LabelSelector {
                match_labels: [("app", "dns")].into_iter().collect(),
                match_expressions: Box::new([]),
            }),
            disruptions_allowed: allowed,
        };
        let options = ScaleDownOptions { max_removals: 1, ..ScaleDownOptions::default() };
        let allowed = plan_twice(&cluster, &templates, &[budget(1)], &options);
        assert_eq!(removed(&allowed), ["b"], "the empty node first; one removal per round");
        let options = ScaleDownOptions { max_removals: 2, ..ScaleDownOptions::default() };
        let allowed = plan_twice(&cluster, &templates, &[budget(1)], &options);
        assert_eq!(removed(&allowed), ["b"], "a's pod can only go to b, which empties first");
        let nodes = [worker("a").build(), worker("b").build()];
        let pods = [
            pod("dns").namespace("kube-system").label("app", "dns").on("a").build(),
            pod("x").cpu(100).on("b").build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let exhausted = plan_twice(&cluster, &templates, &[budget(0)], &ScaleDownOptions::default());
        assert_eq!(reasons(&exhausted)[0], ("a".into(), "BlockedByPod: kube-system/dns (NotEnoughPdb)".into()));
        let allowed = plan_twice(&cluster, &templates, &[budget(1)], &ScaleDownOptions::default());
        assert_eq!(removed(&allowed), ["a"]);
    }

    #[test]
    fn the_minimum_counts_removals_under_way_and_chosen() {
        let nodes = [
            worker("a").build(),
            worker("b").build(),
            worker("c").build(),
            worker("d").taint(sks_keys::taint::TO_BE_DELETED, "1").build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &[]);
        // Target 4 with d on its way out: 3 count, minimum 2 leaves one removal.
        let templates = [pool(2, 4)];
        let p = plan_twice(&cluster, &templates, &[], &ScaleDownOptions::default());
        assert_eq!(removed(&p), ["a"]);
        assert_eq!(
            reasons(&p),
            [
                ("b".into(), "NodeGroupMinSizeReached".into()),
                ("c".into(), "NodeGroupMinSizeReached".into()),
                ("d".into(), "CurrentlyBeingDeleted".into()),
            ]
        );
    }

    #[test]
    fn a_recent_scale_up_holds_its_pool() {
        let nodes = [worker("a").build()];
        let cluster = ClusterSnapshot::new(&nodes, &[]);
        let templates = [pool(0, 1)];
        let recent = ScaleDownOptions {
            last_scale_up: BTreeMap::from([("np-workers".to_owned(), at("2026-11-21T10:05:00Z"))]),
            ..ScaleDownOptions::default()
        };
        let p = plan_twice(&cluster, &templates, &[], &recent);
        assert_eq!(reasons(&p), [("a".into(), "ScaleDownInCooldown".into())]);
        let old = ScaleDownOptions {
            last_scale_up: BTreeMap::from([("np-workers".to_owned(), at("2026-11-21T09:00:00Z"))]),
            ..ScaleDownOptions::default()
        };
        assert_eq!(removed(&plan_twice(&cluster, &templates, &[], &old)), ["a"]);
    }

    #[test]
    fn pods_about_to_land_hold_every_removal() {
        let nodes = [worker("a").build(), worker("b").build()];
        let cluster = ClusterSnapshot::new(&nodes, &[]);
        let templates = [pool(0, 2)];
        let landing = ScaleDownOptions { pods_landing: true, ..ScaleDownOptions::default() };
        let p = plan_twice(&cluster, &templates, &[], &landing);
        assert!(removed(&p).is_empty());
        assert_eq!(
            reasons(&p),
            [("a".into(), "ScaleDownInCooldown".into()), ("b".into(), "ScaleDownInCooldown".into())]
        );
    }

    #[test]
    fn round_limits_take_empty_nodes_first_and_one_drain() {
        let nodes: Vec<NodeInfo> = ["a", "b", "c", "d", "e"].iter().map(|n| worker(n).build()).collect();
        let pods = [
            pod("p1").cpu(100).on("a").build(),
            pod("p2").cpu(100).on("b").build(),
            pod("big").cpu(1500).on("e").build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let templates = [pool(0, 5)];
        let p = plan_twice(&cluster, &templates, &[], &ScaleDownOptions::default());
        assert_eq!(removed(&p), ["c", "d", "a"], "both empty nodes, then one drain");
        assert_eq!(p.unneeded.len(), 4, "b stays unneeded for the next round");
        let p =
            plan_twice(&cluster, &templates, &[], &ScaleDownOptions { max_removals: 1, ..ScaleDownOptions::default() });
        assert_eq!(removed(&p), ["c"]);
    }
}
