//! Pure mapping between the orchestrator's nodepools and NodePool objects.

use std::collections::{BTreeMap, HashMap};

use orchestrator::model::{
    Instance, InstanceState, InstanceType, KubeletImageGc, NodepoolTaint, PublicIpAssignment, Ref, SksNodepool,
    SksNodepoolSpec, SksNodepoolState, TaintEffect,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::def::{GROUP, VERSION};
use crate::resources::metadata::ObjectMeta;
use sks_keys::label::NODEPOOL_ID as NODEPOOL_ID_LABEL;

/// A taint of the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Key.
    #[serde(default)]
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Effect.
    #[serde(default)]
    pub effect: String,
}

/// Kubelet image GC settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageGc {
    /// High threshold (%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_threshold: Option<i64>,
    /// Low threshold (%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_threshold: Option<i64>,
    /// Minimum image age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<String>,
}

/// `spec.autoscaling`: the bounds the autoscaler keeps the nodepool within.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest nodes.
    #[serde(default)]
    pub min_replicas: i64,
    /// Most nodes.
    #[serde(default)]
    pub max_replicas: i64,
}

/// `spec` of a NodePool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Number of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// `<family>.<size>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// Taints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Taint>>,
    /// Anti-affinity group ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<String>>,
    /// Security group ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    /// Private network ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_networks: Option<Vec<String>>,
    /// Deploy target id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_target: Option<String>,
    /// Instance name prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_prefix: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `inet4` or `dual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<String>,
    /// Kubelet image GC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_image_gc: Option<ImageGc>,
    /// Autoscaling bounds (absent: not autoscaled). Kept by sks-apiserver, not the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

/// Instance types by id and by `<family>.<size>` name.
#[derive(Debug, Clone, Default)]
pub struct InstanceTypes {
    by_id: HashMap<Uuid, InstanceType>,
    by_name: HashMap<String, InstanceType>,
}

impl InstanceTypes {
    /// Indexes a list of types.
    pub fn new(types: Vec<InstanceType>) -> Self {
        let by_name = types.iter().map(|t| (t.name(), t.clone())).collect();
        let by_id = types.into_iter().map(|t| (t.id, t)).collect();
        InstanceTypes { by_id, by_name }
    }

    /// The type named `<family>.<size>`.
    pub fn by_name(&self, name: &str) -> Option<&InstanceType> {
        self.by_name.get(name)
    }

    /// The name of type `id` (the id itself if unknown).
    pub fn name_of(&self, id: Uuid) -> String {
        self.by_id.get(&id).map_or_else(|| id.to_string(), InstanceType::name)
    }

    /// Whether no type is known yet.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// All names, sorted, for error messages.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}

fn ids(refs: &Option<Vec<Ref>>) -> Option<Vec<String>> {
    refs.as_ref().map(|r| r.iter().map(|r| r.id.to_string()).collect())
}

fn refs(ids: &Option<Vec<String>>) -> Option<Vec<Ref>> {
    ids.as_ref().map(|ids| ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).map(Ref::from).collect())
}

/// The NodePool spec of an orchestrator nodepool.
pub fn spec_of(np: &SksNodepool, types: &InstanceTypes) -> NodePoolSpec {
    let s = &np.spec;
    NodePoolSpec {
        replicas: Some(np.size),
        instance_type: s.instance_type.map(|t| types.name_of(t.id)),
        disk_size: s.disk_size,
        taints: s.taints.as_ref().map(|t| {
            t.iter()
                .map(|(k, v)| Taint { key: k.clone(), value: v.value.clone(), effect: v.effect.to_string() })
                .collect()
        }),
        anti_affinity_groups: ids(&s.anti_affinity_groups),
        security_groups: ids(&s.security_groups),
        private_networks: ids(&s.private_networks),
        deploy_target: s.deploy_target.map(|d| d.id.to_string()),
        instance_prefix: s.instance_prefix.clone(),
        description: s.description.clone().filter(|d| !d.is_empty()),
        public_ip_assignment: s.public_ip_assignment.as_ref().map(std::string::ToString::to_string),
        kubelet_image_gc: s.kubelet_image_gc.as_ref().map(|g| ImageGc {
            high_threshold: g.high_threshold,
            low_threshold: g.low_threshold,
            min_age: g.min_age.clone(),
        }),
        autoscaling: None,
    }
}

