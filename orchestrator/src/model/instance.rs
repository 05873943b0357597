use std::net::{Ipv4Addr, Ipv6Addr};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Labels, Manager, PublicIpAssignment, Ref, SshKeyRef};
use crate::string_enum;

string_enum! {
    /// The lifecycle state of an instance.
    InstanceState {
        Starting => "starting", Running => "running", Stopping => "stopping", Stopped => "stopped",
        Migrating => "migrating", Error => "error", Destroying => "destroying",
        Destroyed => "destroyed", Expunging => "expunging",
    }
}

/// A private network attachment of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrivateNetworkAttachment {
    /// The private network's id.
    pub id: Uuid,
    /// The interface's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// A compute instance (`GET /instance/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Instance {
    /// Id; also the VM's SMBIOS system UUID.
    pub id: Uuid,
    /// Name; also the node's hostname.
    pub name: String,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Instance type; clients read only its id.
    pub instance_type: Ref,
    /// Template the disk was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Ref>,
    /// Disk size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// Public IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
    /// Public IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Addr>,
    /// How public addresses are assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<PublicIpAssignment>,
    /// Private network attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_networks: Option<Vec<PrivateNetworkAttachment>>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<Ref>>,
    /// Anti-affinity groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<Ref>>,
    /// Elastic IPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_ips: Option<Vec<Ref>>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// The instance pool this instance is a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
    /// Deploy target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_target: Option<Ref>,
    /// MAC address of the public interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// SSH key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SshKeyRef>,
    /// SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_keys: Option<Vec<SshKeyRef>>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Whether it boots with UEFI secure boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secureboot_enabled: Option<bool>,
    /// Whether it has a virtual TPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_enabled: Option<bool>,
    /// Whether its root disk is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_encrypted: Option<bool>,
    /// Whether its snapshots are application-consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_consistent_snapshot_enabled: Option<bool>,
    /// Cloud-init user data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// `GET /instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceList {
    /// The instances.
    pub instances: Vec<Instance>,
}

/// Filters of `GET /instance`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only members of this manager.
    pub manager_id: Option<Uuid>,
    /// Only instances managed by this kind of manager.
    pub manager_type: Option<super::ManagerType>,
    /// Only instances with this address.
    pub ip_address: Option<String>,
}

string_enum! {
    /// An instance type's family.
    InstanceTypeFamily {
        Standard => "standard", Cpu => "cpu", Memory => "memory", Storage => "storage",
        Colossus => "colossus", Gpu => "gpu", Gpu2 => "gpu2", Gpu3 => "gpu3", Gpua30 => "gpua30",
        Gpu3080ti => "gpu3080ti", Gpua5000 => "gpua5000", Gpurtx6000pro => "gpurtx6000pro",
        Gpub300 => "gpub300",
    }
}

string_enum! {
    /// An instance type's size.
    InstanceTypeSize {
        Micro => "micro", Tiny => "tiny", Small => "small", Medium => "medium", Large => "large",
        ExtraLarge => "extra-large", Huge => "huge", Mega => "mega", Titan => "titan",
        Titan48c => "titan48c", Jumbo => "jumbo", Colossus => "colossus",
    }
}

/// An instance type (`GET /instance-type/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceType {
    /// Id.
    pub id: Uuid,
    /// Family, e.g. `standard`.
    pub family: InstanceTypeFamily,
    /// Size, e.g. `medium`.
    pub size: InstanceTypeSize,
    /// Virtual CPUs.
    #[serde(default)]
    pub cpus: i64,
    /// GPUs (absent when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<i64>,
    /// Memory in bytes.
    #[serde(default)]
    pub memory: i64,
    /// Whether the organization may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized: Option<bool>,
    /// Zones where it is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
}

impl InstanceType {
    /// The name clients use: `<family>.<size>`, e.g. `standard.medium`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.family, self.size)
    }
}

/// `GET /instance-type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceTypeList {
    /// The instance types.
    pub instance_types: Vec<InstanceType>,
}

/// `POST /instance`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateInstance {
    /// Name (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Instance type.
    pub instance_type: Option<Ref>,
    /// Template.
    pub template: Option<Ref>,
    /// Disk size in GiB.
    pub disk_size: Option<i64>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// How public addresses are assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<PublicIpAssignment>,
    /// Security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<Ref>>,
    /// Anti-affinity groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<Ref>>,
    /// Deploy target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_target: Option<Ref>,
    /// SSH key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SshKeyRef>,
    /// SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_keys: Option<Vec<SshKeyRef>>,
    /// Cloud-init user data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Whether it starts once created (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start: Option<bool>,
    /// Whether it boots with UEFI secure boot (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secureboot_enabled: Option<bool>,
    /// Whether it gets a virtual TPM (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_enabled: Option<bool>,
    /// Whether its snapshots are application-consistent (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_consistent_snapshot_enabled: Option<bool>,
    /// Deprecated IPv6 switch (`public-ip-assignment: dual` replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_enabled: Option<bool>,
}

/// `PUT /instance/{id}`: a partial update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpdateInstance {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// How public addresses are assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<PublicIpAssignment>,
    /// Cloud-init user data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Whether its snapshots are application-consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_consistent_snapshot_enabled: Option<bool>,
}

/// `PUT /instance/{id}:scale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScaleInstance {
    /// The new instance type.
    pub instance_type: Ref,
}

/// `PUT /instance/{id}:resize-disk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResizeInstanceDisk {
    /// The new disk size in GiB (only grows).
    pub disk_size: i64,
}

/// `PUT /instance/{id}:reset`: reinstall from a template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResetInstance {
    /// Template (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Ref>,
    /// Disk size (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
}
