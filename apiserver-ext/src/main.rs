//! `sks-apiserver`: serves the SKS group (`sks.exoscale.net`) as an aggregated API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sks_apiserver::resources::cluster::Clusters;
use sks_apiserver::resources::kube_metadata::ConfigMapStore;
use sks_apiserver::resources::kubeconfig::KubeconfigRequests;
use sks_apiserver::resources::metadata::{FileStore, MetadataStore};
use sks_apiserver::resources::nodepool::{NodePools, NodeReadiness};
use sks_apiserver::resources::nodes::NodeWatch;
use sks_apiserver::resources::upgrade::Upgrades;
use sks_rest::authn::{Authenticator, AuthnConfig, RequestHeaderConfig, TokenReviewer};
use sks_rest::authz::{AccessReviewer, Authorizer};
use sks_rest::handler::{ApiServer, ServerConfig};
use sks_rest::kube_auth::{KubeReviewer, follow_authentication_configmap};
use sks_rest::metrics::ServerMetrics;
use sks_rest::storage::Storage;
use sks_rest::tls::{ClientTrust, ServingCertFiles, server_config};
use uuid::Uuid;

fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// Aggregated API server for SKS: the nodepools, the cluster, its upgrades and
/// kubeconfig requests of one cluster as Kubernetes resources.
///
/// Orchestrator access comes from the Exoscale CCM's variables:
/// EXOSCALE_API_ENDPOINT, EXOSCALE_API_ZONE, and EXOSCALE_API_KEY/EXOSCALE_API_SECRET
/// or EXOSCALE_API_CREDENTIALS_FILE (re-read when it changes).
#[derive(Debug, Parser)]
#[command(name = "sks-apiserver", version)]
struct Args {
    /// Address to serve HTTPS on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Serving certificate (PEM), reloaded when it changes.
    #[arg(long)]
    tls_cert_file: PathBuf,
    /// Serving key (PEM), reloaded when it changes.
    #[arg(long)]
    tls_private_key_file: PathBuf,
    /// CA of x509 client certificates (CN = user, O = groups); else taken from the cluster.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// CA of the front-proxy client certificate; else taken from the cluster.
    #[arg(long)]
    requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for the front-proxy certificate (empty: any signed by its CA).
    #[arg(long, value_delimiter = ',')]
    requestheader_allowed_names: Vec<String>,
    /// Headers naming the user.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    requestheader_username_headers: Vec<String>,
    /// Headers naming the groups.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    requestheader_group_headers: Vec<String>,
    /// Prefixes of headers carrying extra user attributes.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    requestheader_extra_headers_prefix: Vec<String>,
    /// Headers naming the user's UID (none by default, as in k8s.io/apiserver).
    #[arg(long, value_delimiter = ',')]
    requestheader_uid_headers: Vec<String>,
    /// Kubeconfig of the cluster: enables TokenReview, SubjectAccessReview and the
    /// authentication ConfigMap. Without it only system:masters may use the API.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// How long token reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    authentication_token_webhook_cache_ttl: Duration,
    /// How long allowed access reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    authorization_webhook_cache_authorized_ttl: Duration,
    /// How long denied access reviews are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    authorization_webhook_cache_unauthorized_ttl: Duration,
    /// ID of the SKS cluster served.
    #[arg(long, env = "SKS_CLUSTER_ID")]
    cluster_id: Uuid,
    /// How often the nodepool cache is refreshed from the orchestrator (and after every write).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    refresh_interval: Duration,
    /// File keeping annotations, finalizers and generations when no --kubeconfig is
    /// given (one replica only); with a kubeconfig they live in ConfigMaps, shared by replicas.
    #[arg(long, default_value = "sks-apiserver-metadata.json")]
    metadata_file: PathBuf,
    /// Namespace of the metadata ConfigMaps (with --kubeconfig).
    #[arg(long, default_value = "kube-system")]
    metadata_namespace: String,
    /// Namespace of the Lease electing the one replica that follows upgrades, records
    /// automatic ones and rolls nodes (with --kubeconfig; default: --metadata-namespace).
    /// Without --kubeconfig there is one replica and it always leads.
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
    /// Name of that Lease.
    #[arg(long, default_value = "sks-apiserver-upgrades")]
    leader_elect_resource_name: String,
    /// This replica's identity in the Lease (default: $HOSTNAME, the pod's name, and a random suffix).
    #[arg(long)]
    leader_elect_identity: Option<String>,
    /// How long the Lease holds without renewal (client-go's default).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader tries to renew before it stops following upgrades.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Interval between attempts to take or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// How long a rolling upgrade waits for a replacement node to join, be
    /// initialized and become Ready before it stops as Failed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    upgrade_replacement_timeout: Duration,
    /// Interval of watch bookmarks.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    bookmark_interval: Duration,
    /// Open watches allowed per user; one more is refused with 429 TooManyRequests (0: no limit).
    #[arg(long, default_value_t = 250)]
    max_watches_per_user: usize,
    /// Largest request body accepted, in bytes (413 RequestEntityTooLarge beyond), as kube-apiserver's 3 MiB.
    #[arg(long, default_value_t = 3 << 20)]
    max_request_body_bytes: usize,
    /// How long a client may take to finish the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1.1: also how long an idle keep-alive
    /// connection is kept) and, on any protocol, to start a first request on a new connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// A connection with no request in progress (open watches count as in progress) for this long is closed.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    idle_connection_timeout: Duration,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    sks_process::run(None, run(args))?
}

