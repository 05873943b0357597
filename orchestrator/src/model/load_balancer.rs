use std::net::Ipv4Addr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Labels, Ref};
use crate::string_enum;

string_enum! {
    /// The lifecycle state of a network load balancer.
    LoadBalancerState {
        Creating => "creating", Running => "running", Migrating => "migrating",
        Migrated => "migrated", Deleting => "deleting", Error => "error",
    }
}

string_enum! {
    /// The lifecycle state of an NLB service.
    LoadBalancerServiceState {
        Creating => "creating", Running => "running", Updating => "updating",
        Deleting => "deleting", Error => "error",
    }
}

string_enum! {
    /// Transport protocol of an NLB service.
    Protocol { Tcp => "tcp", Udp => "udp" }
}

string_enum! {
    /// How an NLB service spreads connections over its backends.
    Strategy { RoundRobin => "round-robin", MaglevHash => "maglev-hash", SourceHash => "source-hash" }
}

string_enum! {
    /// How an NLB service checks its backends.
    HealthcheckMode { Tcp => "tcp", Http => "http", Https => "https" }
}

string_enum! {
    /// Result of the last health check of one backend.
    HealthStatus { Success => "success", Failure => "failure" }
}

/// Health check of an NLB service; stored and returned exactly as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Healthcheck {
    /// `tcp`, `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<HealthcheckMode>,
    /// Port probed on each backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// URI probed in http(s) mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Seconds between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Seconds before a check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Failures before a backend is out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// SNI sent in https mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
}

/// Health of one backend as the NLB sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackendStatus {
    /// The backend's public IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
    /// Result of its last checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HealthStatus>,
}

/// The writable fields of an NLB service (add and update bodies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerServiceSpec {
    /// Name, unique within the NLB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Target instance pool; cannot be changed by an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_pool: Option<Ref>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Balancing strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Port the NLB listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Port on the backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<i64>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
}

/// `POST /load-balancer/{id}/service`.
pub type AddLoadBalancerService = LoadBalancerServiceSpec;
/// `PUT /load-balancer/{id}/service/{service-id}`: a partial update.
pub type UpdateLoadBalancerService = LoadBalancerServiceSpec;

/// A service of an NLB: one listening port forwarded to an instance pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerService {
    /// Id.
    pub id: Uuid,
    /// Lifecycle state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LoadBalancerServiceState>,
    /// Health of each backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_status: Option<Vec<BackendStatus>>,
    /// Everything set at add or update, exactly as sent.
    #[serde(flatten)]
    pub spec: LoadBalancerServiceSpec,
}

/// The writable fields of an NLB (create and update bodies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerSpec {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `POST /load-balancer`.
pub type CreateLoadBalancer = LoadBalancerSpec;
/// `PUT /load-balancer/{id}`: a partial update.
pub type UpdateLoadBalancer = LoadBalancerSpec;

/// A network load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancer {
    /// Id.
    pub id: Uuid,
    /// Lifecycle state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LoadBalancerState>,
    /// Public IPv4, set once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Services.
    #[serde(default)]
    pub services: Vec<LoadBalancerService>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Everything set at create or update, exactly as sent.
    #[serde(flatten)]
    pub spec: LoadBalancerSpec,
}

/// `GET /load-balancer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerList {
    /// The NLBs.
    pub load_balancers: Vec<LoadBalancer>,
}
