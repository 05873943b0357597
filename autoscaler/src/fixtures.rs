//! Builders for pods, nodes and templates in tests: `pod("web").cpu(500).build()`.

use sks_keys::label;

use crate::labels::Labels;
use crate::meta::Owner;
use crate::node::{NodeInfo, Replacement};
use crate::pod::{Phase, PodInfo};
use crate::predicates::NodeView;
use crate::resources::Resources;
use crate::selector::{NODE_NAME_FIELD, NodeSelector, NodeSelectorTerm, Operator, Requirement};
use crate::taints::{Effect, Taint, Toleration, TolerationOperator};
use crate::template::{Template, TemplateSpec};

pub const GI: i64 = 1 << 30;
pub const MI: i64 = 1 << 20;

/// A pending pod owned by a ReplicaSet, in `default`, requesting nothing.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}").into(),
        node_name: None,
        phase: Phase::Pending,
        requests: Resources::new(0, 0, 1),
        labels: Labels::new(),
        node_selector: Labels::new(),
        required_affinity: None,
        tolerations: Box::new([]),
        owner: Some(Box::new(Owner { kind: "ReplicaSet".into(), name: "rs".into() })),
        daemonset: false,
        mirror: false,
        safe_to_evict: None,
        local_storage: false,
        priority: 0,
        unschedulable_since: None,
    })
}

/// Builds a [`PodInfo`].
#[derive(Clone)]
pub struct PodBuilder(PodInfo);

impl PodBuilder {
    pub fn cpu(mut self, millis: i64) -> Self {
        self.0.requests.cpu_millis = millis;
        self
    }
    pub fn memory(mut self, bytes: i64) -> Self {
        self.0.requests.memory_bytes = bytes;
        self
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.namespace = ns.into();
        self
    }
    /// Bound to `node` and running.
    pub fn on(mut self, node: &str) -> Self {
        self.0.node_name = Some(node.into());
        self.0.phase = Phase::Running;
        self
    }
    pub fn phase(mut self, phase: Phase) -> Self {
        self.0.phase = phase;
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels = std::mem::take(&mut self.0.labels).with(k, v);
        self
    }
    pub fn selector(mut self, k: &str, v: &str) -> Self {
        self.0.node_selector = std::mem::take(&mut self.0.node_selector).with(k, v);
        self
    }
    fn term(mut self, term: NodeSelectorTerm) -> Self {
        let mut terms = self.0.required_affinity.take().map(|a| a.node_selector_terms.into_vec()).unwrap_or_default();
        terms.push(term);
        self.0.required_affinity = Some(Box::new(NodeSelector { node_selector_terms: terms.into() }));
        self
    }
    /// Adds a required affinity term `key In values`.
    pub fn affinity_in(self, key: &str, values: &[&str]) -> Self {
        self.term(NodeSelectorTerm {
            match_expressions: Box::new([Requirement::new(key, Operator::In, values)]),
            match_fields: Box::new([]),
        })
    }
    /// Adds a required affinity term `metadata.name In [node]`, as DaemonSet pods have.
    pub fn pinned(self, node: &str) -> Self {
        self.term(NodeSelectorTerm {
            match_expressions: Box::new([]),
            match_fields: Box::new([Requirement::new(NODE_NAME_FIELD, Operator::In, &[node])]),
        })
    }
    pub fn toleration(mut self, k: &str, v: &str) -> Self {
        let mut all = self.0.tolerations.into_vec();
        all.push(Toleration::new(k, TolerationOperator::Equal, v, None));
        self.0.tolerations = all.into();
        self
    }
    pub fn owner(mut self, kind: &str) -> Self {
        self.0.owner = Some(Box::new(Owner { kind: kind.into(), name: "owner".into() }));
        self.0.daemonset = kind == "DaemonSet";
        self
    }
    pub fn bare(mut self) -> Self {
        self.0.owner = None;
        self
    }
    pub fn mirror(mut self) -> Self {
        self.0.owner = None;
        self.0.mirror = true;
        self
    }
    pub fn safe_to_evict(mut self, safe: bool) -> Self {
        self.0.safe_to_evict = Some(safe);
        self
    }
    pub fn local_storage(mut self) -> Self {
        self.0.local_storage = true;
        self
    }
    pub fn build(self) -> PodInfo {
        self.0
    }
}

/// A Ready node with these allocatable CPU millicores and memory bytes, 110 pods, nothing on it.
pub fn node(name: &str, cpu_millis: i64, memory_bytes: i64) -> NodeFixture {
    NodeFixture {
        info: NodeInfo {
            name: name.into(),
            labels: [(label::HOSTNAME, name)].into_iter().collect(),
            taints: Box::new([]),
            allocatable: Resources::new(cpu_millis, memory_bytes, 110),
            unschedulable: false,
            ready: true,
            created: None,
            scale_down_disabled: false,
            replacement: None,
            instance: None,
            removing: None,
        },
        requested: Resources::ZERO,
    }
}

/// A node, and what its pods request (for predicate tests without pods).
#[derive(Clone)]
pub struct NodeFixture {
    pub info: NodeInfo,
    pub requested: Resources,
}

impl NodeFixture {
    pub fn new(name: &str, cpu_millis: i64, memory_bytes: i64) -> Self {
        node(name, cpu_millis, memory_bytes)
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.info.labels = std::mem::take(&mut self.info.labels).with(k, v);
        self
    }
    pub fn pool(self, nodepool_id: &str) -> Self {
        self.label(label::NODEPOOL_ID, nodepool_id)
    }
    pub fn taint(mut self, k: &str, v: &str) -> Self {
        let mut all = self.info.taints.into_vec();
        all.push(Taint::new(k, v, Effect::NoSchedule));
        self.info.taints = all.into();
        self
    }
    pub fn cordoned(mut self) -> Self {
        self.info.unschedulable = true;
        self
    }
    pub fn uncordoned(mut self) -> Self {
        self.info.unschedulable = false;
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.info.ready = false;
        self
    }
    pub fn scale_down_disabled(mut self) -> Self {
        self.info.scale_down_disabled = true;
        self
    }
    pub fn replaced(mut self, by: Replacement) -> Self {
        self.info.replacement = Some(by);
        self
    }
    pub fn used(mut self, cpu_millis: i64, memory_bytes: i64, pods: i64) -> Self {
        self.requested = Resources::new(cpu_millis, memory_bytes, pods);
        self
    }
    pub fn view(&self) -> NodeView<'_> {
        self.info.view(self.requested)
    }
    pub fn build(self) -> NodeInfo {
        self.info
    }
}

/// A template spec for pool `name` (id `np-<name>`): `cpus` CPUs, `memory` bytes, size 0..=10, nothing on its way.
pub fn spec(name: &str, cpus: i64, memory_bytes: i64) -> TemplateSpec {
    TemplateSpec {
        nodepool_id: format!("np-{name}"),
        name: name.to_owned(),
        instance_type: format!("standard.{name}"),
        cpus,
        memory_bytes,
        zone: "ch-gva-2".to_owned(),
        labels: Labels::new(),
        taints: Vec::new(),
        min: 0,
        max: 10,
        target_size: 0,
        upcoming: 0,
    }
}

/// A template with no DaemonSets.
pub fn template(spec: TemplateSpec) -> Template {
    Template::new(spec, &[])
}
