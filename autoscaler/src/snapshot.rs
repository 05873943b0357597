//! The cluster as both planners start from it: every Node with the pods bound
//! to it and what they request. Built once per decision from the shell's
//! caches, borrowing them (no copies of pods or nodes).

use crate::node::NodeInfo;
use crate::pod::PodInfo;
use crate::predicates::NodeView;
use crate::resources::Resources;

/// A Node and the pods bound to it.
#[derive(Debug, Clone)]
pub struct NodeState<'a> {
    /// The Node.
    pub info: &'a NodeInfo,
    /// Its pods that have not ended, by namespace and name.
    pub pods: Vec<&'a PodInfo>,
    /// What they request, and how many they are.
    pub requested: Resources,
}

impl<'a> NodeState<'a> {
    /// The node as the filters see it, with `requested` on it.
    pub fn view_with(&self, requested: Resources) -> NodeView<'a> {
        self.info.view(requested)
    }

    /// The node as the filters see it now.
    pub fn view(&self) -> NodeView<'a> {
        self.view_with(self.requested)
    }
}

/// Every Node, by name, with its pods.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot<'a> {
    nodes: Vec<NodeState<'a>>,
}

impl<'a> ClusterSnapshot<'a> {
    /// The cluster of `nodes`, with the `pods` bound to them (pods bound to
    /// nodes not listed, unbound pods and pods that have ended are left out,
    /// as kube-scheduler's cache leaves them out).
    pub fn new(nodes: impl IntoIterator<Item = &'a NodeInfo>, pods: impl IntoIterator<Item = &'a PodInfo>) -> Self {
        let mut nodes: Vec<NodeState<'a>> =
            nodes.into_iter().map(|info| NodeState { info, pods: Vec::new(), requested: Resources::ZERO }).collect();
        nodes.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        for pod in pods {
            let Some(node_name) = pod.node_name.as_deref() else { continue };
            if pod.phase.is_terminal() {
                continue;
            }
            if let Ok(i) = nodes.binary_search_by(|n| (*n.info.name).cmp(node_name)) {
                nodes[i].pods.push(pod);
                nodes[i].requested += pod.requests;
            }
        }
        for node in &mut nodes {
            node.pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        ClusterSnapshot { nodes }
    }

    /// The nodes, by name.
    pub fn nodes(&self) -> &[NodeState<'a>] {
        &self.nodes
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeState<'a>> {
        self.nodes.binary_search_by(|n| (*n.info.name).cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{node, pod};
    use crate::pod::Phase;

    #[test]
    fn pods_are_counted_on_the_nodes_they_are_bound_to() {
        let nodes = [node("b", 1000, 1000).build(), node("a", 1000, 1000).build()];
        let pods = [
            pod("web-2").cpu(100).on("a").build(),
            pod("web-1").cpu(200).memory(10).on("a").build(),
            pod("done").cpu(500).on("a").phase(Phase::Succeeded).build(),
            pod("failed").cpu(500).on("b").phase(Phase::Failed).build(),
            pod("elsewhere").cpu(500).on("gone").build(),
            pod("pending").cpu(500).build(),
        ];
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let names: Vec<&str> = cluster.nodes().iter().map(|n| &*n.info.name).collect();
        assert_eq!(names, ["a", "b"]);
        let a = cluster.node("a").unwrap();
        assert_eq!(a.requested, Resources::new(300, 10, 2));
        assert_eq!(a.pods.iter().map(|p| &*p.name).collect::<Vec<_>>(), ["web-1", "web-2"]);
        assert_eq!(cluster.node("b").unwrap().requested, Resources::ZERO);
        assert_eq!(a.view().free(), Resources::new(700, 990, 108));
        assert!(cluster.node("gone").is_none());
    }
}
