//! The NodePool kind as discovery, OpenAPI and `kubectl get` see it.

use serde_json::{Value, json};

use sks_rest::resource::{Column, ResourceDef, Subresource};

/// API group of every SKS kind.
pub const GROUP: &str = "sks.exoscale.net";
/// Version of every SKS kind.
pub const VERSION: &str = "v1alpha1";

fn int(obj: &Value, pointer: &str) -> Value {
    obj.pointer(pointer).cloned().filter(serde_json::Value::is_i64).unwrap_or(json!(0))
}

/// An autoscaling bound, or `<none>` as kubectl prints an unset field.
fn bound(obj: &Value, pointer: &str) -> Value {
    match obj.pointer(pointer).and_then(Value::as_i64) {
        Some(n) => json!(n.to_string()),
        None => json!("<none>"),
    }
}

fn string(obj: &Value, pointer: &str) -> Value {
    json!(obj.pointer(pointer).and_then(Value::as_str).unwrap_or(""))
}

fn schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let ids = |d: &str| json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "description": d});
    let condition = json!({
        "type": "object",
        "required": ["type", "status"],
        "description": "A condition of the nodepool.",
        "properties": {
            "type": string("Ready, Progressing or Degraded."),
            "status": string("True, False or Unknown."),
            "reason": string("A CamelCase reason for the condition's last transition."),
            "message": string("A human-readable message about the transition."),
            "lastTransitionTime": {"type": "string", "format": "date-time", "description": "When the condition last changed status."},
            "observedGeneration": {"type": "integer", "format": "int64", "description": "The metadata.generation the condition was computed for."}
        }
    });
    let scale_change = json!({
        "type": "object",
        "description": "A change of the nodepool's size by the autoscaler.",
        "properties": {
            "time": {"type": "string", "format": "date-time", "description": "When."},
            "from": {"type": "integer", "format": "int64", "description": "Size before."},
            "to": {"type": "integer", "format": "int64", "description": "Size after."},
            "reason": string("Why (e.g. 12 pending pods; node x unneeded for 10m).")
        }
    });
    json!({
        "description": "NodePool is a group of identical nodes of an SKS cluster, backed by an instance pool of the zone.",
        "properties": {
            "spec": {
                "type": "object",
                "description": "The desired nodepool.",
                "required": ["instanceType"],
                "properties": {
                    "replicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Number of nodes. At most 8 when antiAffinityGroups is set."},
                    "instanceType": string("Instance type of the nodes, as <family>.<size> (e.g. standard.medium); at least 2 GiB of memory."),
                    "diskSize": {"type": "integer", "format": "int64", "minimum": 20, "maximum": 51200, "description": "Root disk size of the nodes in GiB (20 to 51200, default 50)."},
                    "taints": {
                        "type": "array",
                        "description": "Taints put on the nodes by sks-ccm.",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["key"],
                        "items": {
                            "type": "object",
                            "required": ["key", "value", "effect"],
                            "description": "A taint of the nodes.",
                            "properties": {
                                "key": string("Taint key (a label key)."),
                                "value": string("Taint value (mandatory, 1 to 255 characters)."),
                                "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"], "description": "NoSchedule, PreferNoSchedule or NoExecute."}
                            }
                        }
                    },
                    "antiAffinityGroups": ids("IDs of anti-affinity groups the nodes are placed in."),
                    "securityGroups": ids("IDs of security groups of the nodes."),
                    "privateNetworks": ids("IDs of private networks the nodes are attached to."),
                    "deployTarget": string("ID of a deploy target (dedicated hypervisors)."),
                    "instancePrefix": string("Prefix of instance (and node) names, 1 to 30 characters (default pool)."),
                    "description": string("Free-form description, at most 255 characters."),
                    "publicIpAssignment": {"type": "string", "enum": ["inet4", "dual"], "description": "inet4 (IPv4 only) or dual (IPv4 and IPv6)."},
                    "autoscaling": {
                        "type": "object",
                        "description": "Automatic scaling between minReplicas and maxReplicas (absent: off). Pending pods that fit this nodepool's nodes add nodes; nodes whose pods fit elsewhere are removed after a while. A manual scale must stay within the bounds. See docs/api.md, Autoscaling.",
                        "required": ["minReplicas", "maxReplicas"],
                        "properties": {
                            "minReplicas": {"type": "integer", "format": "int64", "minimum": 0, "description": "Fewest nodes the autoscaler leaves (0 allowed)."},
                            "maxReplicas": {"type": "integer", "format": "int64", "minimum": 1, "description": "Most nodes the autoscaler adds up to; at most 8 with antiAffinityGroups."}
                        }
                    },
                    "kubeletImageGc": {
                        "type": "object",
                        "description": "Kubelet image garbage collection.",
                        "properties": {
                            "highThreshold": {"type": "integer", "format": "int64", "description": "Disk usage percent that starts image collection."},
                            "lowThreshold": {"type": "integer", "format": "int64", "description": "Disk usage percent collection aims for."},
                            "minAge": string("Minimum age of an image before it is collected, e.g. 2m.")
                        }
                    }
                }
            },
            "status": {
                "type": "object",
                "description": "The observed nodepool (read-only).",
                "properties": {
                    "phase": string("Creating, Running, Scaling, Updating, Deleting, RenewingToken or Error."),
                    "replicas": {"type": "integer", "format": "int32", "description": "Instances in the nodepool's instance pool."},
                    "readyReplicas": {"type": "integer", "format": "int32", "description": "Nodes that are Ready (running instances when the cluster's Nodes are not visible)."},
                    "updatedReplicas": {"type": "integer", "format": "int32", "description": "Nodes running the nodepool's current template."},
                    "version": string("Kubernetes version of the nodes."),
                    "instancePoolID": string("ID of the backing instance pool."),
                    "selector": string("Label selector of the nodepool's Nodes."),
                    "observedGeneration": {"type": "integer", "format": "int64", "description": "The metadata.generation this status describes."},
                    "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"], "description": "Ready, Progressing and Degraded; ScalingLimited (True while pods wait because the nodepool is at spec.autoscaling.maxReplicas) when autoscaled."},
                    "autoscaling": {
                        "type": "object",
                        "description": "What the autoscaler last did to the nodepool.",
                        "properties": {
                            "lastScaleUp": scale_change.clone(),
                            "lastScaleDown": scale_change
                        }
                    }
                }
            }
        }
    })
}

