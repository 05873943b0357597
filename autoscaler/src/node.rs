//! A Node as the simulation sees it, decoded straight from the API's JSON into
//! what scheduling and scale-down read: labels, taints, allocatable,
//! cordon, readiness, age, and the annotations that keep a Node from the
//! autoscaler (cluster-autoscaler's `scale-down-disabled`, and the replacement
//! markers auto-heal and the upgrade roll write before evicting an instance).

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess};
use sks_keys::{annotation, label, taint};

use crate::labels::Labels;
use crate::predicates::NodeView;
use crate::resources::{ResourceList, Resources};
use crate::slim::{FromObject, Slim, key_metadata};
use crate::taints::Taint;
use crate::wire::{FromEntries, ObjectWire, null_as_empty, skip};

/// Who is replacing a Node (its instance is being swapped for a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replacement {
    /// Auto-heal (`node.exoscale.net/auto-heal-replacing`).
    AutoHeal,
    /// The upgrade roll (`node.exoscale.net/upgrade-replacing`).
    Upgrade,
}

/// A Node, as the simulation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Name.
    pub name: Box<str>,
    /// Labels.
    pub labels: Labels,
    /// Taints.
    pub taints: Box<[Taint]>,
    /// `status.allocatable` (CPU, memory, pods).
    pub allocatable: Resources,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Annotated `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"`.
    pub scale_down_disabled: bool,
    /// A replacement under way, by its marker annotation.
    pub replacement: Option<Replacement>,
    /// The instance behind it: `spec.providerID` without `exoscale://`.
    pub instance: Option<Box<str>>,
    /// The autoscaler's own removal record (`node.exoscale.net/scale-down-removing`), if any.
    pub removing: Option<Box<str>>,
}

impl NodeInfo {
    /// The nodepool of its instance (`node.exoscale.net/nodepool-id`).
    pub fn nodepool_id(&self) -> Option<&str> {
        self.labels.get(label::NODEPOOL_ID)
    }

    /// A scale-down of it is under way: tainted `ToBeDeletedByClusterAutoscaler`
    /// or carrying the autoscaler's removal record.
    pub fn being_deleted(&self) -> bool {
        self.removing.is_some() || self.taints.iter().any(|t| &*t.key == taint::TO_BE_DELETED)
    }

    /// The node as the filters see it, with pods requesting `requested` on it.
    pub fn view(&self, requested: Resources) -> NodeView<'_> {
        NodeView {
            name: &self.name,
            labels: &self.labels,
            taints: &self.taints,
            unschedulable: self.unschedulable,
            allocatable: self.allocatable,
            requested,
        }
    }

    /// Whether new pods may land on it as it is now: Ready, not cordoned, not
    /// on its way out (replaced or being scaled down).
    pub fn in_service(&self) -> bool {
        self.ready && !self.unschedulable && self.replacement.is_none() && !self.being_deleted()
    }
}

impl<'de> Deserialize<'de> for NodeInfo {
    /// From a Node's JSON.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(NodeInfo::from_object(d)?.1)
    }
}

/// A Node for kube's `Api<SlimNode>` and watcher.
pub type SlimNode = Slim<NodeInfo>;

impl FromObject for NodeInfo {
    fn from_object<'de, D: Deserializer<'de>>(d: D) -> Result<(ObjectMeta, Self), D::Error> {
        Ok(into_parts(NodeWire::deserialize(d)?))
    }
}

crate::slim::slim_resource!(Slim<NodeInfo>, Node);

type NodeWire = ObjectWire<MetaWire, SpecWire, StatusWire>;

/// The key metadata and slim form of a decoded Node.
fn into_parts(node: NodeWire) -> (ObjectMeta, NodeInfo) {
    let (m, spec, status) = (node.metadata, node.spec, node.status);
    let meta = key_metadata(None, m.name.clone(), m.uid, m.resource_version);
    let info = NodeInfo {
        name: m.name.unwrap_or_default().into(),
        labels: m.labels,
        taints: spec.taints,
        allocatable: status.allocatable.amounts,
        unschedulable: spec.unschedulable.unwrap_or(false),
        ready: status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
        created: m.creation_timestamp,
        scale_down_disabled: m.annotations.scale_down_disabled,
        replacement: m.annotations.replacement,
        instance: spec
            .provider_id
            .as_deref()
            .and_then(|p| p.strip_prefix(sks_keys::PROVIDER_ID_PREFIX))
            .map(Into::into),
        removing: m.annotations.removing,
    };
    (meta, info)
}