/// The whole NodePool spec: the orchestrator's part and what sks-apiserver keeps (autoscaling).
pub fn full_spec(np: &SksNodepool, meta: &ObjectMeta, types: &InstanceTypes) -> NodePoolSpec {
    NodePoolSpec { autoscaling: meta.autoscaling, ..spec_of(np, types) }
}

/// The orchestrator fields of a (validated) NodePool spec; `labels` are the object's.
pub fn orchestrator_spec(
    name: &str,
    spec: &NodePoolSpec,
    labels: &BTreeMap<String, String>,
    types: &InstanceTypes,
) -> SksNodepoolSpec {
    SksNodepoolSpec {
        name: Some(name.to_owned()),
        description: spec.description.clone(),
        instance_type: spec.instance_type.as_deref().and_then(|n| types.by_name(n)).map(|t| Ref::from(t.id)),
        disk_size: Some(spec.disk_size.unwrap_or(super::validate::DEFAULT_DISK_SIZE)),
        labels: Some(labels.clone()),
        taints: spec.taints.as_ref().map(|ts| {
            ts.iter()
                .map(|t| {
                    let effect: TaintEffect = t.effect.parse().unwrap_or_else(|never| match never {});
                    (t.key.clone(), NodepoolTaint { value: t.value.clone(), effect })
                })
                .collect()
        }),
        anti_affinity_groups: refs(&spec.anti_affinity_groups),
        security_groups: refs(&spec.security_groups),
        private_networks: refs(&spec.private_networks),
        deploy_target: spec.deploy_target.as_deref().and_then(|d| Uuid::parse_str(d).ok()).map(Ref::from),
        instance_prefix: spec.instance_prefix.clone(),
        kubelet_image_gc: spec.kubelet_image_gc.as_ref().map(|g| KubeletImageGc {
            high_threshold: g.high_threshold,
            low_threshold: g.low_threshold,
            min_age: g.min_age.clone(),
        }),
        public_ip_assignment: spec
            .public_ip_assignment
            .as_deref()
            .map(|p| p.parse::<PublicIpAssignment>().unwrap_or_else(|never| match never {})),
        // Not a NodePool field: an update body never carries it, so it is kept.
        nvidia_mig_profiles: None,
    }
}

/// The update body that turns `old` into `new`: only the fields that differ,
/// with emptied values where a field was removed.
pub fn update_body(old: &SksNodepoolSpec, new: &SksNodepoolSpec) -> Option<SksNodepoolSpec> {
    let mut body = SksNodepoolSpec::default();
    let mut changed = false;
    macro_rules! diff {
        ($($f:ident => $empty:expr),* $(,)?) => {$(
            if old.$f != new.$f {
                changed = true;
                body.$f = new.$f.clone().or_else(|| $empty);
            }
        )*};
    }
    diff!(
        description => Some(String::new()),
        instance_type => None,
        disk_size => None,
        labels => Some(BTreeMap::new()),
        taints => Some(BTreeMap::new()),
        anti_affinity_groups => Some(Vec::new()),
        security_groups => Some(Vec::new()),
        private_networks => Some(Vec::new()),
        deploy_target => None,
        instance_prefix => None,
        kubelet_image_gc => None,
        public_ip_assignment => None,
    );
    changed.then_some(body)
}

fn phase(state: &SksNodepoolState) -> &'static str {
    match state {
        SksNodepoolState::Creating => "Creating",
        SksNodepoolState::Running => "Running",
        SksNodepoolState::Scaling => "Scaling",
        SksNodepoolState::Updating => "Updating",
        SksNodepoolState::Deleting => "Deleting",
        SksNodepoolState::RenewingToken => "RenewingToken",
        SksNodepoolState::Error => "Error",
        SksNodepoolState::Unknown(_) => "Unknown",
    }
}

/// What is observed of a nodepool besides its orchestrator record.
pub struct Observed<'a> {
    /// Members of its instance pool.
    pub members: &'a [Instance],
    /// Ready Nodes carrying its id label, when the cluster's Nodes are visible.
    pub ready_nodes: Option<i64>,
    /// The same object as last published, to keep condition transition times.
    pub previous: Option<&'a Value>,
    /// Now, RFC 3339.
    pub now: &'a str,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|p| p["status"]["conditions"].as_array())
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now);
    json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since, "observedGeneration": generation})
}

