//! The two writes that initialize a Node, as kube-apiserver receives them
//! (the status subresource is a write of its own, so two is the least), and
//! why neither carries the Node's resourceVersion.
//!
//! - **`status.addresses`**: a merge patch of the instance's addresses. What
//!   it writes depends on the instance alone, never on the Node read, so a
//!   change made meanwhile takes nothing away that the write was based on.
//!   Unguarded, a kubelet status update landing between the read and the
//!   write is no 409 and no retry.
//! - **providerID, labels and taints**: a JSON patch. providerID and each
//!   label are set key by key (`add` replaces a value; labels others set are
//!   left alone; kube-apiserver refuses a providerID that changes once set).
//!   The taint list is the one thing computed from the Node read: each
//!   uninitialized taint is removed at the index it was read at, under a
//!   `test` that this index still holds it, and the nodepool's taints the
//!   Node lacked are appended. A taint list changed meanwhile (a taint removed
//!   before it, the list replaced) fails the `test` with a 422 instead of being
//!   overwritten; a taint appended meanwhile is kept; the same nodepool taint
//!   added by someone else is a duplicate kube-apiserver refuses (422). Either
//!   way nothing is lost and the reconcile retries on the newer version. So
//!   the guard covers exactly what the merge patch's resourceVersion guarded
//!   (that patch replaced the whole taint list), while heartbeats, status
//!   updates and other writers' labels and annotations (kube-controller-
//!   manager's TTL annotation on every new Node, say), which move the
//!   resourceVersion without touching the taints, no longer make it a 409.
//!
//! A Node registered without any label (kubelets always set some) gets its
//! labels as a whole map, which would replace a map added meanwhile: that
//! patch alone carries a `test` of the resourceVersion read.

use k8s_openapi::api::core::v1::{Node, Taint};
use orchestrator::model::{Instance, SksNodepool};
use serde_json::{Value, json};
use sks_keys::{PROVIDER_ID_PREFIX, taint};

use super::init::{addresses, labels, taints};

/// The status merge patch that sets the Node's addresses, if they differ.
pub fn addresses_patch(node: &Node, instance: &Instance) -> Option<Value> {
    let want = addresses(instance);
    let have: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().map(|x| json!({"type": x.type_, "address": x.address})).collect())
        .unwrap_or_default();
    (want != have).then(|| json!({"status": {"addresses": want}}))
}