type MetaWire = crate::meta::MetaWire<Annotations>;

/// The annotations the autoscaler reads; every other one is skipped unread.
#[derive(Default)]
struct Annotations {
    scale_down_disabled: bool,
    replacement: Option<Replacement>,
    removing: Option<Box<str>>,
}

impl<'de> FromEntries<'de> for Annotations {
    const EXPECTING: &'static str = "a map of strings";
    fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            annotation::SCALE_DOWN_DISABLED => self.scale_down_disabled = map.next_value::<String>()? == "true",
            // Auto-heal's marker wins if both are present: it restores the size last.
            annotation::AUTO_HEAL_REPLACING => {
                skip(map)?;
                self.replacement = Some(Replacement::AutoHeal);
            }
            annotation::SCALE_DOWN_REMOVING => self.removing = Some(map.next_value::<String>()?.into()),
            annotation::UPGRADE_REPLACING => {
                skip(map)?;
                self.replacement.get_or_insert(Replacement::Upgrade);
            }
            _ => skip(map)?,
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct SpecWire {
    #[serde(default, rename = "providerID")]
    provider_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    taints: Box<[Taint]>,
    #[serde(default)]
    unschedulable: Option<bool>,
}

#[derive(Deserialize, Default)]
struct StatusWire {
    #[serde(default)]
    allocatable: ResourceList,
    #[serde(default, deserialize_with = "null_as_empty")]
    conditions: Box<[ConditionWire]>,
}

#[derive(Deserialize)]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taints::Effect;
    use serde_json::json;

    fn node(v: serde_json::Value) -> NodeInfo {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_node_keeps_what_the_simulation_reads() {
        let n = node(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "pool-a-1", "uid": "u", "resourceVersion": "5",
                "creationTimestamp": "2026-11-21T00:00:00Z",
                "labels": {label::NODEPOOL_ID: "np-1", "kubernetes.io/hostname": "pool-a-1"},
                "annotations": {annotation::SCALE_DOWN_DISABLED: "true", "node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"providerID": "exoscale://x", "unschedulable": true,
                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "3920m", "memory": "7Gi", "pods": "110", "ephemeral-storage": "9Gi"},
                "capacity": {"cpu": "4"},
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "images": [{"names": ["busybox"], "sizeBytes": 1}]}
        }));
        assert_eq!(&*n.name, "pool-a-1");
        assert_eq!(n.nodepool_id(), Some("np-1"));
        assert_eq!(&*n.taints, [Taint::new("dedicated", "gpu", Effect::NoSchedule)]);
        assert_eq!(n.allocatable, Resources::new(3920, 7 << 30, 110));
        assert!(n.unschedulable && n.ready && n.scale_down_disabled);
        assert_eq!(n.created, Some("2026-11-21T00:00:00Z".parse().unwrap()));
        assert_eq!(n.replacement, None);
        assert_eq!(n.instance.as_deref(), Some("x"));
        assert_eq!(n.removing, None);
        assert!(!n.in_service(), "cordoned");
    }

    #[test]
    fn service_state_comes_from_readiness_cordon_markers_and_taints() {
        let base = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(node(base.clone()).in_service());
        let mut not_ready = base.clone();
        not_ready["status"]["conditions"][0]["status"] = json!("Unknown");
        assert!(!node(not_ready).ready);
        for (key, expected) in [
            (annotation::AUTO_HEAL_REPLACING, Replacement::AutoHeal),
            (annotation::UPGRADE_REPLACING, Replacement::Upgrade),
        ] {
            let mut replaced = base.clone();
            replaced["metadata"]["annotations"] = json!({ key: "np-1:3" });
            let n = node(replaced);
            assert_eq!(n.replacement, Some(expected));
            assert!(!n.in_service());
        }
        let mut deleting = base.clone();
        deleting["spec"] =
            json!({"taints": [{"key": taint::TO_BE_DELETED, "value": "1700000000", "effect": "NoSchedule"}]});
        let n = node(deleting);
        assert!(n.being_deleted() && !n.in_service());
        let mut recorded = base.clone();
        recorded["metadata"]["annotations"] = json!({ annotation::SCALE_DOWN_REMOVING: "np-1:3" });
        assert!(node(recorded).being_deleted(), "the removal record alone says a removal is under way");
        let mut disabled_false = base;
        disabled_false["metadata"]["annotations"] = json!({ annotation::SCALE_DOWN_DISABLED: "false" });
        assert!(!node(disabled_false).scale_down_disabled);
    }
}