/// Whether this replica follows upgrades: the Lease's holder with a cluster
/// (the election is returned, to resign when stopping), always without one.
fn elect(
    args: &Args,
    kube: Option<kube::Client>,
) -> anyhow::Result<(tokio::sync::watch::Receiver<bool>, Option<sks_lease::Election>)> {
    let Some(client) = kube else {
        return Ok((tokio::sync::watch::channel(true).1, None));
    };
    let cfg = sks_lease::Config {
        namespace: args.leader_elect_resource_namespace.clone().unwrap_or_else(|| args.metadata_namespace.clone()),
        name: args.leader_elect_resource_name.clone(),
        identity: args.leader_elect_identity.clone().unwrap_or_else(|| sks_lease::default_identity("sks-apiserver")),
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    cfg.check().map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
    tracing::info!(identity = %cfg.identity, lease = %format!("{}/{}", cfg.namespace, cfg.name), "electing the replica that follows upgrades");
    let election = sks_lease::Election::start(client, cfg);
    Ok((election.leading(), Some(election)))
}

fn read(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.as_ref().map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))).transpose()
}

async fn run(args: Args) -> anyhow::Result<()> {
    orchestrator::install_crypto_provider();
    let flags = AuthnConfig {
        client_ca_pem: read(&args.client_ca_file)?,
        request_header: read(&args.requestheader_client_ca_file)?.map(|ca| RequestHeaderConfig {
            client_ca_pem: ca,
            allowed_names: args.requestheader_allowed_names.clone(),
            username_headers: args.requestheader_username_headers.clone(),
            group_headers: args.requestheader_group_headers.clone(),
            extra_prefixes: args.requestheader_extra_headers_prefix.clone(),
            uid_headers: args.requestheader_uid_headers.clone(),
        }),
    };
    let kube = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            Some(kube::Client::try_from(config)?)
        }
        None => None,
    };
    let reviewer = kube.clone().map(KubeReviewer::new);
    let trust = ClientTrust::default();
    let authn = Arc::new(Authenticator::new(
        flags.clone(),
        trust.clone(),
        reviewer.clone().map(|r| Arc::new(r) as Arc<dyn TokenReviewer>),
        args.authentication_token_webhook_cache_ttl,
    )?);
    let authz = Arc::new(Authorizer::new(
        reviewer.map(|r| Arc::new(r) as Arc<dyn AccessReviewer>),
        args.authorization_webhook_cache_authorized_ttl,
        args.authorization_webhook_cache_unauthorized_ttl,
    ));
    if let Some(client) = kube.clone() {
        tokio::spawn(follow_authentication_configmap(client, authn.clone(), flags, Duration::from_secs(10)));
    }

    let registry = prometheus::Registry::new();
    let orchestrator_metrics = orchestrator::ClientMetrics::register(&registry)?;
    let client = orchestrator::Client::connect(
        orchestrator::ClientConfig::from_env(),
        orchestrator::CredentialSource::from_env()?,
        Some(orchestrator_metrics),
    )
    .await
    .context("connecting to the orchestrator")?;
    // One store per kind: ConfigMaps in the cluster (shared by replicas), else files next to --metadata-file.
    let store_of = |kind: &str| -> Arc<dyn MetadataStore> {
        match kube.clone() {
            Some(k) => Arc::new(ConfigMapStore::new(k, &args.metadata_namespace, kind)),
            None if kind == "nodepools" => Arc::new(FileStore::new(&args.metadata_file)),
            None => Arc::new(FileStore::new(args.metadata_file.with_extension(format!("{kind}.json")))),
        }
    };
    let nodes = kube.clone().map(|k| NodeWatch::start(k) as Arc<dyn NodeReadiness>);
    let nodepools = Arc::new(NodePools::new(client.clone(), args.cluster_id, store_of("nodepools"), nodes.clone()));
    tokio::spawn(nodepools.clone().run(args.refresh_interval));
    let (leading, election) = elect(&args, kube.clone())?;
    let upgrades = Arc::new(Upgrades::new(
        client.clone(),
        args.cluster_id,
        store_of("upgrades"),
        nodes,
        args.upgrade_replacement_timeout,
        leading,
    ));
    tokio::spawn(upgrades.clone().run(Duration::from_secs(1)));
    let clusters = Arc::new(Clusters::new(client.clone(), args.cluster_id, store_of("clusters"), upgrades.clone()));
    tokio::spawn(clusters.clone().run(args.refresh_interval));
    let kubeconfigs = Arc::new(KubeconfigRequests::new(client, args.cluster_id));

    let storages: Vec<Arc<dyn Storage>> = vec![nodepools, clusters, upgrades, kubeconfigs];
    let config = ServerConfig {
        bookmark_interval: args.bookmark_interval,
        max_watches_per_user: args.max_watches_per_user,
        max_body_bytes: args.max_request_body_bytes,
        ..ServerConfig::default()
    };
    let metrics = ServerMetrics::new(registry)?;
    let extra = vec![sks_apiserver::resources::nodepool::def::eviction_schema()];
    let api = Arc::new(ApiServer::new(storages, authn, authz, metrics, config, extra));

    let tls = server_config(
        ServingCertFiles { cert: args.tls_cert_file.clone(), key: args.tls_private_key_file.clone() },
        trust,
    )?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("sks-apiserver listening on https://{}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let limits = sks_rest::server::ConnectionLimits {
        handshake_timeout: args.tls_handshake_timeout,
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_connection_timeout,
    };
    sks_rest::server::serve_with(listener, tls, api, limits, sks_process::shutdown_signal()).await?;
    if let Some(e) = election {
        // Rolls act only between steps that are stored first, so resigning mid-roll is safe.
        e.resign().await;
    }
    tracing::info!("stopped");
    Ok(())
}
