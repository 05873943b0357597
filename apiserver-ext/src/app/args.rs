//! sks-apiserver's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use uuid::Uuid;

/// A duration flag: `500ms`, `10s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 10s, 500ms or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

/// An expander priority, `NAME=PRIORITY`.
pub fn parse_priority(s: &str) -> Result<(String, i32), String> {
    let (name, priority) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=PRIORITY"))?;
    let priority = priority.trim().parse().map_err(|_| format!("{s:?}: the priority must be an integer"))?;
    Ok((name.trim().to_owned(), priority))
}

/// Aggregated API server for SKS: the nodepools, the cluster, its upgrades and
/// kubeconfig requests of one cluster as Kubernetes resources.
///
/// Orchestrator access comes from the Exoscale CCM's variables:
/// EXOSCALE_API_ENDPOINT, EXOSCALE_API_ZONE, and EXOSCALE_API_KEY/EXOSCALE_API_SECRET
/// or EXOSCALE_API_CREDENTIALS_FILE (re-read when it changes).
#[derive(Debug, Parser)]
#[command(name = "sks-apiserver", version)]
pub struct Args {
    /// Address to serve HTTPS on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM), reloaded when it changes.
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// Serving key (PEM), reloaded when it changes.
    #[arg(long)]
    pub tls_private_key_file: PathBuf,
    /// CA of x509 client certificates (CN = user, O = groups); else taken from the cluster.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// CA of the front-proxy client certificate; else taken from the cluster.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for the front-proxy certificate (empty: any signed by its CA).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Headers naming the user.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,
    /// Headers naming the groups.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,
    /// Prefixes of headers carrying extra user attributes.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Headers naming the user's UID (none by default, as in k8s.io/apiserver).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
    /// Kubeconfig of the cluster: enables TokenReview, SubjectAccessReview and the
    /// authentication ConfigMap. Without it only system:masters may use the API.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// How long token reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// How long allowed access reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// How long denied access reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
    /// ID of the SKS cluster served.
    #[arg(long, env = "SKS_CLUSTER_ID")]
    pub cluster_id: Uuid,
    /// How often the nodepool cache is refreshed from the orchestrator (and after every write).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// File keeping annotations, finalizers and generations when no --kubeconfig is
    /// given (one replica only); with a kubeconfig they live in ConfigMaps, shared by replicas.
    #[arg(long, default_value = "sks-apiserver-metadata.json")]
    pub metadata_file: PathBuf,
    /// Namespace of the metadata ConfigMaps (with --kubeconfig).
    #[arg(long, default_value = "kube-system")]
    pub metadata_namespace: String,
    /// Namespace of the Lease electing the one replica that follows upgrades, records
    /// automatic ones and rolls nodes (with --kubeconfig; default: --metadata-namespace).
    /// Without --kubeconfig there is one replica and it always leads.
    #[arg(long)]
    pub leader_elect_resource_namespace: Option<String>,
    /// Name of that Lease.
    #[arg(long, default_value = "sks-apiserver-upgrades")]
    pub leader_elect_resource_name: String,
    /// This replica's identity in the Lease (default: $HOSTNAME, the pod's name, and a random suffix).
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
    /// How long the Lease holds without renewal (client-go's default).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader tries to renew before it stops following upgrades.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Interval between attempts to take or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// How long a rolling upgrade waits for a replacement node to join, be
    /// initialized and become Ready before it stops as Failed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub upgrade_replacement_timeout: Duration,
    /// Interval of watch bookmarks.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub bookmark_interval: Duration,
    /// Open watches allowed per user; one more is refused with 429 TooManyRequests (0: no limit).
    #[arg(long, default_value_t = 250)]
    pub max_watches_per_user: usize,
    /// Largest request body accepted, in bytes (413 RequestEntityTooLarge beyond), as kube-apiserver's 3 MiB.
    #[arg(long, default_value_t = 3 << 20)]
    pub max_request_body_bytes: usize,
    /// How long a client may take to finish the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1.1: also how long an idle keep-alive
    /// connection is kept) and, on any protocol, to start a first request on a new connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection with no request in progress (open watches count as in progress) for this long is closed.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub idle_connection_timeout: Duration,
    /// Autoscale the nodepools that set spec.autoscaling (with --kubeconfig; the
    /// replica holding the upgrade Lease acts). See docs/api.md, Autoscaling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub autoscaling: bool,
    /// How often the autoscaler looks at the cluster without a trigger (a pod turning
    /// unschedulable wakes it at once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub scan_interval: Duration,
    /// Whether the autoscaler removes unneeded nodes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub scale_down_enabled: bool,
    /// A node whose pods request less than this share of its CPU and of its memory may be removed.
    #[arg(long, default_value_t = 0.5)]
    pub scale_down_utilization_threshold: f64,
    /// How long a node must have been unneeded before it is removed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub scale_down_unneeded_time: Duration,
    /// How long after a scale-up of a nodepool none of its nodes is removed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub scale_down_delay_after_add: Duration,
    /// How long requested nodes may take to become Ready before the scale-up is given up and the nodepool backed off.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub max_node_provision_time: Duration,
    /// How long a removal waits for its pods to be evicted (PodDisruptionBudgets may hold them) before the node is put back.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub max_pod_eviction_time: Duration,
    /// Priorities of nodepools for scale-ups, NAME=PRIORITY,... (higher first; least waste breaks ties).
    #[arg(long, value_delimiter = ',', value_parser = parse_priority)]
    pub expander_priorities: Vec<(String, i32)>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}
