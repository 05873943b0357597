//! What the CSR and Service caches keep of watched objects: only the fields
//! the controllers read, and only objects that may still need work, since the
//! caches would otherwise hold every CSR and Service of the cluster. Nodes
//! have a type of their own ([`crate::node::cached`]).

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Service;

use kube::ResourceExt as _;
use sks_keys::annotation::LAST_APPLIED;
use sks_keys::finalizer::LB_CLEANUP as FINALIZER;

/// Whether a CSR has an Approved, Denied or Failed condition.
pub fn decided(c: &CertificateSigningRequest) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|x| matches!(x.type_.as_str(), "Approved" | "Denied" | "Failed")))
}

/// Keeps what CSR approval reads of an undecided kubelet-serving CSR; a
/// decided one, or one for another signer, needs nothing and is forgotten.
pub fn csr(c: &mut CertificateSigningRequest) -> bool {
    if decided(c) || c.spec.signer_name != sks_keys::KUBELET_SERVING_SIGNER {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let mut pending = csr_with(sks_keys::KUBELET_SERVING_SIGNER, json!([]));
        assert!(csr(&mut pending));
        assert_eq!(pending.spec.request.0, b"req");
        assert_eq!(pending.metadata.managed_fields, None);
        assert_eq!(pending.status.unwrap().certificate, None);
        for decision in ["Approved", "Denied", "Failed"] {
            let mut decided = csr_with(sks_keys::KUBELET_SERVING_SIGNER, json!([{"type": decision, "status": "True"}]));
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
