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

use super::patch;
use crate::cloud::Snapshot;
use crate::context::Context;
use crate::reconcile::Error;
use crate::superseded::Writes;
use sks_kubeclient::events::EventType;

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

/// Whether sks-ccm may write label `key` on a Node: its own and any nodepool
/// label, never the `kubernetes.io`/`k8s.io` ones kubelet and others own.
pub fn written_label(key: &str) -> bool {
    !sks_keys::kubernetes_label(key) || OWN_LABELS.contains(&key)
}

const OWN_LABELS: &[&str] = &[label::INSTANCE_TYPE, label::REGION, label::ZONE, label::NODEPOOL_ID];

/// The labels the Node must have (the rule the autoscaler's template nodes share).
pub fn labels(nodepool: &SksNodepool, type_name: &str, zone: &str) -> BTreeMap<String, String> {
    sks_keys::node_labels(nodepool.spec.labels.iter().flatten(), &nodepool.id.to_string(), type_name, zone)
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
        let mut reported = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
    writes: &Writes,
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
    // Addresses first, so the Node is never schedulable without them. Neither
    // write carries the Node's resourceVersion: see [`patch`] for why none is
    // needed and what guards the taints instead.
    if let Some(status) = patch::addresses_patch(node, instance) {
        writes.answered(&nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?);
    }
    let ops = patch::init_patch(node, instance, nodepool, &type_name, &ctx.cloud.zone);
    let ops = Patch::<()>::Json(serde_json::from_value(ops).map_err(kube::Error::SerdeError)?);
    writes.answered(&nodes.patch(&name, &PatchParams::default(), &ops).await?);
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
    writes: &Writes,
) -> Result<(), Error> {
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if let Some(status) = patch::addresses_patch(node, instance) {
        writes.answered(&nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?);
    }
    if let Some(nodepool) = nodepool {
        let type_name = ctx.cloud.type_name(instance.instance_type.id).unwrap_or_default();
        if let Some(drift) = label_drift(node, nodepool, &type_name, &ctx.cloud.zone) {
            writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(drift)).await?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use orchestrator::model::{NodepoolTaint, SksNodepoolSpec, TaintEffect};
    use serde_json::json;

    use super::*;

    const ZONE: &str = "ch-gva-2";

    fn instance(name: &str, ipv6: Option<&str>) -> Instance {
        serde_json::from_value(json!({"id": Uuid::new_v4(), "name": name, "state": "running",
            "instance-type": {"id": Uuid::nil()}, "public-ip": "192.0.2.7", "ipv6-address": ipv6,
            "manager": {"id": Uuid::nil(), "type": "instance-pool"}}))
        .unwrap()
    }

    fn nodepool(labels: &[(&str, &str)], taints: &[(&str, &str, TaintEffect)]) -> SksNodepool {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let taints = taints
            .iter()
            .map(|(k, v, effect)| ((*k).to_owned(), NodepoolTaint { value: (*v).to_owned(), effect: effect.clone() }))
            .collect();
        let spec = SksNodepoolSpec { labels: Some(labels), taints: Some(taints), ..Default::default() };
        crate::node::fixtures::nodepool(Uuid::from_u128(7), spec)
    }

    /// A Node as the tests need it, from the JSON a kubelet would send.
    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn snapshot(instances: &[&Instance]) -> Snapshot {
        Snapshot {
            instances: instances.iter().map(|i| (i.id, Box::new((*i).clone()))).collect(),
            by_name: instances.iter().map(|i| (i.name.to_lowercase(), i.id)).collect(),
            ..Default::default()
        }
    }

    fn taint_keys(taints: &[Taint]) -> Vec<(&str, &str)> {
        taints.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect()
    }

    #[test]
    fn an_instance_is_found_by_provider_id_then_system_uuid_then_name() {
        let (a, b) = (instance("pool-a", None), instance("Pool-B", None));
        let cloud = snapshot(&[&a, &b]);
        let by = |provider: Option<String>, uuid: Option<String>, name: &str| {
            let n = node(json!({"metadata": {"name": name}, "spec": {"providerID": provider},
                "status": {"nodeInfo": uuid.map(|u| json!({"systemUUID": u, "machineID": "", "bootID": "",
                    "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                    "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""}))}}));
            instance_for(&n, &cloud).map(|i| i.name.clone())
        };
        let ours = |i: &Instance| Some(format!("exoscale://{}", i.id));
        // Why, providerID, system UUID, name, the instance found.
        type Case<'a> = (&'a str, Option<String>, Option<String>, &'a str, Option<&'a str>);
        let cases: [Case; 9] = [
            ("providerID wins over uuid and name", ours(&a), Some(b.id.to_string()), "pool-b", Some("pool-a")),
            (
                "providerID of a missing instance: no fallback",
                Some(format!("exoscale://{}", Uuid::new_v4())),
                Some(a.id.to_string()),
                "pool-a",
                None,
            ),
            ("malformed providerID: no fallback", Some("exoscale://nope".into()), None, "pool-a", None),
            ("another cloud's providerID falls back", Some(format!("aws:///{}", a.id)), None, "pool-b", Some("Pool-B")),
            ("system UUID wins over name", None, Some(a.id.to_string()), "pool-b", Some("pool-a")),
            ("unknown system UUID: by name", None, Some(Uuid::new_v4().to_string()), "pool-a", Some("pool-a")),
            ("invalid system UUID: by name", None, Some("not-a-uuid".into()), "pool-a", Some("pool-a")),
            ("name, case-insensitively", None, None, "POOL-B", Some("Pool-B")),
            ("nothing matches", None, None, "stranger", None),
        ];
        for (why, provider, uuid, name, want) in cases {
            assert_eq!(by(provider, uuid, name).as_deref(), want, "{why}");
        }
    }

    #[test]
    fn provider_id_and_the_uninitialized_taint_are_read() {
        let id = Uuid::new_v4();
        let cases = [
            (json!({"providerID": format!("exoscale://{id}")}), Some(id), false),
            (json!({"providerID": "exoscale://x"}), None, false),
            (json!({"providerID": format!("gce://{id}")}), None, false),
            (json!({"taints": [{"key": taint::UNINITIALIZED, "effect": "NoSchedule"}]}), None, true),
            (json!({"taints": [{"key": taint::SHUTDOWN, "effect": "NoSchedule"}]}), None, false),
            (json!({}), None, false),
        ];
        for (spec, want_id, want_uninit) in cases {
            let n = node(json!({"metadata": {"name": "n"}, "spec": spec.clone()}));
            assert_eq!((provider_id(&n), uninitialized(&n)), (want_id, want_uninit), "{spec}");
        }
    }

    #[test]
    fn labels_are_the_nodepools_minus_kubernetes_ones_plus_ours() {
        let np = nodepool(
            &[
                ("team", "ml"),
                ("example.com/tier", "gold"),
                ("node-role.kubernetes.io/gpu", "x"),
                ("kubernetes.io/os", "windows"),
                ("k8s.io/x", "y"),
                ("sub.k8s.io/x", "y"),
                ("kubernetes.io.example.com/ok", "yes"),
                (label::NODEPOOL_ID, "spoofed"),
                (label::ZONE, "elsewhere"),
            ],
            &[],
        );
        let got = labels(&np, "standard.medium", ZONE);
        let want: BTreeMap<String, String> = [
            ("team", "ml"),
            ("example.com/tier", "gold"),
            ("kubernetes.io.example.com/ok", "yes"),
            (label::INSTANCE_TYPE, "standard.medium"),
            (label::REGION, ZONE),
            (label::ZONE, ZONE),
            (label::NODEPOOL_ID, "00000000-0000-0000-0000-000000000007"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_instance_type_label_is_a_valid_label_value() {
        let cases = [
            ("standard.medium", "standard.medium"),
            ("gpu3.huge_x-2", "gpu3.huge_x-2"),
            ("Standard Medium (new)!", "StandardMediumnew"),
            ("..memory.big--", "memory.big"),
            ("_-.", ""),
            ("", ""),
        ];
        for (type_name, want) in cases {
            assert_eq!(labels(&nodepool(&[], &[]), type_name, ZONE)[label::INSTANCE_TYPE], want, "{type_name:?}");
        }
    }

    #[test]
    fn only_labels_sks_ccm_writes_are_cached() {
        for (key, written) in [
            ("team", true),
            (label::INSTANCE_TYPE, true),
            (label::ZONE, true),
            (label::REGION, true),
            (label::NODEPOOL_ID, true),
            ("kubernetes.io/hostname", false),
            ("node-role.kubernetes.io/control-plane", false),
            ("k8s.io/x", false),
        ] {
            assert_eq!(written_label(key), written, "{key}");
        }
    }

    #[test]
    fn initialization_drops_the_uninitialized_taint_keeps_others_and_adds_the_nodepools() {
        let np = nodepool(&[], &[("dedicated", "gpu", TaintEffect::NoSchedule), ("keep", "v", TaintEffect::NoExecute)]);
        let cases = [
            (
                "only uninitialized",
                json!([{"key": taint::UNINITIALIZED, "effect": "NoSchedule"}]),
                vec![("dedicated", "NoSchedule"), ("keep", "NoExecute")],
            ),
            (
                "others are kept, in order",
                json!([{"key": "a", "effect": "NoSchedule"}, {"key": taint::UNINITIALIZED, "effect": "NoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]),
                vec![
                    ("a", "NoSchedule"),
                    ("b", "PreferNoSchedule"),
                    ("dedicated", "NoSchedule"),
                    ("keep", "NoExecute"),
                ],
            ),
            (
                "a nodepool taint already there is not doubled",
                json!([{"key": "dedicated", "value": "other", "effect": "NoSchedule"}]),
                vec![("dedicated", "NoSchedule"), ("keep", "NoExecute")],
            ),
            (
                "same key, another effect: both",
                json!([{"key": "keep", "effect": "NoSchedule"}]),
                vec![("keep", "NoSchedule"), ("dedicated", "NoSchedule"), ("keep", "NoExecute")],
            ),
            ("no taints at all", json!(null), vec![("dedicated", "NoSchedule"), ("keep", "NoExecute")]),
        ];
        for (why, have, want) in cases {
            let n = node(json!({"metadata": {"name": "n"}, "spec": {"taints": have}}));
            assert_eq!(taint_keys(&taints(&n, &np)), want, "{why}");
        }
        let n = node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "dedicated", "value": "other", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(taints(&n, &np)[0].value.as_deref(), Some("other"), "the Node's own value is kept");
        assert_eq!(
            taint_keys(&taints(&n, &nodepool(&[], &[]))),
            vec![("dedicated", "NoSchedule")],
            "no nodepool taints"
        );
    }

    #[test]
    fn addresses_are_the_hostname_then_every_public_ip() {
        let both = instance("pool-a", Some("2001:db8::7"));
        let types: Vec<_> = addresses(&both).iter().map(|a| a["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types, ["Hostname", "ExternalIP", "ExternalIP", "InternalIP"]);
        assert_eq!(addresses(&instance("pool-a", None)).len(), 3);
    }

    #[test]
    fn label_drift_patches_only_the_labels_that_differ() {
        let np = nodepool(&[("team", "ml")], &[]);
        let want = labels(&np, "standard.medium", ZONE);
        let with = |labels: &BTreeMap<String, String>| node(json!({"metadata": {"name": "n", "labels": labels}}));
        let mut extra = want.clone();
        extra.insert("set-by-someone".into(), "else".into());
        assert_eq!(label_drift(&with(&want), &np, "standard.medium", ZONE), None, "in sync");
        assert_eq!(label_drift(&with(&extra), &np, "standard.medium", ZONE), None, "other labels are left alone");
        let mut changed = want.clone();
        changed.insert("team".into(), "web".into());
        changed.remove(label::ZONE);
        assert_eq!(
            label_drift(&with(&changed), &np, "standard.medium", ZONE),
            Some(json!({"metadata": {"labels": {"team": "ml", label::ZONE: ZONE}}}))
        );
        assert_eq!(
            label_drift(&with(&want), &np, "standard.large", ZONE),
            Some(json!({"metadata": {"labels": {label::INSTANCE_TYPE: "standard.large"}}})),
            "a resized instance"
        );
        assert!(label_drift(&node(json!({"metadata": {"name": "n"}})), &np, "standard.medium", ZONE).is_some());
    }

    #[test]
    fn a_foreign_node_is_reported_once_per_window() {
        let r = Reported::default();
        assert!(r.due("a"));
        assert!(!r.due("a"));
        assert!(r.due("b"));
    }
}
