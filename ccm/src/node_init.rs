//! Node initialization: what a Node of an instance of this cluster must carry,
//! computed from the Node, the instance and its nodepool alone.

use sks_keys::{PROVIDER_ID_PREFIX, label, taint};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use orchestrator::model::{Instance, SksNodepool};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cloud::Snapshot;

/// The instance id in a Node's providerID, if it has one of ours.
pub fn provider_id(node: &Node) -> Option<Uuid> {
    node.spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(|p| p.strip_prefix(PROVIDER_ID_PREFIX))
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Whether a Node still waits for initialization.
pub fn uninitialized(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == taint::UNINITIALIZED))
}

/// The instance a Node runs on: by providerID, else SMBIOS system UUID, else name.
pub fn instance_for<'s>(node: &Node, cloud: &'s Snapshot) -> Option<&'s Instance> {
    let provider =
        node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).and_then(|p| p.strip_prefix(PROVIDER_ID_PREFIX));
    if let Some(id) = provider {
        return Uuid::parse_str(id).ok().and_then(|id| cloud.by_id(&id));
    }
    let uuid = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.system_uuid.as_str());
    if let Some(found) = uuid.and_then(|u| Uuid::parse_str(u).ok()).and_then(|id| cloud.by_id(&id)) {
        return Some(found);
    }
    cloud.by_name(node.metadata.name.as_deref().unwrap_or(""))
}

/// Label keys the CCM never takes from nodepool labels: Kubernetes' own.
fn reserved(key: &str) -> bool {
    let prefix = key.split_once('/').map(|(p, _)| p).unwrap_or("");
    prefix == "kubernetes.io" || prefix.ends_with(".kubernetes.io") || prefix == "k8s.io" || prefix.ends_with(".k8s.io")
}

/// Whether sks-ccm may write label `key` on a Node: its own and any nodepool
/// label, never the `kubernetes.io`/`k8s.io` ones kubelet and others own.
pub fn written_label(key: &str) -> bool {
    !reserved(key) || OWN_LABELS.contains(&key)
}

const OWN_LABELS: &[&str] = &[label::INSTANCE_TYPE, label::REGION, label::ZONE, label::NODEPOOL_ID];

/// The labels the Node must have.
pub fn labels(instance: &Instance, nodepool: &SksNodepool, type_name: &str, zone: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = nodepool
        .spec
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Values must be valid label values; the Exoscale CCM strips the same characters.
    let clean: String =
        type_name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    out.insert(label::INSTANCE_TYPE.into(), clean.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned());
    out.insert(label::REGION.into(), zone.to_owned());
    out.insert(label::ZONE.into(), zone.to_owned());
    out.insert(label::NODEPOOL_ID.into(), nodepool.id.to_string());
    let _ = instance;
    out
}

/// The addresses the Node must report.
pub fn addresses(instance: &Instance) -> Vec<Value> {
    let mut out = vec![json!({"type": "Hostname", "address": instance.name})];
    if let Some(ip) = instance.public_ip {
        out.push(json!({"type": "ExternalIP", "address": ip.to_string()}));
    }
    if let Some(ip) = instance.ipv6_address {
        out.push(json!({"type": "ExternalIP", "address": ip.to_string()}));
    }
    // Private networks carry no address in the orchestrator's model: the public one is internal too.
    if let Some(ip) = instance.public_ip {
        out.push(json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    out
}

/// The taints after initialization: the Node's without the uninitialized one, plus the nodepool's.
pub fn taints(node: &Node, nodepool: &SksNodepool) -> Vec<Taint> {
    let mut out: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    out.retain(|t| t.key != taint::UNINITIALIZED);
    for (key, t) in nodepool.spec.taints.iter().flatten() {
        if !out.iter().any(|x| x.key == *key && x.effect == t.effect.as_str()) {
            out.push(Taint {
                key: key.clone(),
                value: Some(t.value.clone()),
                effect: t.effect.to_string(),
                time_added: None,
            });
        }
    }
    out
}

/// The metadata/spec merge patch that initializes a Node, guarded by
/// `resource_version` (the Node's as read, or as the address patch left it).
pub fn init_patch(
    node: &Node,
    resource_version: Option<&str>,
    instance: &Instance,
    nodepool: &SksNodepool,
    type_name: &str,
    zone: &str,
) -> Value {
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "labels": labels(instance, nodepool, type_name, zone),
        },
        "spec": {
            "providerID": format!("{PROVIDER_ID_PREFIX}{}", instance.id),
            "taints": taints(node, nodepool),
        }
    })
}

/// The status merge patch that sets the Node's addresses, if they differ,
/// guarded by the resourceVersion read.
pub fn address_patch(node: &Node, instance: &Instance) -> Option<Value> {
    let want = addresses(instance);
    let have: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().map(|x| json!({"type": x.type_, "address": x.address})).collect())
        .unwrap_or_default();
    (want != have).then(
        || json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "status": {"addresses": want}}),
    )
}

/// Labels that drifted from what the Node must carry (for the periodic sync).
pub fn label_drift(
    node: &Node,
    instance: &Instance,
    nodepool: &SksNodepool,
    type_name: &str,
    zone: &str,
) -> Option<Value> {
    let want = labels(instance, nodepool, type_name, zone);
    let have = node.metadata.labels.clone().unwrap_or_default();
    let drift: BTreeMap<&String, &String> = want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).collect();
    (!drift.is_empty()).then(|| json!({"metadata": {"labels": drift}}))
}
