//! A Pod as the simulation sees it, decoded straight from the API's JSON into
//! only what scheduling and drain decisions read. The shell caches every Pod of
//! the cluster (30,000 in the benchmark), so everything else — containers,
//! statuses, managed fields, most annotations — is skipped while decoding and
//! never allocated. [`SlimPod`] wraps one with the metadata kube's `Api` and
//! watcher need.
//!
//! Requests are computed as kube-scheduler computes them
//! (`k8s.io/component-helpers/resource.PodRequests`): regular containers and
//! sidecars (restartable init containers) add up, each classic init container
//! needs its own request plus the sidecars started before it, the pod needs
//! the larger of the two, pod-level requests replace CPU and memory when set,
//! and the pod overhead is added; every pod counts one against `pods`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess};
use sks_keys::annotation;

use crate::labels::Labels;
use crate::meta::Owner;
use crate::resources::{ResourceList, Resources};
use crate::selector::NodeSelector;
use crate::slim::{FromObject, Slim, key_metadata};
use crate::taints::Toleration;
use crate::wire::{FromEntries, ObjectWire, null_as_empty, skip};

/// A pod's phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not yet running (or not yet scheduled).
    #[default]
    Pending,
    /// Running.
    Running,
    /// Ended successfully.
    Succeeded,
    /// Ended in failure.
    Failed,
    /// Anything else.
    Unknown,
}

impl Phase {
    /// Whether the pod has ended and holds no resources.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A pod, as the simulation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: Box<str>,
    /// Name.
    pub name: Box<str>,
    /// UID.
    pub uid: Box<str>,
    /// The node it is bound to (`spec.nodeName`).
    pub node_name: Option<Box<str>>,
    /// Phase.
    pub phase: Phase,
    /// What it requests, counting itself as one pod.
    pub requests: Resources,
    /// Its labels (PodDisruptionBudgets select on them).
    pub labels: Labels,
    /// `spec.nodeSelector`.
    pub node_selector: Labels,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<Box<NodeSelector>>,
    /// Tolerations.
    pub tolerations: Box<[Toleration]>,
    /// Its controller, if any.
    pub owner: Option<Box<Owner>>,
    /// Run by a DaemonSet (or annotated as such for cluster-autoscaler).
    pub daemonset: bool,
    /// The mirror of a static pod (annotation `kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// `cluster-autoscaler.kubernetes.io/safe-to-evict`: `Some(true)` for `"true"`,
    /// `Some(false)` for `"false"`, `None` otherwise.
    pub safe_to_evict: Option<bool>,
    /// Has a local volume that keeps its node from being scaled down, as
    /// cluster-autoscaler judges: a hostPath, or an emptyDir not in memory, not
    /// listed in `cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes`.
    pub local_storage: bool,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// When kube-scheduler last found it unschedulable (`PodScheduled=False`,
    /// reason `Unschedulable`), if it currently is.
    pub unschedulable_since: Option<Timestamp>,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether kube-scheduler reports the pod unschedulable.
    pub fn is_unschedulable(&self) -> bool {
        self.unschedulable_since.is_some()
    }
}

impl<'de> Deserialize<'de> for PodInfo {
    /// From a Pod's JSON (`metadata`, `spec`, `status`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PodInfo::from_object(d)?.1)
    }
}

/// A DaemonSet, as the pod it would run on a new node: its pod template, owned
/// by it, named after it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSetPod(pub PodInfo);

impl<'de> Deserialize<'de> for DaemonSetPod {
    /// From a DaemonSet's JSON (`metadata`, `spec.template`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct DaemonSetWire {
            #[serde(default)]
            metadata: MetaWire,
            spec: DaemonSetSpecWire,
        }
        #[derive(Deserialize)]
        struct DaemonSetSpecWire {
            template: TemplateWire,
        }
        #[derive(Deserialize)]
        struct TemplateWire {
            #[serde(default)]
            metadata: MetaWire,
            #[serde(default)]
            spec: SpecWire,
        }
        let ds = DaemonSetWire::deserialize(d)?;
        let name = ds.metadata.name.unwrap_or_default();
        let meta = MetaWire {
            namespace: ds.metadata.namespace,
            name: Some(name.clone()),
            uid: ds.metadata.uid,
            owner: Some(Owner { kind: "DaemonSet".into(), name: name.into() }),
            ..ds.spec.template.metadata
        };
        Ok(DaemonSetPod(pod_info(meta, ds.spec.template.spec, StatusWire::default())))
    }
}

