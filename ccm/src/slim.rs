//! What the caches keep of watched objects: only the fields the controllers
//! read. A Node carries kilobytes sks-ccm never looks at (images, managed
//! fields, capacity, heartbeats), and the watch caches hold every Node and CSR
//! of the cluster, so pruning on arrival is most of sks-ccm's memory.

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, NodeSystemInfo, Service};
use kube::core::PartialObjectMeta;

use crate::heal;

/// Keeps what the node controllers read: name, uid, resourceVersion, timestamps,
/// labels, the auto-heal annotation, providerID, taints, addresses, the Ready
/// condition (without its heartbeat and message) and the system UUID.
pub fn node(n: &mut Node) {
    let meta = &mut n.metadata;
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k == heal::REBOOTED_AT);
    }
    if let Some(spec) = n.spec.take() {
        n.spec = Some(NodeSpec {
            provider_id: spec.provider_id,
            taints: spec.taints,
            unschedulable: spec.unschedulable,
            ..Default::default()
        });
    }
    if let Some(status) = n.status.take() {
        let conditions = status.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|mut c| {
                    c.last_heartbeat_time = None;
                    c.message = None;
                    c
                })
                .collect()
        });
        let node_info = status.node_info.map(|i| NodeSystemInfo { system_uuid: i.system_uuid, ..Default::default() });
        n.status = Some(NodeStatus { addresses: status.addresses, conditions, node_info, ..Default::default() });
    }
}

/// Keeps what CSR approval reads: a decided CSR needs only its conditions'
/// types, an undecided one its whole spec; the issued certificate never.
pub fn csr(c: &mut CertificateSigningRequest) {
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
    let Some(status) = c.status.as_mut() else { return };
    status.certificate = None;
    if let Some(conditions) = status.conditions.as_mut() {
        for cond in conditions.iter_mut() {
            cond.message = None;
        }
        if conditions.iter().any(|x| matches!(x.type_.as_str(), "Approved" | "Denied" | "Failed")) {
            c.spec.request = ByteString(Vec::new());
        }
    }
}

/// Keeps what load balancing reads of a Node: its labels.
pub fn node_labels(n: &mut PartialObjectMeta<Node>) {
    n.metadata.managed_fields = None;
    n.metadata.annotations = None;
}

/// Drops what no controller reads of a Service: managed fields and kubectl's
/// copy of the last applied manifest.
pub fn service(s: &mut Service) {
    s.metadata.managed_fields = None;
    if let Some(annotations) = s.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_keeps_what_the_controllers_read_and_nothing_else() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2026-11-21T00:00:00Z",
                "labels": {"a": "b"},
                "annotations": {heal::REBOOTED_AT: "2026-11-21T00:00:00Z", "node.alpha.kubernetes.io/ttl": "0"},
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
        }))
        .unwrap();
        node(&mut n);
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2026-11-21T00:00:00Z",
                    "labels": {"a": "b"}, "annotations": {heal::REBOOTED_AT: "2026-11-21T00:00:00Z"}},
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

    fn csr_with(conditions: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(json!({
            "metadata": {"name": "csr-1", "managedFields": [{"manager": "kubelet"}]},
            "spec": {"request": "cmVx", "signerName": "kubernetes.io/kubelet-serving", "usages": ["server auth"]},
            "status": {"certificate": "Y2VydA==", "conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn a_decided_csr_drops_its_request_and_an_undecided_one_keeps_it() {
        let mut pending = csr_with(json!([]));
        csr(&mut pending);
        assert_eq!(pending.spec.request.0, b"req");
        assert_eq!(pending.metadata.managed_fields, None);
        let mut decided = csr_with(json!([{"type": "Approved", "status": "True", "message": "ok"}]));
        csr(&mut decided);
        assert!(decided.spec.request.0.is_empty());
        let status = decided.status.unwrap();
        assert_eq!((status.certificate, status.conditions.unwrap()[0].message.clone()), (None, None));
    }
}
