use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Labels, PublicIpAssignment, Ref};
use crate::string_enum;

string_enum! {
    /// The lifecycle state of an SKS cluster.
    SksClusterState {
        Creating => "creating", Running => "running", Upgrading => "upgrading",
        Updating => "updating", Deleting => "deleting", Suspending => "suspending",
        Resuming => "resuming", Error => "error",
        RotatingCcmCredentials => "rotating-ccm-credentials",
        RotatingCsiCredentials => "rotating-csi-credentials",
        RotatingKarpenterCredentials => "rotating-karpenter-credentials",
    }
}

string_enum! {
    /// The service level of an SKS cluster.
    SksClusterLevel { Starter => "starter", Pro => "pro" }
}

string_enum! {
    /// The CNI an SKS cluster runs.
    SksCni { Calico => "calico", Cilium => "cilium" }
}

string_enum! {
    /// The lifecycle state of an SKS nodepool.
    SksNodepoolState {
        Creating => "creating", Running => "running", Scaling => "scaling",
        Updating => "updating", Deleting => "deleting", RenewingToken => "renewing-token",
        Error => "error",
    }
}

string_enum! {
    /// A Kubernetes taint effect.
    TaintEffect { NoExecute => "NoExecute", NoSchedule => "NoSchedule", PreferNoSchedule => "PreferNoSchedule" }
}

string_enum! {
    /// One of a cluster's certificate authorities.
    Authority { ControlPlane => "control-plane", Aggregation => "aggregation", Kubelet => "kubelet" }
}

/// OpenID Connect settings of a cluster's API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksOidc {
    /// OIDC client id.
    pub client_id: String,
    /// Issuer URL.
    pub issuer_url: String,
    /// Claim used as user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_claim: Option<String>,
    /// Prefix added to user names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_prefix: Option<String>,
    /// Claim used as groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Prefix added to groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_prefix: Option<String>,
    /// Claims a token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_claim: Option<BTreeMap<String, String>>,
}

/// Audit log shipping of a cluster; the bearer token is write-only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksAudit {
    /// Where audit events are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Token sent with them (never returned by GET, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// Initial retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<String>,
    /// Whether shipping is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl fmt::Debug for SksAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SksAudit")
            .field("endpoint", &self.endpoint)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("initial_backoff", &self.initial_backoff)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// The writable fields of a cluster (create and update bodies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksClusterSpec {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Whether patch versions are applied automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade: Option<bool>,
    /// Add-ons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons: Option<Vec<String>>,
    /// Feature gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_gates: Option<Vec<String>>,
    /// OIDC settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<SksOidc>,
    /// Audit settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<SksAudit>,
    /// Whether kube-proxy runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_kube_proxy: Option<bool>,
    /// Whether the operators CA is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_operators_ca: Option<bool>,
}

/// `POST /sks-cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateSksCluster {
    /// The writable fields.
    #[serde(flatten)]
    pub spec: SksClusterSpec,
    /// Service level.
    pub level: SksClusterLevel,
    /// Control-plane version.
    pub version: String,
    /// CNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<SksCni>,
    /// Whether a default security group is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_security_group: Option<bool>,
}

/// `PUT /sks-cluster/{id}`: a partial update.
pub type UpdateSksCluster = SksClusterSpec;

/// An SKS cluster, with its nodepools embedded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksCluster {
    /// Id.
    pub id: Uuid,
    /// Lifecycle state.
    pub state: SksClusterState,
    /// Control-plane version.
    pub version: String,
    /// Service level.
    pub level: SksClusterLevel,
    /// CNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<SksCni>,
    /// The API server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The default security group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_security_group_id: Option<Uuid>,
    /// Nodepools.
    #[serde(default)]
    pub nodepools: Vec<SksNodepool>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Everything set at create or update.
    #[serde(flatten)]
    pub spec: SksClusterSpec,
}

/// `GET /sks-cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksClusterList {
    /// The clusters.
    pub sks_clusters: Vec<SksCluster>,
}

