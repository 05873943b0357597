//! What the caches keep of watched objects: only the fields the controllers
//! read. A Node carries kilobytes sks-ccm never looks at (images, managed
//! fields, capacity, heartbeats), and the watch caches hold every Node and CSR
//! of the cluster, so pruning on arrival is most of sks-ccm's memory.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, NodeSystemInfo, Service};

use crate::heal;
use crate::lb::controller::FINALIZER;
use crate::node_init;
use kube::ResourceExt as _;

/// Keeps what the node controllers read: name, uid, resourceVersion, timestamps,
/// the labels sks-ccm may write (kubelet's `kubernetes.io` ones it never
/// does), the auto-heal annotation, providerID, taints, addresses, the Ready
/// condition (without its heartbeat and message) and the system UUID. Every
/// Node stays: initialized ones are re-checked periodically.
pub fn node(n: &mut Node) -> bool {
    let meta = &mut n.metadata;
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k == heal::REBOOTED_AT);
    }
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| node_init::written_label(k));
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
    true
}

/// Keeps what CSR approval reads of an undecided kubelet-serving CSR; a
/// decided one, or one for another signer, needs nothing and is forgotten.
pub fn csr(c: &mut CertificateSigningRequest) -> bool {
    let decided = c
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|x| matches!(x.type_.as_str(), "Approved" | "Denied" | "Failed")));
    if decided || c.spec.signer_name != crate::csr::KUBELET_SERVING {
        return false;
    }
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
    if let Some(status) = c.status.as_mut() {
        status.certificate = None;
    }
    true
}

/// Drops what no controller reads of a Service (managed fields, kubectl's copy
/// of the last applied manifest); a Service that is not a LoadBalancer and
/// holds no load balancer of ours (no finalizer) needs nothing and is forgotten.
pub fn service(s: &mut Service) -> bool {
    let load_balancer = s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer");
    if !load_balancer && !s.finalizers().iter().any(|f| f == FINALIZER) {
        return false;
    }
    s.metadata.managed_fields = None;
    if let Some(annotations) = s.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    true
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
                "labels": {"a": "b", "kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "z"},
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
        assert!(node(&mut n));
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2026-11-21T00:00:00Z",
                    "labels": {"a": "b", "topology.kubernetes.io/zone": "z"}, "annotations": {heal::REBOOTED_AT: "2026-11-21T00:00:00Z"}},
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

    fn csr_with(signer: &str, conditions: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(json!({
            "metadata": {"name": "csr-1", "managedFields": [{"manager": "kubelet"}]},
            "spec": {"request": "cmVx", "signerName": signer, "usages": ["server auth"]},
            "status": {"certificate": "Y2VydA==", "conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn only_undecided_kubelet_serving_csrs_are_kept() {
        let mut pending = csr_with(crate::csr::KUBELET_SERVING, json!([]));
        assert!(csr(&mut pending));
        assert_eq!(pending.spec.request.0, b"req");
        assert_eq!(pending.metadata.managed_fields, None);
        assert_eq!(pending.status.unwrap().certificate, None);
        for decision in ["Approved", "Denied", "Failed"] {
            let mut decided = csr_with(crate::csr::KUBELET_SERVING, json!([{"type": decision, "status": "True"}]));
            assert!(!csr(&mut decided), "{decision}");
        }
        assert!(!csr(&mut csr_with("kubernetes.io/kube-apiserver-client", json!([]))));
    }

    #[test]
    fn services_without_a_load_balancer_of_ours_are_forgotten() {
        let svc = |type_: &str, finalizers: serde_json::Value| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": "s", "finalizers": finalizers,
                    "annotations": {LAST_APPLIED: "{}", "service.beta.kubernetes.io/exoscale-loadbalancer-name": "x"}},
                "spec": {"type": type_}
            }))
            .unwrap()
        };
        let mut lb = svc("LoadBalancer", json!([]));
        assert!(service(&mut lb));
        assert_eq!(
            lb.annotations().keys().collect::<Vec<_>>(),
            ["service.beta.kubernetes.io/exoscale-loadbalancer-name"]
        );
        // Was a LoadBalancer: its NLB must still be cleaned up.
        assert!(service(&mut svc("ClusterIP", json!([FINALIZER]))));
        assert!(!service(&mut svc("ClusterIP", json!([]))));
    }
}
