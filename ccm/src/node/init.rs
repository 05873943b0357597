//! Node initialization (`cloud-node`): what a Node of an instance of this
//! cluster must carry, computed from the Node, the instance and its nodepool
//! alone, and the step that writes it: once when the Node joins, then
//! whenever its addresses or labels drift.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use orchestrator::model::{Instance, SksNodepool};
use serde_json::{Value, json};
use sks_keys::{PROVIDER_ID_PREFIX, label, taint};
use uuid::Uuid;

use crate::cloud::Snapshot;
use crate::context::Context;
use crate::events::EventType;
use crate::reconcile::Error;

/// How long a Node of no instance of ours is not reported again.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// The instance id in a Node's providerID, if it names one of ours (a valid id or not).
fn provider_id_text(node: &Node) -> Option<&str> {
    node.spec.as_ref()?.provider_id.as_deref()?.strip_prefix(PROVIDER_ID_PREFIX)
}

/// The instance id in a Node's providerID, if it has one of ours.
pub fn provider_id(node: &Node) -> Option<Uuid> {
    provider_id_text(node).and_then(|id| Uuid::parse_str(id).ok())
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
    if let Some(id) = provider_id_text(node) {
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
pub fn labels(nodepool: &SksNodepool, type_name: &str, zone: &str) -> BTreeMap<String, String> {
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
            "labels": labels(nodepool, type_name, zone),
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
pub fn label_drift(node: &Node, nodepool: &SksNodepool, type_name: &str, zone: &str) -> Option<Value> {
    let want = labels(nodepool, type_name, zone);
    let have = node.metadata.labels.clone().unwrap_or_default();
    let drift: BTreeMap<&String, &String> = want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).collect();
    (!drift.is_empty()).then(|| json!({"metadata": {"labels": drift}}))
}

/// When each Node of no instance of ours was last reported, so its Warning
/// does not repeat at every retry.
#[derive(Default)]
pub struct Reported(Mutex<HashMap<String, Instant>>);

impl Reported {
    /// Whether `node` is due a report now (and then it is not for a while).
    fn due(&self, node: &str) -> bool {
        let mut reported = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let due = reported.get(node).is_none_or(|t| t.elapsed() > REPORT_AGAIN_AFTER);
        if due {
            reported.insert(node.to_owned(), Instant::now());
        }
        due
    }
}

/// What [`initialize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initialized {
    /// The Node is initialized.
    Done,
    /// No instance (or nodepool) of ours matches the Node yet: it stays tainted.
    NoMatch,
}

/// Initializes an uninitialized Node from `found`, its instance in `snapshot`.
pub async fn initialize(
    ctx: &Context,
    node: &Node,
    found: Option<&Instance>,
    snapshot: &Snapshot,
    reported: &Reported,
) -> Result<Initialized, Error> {
    let name = node.name_any();
    let Some(instance) = found else {
        if reported.due(&name) {
            let why = format!(
                "no instance of this cluster's nodepools matches node {name} (by providerID, system UUID or name); it stays tainted {}",
                taint::UNINITIALIZED
            );
            tracing::warn!(node = %name, "{why}");
            ctx.events.about(node, EventType::Warning, "NodeNotInCluster", why).await;
        }
        return Ok(Initialized::NoMatch);
    };
    let Some(nodepool) = snapshot.nodepool_of(instance) else {
        return Ok(Initialized::NoMatch);
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let type_name = ctx.cloud.type_name(instance.instance_type.id).unwrap_or_default();
    // Both writes are guarded, so a concurrent change makes one a 409 and a
    // retry; the second is guarded by the version the first produced, which
    // still describes the Node read here.
    let mut guard = node.metadata.resource_version.clone();
    if let Some(status) = address_patch(node, instance) {
        guard =
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?.metadata.resource_version;
    }
    let patch = init_patch(node, guard.as_deref(), instance, nodepool, &type_name, &ctx.cloud.zone);
    nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    if let Some(created) = node.metadata.creation_timestamp.as_ref() {
        let delay = jiff::Timestamp::now().duration_since(created.0).as_secs_f64();
        ctx.metrics.init_delay.observe(delay.max(0.0));
    }
    tracing::info!(node = %name, instance = %instance.id, nodepool = %nodepool.id, "initialized node");
    Ok(Initialized::Done)
}

/// Keeps an initialized Node's addresses (and, with its nodepool known, its
/// labels) those of its instance.
pub async fn keep_current(
    ctx: &Context,
    node: &Node,
    instance: &Instance,
    nodepool: Option<&SksNodepool>,
) -> Result<(), Error> {
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if let Some(status) = address_patch(node, instance) {
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
    }
    if let Some(nodepool) = nodepool {
        let type_name = ctx.cloud.type_name(instance.instance_type.id).unwrap_or_default();
        if let Some(patch) = label_drift(node, nodepool, &type_name, &ctx.cloud.zone) {
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
    }
    Ok(())
}

