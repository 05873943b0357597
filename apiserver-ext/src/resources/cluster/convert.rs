//! The Cluster object from what the orchestrator says of the cluster: pure.

use orchestrator::model::SksCluster;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::resources::inspection::Inspection;
use crate::resources::metadata::ObjectMeta;
use crate::resources::nodepool::def::{GROUP, VERSION};

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Desired version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Automatic patch upgrades.
    #[serde(default)]
    pub auto_upgrade: bool,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The spec the orchestrator's view amounts to: the desired version is the
/// target of the upgrade running, else the version running.
pub fn spec_of(cluster: &SksCluster, inspection: &Inspection) -> ClusterSpec {
    ClusterSpec {
        version: inspection.running().map_or_else(|| cluster.version.clone(), |u| u.to.clone()),
        auto_upgrade: cluster.spec.auto_upgrade.unwrap_or(false),
        description: cluster.spec.description.clone(),
    }
}

/// A stable digest of a spec, to count generations.
pub fn spec_hash(spec: &ClusterSpec) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// `running` → `Running`, `rotating-ccm-credentials` → `RotatingCcmCredentials`.
fn camel(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn condition(type_: &str, ok: bool, reason: &str, message: String, generation: i64) -> Value {
    json!({"type": type_, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message, "observedGeneration": generation})
}

/// The four conditions: Available, Progressing, Degraded, Upgradeable.
fn conditions(cluster: &SksCluster, inspection: &Inspection, available: &[String], generation: i64) -> Vec<Value> {
    let components = inspection.components();
    let unhealthy: Vec<&str> = components.iter().filter(|c| !c.healthy).map(|c| c.name.as_str()).collect();
    let api_up = components.iter().find(|c| c.name == "kube-apiserver").is_none_or(|c| c.healthy);
    let running = inspection.running();
    let last_failed = inspection.upgrades.first().filter(|u| u.state == "failed");
    let available_c = if api_up {
        condition("Available", true, "APIServerHealthy", "the Kubernetes API is served".into(), generation)
    } else {
        condition("Available", false, "APIServerUnhealthy", "kube-apiserver fails its health checks".into(), generation)
    };
    let progressing = match running {
        Some(u) => {
            let doing = components.iter().find(|c| c.state == "upgrading").map(|c| format!(": replacing {}", c.name));
            let message = format!("upgrading from {} to {}{}", u.from, u.to, doing.unwrap_or_default());
            condition("Progressing", true, "Upgrading", message, generation)
        }
        None => {
            condition("Progressing", false, "Stable", format!("the control plane runs {}", cluster.version), generation)
        }
    };
    let degraded = if !unhealthy.is_empty() {
        condition("Degraded", true, "ComponentUnhealthy", format!("unhealthy: {}", unhealthy.join(", ")), generation)
    } else if let Some(u) = last_failed {
        let why = u.message.clone().unwrap_or_default();
        condition("Degraded", true, "UpgradeFailed", format!("the upgrade to {} failed: {why}", u.to), generation)
    } else {
        condition("Degraded", false, "AsExpected", "every component is healthy".into(), generation)
    };
    let upgradeable = if running.is_some() {
        condition("Upgradeable", false, "UpgradeInProgress", "an upgrade is in progress".into(), generation)
    } else if available.is_empty() {
        condition(
            "Upgradeable",
            false,
            "UpToDate",
            format!("{} is the newest version available", cluster.version),
            generation,
        )
    } else {
        condition(
            "Upgradeable",
            true,
            "NewerVersionAvailable",
            format!("may move to {}", available.join(", ")),
            generation,
        )
    };
    vec![available_c, progressing, degraded, upgradeable]
}

/// Keeps each condition's `lastTransitionTime` from `previous` unless its status changed.
fn stamp(conditions: &mut [Value], previous: Option<&Value>, now: &str) {
    let before = previous.and_then(|p| p.pointer("/status/conditions")).and_then(Value::as_array);
    for c in conditions {
        let kept = before
            .and_then(|b| b.iter().find(|p| p["type"] == c["type"] && p["status"] == c["status"]))
            .and_then(|p| p["lastTransitionTime"].as_str())
            .unwrap_or(now)
            .to_owned();
        c["lastTransitionTime"] = json!(kept);
    }
}

/// The Cluster object.
pub fn to_object(
    cluster: &SksCluster,
    inspection: &Inspection,
    available: &[String],
    meta: &ObjectMeta,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let generation = meta.generation.max(1);
    let mut conds = conditions(cluster, inspection, available, generation);
    stamp(&mut conds, previous, now);
    let control_plane: Vec<Value> = inspection
        .components()
        .iter()
        .map(|c| json!({"name": c.name, "version": c.version, "healthy": c.healthy, "state": c.state}))
        .collect();
    let labels = cluster.spec.labels.clone().unwrap_or_default();
    let created = cluster.created_at.map(|t| jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).to_string());
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Cluster",
        "metadata": {
            "name": cluster.spec.name.clone().unwrap_or_default(),
            "uid": cluster.id.to_string(),
            "generation": generation,
            "creationTimestamp": created,
            "labels": if labels.is_empty() { Value::Null } else { json!(labels) },
            "annotations": if meta.annotations.is_empty() { Value::Null } else { json!(meta.annotations) },
        },
        "spec": spec_of(cluster, inspection),
        "status": {
            "version": cluster.version,
            "phase": camel(cluster.state.as_str()),
            "level": cluster.level.as_str(),
            "cni": cluster.cni.as_ref().map_or("", orchestrator::model::SksCni::as_str),
            "endpoint": cluster.endpoint.clone().unwrap_or_default(),
            "availableVersions": available,
            "controlPlane": control_plane,
            "observedGeneration": generation,
            "conditions": conds,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> SksCluster {
        serde_json::from_value(json!({"id": uuid::Uuid::nil(), "name": "demo", "state": "running", "version": "1.33.5", "level": "pro", "cni": "calico", "auto-upgrade": true})).unwrap()
    }

    fn inspection(v: Value) -> Inspection {
        Inspection::parse(&v)
    }

    fn cond<'a>(obj: &'a Value, t: &str) -> &'a Value {
        obj["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap()
    }

    #[test]
    fn a_quiet_cluster() {
        let i = inspection(
            json!({"control-plane": {"components": [{"name": "kube-apiserver", "version": "1.33.5", "healthy": true, "state": "running"}]}}),
        );
        let o = to_object(&cluster(), &i, &["1.33.6".into(), "1.34.2".into()], &ObjectMeta::default(), None, "t0");
        assert_eq!((o["spec"]["version"].as_str(), o["spec"]["autoUpgrade"].as_bool()), (Some("1.33.5"), Some(true)));
        assert_eq!((o["status"]["phase"].as_str(), o["status"]["level"].as_str()), (Some("Running"), Some("pro")));
        assert_eq!(cond(&o, "Upgradeable")["status"], "True");
        assert_eq!(cond(&o, "Degraded")["status"], "False");
        assert_eq!(cond(&o, "Progressing")["status"], "False");
        assert_eq!(cond(&o, "Available")["lastTransitionTime"], "t0");
    }

    #[test]
    fn an_upgrading_and_degraded_cluster_keeps_transition_times() {
        let i = inspection(json!({
            "control-plane": {"components": [{"name": "kube-scheduler", "version": "1.33.5", "healthy": false, "state": "upgrading"}]},
            "upgrades": [{"id": "u", "from": "1.33.5", "to": "1.34.2", "state": "running"}]
        }));
        let first = to_object(&cluster(), &i, &[], &ObjectMeta::default(), None, "t0");
        assert_eq!(first["spec"]["version"], "1.34.2", "the desired version is the upgrade's target");
        assert!(cond(&first, "Progressing")["message"].as_str().unwrap().contains("replacing kube-scheduler"));
        assert_eq!(cond(&first, "Degraded")["reason"], "ComponentUnhealthy");
        assert_eq!(cond(&first, "Upgradeable")["reason"], "UpgradeInProgress");
        let again = to_object(&cluster(), &i, &[], &ObjectMeta::default(), Some(&first), "t1");
        assert_eq!(cond(&again, "Progressing")["lastTransitionTime"], "t0");
    }
}