/// A JSON pointer token: `~` and `/` escaped (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch operations that initialize a Node: providerID, the labels
/// that differ, the uninitialized taints removed where they were read (each
/// under a `test`), the nodepool's taints it lacks appended.
pub fn init_patch(node: &Node, instance: &Instance, nodepool: &SksNodepool, type_name: &str, zone: &str) -> Value {
    let mut ops = Vec::new();
    let want = labels(nodepool, type_name, zone);
    match node.metadata.labels.as_ref() {
        Some(have) => ops.extend(
            want.iter()
                .filter(|(k, v)| have.get(*k) != Some(*v))
                .map(|(k, v)| json!({"op": "add", "path": format!("/metadata/labels/{}", token(k)), "value": v})),
        ),
        None => {
            ops.push(
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": node.metadata.resource_version}),
            );
            ops.push(json!({"op": "add", "path": "/metadata/labels", "value": want}));
        }
    }
    ops.push(json!({"op": "add", "path": "/spec/providerID", "value": format!("{PROVIDER_ID_PREFIX}{}", instance.id)}));
    let have: &[Taint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    // From the last, so the indices of those still to remove do not move.
    for (i, _) in have.iter().enumerate().rev().filter(|(_, t)| t.key == taint::UNINITIALIZED) {
        ops.push(json!({"op": "test", "path": format!("/spec/taints/{i}/key"), "value": taint::UNINITIALIZED}));
        ops.push(json!({"op": "remove", "path": format!("/spec/taints/{i}")}));
    }
    let added = taints(node, nodepool);
    for t in added.iter().filter(|t| !have.iter().any(|h| h.key == t.key && h.effect == t.effect)) {
        ops.push(json!({"op": "add", "path": "/spec/taints/-", "value": t}));
    }
    Value::Array(ops)
}

#[cfg(test)]
mod tests {
    use orchestrator::model::{NodepoolTaint, SksNodepoolSpec, TaintEffect};
    use sks_keys::label;
    use uuid::Uuid;

    use super::*;

    const ZONE: &str = "ch-gva-2";

    fn instance() -> Instance {
        serde_json::from_value(json!({"id": Uuid::from_u128(9), "name": "pool-a", "state": "running",
            "instance-type": {"id": Uuid::nil()}, "public-ip": "192.0.2.7",
            "manager": {"id": Uuid::nil(), "type": "instance-pool"}}))
        .unwrap()
    }

    fn nodepool(taints: &[(&str, &str, TaintEffect)]) -> SksNodepool {
        let taints = taints
            .iter()
            .map(|(k, v, effect)| ((*k).to_owned(), NodepoolTaint { value: (*v).to_owned(), effect: effect.clone() }))
            .collect();
        let labels = [("team".to_owned(), "ml".to_owned())].into();
        let spec = SksNodepoolSpec { labels: Some(labels), taints: Some(taints), ..Default::default() };
        crate::node::fixtures::nodepool(Uuid::from_u128(7), spec)
    }

    /// A Node as a kubelet registers it (the whole object, as the API holds it).
    fn registered(taints: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "pool-a", "resourceVersion": "5", "labels": {"kubernetes.io/hostname": "pool-a"}},
            "spec": {"taints": taints},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}})
    }

    /// What the cache holds of `full`.
    fn cached(full: &Value) -> Node {
        let mut c: crate::node::cached::CachedNode = serde_json::from_value(full.clone()).unwrap();
        c.prune();
        c.to_node()
    }

    fn apply(doc: &Value, ops: &Value) -> Result<Value, String> {
        let ops: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
        let mut out = doc.clone();
        json_patch::patch(&mut out, &ops).map(|()| out).map_err(|e| e.to_string())
    }

    const UNINIT: &str = taint::UNINITIALIZED;

    #[test]
    fn the_init_patch_initializes_the_node_it_was_made_from() {
        let np = nodepool(&[("dedicated", "gpu", TaintEffect::NoSchedule)]);
        let full = registered(
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": UNINIT, "value": "true", "effect": "NoSchedule"}]),
        );
        let ops = init_patch(&cached(&full), &instance(), &np, "standard.small", ZONE);
        let after = apply(&full, &ops).unwrap();
        assert_eq!(after["spec"]["providerID"], format!("exoscale://{}", Uuid::from_u128(9)));
        assert_eq!(
            after["spec"]["taints"],
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
        );
        let mut want = serde_json::to_value(labels(&np, "standard.small", ZONE)).unwrap();
        want["kubernetes.io/hostname"] = json!("pool-a");
        assert_eq!(after["metadata"]["labels"], want, "the kubelet's labels kept, ours added");
        assert!(!ops.to_string().contains("resourceVersion"), "no guard on the whole object: {ops}");
    }

    #[test]
    fn changes_that_leave_the_taints_alone_do_not_fail_it() {
        let np = nodepool(&[]);
        let full = registered(json!([{"key": UNINIT, "value": "true", "effect": "NoSchedule"}]));
        let ops = init_patch(&cached(&full), &instance(), &np, "standard.small", ZONE);
        let mut moved = full.clone();
        moved["metadata"]["resourceVersion"] = json!("9");
        moved["metadata"]["annotations"] = json!({"node.alpha.kubernetes.io/ttl": "0"});
        moved["metadata"]["labels"]["team"] = json!("web");
        moved["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        let after = apply(&moved, &ops).unwrap();
        assert_eq!(after["spec"]["taints"], json!([]));
        assert_eq!(after["metadata"]["annotations"], moved["metadata"]["annotations"], "others' writes kept");
        assert_eq!(after["metadata"]["labels"]["team"], "ml", "the nodepool's value");
        // A taint appended meanwhile is kept.
        let mut appended = full.clone();
        appended["spec"]["taints"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
        let after = apply(&appended, &ops).unwrap();
        assert_eq!(after["spec"]["taints"], json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]));
    }

    #[test]
    fn a_taint_list_changed_before_the_uninitialized_taint_fails_it() {
        let np = nodepool(&[]);
        let full = registered(
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": UNINIT, "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]),
        );
        let ops = init_patch(&cached(&full), &instance(), &np, "standard.small", ZONE);
        let cases = [
            (
                "a taint before it removed",
                json!([{"key": UNINIT, "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]),
            ),
            (
                "already initialized by another",
                json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]),
            ),
            ("the list replaced", json!([{"key": "c", "effect": "NoSchedule"}])),
            ("no taints left", json!(null)),
        ];
        for (why, taints) in cases {
            let mut changed = full.clone();
            changed["spec"]["taints"] = taints;
            assert!(apply(&changed, &ops).is_err(), "{why}: applied");
        }
    }

    #[test]
    fn labels_set_key_by_key_and_only_those_that_differ() {
        let np = nodepool(&[]);
        let mut full = registered(json!([{"key": UNINIT, "effect": "NoSchedule"}]));
        full["metadata"]["labels"][label::ZONE] = json!(ZONE);
        let ops = init_patch(&cached(&full), &instance(), &np, "standard.small", ZONE);
        let paths: Vec<&str> =
            ops.as_array().unwrap().iter().filter(|o| o["op"] == "add").map(|o| o["path"].as_str().unwrap()).collect();
        assert!(paths.contains(&"/metadata/labels/node.kubernetes.io~1instance-type"), "{paths:?}");
        assert!(!paths.contains(&"/metadata/labels/topology.kubernetes.io~1zone"), "already right: {paths:?}");
        assert_eq!(token("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn a_node_without_labels_gets_the_map_under_its_resource_version() {
        let np = nodepool(&[]);
        let mut full = registered(json!([{"key": UNINIT, "effect": "NoSchedule"}]));
        full["metadata"].as_object_mut().unwrap().remove("labels");
        let ops = init_patch(&cached(&full), &instance(), &np, "standard.small", ZONE);
        assert_eq!(apply(&full, &ops).unwrap()["metadata"]["labels"]["team"], "ml");
        let mut labelled = full.clone();
        labelled["metadata"]["resourceVersion"] = json!("6");
        labelled["metadata"]["labels"] = json!({"kubernetes.io/hostname": "pool-a"});
        assert!(apply(&labelled, &ops).is_err(), "a map added meanwhile is not replaced");
    }

    #[test]
    fn addresses_are_patched_only_when_they_differ_and_unguarded() {
        let i = instance();
        let node = |addresses: Value| {
            cached(&json!({"metadata": {"name": "pool-a", "resourceVersion": "9"}, "status": {"addresses": addresses}}))
        };
        let current = json!([{"type": "Hostname", "address": "pool-a"}, {"type": "ExternalIP", "address": "192.0.2.7"},
            {"type": "InternalIP", "address": "192.0.2.7"}]);
        assert_eq!(addresses_patch(&node(current.clone()), &i), None, "unchanged: no write");
        for (why, have) in [
            ("the kubelet's own", json!([{"type": "InternalIP", "address": "10.0.0.1"}])),
            ("none yet", json!(null)),
            ("another order", json!([current[1], current[0], current[2]])),
        ] {
            let patch = addresses_patch(&node(have), &i).unwrap_or_else(|| panic!("{why}: no patch"));
            assert_eq!(patch, json!({"status": {"addresses": addresses(&i)}}), "{why}");
        }
    }
}
