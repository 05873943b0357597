//! The node an autoscaled nodepool would add: what its instance type offers
//! (see [`crate::reserve`]), the labels and taints our nodes get (those sks-ccm
//! writes, those kubelet writes), and the DaemonSet pods that would land on it
//! before any pending pod. Plus the pool's bounds and where its size stands.

use sks_keys::label;

use crate::labels::Labels;
use crate::pod::PodInfo;
use crate::predicates::{NodeView, placement};
use crate::reserve::allocatable;
use crate::resources::Resources;
use crate::taints::Taint;

/// An autoscaled nodepool, as the shell knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    /// The nodepool's id.
    pub nodepool_id: String,
    /// The nodepool's name (events and expander priorities name pools by it).
    pub name: String,
    /// Its instance type, as the `node.kubernetes.io/instance-type` label writes it.
    pub instance_type: String,
    /// The instance type's CPUs.
    pub cpus: i64,
    /// The instance type's memory in bytes.
    pub memory_bytes: i64,
    /// The zone (also the region label, one zone per cluster).
    pub zone: String,
    /// The nodepool's labels, as sks-ccm writes them on its Nodes.
    pub labels: Labels,
    /// The nodepool's taints.
    pub taints: Vec<Taint>,
    /// Autoscaling minimum.
    pub min: u32,
    /// Autoscaling maximum.
    pub max: u32,
    /// The pool's current target size (instances requested, ready or not).
    pub target_size: u32,
    /// Instances requested whose Node is not Ready yet: capacity on its way.
    pub upcoming: u32,
}

/// A nodepool's template node, bounds and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The nodepool's id.
    pub nodepool_id: String,
    /// The nodepool's name.
    pub name: String,
    /// The template node's name (its `kubernetes.io/hostname`).
    pub node_name: String,
    /// What a new node offers pods.
    pub allocatable: Resources,
    /// The labels a new node gets.
    pub labels: Labels,
    /// The taints a new node gets.
    pub taints: Box<[Taint]>,
    /// The DaemonSet pods a new node would run.
    pub daemonset_pods: Vec<PodInfo>,
    /// What they request, and how many they are.
    pub daemonset_requests: Resources,
    /// Autoscaling minimum.
    pub min: u32,
    /// Autoscaling maximum.
    pub max: u32,
    /// Current target size.
    pub target_size: u32,
    /// Nodes on their way.
    pub upcoming: u32,
}

impl Template {
    /// The template of `spec`; of `daemonsets` (see [`crate::DaemonSetPod`]),
    /// those whose node selector, affinity and tolerations admit its node.
    pub fn new(spec: TemplateSpec, daemonsets: &[PodInfo]) -> Template {
        let node_name = format!("template-{}", spec.name);
        let labels = spec
            .labels
            .with(label::NODEPOOL_ID, &spec.nodepool_id)
            .with(label::INSTANCE_TYPE, &spec.instance_type)
            .with(label::ZONE, &spec.zone)
            .with(label::REGION, &spec.zone)
            .with(label::OS, "linux")
            .with(label::BETA_OS, "linux")
            .with(label::ARCH, "amd64")
            .with(label::BETA_ARCH, "amd64")
            .with(label::HOSTNAME, &node_name);
        let mut template = Template {
            nodepool_id: spec.nodepool_id,
            name: spec.name,
            node_name,
            allocatable: allocatable(spec.cpus, spec.memory_bytes),
            labels,
            taints: spec.taints.into(),
            daemonset_pods: Vec::new(),
            daemonset_requests: Resources::ZERO,
            min: spec.min,
            max: spec.max,
            target_size: spec.target_size,
            upcoming: spec.upcoming,
        };
        let admitted: Vec<PodInfo> =
            daemonsets.iter().filter(|ds| placement(ds, &template.view()).is_ok()).cloned().collect();
        template.daemonset_requests = admitted.iter().map(|p| p.requests).sum();
        template.daemonset_pods = admitted;
        template
    }

    /// A new node of the pool, with its DaemonSet pods on it.
    pub fn view(&self) -> NodeView<'_> {
        NodeView {
            name: &self.node_name,
            labels: &self.labels,
            taints: &self.taints,
            unschedulable: false,
            allocatable: self.allocatable,
            requested: self.daemonset_requests,
        }
    }

    /// Nodes the pool may still add: its maximum less its target size.
    pub fn headroom(&self) -> u32 {
        self.max.saturating_sub(self.target_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, MI, pod, spec};
    use crate::taints::Effect;

    #[test]
    fn a_template_node_carries_our_labels_and_the_pools_taints() {
        let mut s = spec("workers", 4, 8 * GI);
        s.labels = [("team", "shop"), (label::ZONE, "overridden")].into_iter().collect();
        s.taints = vec![Taint::new("dedicated", "shop", Effect::NoSchedule)];
        let t = Template::new(s, &[]);
        let expected: Labels = [
            ("team", "shop"),
            (label::NODEPOOL_ID, "np-workers"),
            (label::INSTANCE_TYPE, "standard.workers"),
            (label::ZONE, "ch-gva-2"),
            (label::REGION, "ch-gva-2"),
            (label::OS, "linux"),
            (label::BETA_OS, "linux"),
            (label::ARCH, "amd64"),
            (label::BETA_ARCH, "amd64"),
            (label::HOSTNAME, "template-workers"),
        ]
        .into_iter()
        .collect();
        assert_eq!(t.labels, expected);
        assert_eq!(&*t.taints, [Taint::new("dedicated", "shop", Effect::NoSchedule)]);
        assert_eq!(t.allocatable, allocatable(4, 8 * GI));
        assert_eq!(t.view().requested, Resources::ZERO);
    }

    #[test]
    fn daemonset_pods_join_the_templates_they_admit() {
        let mut s = spec("gpu", 4, 8 * GI);
        s.taints = vec![Taint::new("dedicated", "gpu", Effect::NoSchedule)];
        let everywhere =
            pod("cilium").owner("DaemonSet").cpu(100).memory(128 * MI).toleration("dedicated", "gpu").build();
        let intolerant = pod("logs").owner("DaemonSet").cpu(50).build();
        let windows =
            pod("win").owner("DaemonSet").cpu(50).toleration("dedicated", "gpu").selector(label::OS, "windows").build();
        let t = Template::new(s, &[everywhere.clone(), intolerant, windows]);
        assert_eq!(t.daemonset_pods, [everywhere]);
        assert_eq!(t.daemonset_requests, Resources::new(100, 128 * MI, 1));
        assert_eq!(t.view().free(), t.allocatable - Resources::new(100, 128 * MI, 1));
    }

    #[test]
    fn headroom_is_what_max_leaves() {
        let mut s = spec("w", 2, 4 * GI);
        (s.max, s.target_size) = (5, 3);
        assert_eq!(Template::new(s.clone(), &[]).headroom(), 2);
        (s.max, s.target_size) = (3, 5);
        assert_eq!(Template::new(s, &[]).headroom(), 0);
    }
}
