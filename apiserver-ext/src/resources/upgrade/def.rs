//! The Upgrade kind as discovery, OpenAPI and `kubectl get` see it.

use serde_json::{Value, json};

use crate::resources::nodepool::def::{GROUP, VERSION};
use sks_rest::resource::{Column, ResourceDef};

fn text(obj: &Value, pointer: &str) -> Value {
    json!(obj.pointer(pointer).and_then(Value::as_str).unwrap_or(""))
}

/// A `kubectl get` column showing the string at `pointer`.
fn column(name: &'static str, description: &'static str, priority: i32, cell: fn(&Value) -> Value) -> Column {
    Column { name, type_: "string", format: "", priority, description, cell }
}

/// A condition's schema, shared by the SKS kinds.
pub fn condition_schema(what: &str) -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "required": ["type", "status"],
        "description": format!("A condition of the {what}."),
        "properties": {
            "type": string("The condition's type."),
            "status": string("True, False or Unknown."),
            "reason": string("A CamelCase reason for the condition's last transition."),
            "message": string("A human-readable message about the transition."),
            "lastTransitionTime": {"type": "string", "format": "date-time", "description": "When the condition last changed status."},
            "observedGeneration": {"type": "integer", "format": "int64", "description": "The metadata.generation the condition was computed for."}
        }
    })
}

fn schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let time = |d: &str| json!({"type": "string", "format": "date-time", "description": d});
    let int = |d: &str| json!({"type": "integer", "format": "int64", "description": d});
    json!({
        "description": "Upgrade is one change of the cluster's Kubernetes version, requested (by creating one, or by changing the Cluster's spec.version) or automatic, with its progress. Optionally it then replaces the nodes of every nodepool, one at a time.",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["version"],
                "description": "The upgrade asked for.",
                "properties": {
                    "version": string("Target Kubernetes version: the newest patch of the current minor or of the next minor (see the Cluster's status.availableVersions)."),
                    "rollNodepools": {"type": "boolean", "description": "After the control plane, replace every node running the previous version, one at a time, nodepool by nodepool: grow the nodepool by one and evict one, wait until its replacement has joined, been initialized and is Ready, then the next (the nodepool never has fewer nodes than before)."}
                }
            },
            "status": {
                "type": "object",
                "description": "Progress (read-only).",
                "properties": {
                    "from": string("Version before the upgrade."),
                    "to": string("Target version."),
                    "trigger": {"type": "string", "enum": ["Manual", "Auto"], "description": "Manual (requested) or Auto (the cluster's autoUpgrade picked up a new patch)."},
                    "phase": {"type": "string", "enum": ["Pending", "ControlPlane", "Nodepools", "Succeeded", "Failed"], "description": "Pending, ControlPlane (components being replaced), Nodepools (nodes being replaced), Succeeded or Failed."},
                    "message": string("What happens now, or why it failed."),
                    "startedAt": time("When it started."),
                    "completedAt": time("When it ended."),
                    "orchestratorUpgradeID": string("The orchestrator's id of the control-plane upgrade."),
                    "controlPlane": {
                        "type": "array",
                        "description": "Control-plane components as the upgrade found them last.",
                        "items": {"type": "object", "description": "A component.", "properties": {
                            "name": string("Component."), "version": string("Version it runs."), "state": string("running, upgrading or pending.")
                        }}
                    },
                    "nodepools": {
                        "type": "array",
                        "description": "Progress of the node roll, per nodepool (rollNodepools).",
                        "items": {"type": "object", "description": "One nodepool's roll.", "properties": {
                            "name": string("Nodepool."),
                            "phase": {"type": "string", "enum": ["Pending", "Rolling", "Done", "Failed"], "description": "Pending, Rolling, Done or Failed."},
                            "total": int("Nodes of the previous version when the roll of this nodepool started."),
                            "replaced": int("Nodes replaced so far."),
                            "replacing": string("The node being replaced now."),
                            "since": time("When the node being replaced was evicted."),
                            "readyBefore": int("Ready up-to-date nodes when the node being replaced was evicted."),
                            "pendingReplacement": {"type": "object", "description": "The replacement asked of the orchestrator, recorded before asking and kept until it is seen done: grow the nodepool to size plus one, then evict the instance. A roll completes it before choosing another node.", "properties": {
                                "nodepool": string("Nodepool id."),
                                "instance": string("Instance being evicted."),
                                "size": int("Nodepool size the replacement keeps: it grows to one more, then evicts.")
                            }}
                        }}
                    },
                    "observedGeneration": int("The metadata.generation this status describes."),
                    "conditions": {"type": "array", "items": condition_schema("upgrade"), "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"], "description": "Complete and Failed."}
                }
            }
        }
    })
}

/// The Upgrade resource.
pub fn definition() -> ResourceDef {
    ResourceDef {
        group: GROUP,
        version: VERSION,
        plural: "upgrades",
        singular: "upgrade",
        kind: "Upgrade",
        short_names: &[],
        categories: &["sks"],
        namespaced: false,
        verbs: Vec::new(),
        subresources: Vec::new(),
        columns: vec![
            column("From", "Version before.", 0, |o| text(o, "/status/from")),
            column("To", "Target version.", 0, |o| text(o, "/status/to")),
            column("Trigger", "Manual or Auto.", 0, |o| text(o, "/status/trigger")),
            column("Phase", "Pending, ControlPlane, Nodepools, Succeeded or Failed.", 0, |o| text(o, "/status/phase")),
            column("Started", "When it started (RFC 3339).", 0, |o| text(o, "/status/startedAt")),
            column("Completed", "When it ended (RFC 3339).", 0, |o| text(o, "/status/completedAt")),
            column("Message", "What happens now, or why it failed.", 1, |o| text(o, "/status/message")),
        ],
        schema: schema(),
        extra_field_selectors: &["status.phase"],
        strategic_merge: None,
    }
}
