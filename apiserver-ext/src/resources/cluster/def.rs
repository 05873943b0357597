//! The Cluster kind as discovery, OpenAPI and `kubectl get` see it.

use serde_json::{Value, json};

use crate::resources::nodepool::def::{GROUP, VERSION};
use crate::resources::upgrade::def::condition_schema;
use sks_rest::resource::{Column, ResourceDef};

fn text(obj: &Value, pointer: &str) -> Value {
    json!(obj.pointer(pointer).and_then(Value::as_str).unwrap_or(""))
}

fn components(obj: &Value) -> Value {
    let all = obj.pointer("/status/controlPlane").and_then(Value::as_array).cloned().unwrap_or_default();
    let healthy = all.iter().filter(|c| c["healthy"] == json!(true)).count();
    json!(format!("{healthy}/{} healthy", all.len()))
}

fn component_versions(obj: &Value) -> Value {
    let all = obj.pointer("/status/controlPlane").and_then(Value::as_array).cloned().unwrap_or_default();
    let parts: Vec<String> = all
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("").trim_start_matches("kube-");
            format!("{name}={}", c["version"].as_str().unwrap_or(""))
        })
        .collect();
    json!(parts.join(","))
}

fn schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    json!({
        "description": "Cluster is the SKS cluster itself: its Kubernetes version (changing spec.version upgrades it), automatic upgrades, and the health of its control plane.",
        "properties": {
            "spec": {
                "type": "object",
                "description": "The desired cluster.",
                "properties": {
                    "version": string("Desired Kubernetes version. Setting it to one of status.availableVersions starts an Upgrade (named after the version)."),
                    "autoUpgrade": {"type": "boolean", "description": "Move to the newest patch of the current minor automatically when one is published; each move is an Upgrade with trigger Auto."},
                    "description": string("Free-form description, at most 255 characters.")
                }
            },
            "status": {
                "type": "object",
                "description": "The observed cluster (read-only).",
                "properties": {
                    "version": string("Kubernetes version the control plane runs."),
                    "phase": string("Creating, Running, Upgrading, Updating, Deleting, Suspending, Resuming or Error."),
                    "level": string("Service level: starter or pro."),
                    "cni": string("CNI plugin: calico or cilium (empty: none)."),
                    "endpoint": string("URL of the cluster's Kubernetes API."),
                    "availableVersions": {"type": "array", "items": {"type": "string"}, "description": "Versions the cluster may move to now: the newest patch of its minor and of the next minor."},
                    "controlPlane": {
                        "type": "array",
                        "description": "Control-plane components.",
                        "items": {"type": "object", "description": "A component.", "properties": {
                            "name": string("kube-apiserver, kube-scheduler or kube-controller-manager."),
                            "version": string("Version it runs."),
                            "healthy": {"type": "boolean", "description": "Whether it passes its health checks."},
                            "state": string("running, upgrading or pending.")
                        }}
                    },
                    "observedGeneration": {"type": "integer", "format": "int64", "description": "The metadata.generation this status describes."},
                    "conditions": {"type": "array", "items": condition_schema("cluster"), "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"], "description": "Available, Progressing, Degraded and Upgradeable."}
                }
            }
        }
    })
}

fn column(name: &'static str, description: &'static str, priority: i32, cell: fn(&Value) -> Value) -> Column {
    Column { name, type_: "string", format: "", priority, description, cell }
}

/// The Cluster resource.
pub fn definition() -> ResourceDef {
    ResourceDef {
        group: GROUP,
        version: VERSION,
        plural: "clusters",
        singular: "cluster",
        kind: "Cluster",
        short_names: &[],
        categories: &["sks"],
        namespaced: false,
        verbs: Vec::new(),
        subresources: Vec::new(),
        columns: vec![
            column("Version", "Version the control plane runs.", 0, |o| text(o, "/status/version")),
            column("Desired", "Version asked for.", 0, |o| text(o, "/spec/version")),
            Column {
                name: "Auto-Upgrade",
                type_: "boolean",
                format: "",
                priority: 0,
                description: "Whether new patches are applied automatically.",
                cell: |o| json!(o.pointer("/spec/autoUpgrade").and_then(Value::as_bool).unwrap_or(false)),
            },
            column("Phase", "Lifecycle phase.", 0, |o| text(o, "/status/phase")),
            column("Level", "Service level.", 0, |o| text(o, "/status/level")),
            column("Control-Plane", "Healthy control-plane components.", 0, components),
            column("Components", "Version of each control-plane component.", 1, component_versions),
            column("CNI", "CNI plugin.", 1, |o| text(o, "/status/cni")),
            column("Endpoint", "Kubernetes API URL.", 1, |o| text(o, "/status/endpoint")),
        ],
        schema: schema(),
        extra_field_selectors: &["status.phase"],
        strategic_merge: None,
    }
}
