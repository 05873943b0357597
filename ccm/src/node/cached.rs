//! The Node as the node controller caches it, once for all its steps:
//! decoded straight from the watch into only the fields they read. A
//! `k8s_openapi` Node is 1.5 KiB before any of its data, and the cache holds
//! every Node of the cluster; this one is about a third of that. Each
//! reconcile turns it back into a `Node`.

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::{heal, init, ready};

/// A Node, as cached.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CachedNode {
    /// Name, uid, resourceVersion, timestamps, the labels sks-ccm may write and
    /// the auto-heal annotations (see [`CachedNode::prune`]).
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Spec {
    #[serde(rename = "providerID")]
    provider_id: Option<String>,
    taints: Option<Vec<Taint>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Status {
    addresses: Option<Vec<NodeAddress>>,
    conditions: Option<Vec<NodeCondition>>,
    #[serde(rename = "nodeInfo")]
    node_info: Option<SystemUuid>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SystemUuid {
    #[serde(rename = "systemUUID", default)]
    system_uuid: String,
}

impl k8s_openapi::Resource for CachedNode {
    const API_VERSION: &'static str = <Node as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Node as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Node as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Node as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Node as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Node as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::ListableResource for CachedNode {
    const LIST_KIND: &'static str = <Node as k8s_openapi::ListableResource>::LIST_KIND;
}

impl k8s_openapi::Metadata for CachedNode {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CachedNode {
    /// Drops what decoding kept but no controller reads: managed fields, other
    /// annotations, labels sks-ccm never writes (kubelet's `kubernetes.io`
    /// ones), conditions other than Ready and their heartbeats and messages.
    /// Every Node stays cached: initialized ones are re-checked periodically.
    pub fn prune(&mut self) -> bool {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.retain(|k, _| heal::ANNOTATIONS.contains(&k.as_str()));
        }
        if let Some(labels) = meta.labels.as_mut() {
            labels.retain(|k, _| init::written_label(k));
        }
        if let Some(conditions) = self.status.conditions.as_mut() {
            conditions.retain(|c| c.type_ == ready::READY);
            for c in conditions.iter_mut() {
                c.last_heartbeat_time = None;
                c.message = None;
            }
        }
        true
    }

    /// The Node the controllers reason about: the cached fields, nothing else.
    pub fn to_node(&self) -> Node {
        let status = &self.status;
        Node {
            metadata: self.metadata.clone(),
            spec: Some(NodeSpec {
                provider_id: self.spec.provider_id.clone(),
                taints: self.spec.taints.clone(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: status.addresses.clone(),
                conditions: status.conditions.clone(),
                node_info: status
                    .node_info
                    .as_ref()
                    .map(|i| NodeSystemInfo { system_uuid: i.system_uuid.clone(), ..Default::default() }),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_keeps_what_the_controllers_read_and_nothing_else() {
        let full = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2026-11-21T00:00:00Z",
                "labels": {"a": "b", "kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "z"},
                "annotations": {sks_keys::annotation::AUTO_HEAL_REBOOTED_AT: "2026-11-21T00:00:00Z", sks_keys::annotation::AUTO_HEAL_REPLACING: "x:3", "node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"providerID": "exoscale://x", "podCIDR": "10.0.0.0/24",
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "capacity": {"cpu": "2"}, "images": [{"names": ["busybox"], "sizeBytes": 1}],
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "m",
                     "lastHeartbeatTime": "2026-11-21T00:00:09Z", "lastTransitionTime": "2026-11-21T00:00:01Z"}],
                "nodeInfo": {"systemUUID": "abc", "bootID": "b", "kernelVersion": "6", "osImage": "o",
                    "architecture": "amd64", "containerRuntimeVersion": "c", "kubeProxyVersion": "v",
                    "kubeletVersion": "v", "machineID": "m", "operatingSystem": "linux"}}
        });
        let mut cached: CachedNode = serde_json::from_value(full).unwrap();
        assert!(cached.prune());
        assert_eq!(
            serde_json::to_value(cached.to_node()).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2026-11-21T00:00:00Z",
                    "labels": {"a": "b", "topology.kubernetes.io/zone": "z"},
                    "annotations": {sks_keys::annotation::AUTO_HEAL_REBOOTED_AT: "2026-11-21T00:00:00Z", sks_keys::annotation::AUTO_HEAL_REPLACING: "x:3"}},
                "spec": {"providerID": "exoscale://x", "taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                    "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                        "lastTransitionTime": "2026-11-21T00:00:01Z"}],
                    "nodeInfo": {"systemUUID": "abc", "bootID": "", "kernelVersion": "", "osImage": "",
                        "architecture": "", "containerRuntimeVersion": "", "kubeProxyVersion": "",
                        "kubeletVersion": "", "machineID": "", "operatingSystem": ""}}
            })
        );
    }

    #[test]
    fn a_bare_node_decodes() {
        let mut cached: CachedNode = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert!(cached.prune());
        let node = cached.to_node();
        assert_eq!(node.metadata.name.as_deref(), Some("n"));
        assert_eq!(node.status.and_then(|s| s.node_info), None);
    }
}