/// Schema of the eviction request (`POST .../nodepools/<name>/eviction`).
pub fn eviction_schema() -> (String, Value) {
    (
        sks_rest::openapi::definition_name(GROUP, VERSION, "NodePoolEviction"),
        json!({
            "type": "object",
            "description": "Removes the named nodes from the nodepool; the pool shrinks by their number.",
            "required": ["nodes"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "nodes": {"type": "array", "items": {"type": "string"}, "description": "Names of the nodes (instances) to remove."}
            },
            "x-kubernetes-group-version-kind": [{"group": GROUP, "version": VERSION, "kind": "NodePoolEviction"}]
        }),
    )
}

/// The NodePool resource.
pub fn definition() -> ResourceDef {
    ResourceDef {
        group: GROUP,
        version: VERSION,
        plural: "nodepools",
        singular: "nodepool",
        kind: "NodePool",
        short_names: &["np"],
        categories: &["sks"],
        namespaced: false,
        verbs: Vec::new(),
        subresources: vec![
            Subresource { name: "status", group: GROUP, version: VERSION, kind: "NodePool", verbs: &["get"] },
            Subresource {
                name: "scale",
                group: "autoscaling",
                version: "v1",
                kind: "Scale",
                verbs: &["get", "patch", "update"],
            },
            Subresource {
                name: "eviction",
                group: GROUP,
                version: VERSION,
                kind: "NodePoolEviction",
                verbs: &["create"],
            },
        ],
        columns: vec![
            Column {
                name: "Desired",
                type_: "integer",
                format: "",
                priority: 0,
                description: "Desired number of nodes.",
                cell: |o| int(o, "/spec/replicas"),
            },
            Column {
                name: "Current",
                type_: "integer",
                format: "",
                priority: 0,
                description: "Instances in the pool.",
                cell: |o| int(o, "/status/replicas"),
            },
            Column {
                name: "Ready",
                type_: "integer",
                format: "",
                priority: 0,
                description: "Ready nodes.",
                cell: |o| int(o, "/status/readyReplicas"),
            },
            Column {
                name: "Up-to-date",
                type_: "integer",
                format: "",
                priority: 0,
                description: "Nodes on the current template.",
                cell: |o| int(o, "/status/updatedReplicas"),
            },
            Column {
                name: "Instance-Type",
                type_: "string",
                format: "",
                priority: 0,
                description: "Instance type of the nodes.",
                cell: |o| string(o, "/spec/instanceType"),
            },
            Column {
                name: "Version",
                type_: "string",
                format: "",
                priority: 0,
                description: "Kubernetes version of the nodes.",
                cell: |o| string(o, "/status/version"),
            },
            Column {
                name: "Phase",
                type_: "string",
                format: "",
                priority: 0,
                description: "Lifecycle phase.",
                cell: |o| string(o, "/status/phase"),
            },
            Column {
                name: "Min",
                type_: "string",
                format: "",
                priority: 1,
                description: "spec.autoscaling.minReplicas (<none>: not autoscaled).",
                cell: |o| bound(o, "/spec/autoscaling/minReplicas"),
            },
            Column {
                name: "Max",
                type_: "string",
                format: "",
                priority: 1,
                description: "spec.autoscaling.maxReplicas (<none>: not autoscaled).",
                cell: |o| bound(o, "/spec/autoscaling/maxReplicas"),
            },
            Column {
                name: "Disk",
                type_: "integer",
                format: "",
                priority: 1,
                description: "Disk size in GiB.",
                cell: |o| int(o, "/spec/diskSize"),
            },
            Column {
                name: "Instance-Pool",
                type_: "string",
                format: "",
                priority: 1,
                description: "Backing instance pool.",
                cell: |o| string(o, "/status/instancePoolID"),
            },
        ],
        schema: schema(),
        extra_field_selectors: &["status.phase"],
        strategic_merge: None,
    }
}
