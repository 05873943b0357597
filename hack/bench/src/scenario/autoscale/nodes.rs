//! The Nodes of a nodepool as the Kubernetes API shows them: whether each is
//! Ready and initialized by sks-ccm, and what it offers (`status.allocatable`,
//! the bin size of the bench's first-fit-decreasing reference).

use serde_json::Value;
use sks_keys::label::NODEPOOL_ID;
use sks_keys::taint::UNINITIALIZED;
use uuid::Uuid;

use super::ffd::Size;
use crate::scenario::lbs::kube::Kube;

/// One Node.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Its name.
    pub name: String,
    /// `Ready=True`.
    pub ready: bool,
    /// sks-ccm initialized it: a providerID, no uninitialized taint.
    pub initialized: bool,
    /// `status.allocatable`, when it has one.
    pub allocatable: Option<Size>,
}

impl NodeState {
    /// Ready and initialized: where the scheduler may put pods.
    pub fn in_service(&self) -> bool {
        self.ready && self.initialized
    }
}

/// A CPU quantity in millicores (`1930m`, `2`, `0.5`).
pub fn cpu_millis(q: &str) -> Option<i64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as i64),
    }
}

/// A memory quantity in bytes (`3043328Ki`, `2Gi`, `512Mi`, `1000`).
pub fn bytes(q: &str) -> Option<i64> {
    const SUFFIXES: [(&str, i64); 6] =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000)];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<i64>().ok().map(|n| n * factor);
        }
    }
    q.parse().ok()
}

fn state(node: &Value) -> NodeState {
    let a = &node["status"]["allocatable"];
    let allocatable = (|| {
        Some(Size {
            cpu_millis: cpu_millis(a["cpu"].as_str()?)?,
            memory_bytes: bytes(a["memory"].as_str()?)?,
            pods: a["pods"].as_str()?.parse().ok()?,
        })
    })();
    let tainted = node["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == UNINITIALIZED));
    let provider = node["spec"]["providerID"].as_str().is_some_and(|p| !p.is_empty());
    NodeState {
        name: node["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
        ready: node["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
        initialized: provider && !tainted,
        allocatable,
    }
}

/// The Nodes of nodepool `id` (by sks-ccm's nodepool label: initialized ones only carry it).
pub async fn of_pool(kube: &Kube, id: Uuid) -> anyhow::Result<Vec<NodeState>> {
    let list = kube.get(&format!("/api/v1/nodes?labelSelector={NODEPOOL_ID}%3D{id}")).await?;
    Ok(list["items"].as_array().map(|items| items.iter().map(state).collect()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_and_states_are_read() {
        assert_eq!(
            (cpu_millis("1930m"), cpu_millis("2"), cpu_millis("0.5"), cpu_millis("x")),
            (Some(1930), Some(2000), Some(500), None)
        );
        assert_eq!(
            (bytes("3043328Ki"), bytes("2Gi"), bytes("1000"), bytes("1M")),
            (Some(3043328 << 10), Some(2 << 30), Some(1000), Some(1_000_000))
        );
        let node = json!({"metadata": {"name": "n"}, "spec": {"providerID": "exoscale://x", "taints": []},
            "status": {"allocatable": {"cpu": "1930m", "memory": "3043328Ki", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}});
        let s = state(&node);
        assert!(s.in_service());
        assert_eq!(s.allocatable, Some(Size { cpu_millis: 1930, memory_bytes: 3043328 << 10, pods: 110 }));
        let fresh = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": UNINITIALIZED}]}, "status": {}});
        let s = state(&fresh);
        assert!(!s.ready && !s.initialized && s.allocatable.is_none());
    }
}