/// `PUT /sks-cluster/{id}/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSksCluster {
    /// Target control-plane version.
    pub version: String,
}

/// `GET /sks-cluster-version`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksClusterVersions {
    /// The versions.
    pub sks_cluster_versions: Vec<String>,
}

/// `POST /sks-cluster-kubeconfig/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigRequest {
    /// The certificate's CN.
    pub user: String,
    /// The certificate's O.
    pub groups: Vec<String>,
    /// Lifetime in seconds (default and maximum 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The answer to a kubeconfig request; the kubeconfig holds a private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigResponse {
    /// Base64 of the kubeconfig YAML.
    pub kubeconfig: String,
}

impl fmt::Debug for KubeconfigResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KubeconfigResponse { kubeconfig: <redacted> }")
    }
}

/// `GET /sks-cluster/{id}/authority/{authority}/cert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityCert {
    /// Base64 of the CA certificate PEM.
    pub cacert: String,
}

/// A nodepool taint (the key is the map key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodepoolTaint {
    /// Value (mandatory).
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

/// Kubelet image garbage collection thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubeletImageGc {
    /// Disk usage (%) that starts collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_threshold: Option<i64>,
    /// Disk usage (%) collection aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_threshold: Option<i64>,
    /// Minimum age of a collected image, e.g. `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<String>,
}

/// The writable fields of a nodepool (create and update bodies, minus `size`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksNodepoolSpec {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Instance type of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<Ref>,
    /// Disk size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// Labels (propagated to Nodes by sks-ccm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Taints by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<BTreeMap<String, NodepoolTaint>>,
    /// Anti-affinity groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<Ref>>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<Ref>>,
    /// Private networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_networks: Option<Vec<Ref>>,
    /// Deploy target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_target: Option<Ref>,
    /// Prefix of instance names (default `pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_prefix: Option<String>,
    /// Kubelet image GC thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_image_gc: Option<KubeletImageGc>,
    /// How public addresses are assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<PublicIpAssignment>,
    /// NVIDIA MIG profiles of the nodes' GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvidia_mig_profiles: Option<NvidiaMigProfiles>,
}

/// NVIDIA MIG (multi-instance GPU) profiles, per GPU model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaMigProfiles {
    /// Profile of A30 (24 GB) GPUs, e.g. `1g.6gb`.
    #[serde(rename = "a30.24gb", default, skip_serializing_if = "Option::is_none")]
    pub a30_24gb: Option<String>,
    /// Profile of RTX PRO 6000 (96 GB) GPUs, e.g. `2g.48gb`.
    #[serde(rename = "rtxpro6000.96gb", default, skip_serializing_if = "Option::is_none")]
    pub rtxpro6000_96gb: Option<String>,
}

/// `POST /sks-cluster/{id}/nodepool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSksNodepool {
    /// Everything but the size and add-ons.
    #[serde(flatten)]
    pub spec: SksNodepoolSpec,
    /// Number of nodes.
    pub size: i64,
    /// Add-ons, e.g. `storage-lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons: Option<Vec<String>>,
}

/// `PUT /sks-cluster/{id}/nodepool/{id}`: a partial update.
pub type UpdateSksNodepool = SksNodepoolSpec;

/// An SKS nodepool, backed by an instance pool of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SksNodepool {
    /// Id (not the instance pool's).
    pub id: Uuid,
    /// Lifecycle state.
    pub state: SksNodepoolState,
    /// Desired number of nodes.
    pub size: i64,
    /// Kubernetes version of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Template chosen by SKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Ref>,
    /// The backing instance pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_pool: Option<Ref>,
    /// Add-ons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons: Option<Vec<String>>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Everything set at create or update.
    #[serde(flatten)]
    pub spec: SksNodepoolSpec,
}

/// An API the cluster serves that a later version removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeprecatedResource {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Kubernetes release that removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_release: Option<String>,
}

/// `GET /sks-template/{kube-version}/{variant}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActiveTemplate {
    /// The template new nodes of that version get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_template: Option<Uuid>,
}
