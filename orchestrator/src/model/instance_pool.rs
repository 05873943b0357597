use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Labels, Manager, PublicIpAssignment, Ref, SshKeyRef};
use crate::string_enum;

string_enum! {
    /// The lifecycle state of an instance pool.
    InstancePoolState {
        Creating => "creating", Running => "running", ScalingUp => "scaling-up",
        ScalingDown => "scaling-down", Updating => "updating", Destroying => "destroying",
        Suspended => "suspended",
    }
}

/// The fields shared by an instance pool and its create/update bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePoolSpec {
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Anti-affinity groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<Ref>>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<Ref>>,
    /// Private networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_networks: Option<Vec<Ref>>,
    /// Elastic IPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_ips: Option<Vec<Ref>>,
    /// Deploy target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_target: Option<Ref>,
    /// Prefix of member names (default `pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_prefix: Option<String>,
    /// Deprecated IPv6 switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_enabled: Option<bool>,
    /// How public addresses are assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<PublicIpAssignment>,
    /// SSH key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SshKeyRef>,
    /// SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_keys: Option<Vec<SshKeyRef>>,
    /// Cloud-init user data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Members kept available during maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<i64>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Instance type of the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<Ref>,
    /// Template of the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Ref>,
    /// Disk size of the members in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// Whether the members' snapshots are application-consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_consistent_snapshot_enabled: Option<bool>,
}

/// `POST /instance-pool`: the spec plus the initial size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInstancePool {
    /// Everything but the size.
    #[serde(flatten)]
    pub spec: InstancePoolSpec,
    /// Number of members.
    pub size: i64,
}

/// `PUT /instance-pool/{id}`: a partial update (every field optional).
pub type UpdateInstancePool = InstancePoolSpec;

/// An instance pool (`GET /instance-pool/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePool {
    /// Id.
    pub id: Uuid,
    /// Lifecycle state.
    pub state: InstancePoolState,
    /// Desired number of members.
    pub size: i64,
    /// Current members.
    #[serde(default)]
    pub instances: Vec<Ref>,
    /// The SKS nodepool owning the pool, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
    /// Everything set at create or update.
    #[serde(flatten)]
    pub spec: InstancePoolSpec,
}

/// `GET /instance-pool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePoolList {
    /// The pools.
    pub instance_pools: Vec<InstancePool>,
}
