//! Whether a pod fits a node, by the kube-scheduler filters this simulation
//! models, in the default profile's order (the first one that rejects the
//! node is the reason reported, as kube-scheduler stops there):
//!
//! 1. NodeAffinity's PreFilter: a pod pinned to named nodes (every required
//!    term has `metadata.name In`, as DaemonSet pods have) only considers them;
//! 2. NodeUnschedulable: a cordoned node, unless the pod tolerates
//!    `node.kubernetes.io/unschedulable:NoSchedule`;
//! 3. TaintToleration: `NoSchedule` and `NoExecute` taints;
//! 4. NodeAffinity: `nodeSelector` and required node affinity;
//! 5. NodeResourcesFit: pods count, CPU and memory against allocatable minus
//!    what the node's pods request.
//!
//! Not modelled: host ports, volumes and their topology, inter-pod
//! (anti-)affinity, topology spread, extended resources, dynamic resources.

use sks_keys::taint::UNSCHEDULABLE;

use crate::labels::Labels;
use crate::pod::PodInfo;
use crate::resources::Resources;
use crate::taints::{Effect, Taint, first_untolerated, tolerated};

/// A node as the filters see it.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Name.
    pub name: &'a str,
    /// Labels.
    pub labels: &'a Labels,
    /// Taints.
    pub taints: &'a [Taint],
    /// Cordoned.
    pub unschedulable: bool,
    /// Allocatable CPU, memory and pods.
    pub allocatable: Resources,
    /// What the pods on it request, and how many they are.
    pub requested: Resources,
}

impl NodeView<'_> {
    /// What is left for more pods.
    pub fn free(&self) -> Resources {
        self.allocatable - self.requested
    }
}

/// Why a pod does not fit a node: the first filter that rejected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unfit {
    /// The pod is pinned to other nodes by name.
    NotPinnedHere,
    /// The node is cordoned.
    Unschedulable,
    /// The node has a `NoSchedule`/`NoExecute` taint the pod does not tolerate.
    UntoleratedTaint,
    /// The node's labels do not match the pod's `nodeSelector` or required affinity.
    NodeAffinity,
    /// Not enough left of these resources.
    Resources {
        /// The pods count is at allocatable.
        pods: bool,
        /// Not enough CPU.
        cpu: bool,
        /// Not enough memory.
        memory: bool,
    },
}

impl Unfit {
    /// kube-scheduler's reasons for it, each counted once per node in its messages.
    pub fn reasons(self) -> impl Iterator<Item = &'static str> {
        let (a, b, c) = match self {
            Unfit::NotPinnedHere => (Some("node(s) didn't satisfy plugin(s) [NodeAffinity]"), None, None),
            Unfit::Unschedulable => (Some("node(s) were unschedulable"), None, None),
            // kube-scheduler ≥ 1.34.2 no longer names the taint (kubernetes#134740).
            Unfit::UntoleratedTaint => (Some("node(s) had untolerated taint(s)"), None, None),
            Unfit::NodeAffinity => (Some("node(s) didn't match Pod's node affinity/selector"), None, None),
            Unfit::Resources { pods, cpu, memory } => (
                pods.then_some("Too many pods"),
                cpu.then_some("Insufficient cpu"),
                memory.then_some("Insufficient memory"),
            ),
        };
        [a, b, c].into_iter().flatten()
    }

    /// Whether evicting lower-priority pods could make room (kube-scheduler's
    /// `Unschedulable`, as opposed to `UnschedulableAndUnresolvable`).
    pub fn resolvable_by_preemption(self) -> bool {
        matches!(self, Unfit::Resources { .. })
    }
}

/// Whether `pod` fits `node`, or the first filter that says no.
pub fn fits(pod: &PodInfo, node: &NodeView<'_>) -> Result<(), Unfit> {
    placement(pod, node)?;
    resources(pod.requests, node.free())
}

/// The filters on where the pod may go (all but resources): they depend on
/// the node's labels, taints and cordon only.
pub fn placement(pod: &PodInfo, node: &NodeView<'_>) -> Result<(), Unfit> {
    let affinity = pod.required_affinity.as_deref();
    if affinity.and_then(|a| a.pinned_to(node.name)) == Some(false) {
        return Err(Unfit::NotPinnedHere);
    }
    if node.unschedulable && !tolerated(&pod.tolerations, &cordon_taint()) {
        return Err(Unfit::Unschedulable);
    }
    if first_untolerated(node.taints, &pod.tolerations).is_some() {
        return Err(Unfit::UntoleratedTaint);
    }
    if !pod.node_selector.is_subset_of(node.labels) || affinity.is_some_and(|a| !a.matches(node.labels, node.name)) {
        return Err(Unfit::NodeAffinity);
    }
    Ok(())
}