/// A pod for kube's `Api<SlimPod>` and watcher.
pub type SlimPod = Slim<PodInfo>;

impl FromObject for PodInfo {
    fn from_object<'de, D: Deserializer<'de>>(d: D) -> Result<(ObjectMeta, Self), D::Error> {
        Ok(into_parts(PodWire::deserialize(d)?))
    }
}

crate::slim::slim_resource!(Slim<PodInfo>, Pod);

type PodWire = ObjectWire<MetaWire, SpecWire, StatusWire>;

/// The key metadata and slim form of a decoded Pod.
fn into_parts(pod: PodWire) -> (ObjectMeta, PodInfo) {
    let mut m = pod.metadata;
    let meta = key_metadata(m.namespace.clone(), m.name.clone(), m.uid.clone(), m.resource_version.take());
    (meta, pod_info(m, pod.spec, pod.status))
}

fn pod_info(meta: MetaWire, spec: SpecWire, status: StatusWire) -> PodInfo {
    let ann = meta.annotations;
    let local_storage = spec.volumes.iter().any(|v| {
        let local =
            v.host_path.is_some() || v.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref() != Some("Memory"));
        local && !ann.safe_local_volumes.as_deref().is_some_and(|safe| safe.split(',').any(|n| n == v.name))
    });
    let daemonset = ann.daemonset_pod || meta.owner.as_ref().is_some_and(|o| &*o.kind == "DaemonSet");
    let unschedulable_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .map(|c| c.last_transition_time.unwrap_or_default());
    let requests = spec.requests();
    PodInfo {
        namespace: meta.namespace.unwrap_or_default().into(),
        name: meta.name.unwrap_or_default().into(),
        uid: meta.uid.unwrap_or_default().into(),
        node_name: spec.node_name.filter(|n| !n.is_empty()).map(Box::from),
        phase: status.phase,
        requests,
        labels: meta.labels,
        node_selector: spec.node_selector,
        required_affinity: spec
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .map(Box::new),
        tolerations: spec.tolerations,
        owner: meta.owner.map(Box::new),
        daemonset,
        mirror: ann.mirror,
        safe_to_evict: ann.safe_to_evict,
        local_storage,
        priority: spec.priority.unwrap_or(0),
        unschedulable_since,
    }
}

type MetaWire = crate::meta::MetaWire<Annotations>;

/// The annotations the autoscaler reads; every other one is skipped unread.
#[derive(Default)]
struct Annotations {
    mirror: bool,
    safe_to_evict: Option<bool>,
    safe_local_volumes: Option<String>,
    daemonset_pod: bool,
}