/// The NodePool object of an orchestrator nodepool.
pub fn to_object(np: &SksNodepool, meta: &ObjectMeta, types: &InstanceTypes, seen: &Observed<'_>) -> Value {
    let spec = full_spec(np, meta, types);
    let running = seen.members.iter().filter(|i| i.state == InstanceState::Running).count() as i64;
    let ready = seen.ready_nodes.unwrap_or(running);
    let updated = seen.members.iter().filter(|i| i.template.is_some() && i.template == np.template).count() as i64;
    let current = seen.members.len() as i64;
    let phase = phase(&np.state);
    let generation = meta.generation.max(1);
    let desired = np.size;
    let (ready_ok, ready_reason, ready_msg) = if phase != "Running" {
        (false, "NodepoolNotRunning", format!("the nodepool is {}", np.state))
    } else if ready < desired {
        (false, "NodesNotReady", format!("{ready} of {desired} nodes are ready"))
    } else {
        (true, "NodesReady", format!("{ready} of {desired} nodes are ready"))
    };
    let progressing = matches!(phase, "Creating" | "Scaling" | "Updating") || current != desired || ready < desired;
    let (prog_reason, prog_msg) = if progressing {
        ("Reconciling", format!("{current} instances, {ready} ready, {desired} desired"))
    } else {
        ("Stable", format!("{desired} nodes"))
    };
    let degraded = phase == "Error";
    let conditions = vec![
        condition("Ready", ready_ok, ready_reason, ready_msg, generation, seen.previous, seen.now),
        condition("Progressing", progressing, prog_reason, prog_msg, generation, seen.previous, seen.now),
        condition(
            "Degraded",
            degraded,
            if degraded { "NodepoolError" } else { "AsExpected" },
            if degraded { "the orchestrator reports the nodepool in error".into() } else { String::new() },
            generation,
            seen.previous,
            seen.now,
        ),
    ];
    let mut metadata = json!({
        "name": np.spec.name.clone().unwrap_or_default(),
        "uid": np.id.to_string(),
        "generation": generation,
        "creationTimestamp": np.created_at.map(|t| t.to_string()),
    });
    if let Some(labels) = np.spec.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata["labels"] = json!(labels);
    }
    if !meta.annotations.is_empty() {
        metadata["annotations"] = json!(meta.annotations);
    }
    if !meta.finalizers.is_empty() {
        metadata["finalizers"] = json!(meta.finalizers);
    }
    if let Some(ts) = &meta.deletion_timestamp {
        metadata["deletionTimestamp"] = json!(ts);
        metadata["deletionGracePeriodSeconds"] = json!(0);
    }
    let mut obj = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "NodePool",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "phase": phase,
            "replicas": current,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "version": np.version.clone().unwrap_or_default(),
            "instancePoolID": np.instance_pool.map(|p| p.id.to_string()).unwrap_or_default(),
            "selector": format!("{NODEPOOL_ID_LABEL}={}", np.id),
            "observedGeneration": generation,
            "conditions": conditions,
        }
    });
    set_autoscaling_status(&mut obj, meta, seen.previous, seen.now);
    obj
}

/// Puts what the autoscaler last did (`status.autoscaling`) and, for an
/// autoscaled nodepool, the `ScalingLimited` condition on a NodePool object.
pub fn set_autoscaling_status(obj: &mut Value, meta: &ObjectMeta, previous: Option<&Value>, now: &str) {
    let status = meta.autoscaling_status.as_ref();
    obj["status"]["autoscaling"] =
        status.map_or(Value::Null, |a| json!({"lastScaleUp": a.last_scale_up, "lastScaleDown": a.last_scale_down}));
    let Some(conditions) = obj["status"]["conditions"].as_array_mut() else { return };
    conditions.retain(|c| c["type"] != "ScalingLimited");
    if meta.autoscaling.is_some() {
        let (ok, reason, message) = match status.and_then(|s| s.limited.clone()) {
            Some(why) => (true, "MaxReplicasReached", why),
            None => (false, "WithinLimits", String::new()),
        };
        let generation = meta.generation.max(1);
        conditions.push(condition("ScalingLimited", ok, reason, message, generation, previous, now));
    }
}

/// A hash of a spec, to notice changes made behind our back.
pub fn spec_hash(spec: &NodePoolSpec) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(spec).expect("specs serialise");
    sha2::Sha256::digest(&bytes).iter().take(12).map(|b| format!("{b:02x}")).collect()
}