/// NodeResourcesFit against what is `free` on a node: the pod count always,
/// CPU and memory only when requested.
pub fn resources(requests: Resources, free: Resources) -> Result<(), Unfit> {
    let pods = requests.pods > free.pods;
    let cpu = requests.cpu_millis > 0 && requests.cpu_millis > free.cpu_millis;
    let memory = requests.memory_bytes > 0 && requests.memory_bytes > free.memory_bytes;
    if pods || cpu || memory { Err(Unfit::Resources { pods, cpu, memory }) } else { Ok(()) }
}

/// The taint kube-scheduler checks a cordoned node's tolerance against.
fn cordon_taint() -> Taint {
    Taint::new(UNSCHEDULABLE, "", Effect::NoSchedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeFixture, pod};
    use crate::taints::{Toleration, TolerationOperator};

    #[test]
    fn each_filter_rejects_for_its_reason() {
        let node = NodeFixture::new("n1", 2000, 4 << 30).label("disk", "ssd").taint("dedicated", "gpu");
        let tolerant = || pod("p").toleration("dedicated", "gpu");
        let cases: Vec<(&str, PodInfo, NodeFixture, Result<(), Unfit>)> = vec![
            ("fits", tolerant().cpu(500).build(), node.clone(), Ok(())),
            ("untolerated taint", pod("p").build(), node.clone(), Err(Unfit::UntoleratedTaint)),
            ("selector", tolerant().selector("disk", "hdd").build(), node.clone(), Err(Unfit::NodeAffinity)),
            ("affinity", tolerant().affinity_in("zone", &["a"]).build(), node.clone(), Err(Unfit::NodeAffinity)),
            ("cordoned", tolerant().build(), node.clone().cordoned(), Err(Unfit::Unschedulable)),
            ("pinned elsewhere", tolerant().pinned("n2").build(), node.clone(), Err(Unfit::NotPinnedHere)),
            ("pinned here", tolerant().pinned("n1").build(), node.clone(), Ok(())),
            (
                "cpu",
                tolerant().cpu(2001).build(),
                node.clone(),
                Err(Unfit::Resources { pods: false, cpu: true, memory: false }),
            ),
            (
                "cpu and memory",
                tolerant().cpu(1500).memory(4 << 30).build(),
                node.clone().used(600, 1, 1),
                Err(Unfit::Resources { pods: false, cpu: true, memory: true }),
            ),
            (
                "pods",
                tolerant().build(),
                node.clone().used(0, 0, 110),
                Err(Unfit::Resources { pods: true, cpu: false, memory: false }),
            ),
            (
                "zero requests ignore a full node",
                tolerant().cpu(0).build(),
                node.clone().used(2000, 4 << 30, 1),
                Ok(()),
            ),
        ];
        for (what, pod, node, expected) in cases {
            assert_eq!(fits(&pod, &node.view()), expected, "{what}");
        }
    }

    #[test]
    fn filters_run_in_kube_schedulers_order() {
        // Cordoned, tainted, mismatched and full at once: the cordon is reported.
        let node = NodeFixture::new("n1", 100, 100).taint("t", "v").cordoned().used(100, 100, 110);
        let p = pod("p").cpu(1).selector("x", "y").build();
        assert_eq!(fits(&p, &node.view()), Err(Unfit::Unschedulable));
        assert_eq!(fits(&p, &node.clone().uncordoned().view()), Err(Unfit::UntoleratedTaint));
        let tolerant = pod("p").cpu(1).selector("x", "y").toleration("t", "v").build();
        assert_eq!(fits(&tolerant, &node.clone().uncordoned().view()), Err(Unfit::NodeAffinity));
        let pinned = pod("p").pinned("other").build();
        assert_eq!(fits(&pinned, &node.view()), Err(Unfit::NotPinnedHere), "the PreFilter comes first");
    }

    #[test]
    fn a_cordon_is_tolerable() {
        let node = NodeFixture::new("n1", 1000, 1000).cordoned();
        let mut p = pod("p").build();
        p.tolerations =
            vec![Toleration::new(UNSCHEDULABLE, TolerationOperator::Exists, "", Some(Effect::NoSchedule))].into();
        assert_eq!(fits(&p, &node.view()), Ok(()));
    }

    #[test]
    fn reasons_are_kube_schedulers_words() {
        let all = |u: Unfit| u.reasons().collect::<Vec<_>>();
        assert_eq!(all(Unfit::Unschedulable), ["node(s) were unschedulable"]);
        assert_eq!(all(Unfit::UntoleratedTaint), ["node(s) had untolerated taint(s)"]);
        assert_eq!(all(Unfit::NodeAffinity), ["node(s) didn't match Pod's node affinity/selector"]);
        assert_eq!(all(Unfit::NotPinnedHere), ["node(s) didn't satisfy plugin(s) [NodeAffinity]"]);
        assert_eq!(
            all(Unfit::Resources { pods: true, cpu: true, memory: true }),
            ["Too many pods", "Insufficient cpu", "Insufficient memory"]
        );
        assert!(Unfit::Resources { pods: false, cpu: true, memory: false }.resolvable_by_preemption());
        assert!(!Unfit::UntoleratedTaint.resolvable_by_preemption());
    }
}