impl<'de> FromEntries<'de> for Annotations {
    const EXPECTING: &'static str = "a map of strings";
    fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            annotation::CONFIG_MIRROR => {
                skip(map)?;
                self.mirror = true;
            }
            annotation::SAFE_TO_EVICT => {
                self.safe_to_evict = match map.next_value::<String>()?.as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }
            annotation::SAFE_TO_EVICT_LOCAL_VOLUMES => self.safe_local_volumes = Some(map.next_value()?),
            annotation::DAEMONSET_POD => self.daemonset_pod = map.next_value::<String>()? == "true",
            _ => skip(map)?,
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecWire {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    node_selector: Labels,
    #[serde(default)]
    affinity: Option<AffinityWire>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tolerations: Box<[Toleration]>,
    #[serde(default, deserialize_with = "null_as_empty")]
    containers: Box<[ContainerWire]>,
    #[serde(default, deserialize_with = "null_as_empty")]
    init_containers: Box<[ContainerWire]>,
    #[serde(default)]
    overhead: ResourceList,
    #[serde(default)]
    resources: Option<RequirementsWire>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    volumes: Box<[VolumeWire]>,
}

impl SpecWire {
    fn requests(&self) -> Resources {
        let mut sum = Resources::ZERO;
        for c in &self.containers {
            sum += c.requests();
        }
        let mut sidecars = Resources::ZERO;
        let mut init = Resources::ZERO;
        for c in &self.init_containers {
            let own = c.requests();
            let needed = if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar keeps running beside the regular containers.
                sum += own;
                sidecars += own;
                sidecars
            } else {
                own + sidecars
            };
            init = init.max(needed);
        }
        let mut requests = sum.max(init);
        if let Some(pod_level) = self.resources.as_ref().map(|r| r.requests) {
            if pod_level.names_cpu {
                requests.cpu_millis = pod_level.amounts.cpu_millis;
            }
            if pod_level.names_memory {
                requests.memory_bytes = pod_level.amounts.memory_bytes;
            }
        }
        requests += self.overhead.amounts;
        requests.pods = 1;
        requests
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ContainerWire {
    #[serde(default)]
    resources: Option<RequirementsWire>,
    #[serde(default)]
    restart_policy: Option<String>,
}

impl ContainerWire {
    fn requests(&self) -> Resources {
        let requests = self.resources.as_ref().map(|r| r.requests.amounts).unwrap_or_default();
        Resources { pods: 0, ..requests }
    }
}

/// `resources` of a container or of the pod.
#[derive(Deserialize, Default)]
struct RequirementsWire {
    #[serde(default)]
    requests: ResourceList,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AffinityWire {
    #[serde(default)]
    node_affinity: Option<NodeAffinityWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAffinityWire {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeWire {
    name: String,
    #[serde(default)]
    empty_dir: Option<EmptyDirWire>,
    #[serde(default)]
    host_path: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct EmptyDirWire {
    #[serde(default)]
    medium: Option<String>,
}

#[derive(Deserialize, Default)]
struct StatusWire {
    #[serde(default, deserialize_with = "phase")]
    phase: Phase,
    #[serde(default, deserialize_with = "null_as_empty")]
    conditions: Box<[ConditionWire]>,
}

fn phase<'de, D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
    Ok(match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("Pending") => Phase::Pending,
        Some("Running") => Phase::Running,
        Some("Succeeded") => Phase::Succeeded,
        Some("Failed") => Phase::Failed,
        Some(_) => Phase::Unknown,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConditionWire {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    last_transition_time: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::QuantityError;
    use serde_json::json;

    const GI: i64 = 1 << 30;
    const MI: i64 = 1 << 20;

    fn requests(spec: serde_json::Value) -> Resources {
        serde_json::from_value::<PodInfo>(json!({"spec": spec})).unwrap().requests
    }

    fn container(cpu: &str, memory: &str) -> serde_json::Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}})
    }

    #[test]
    fn requests_are_computed_as_kube_scheduler_computes_them() {
        let sidecar = |cpu: &str, memory: &str| {
            let mut c = container(cpu, memory);
            c["restartPolicy"] = json!("Always");
            c
        };
        let cases = [
            ("no containers", json!({}), Resources::new(0, 0, 1)),
            ("no requests", json!({"containers": [{"name": "c"}]}), Resources::new(0, 0, 1)),
            (
                "containers add up",
                json!({"containers": [container("100m", "1Gi"), container("250m", "512Mi")]}),
                Resources::new(350, GI + 512 * MI, 1),
            ),
            (
                "the largest init container wins when larger than the sum",
                json!({"containers": [container("100m", "1Gi")],
                       "initContainers": [container("2", "100Mi"), container("500m", "200Mi")]}),
                Resources::new(2000, GI, 1),
            ),
            (
                "sidecars add to the containers and to later init containers",
                json!({"containers": [container("100m", "100Mi")],
                       "initContainers": [sidecar("200m", "100Mi"), container("1", "50Mi")]}),
                Resources::new(1200, 200 * MI, 1),
            ),
            (
                "overhead is added",
                json!({"containers": [container("100m", "100Mi")], "overhead": {"cpu": "10m", "memory": "1Mi"}}),
                Resources::new(110, 101 * MI, 1),
            ),
            (
                "pod-level requests replace what they name",
                json!({"containers": [container("100m", "100Mi")], "resources": {"requests": {"cpu": "1"}}}),
                Resources::new(1000, 100 * MI, 1),
            ),
            (
                "other resources are not counted",
                json!({"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1", "pods": "5"}}}]}),
                Resources::new(0, 0, 1),
            ),
        ];
        for (what, spec, expected) in cases {
            assert_eq!(requests(spec), expected, "{what}");
        }
    }

    #[test]
    fn a_pod_keeps_what_the_simulation_reads() {
        let pod: PodInfo = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "shop", "name": "web-1", "uid": "u-1", "resourceVersion": "9",
                "labels": {"app": "web"},
                "annotations": {annotation::SAFE_TO_EVICT: "false", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "o1"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "o2", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager"}]},
            "spec": {"nodeName": "n1", "priority": 1000, "nodeSelector": {"disk": "ssd"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "containers": [container("100m", "64Mi")],
                "volumes": [{"name": "tok", "projected": {"sources": []}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true}]}
        }))
        .unwrap();
        assert_eq!(
            (&*pod.namespace, &*pod.name, &*pod.uid, pod.node_name.as_deref()),
            ("shop", "web-1", "u-1", Some("n1"))
        );
        assert_eq!(pod.key(), "shop/web-1");
        assert_eq!(pod.phase, Phase::Running);
        assert_eq!(pod.requests, Resources::new(100, 64 * MI, 1));
        assert_eq!(pod.labels.get("app"), Some("web"));
        assert_eq!(pod.node_selector.get("disk"), Some("ssd"));
        assert_eq!(pod.required_affinity.as_ref().map(|a| a.node_selector_terms.len()), Some(1));
        assert_eq!(pod.tolerations.len(), 1);
        assert_eq!(pod.owner.as_deref(), Some(&Owner { kind: "ReplicaSet".into(), name: "web-abc".into() }));
        assert_eq!(pod.priority, 1000);
        assert_eq!(pod.safe_to_evict, Some(false));
        assert!(!pod.daemonset && !pod.mirror && !pod.local_storage && !pod.is_unschedulable());
    }

    #[test]
    fn flags_come_from_annotations_owners_and_volumes() {
        let pod = |meta: serde_json::Value, volumes: serde_json::Value| -> PodInfo {
            serde_json::from_value(json!({"metadata": meta, "spec": {"volumes": volumes}})).unwrap()
        };
        let none = json!([]);
        assert!(pod(json!({"annotations": {annotation::CONFIG_MIRROR: "abc"}}), none.clone()).mirror);
        assert!(pod(json!({"annotations": {annotation::DAEMONSET_POD: "true"}}), none.clone()).daemonset);
        assert!(
            pod(json!({"ownerReferences": [{"kind": "DaemonSet", "name": "ds", "controller": true}]}), none.clone())
                .daemonset
        );
        assert!(
            !pod(json!({"ownerReferences": [{"kind": "DaemonSet", "name": "ds"}]}), none.clone()).daemonset,
            "only the controller reference counts"
        );
        for (value, expected) in [("true", Some(true)), ("false", Some(false)), ("maybe", None)] {
            assert_eq!(
                pod(json!({"annotations": {annotation::SAFE_TO_EVICT: value}}), none.clone()).safe_to_evict,
                expected
            );
        }
        let cases = [
            (json!([{"name": "d", "emptyDir": {}}]), json!({}), true),
            (json!([{"name": "h", "hostPath": {"path": "/var"}}]), json!({}), true),
            (json!([{"name": "m", "emptyDir": {"medium": "Memory"}}]), json!({}), false),
            (json!([{"name": "c", "configMap": {"name": "x"}}]), json!({}), false),
            (
                json!([{"name": "d", "emptyDir": {}}, {"name": "e", "emptyDir": {}}]),
                json!({"annotations": {annotation::SAFE_TO_EVICT_LOCAL_VOLUMES: "d,e"}}),
                false,
            ),
            (
                json!([{"name": "d", "emptyDir": {}}, {"name": "e", "emptyDir": {}}]),
                json!({"annotations": {annotation::SAFE_TO_EVICT_LOCAL_VOLUMES: "d"}}),
                true,
            ),
        ];
        for (volumes, meta, expected) in cases {
            assert_eq!(pod(meta.clone(), volumes.clone()).local_storage, expected, "{volumes} {meta}");
        }
    }

    #[test]
    fn unschedulable_since_is_the_condition_transition() {
        let pod = |conditions: serde_json::Value| -> PodInfo {
            serde_json::from_value(json!({"status": {"phase": "Pending", "conditions": conditions}})).unwrap()
        };
        let since = pod(json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu.", "lastTransitionTime": "2026-11-21T10:00:00Z"}]));
        assert_eq!(since.unschedulable_since, Some("2026-11-21T10:00:00Z".parse().unwrap()));
        assert!(
            !pod(json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}])).is_unschedulable()
        );
        assert!(!pod(json!([{"type": "PodScheduled", "status": "True"}])).is_unschedulable());
        assert!(!pod(json!(null)).is_unschedulable());
    }

    #[test]
    fn a_bad_request_is_a_decode_error_naming_the_quantity() {
        let err = serde_json::from_value::<PodInfo>(json!({"spec": {"containers": [container("1x", "1Gi")]}}))
            .unwrap_err()
            .to_string();
        let expected = QuantityError { input: "1x".into(), reason: "unknown suffix" }.to_string();
        assert!(err.contains(&expected), "{err}");
    }

    #[test]
    fn a_daemonset_is_the_pod_it_would_run() {
        let ds: DaemonSetPod = serde_json::from_value(json!({
            "metadata": {"namespace": "kube-system", "name": "cilium", "uid": "ds-1"},
            "spec": {"selector": {}, "template": {
                "metadata": {"labels": {"k8s-app": "cilium"}},
                "spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [container("100m", "128Mi")],
                    "tolerations": [{"operator": "Exists"}]}}}
        }))
        .unwrap();
        let pod = ds.0;
        assert_eq!((&*pod.namespace, &*pod.name, &*pod.uid), ("kube-system", "cilium", "ds-1"));
        assert!(pod.daemonset);
        assert_eq!(pod.owner.as_deref().map(|o| &*o.kind), Some("DaemonSet"));
        assert_eq!(pod.requests, Resources::new(100, 128 * MI, 1));
        assert_eq!(pod.labels.get("k8s-app"), Some("cilium"));
        assert_eq!(pod.node_selector.get("kubernetes.io/os"), Some("linux"));
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "a counting allocator measures what a cached pod keeps")]
mod size_tests {
    use super::*;
    use crate::node::{NodeInfo, SlimNode};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::mem::size_of;

