//! The benchmark's pods and pools: two autoscaled pools of different
//! instance types, and a fixed mix of pod shapes so that bin-packing matters
//! (sizes that leave gaps for smaller pods, pods too large for one type) and
//! both pools grow (some pods select one pool by label).

use serde_json::{Value, json};

use super::ffd::Size;

/// Namespace of every benchmark pod.
pub const NAMESPACE: &str = "default";
/// The `app` label of every benchmark pod.
pub const APP: &str = "sks-bench-autoscale";
/// Label of the nodepools the bursts may use; every burst pod selects it.
pub const BURST_LABEL: &str = "bench-autoscale";
/// Label naming one benchmark nodepool (`a`, `b`, or `c` for the scale-down one).
pub const POOL_LABEL: &str = "bench-pool";
const MI: i64 = 1 << 20;

/// One of the autoscaled pools of the bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// NodePool name.
    pub name: &'static str,
    /// Value of [`POOL_LABEL`].
    pub label: &'static str,
    /// Instance type.
    pub instance_type: &'static str,
}

/// The two pools: small CPU-balanced nodes, and large memory-rich ones.
pub const POOLS: [PoolSpec; 2] = [
    PoolSpec { name: "bench-a", label: "a", instance_type: "standard.medium" },
    PoolSpec { name: "bench-b", label: "b", instance_type: "standard.extra-large" },
];

/// The pool of the scale-down measurement (not one the bursts may use).
pub const SCALE_DOWN_POOL: PoolSpec = PoolSpec { name: "bench-c", label: "c", instance_type: "standard.medium" };

/// A kind of pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Its name, a label of its pods.
    pub name: &'static str,
    /// CPU request, millicores.
    pub cpu_millis: i64,
    /// Memory request, MiB.
    pub memory_mib: i64,
    /// The pool (by [`POOL_LABEL`]) its nodeSelector names, if any.
    pub only: Option<&'static str>,
}

impl Shape {
    /// Its requests.
    pub fn size(&self) -> Size {
        Size::pod(self.cpu_millis, self.memory_mib * MI)
    }

    /// Indices into `POOLS` of the pools its nodeSelector allows.
    pub fn allowed(&self) -> Vec<usize> {
        (0..POOLS.len()).filter(|&i| self.only.is_none_or(|l| POOLS[i].label == l)).collect()
    }
}

const fn shape(name: &'static str, cpu_millis: i64, memory_mib: i64, only: Option<&'static str>) -> Shape {
    Shape { name, cpu_millis, memory_mib, only }
}

const WEB: Shape = shape("web", 100, 128, None);
const API: Shape = shape("api", 250, 384, None);
const WORKER: Shape = shape("worker", 450, 256, None);
const BATCH: Shape = shape("batch", 700, 512, None);
/// Too large for a standard.medium (1930m allocatable): only pool b fits it.
const BIG: Shape = shape("big", 2000, 3072, None);
const API_A: Shape = shape("api-a", 300, 512, Some("a"));
const MEMORY_B: Shape = shape("memory-b", 200, 2048, Some("b"));
/// The pods of the memory measurement: 30 fill 3000m of a standard.large's 3920m.
pub const FILL: Shape = shape("fill", 100, 128, None);
/// The scale-down pool's pods, one a node: 1500m of a standard.medium's
/// 1930m, above the 0.5 utilization threshold, so a node with one is needed.
pub const HOLD: Shape = shape("hold", 1500, 512, Some("c"));

/// The mix, repeated every 20 pods: 8 web, 4 api, 3 worker, 1 batch, 1 big,
/// 1 api-a, 2 memory-b.
const MIX: [Shape; 20] = [
    WEB, API, WEB, WORKER, WEB, MEMORY_B, WEB, API, BIG, WEB, WORKER, API_A, WEB, API, BATCH, WEB, MEMORY_B, WORKER,
    WEB, API,
];

/// The shape of the `i`th pod of a round.
pub fn shape_of(i: usize) -> Shape {
    MIX[i % MIX.len()]
}

/// Name of pod `i` of burst `burst` of round `round`.
pub fn pod_name(round: usize, burst: usize, i: usize) -> String {
    format!("r{round}-b{burst}-{i:04}")
}

/// A pending pod of `shape`, for the scheduler to place (or not).
pub fn burst_pod(name: &str, round: usize, shape: &Shape) -> Value {
    let mut selector = json!({BURST_LABEL: "true"});
    if let Some(pool) = shape.only {
        selector[POOL_LABEL] = json!(pool);
    }
    pod(name, &format!("round-{round}"), shape, json!({"nodeSelector": selector}))
}

/// A pod of `shape` bound to node `node` at creation (no scheduler involved).
pub fn bound_pod(name: &str, group: &str, shape: &Shape, node: &str) -> Value {
    pod(name, group, shape, json!({"nodeName": node}))
}

fn pod(name: &str, group: &str, shape: &Shape, extra: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "app", "image": "registry.example/app:1",
            "resources": {"requests": {"cpu": format!("{}m", shape.cpu_millis), "memory": format!("{}Mi", shape.memory_mib)}}}],
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE,
            "labels": {"app": APP, "bench-group": group, "bench-shape": shape.name}},
        "spec": spec,
    })
}

/// A NodePool of `spec` with `replicas` nodes and autoscaling bounds, as sks-apiserver takes it.
pub fn nodepool(spec: &PoolSpec, replicas: i64, min: i64, max: i64, bursts: bool) -> Value {
    let mut labels = json!({POOL_LABEL: spec.label});
    if bursts {
        labels[BURST_LABEL] = json!("true");
    }
    json!({
        "apiVersion": "sks.exoscale.net/v1alpha1", "kind": "NodePool",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"replicas": replicas, "instanceType": spec.instance_type, "diskSize": 20,
            "autoscaling": {"minReplicas": min, "maxReplicas": max}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_its_documented_counts_and_selectors() {
        let count = |s: Shape| MIX.iter().filter(|m| **m == s).count();
        assert_eq!(
            [count(WEB), count(API), count(WORKER), count(BATCH), count(BIG), count(API_A), count(MEMORY_B)],
            [8, 4, 3, 1, 1, 1, 2]
        );
        assert_eq!(API_A.allowed(), [0]);
        assert_eq!(MEMORY_B.allowed(), [1]);
        assert_eq!(WEB.allowed(), [0, 1]);
        let p = burst_pod("r1-b1-0005", 1, &shape_of(5));
        assert_eq!(p["spec"]["nodeSelector"], json!({BURST_LABEL: "true", POOL_LABEL: "b"}));
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "200m", "memory": "2048Mi"}));
        assert_eq!(bound_pod("k", "keep", &WEB, "pool-1")["spec"]["nodeName"], "pool-1");
        assert_eq!(
            nodepool(&POOLS[1], 1, 0, 50, true)["metadata"]["labels"],
            json!({POOL_LABEL: "b", BURST_LABEL: "true"})
        );
    }
}
