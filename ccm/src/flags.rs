//! The command line, and the settings built from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sks_lease as leader;
use uuid::Uuid;

use crate::manager::{self, Selection};
use crate::{lb, node};

/// Cloud controller manager for SKS clusters: initializes Nodes from their
/// instances, approves kubelet serving certificates it can tie to an instance,
/// follows instances' lifecycle, heals Nodes that stay NotReady, and serves
/// LoadBalancer Services (no `loadBalancerClass`, or `exoscale.net/nlb`) with
/// Network Load Balancers.
///
/// Orchestrator access comes from the Exoscale CCM's variables:
/// EXOSCALE_API_ENDPOINT, EXOSCALE_API_ZONE (or EXOSCALE_ZONE), and
/// EXOSCALE_API_KEY/EXOSCALE_API_SECRET or EXOSCALE_API_CREDENTIALS_FILE
/// (a JSON file or a mounted Secret directory, re-read when it changes).
#[derive(Debug, Parser)]
#[command(name = "sks-ccm", version)]
pub struct Args {
    /// Kubeconfig of the cluster (default: in-cluster or $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// ID of the SKS cluster whose nodes are managed.
    #[arg(long, env = "SKS_CLUSTER_ID")]
    pub cluster_id: Uuid,
    /// Controllers to run: `*` for all, `-name` to disable one (cloud-node, cloud-node-lifecycle,
    /// node-auto-heal, node-csr-approval, service). `*,-service` turns load balancing off.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Elect a leader through a Lease; only the leader acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Lease duration.
    #[arg(long, default_value = "15")]
    pub leader_elect_lease_duration_seconds: u64,
    /// How long the leader tries to renew before it stops acting.
    #[arg(long, default_value = "10")]
    pub leader_elect_renew_deadline_seconds: u64,
    /// Interval between election attempts.
    #[arg(long, default_value = "2")]
    pub leader_elect_retry_period_seconds: u64,
    /// Lease namespace and name.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Lease name.
    #[arg(long, default_value = "sks-ccm")]
    pub leader_elect_resource_name: String,
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:10258")]
    pub bind_address: SocketAddr,
    /// How often initialized Nodes are re-checked against their instance.
    #[arg(long, default_value = "60")]
    pub node_sync_period_seconds: u64,
    /// Reboot, then replace, instances of Nodes that stay NotReady (`false`:
    /// as `--controllers` without node-auto-heal).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_heal: bool,
    /// NotReady this long (with a running instance): reboot it.
    #[arg(long, default_value = "900")]
    pub auto_heal_reboot_after_seconds: u64,
    /// Still NotReady this long after the reboot: replace it (its nodepool grows by one, then it is evicted).
    #[arg(long, default_value = "900")]
    pub auto_heal_replace_after_seconds: u64,
    /// Largest share of the cluster's nodes healed at once (at least one node).
    #[arg(long, default_value = "0.1")]
    pub auto_heal_max_share: f64,
    /// How often every NLB is compared with its Service (one list call per period).
    #[arg(long, default_value = "300")]
    pub lb_drift_period_seconds: u64,
    /// Without health-check annotations and with `externalTrafficPolicy: Cluster`, probe
    /// kube-proxy's `:10256/healthz` (HTTP) instead of the nodePort (TCP).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub lb_kube_proxy_healthcheck: bool,
    /// Concurrent Service reconciles. A reconcile waiting on an orchestrator
    /// operation (seconds each, two in a row for a new NLB) holds no thread, so
    /// a burst of a few hundred Services waits on its operations together.
    #[arg(long, default_value = "256")]
    pub concurrent_service_syncs: u16,
    /// Concurrent reconciles of the node and CSR controllers each. The
    /// Kubernetes client has no rate limiter, so this is sks-ccm's only limit
    /// on a burst: a Node reconcile is two writes in a row, so at 50 ms a
    /// write on a loaded kube-apiserver 32 workers initialize 320 Nodes a
    /// second (8 did 80), and 32 + 32 requests in flight stay within the
    /// seats kube-apiserver's priority and fairness gives a kube-system
    /// service account (workload-high), so the API server, not sks-ccm, sets
    /// the pace without answering 429.
    #[arg(long, default_value = "32")]
    pub workers: u16,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

impl Args {
    /// How often initialized Nodes are re-checked, and the cloud cache refreshed.
    pub fn node_sync_period(&self) -> Duration {
        Duration::from_secs(self.node_sync_period_seconds)
    }