    /// Counts the bytes this thread holds, so a test can measure what a decoded object keeps.
    struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    fn held() -> isize {
        HELD.with(Cell::get)
    }

    // SAFETY: forwards to the system allocator unchanged; only counts sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = HELD.try_with(|h| h.set(h.get() + layout.size() as isize));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = HELD.try_with(|h| h.set(h.get() - layout.size() as isize));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// A Deployment's pod as the API serves it (trimmed of nothing the cache skips).
    const DEPLOYMENT_POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d9f8b6c5d-x2k4q",
        "generateName":"web-7d9f8b6c5d-","namespace":"shop","uid":"6f1c2a9e-3b7d-4e21-9a0c-5d8e7f6a1b2c",
        "resourceVersion":"123456","creationTimestamp":"2026-11-21T10:00:00Z",
        "labels":{"app":"web","pod-template-hash":"7d9f8b6c5d","tier":"frontend"},
        "annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-20T09:00:00Z"},
        "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f8b6c5d",
            "uid":"0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d","controller":true,"blockOwnerDeletion":true}],
        "managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1",
            "time":"2026-11-21T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{}}}}]},
      "spec":{"containers":[{"name":"web","image":"registry.example/web:1.2.3","ports":[{"containerPort":8080,"protocol":"TCP"}],
          "resources":{"requests":{"cpu":"250m","memory":"256Mi"},"limits":{"memory":"512Mi"}},
          "env":[{"name":"MODE","value":"production"}],
          "volumeMounts":[{"name":"kube-api-access-abcde","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true}],
          "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],
        "restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst",
        "serviceAccountName":"default","serviceAccount":"default","nodeName":"pool-a-1","securityContext":{},
        "schedulerName":"default-scheduler","priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority",
        "tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},
          {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],
        "volumes":[{"name":"kube-api-access-abcde","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
          {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}],"defaultMode":420}}]},
      "status":{"phase":"Running","conditions":[{"type":"PodScheduled","status":"True","lastTransitionTime":"2026-11-21T10:00:00Z"},
          {"type":"Ready","status":"True","lastTransitionTime":"2026-11-21T10:00:05Z"}],
        "hostIP":"10.0.0.5","podIP":"10.244.1.7","startTime":"2026-11-21T10:00:00Z",
        "containerStatuses":[{"name":"web","ready":true,"restartCount":0,"image":"registry.example/web:1.2.3",
          "imageID":"registry.example/web@sha256:0123456789abcdef","containerID":"containerd://0123456789abcdef",
          "started":true,"state":{"running":{"startedAt":"2026-11-21T10:00:04Z"}}}],"qosClass":"Burstable"}}"#;

    /// Bytes `decode` leaves allocated, besides the value it returns inline.
    fn retained<T>(decode: impl FnOnce() -> T) -> (T, isize) {
        let before = held();
        let value = decode();
        (value, held() - before)
    }

    /// What a cached pod costs. Measured on x86_64: inline, Resources 24,
    /// Labels 16, PodInfo 192, ObjectMeta 360, SlimPod 552, NodeInfo 136 and
    /// SlimNode 464 bytes; on the heap, the Deployment pod above keeps 451
    /// bytes as a PodInfo (names 68, three labels 141, the two default
    /// tolerations 187, its owner 56) and 517 as a SlimPod, whose ObjectMeta
    /// (kube's `Api<SlimPod>` needs one) repeats name, namespace and uid and
    /// adds the resourceVersion. About 1.1 KiB per pod before the cache's own
    /// overhead: some 32 MiB for 30,000 pods.
    #[test]
    fn cached_objects_stay_small() {
        let sizes = [
            ("Resources", size_of::<Resources>()),
            ("Labels", size_of::<Labels>()),
            ("PodInfo", size_of::<PodInfo>()),
            ("ObjectMeta", size_of::<ObjectMeta>()),
            ("SlimPod", size_of::<SlimPod>()),
            ("NodeInfo", size_of::<NodeInfo>()),
            ("SlimNode", size_of::<SlimNode>()),
        ];
        for (name, size) in sizes {
            println!("{name}: {size} bytes inline");
        }
        let (pod, pod_heap) = retained(|| serde_json::from_str::<PodInfo>(DEPLOYMENT_POD).unwrap());
        let (slim, slim_heap) = retained(|| serde_json::from_str::<SlimPod>(DEPLOYMENT_POD).unwrap());
        println!("a Deployment's pod keeps {pod_heap} heap bytes as a PodInfo, {slim_heap} as a SlimPod");
        assert_eq!(pod.requests, Resources::new(250, 256 << 20, 1));
        assert_eq!(slim.info, pod);
        assert!(size_of::<PodInfo>() <= 192, "PodInfo grew to {} bytes", size_of::<PodInfo>());
        assert!(size_of::<NodeInfo>() <= 144, "NodeInfo grew to {} bytes", size_of::<NodeInfo>());
        assert!(pod_heap <= 512, "a decoded pod keeps {pod_heap} heap bytes");
    }
}