    /// What runs, with which settings; an unknown controller name is an error.
    pub fn controllers(&self) -> Result<manager::Config, String> {
        let on = Selection::parse(&self.controllers)?;
        let steps = node::Steps {
            init: on.runs(manager::CLOUD_NODE),
            lifecycle: on.runs(manager::CLOUD_NODE_LIFECYCLE),
            heal: on.runs(manager::NODE_AUTO_HEAL) && self.auto_heal,
        };
        let heal = node::heal::Config {
            reboot_after: Duration::from_secs(self.auto_heal_reboot_after_seconds),
            replace_after: Duration::from_secs(self.auto_heal_replace_after_seconds),
            max_share: self.auto_heal_max_share,
        };
        let service = lb::controller::Config {
            drift_period: Duration::from_secs(self.lb_drift_period_seconds.max(1)),
            options: lb::desired::Options { kube_proxy_healthcheck: self.lb_kube_proxy_healthcheck },
            workers: self.concurrent_service_syncs,
        };
        Ok(manager::Config {
            nodes: node::Config { steps, sync_period: self.node_sync_period(), heal, workers: self.workers },
            csr_approval: on.runs(manager::NODE_CSR_APPROVAL),
            service: on.runs(manager::SERVICE).then_some(service),
            workers: self.workers,
        })
    }

    /// The election `identity` campaigns in, `None` without one; durations
    /// that cannot work are an error.
    pub fn election(&self, identity: &str) -> Result<Option<leader::Config>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        let cfg = leader::Config {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self.leader_elect_resource_name.clone(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(self.leader_elect_lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.leader_elect_renew_deadline_seconds),
            retry_period: Duration::from_secs(self.leader_elect_retry_period_seconds),
        };
        cfg.check()?;
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let base = ["sks-ccm", "--cluster-id", "00000000-0000-0000-0000-000000000001"];
        Args::try_parse_from(base.iter().chain(extra)).unwrap()
    }

    #[test]
    fn each_node_step_follows_its_own_name() {
        let steps = |extra: &[&str]| args(extra).controllers().unwrap().nodes.steps;
        let all = node::Steps { init: true, lifecycle: true, heal: true };
        assert_eq!(steps(&[]), all);
        assert_eq!(steps(&["--controllers=*,-cloud-node"]), node::Steps { init: false, ..all });
        assert_eq!(steps(&["--controllers=*,-cloud-node-lifecycle"]), node::Steps { lifecycle: false, ..all });
        assert_eq!(steps(&["--controllers=*,-node-auto-heal"]), node::Steps { heal: false, ..all });
        assert_eq!(steps(&["--auto-heal=false"]), node::Steps { heal: false, ..all });
        assert!(!steps(&["--controllers=service,node-csr-approval"]).any());
    }

    #[test]
    fn csr_approval_and_service_follow_their_names() {
        let config = args(&["--controllers=*,-service"]).controllers().unwrap();
        assert!(config.service.is_none() && config.csr_approval);
        let config =
            args(&["--controllers=*,-node-csr-approval", "--lb-drift-period-seconds=0"]).controllers().unwrap();
        assert!(!config.csr_approval);
        assert_eq!(config.service.map(|s| s.drift_period), Some(Duration::from_secs(1)), "at least a second");
        assert!(args(&["--controllers=*,-nodes"]).controllers().unwrap_err().contains("unknown controller \"nodes\""));
    }

    #[test]
    fn an_election_that_cannot_work_is_refused() {
        assert!(args(&["--leader-elect=false"]).election("me").unwrap().is_none());
        let cfg = args(&[]).election("me").unwrap().unwrap();
        assert_eq!((cfg.name.as_str(), cfg.identity.as_str()), ("sks-ccm", "me"));
        assert!(args(&["--leader-elect-renew-deadline-seconds=20"]).election("me").is_err());
    }
}
