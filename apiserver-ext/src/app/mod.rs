//! Assembling sks-apiserver from its flags: the Kubernetes and orchestrator
//! clients, the storages and their refresh loops, the upgrade Lease, the API
//! server and its listener.

mod args;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sks_rest::authn::{Authenticator, AuthnConfig, RequestHeaderConfig, TokenReviewer};
use sks_rest::authz::{AccessReviewer, Authorizer};
use sks_rest::handler::{ApiServer, ServerConfig};
use sks_rest::kube_auth::{KubeReviewer, follow_authentication_configmap};
use sks_rest::metrics::ServerMetrics;
use sks_rest::storage::Storage;
use sks_rest::tls::{ClientTrust, ServingCertFiles, server_config};

pub use self::args::Args;
use crate::resources::cluster::Clusters;
use crate::resources::kube_metadata::ConfigMapStore;
use crate::resources::kubeconfig::KubeconfigRequests;
use crate::resources::metadata::{FileStore, MetadataStore};
use crate::resources::nodepool::{NodePools, NodeReadiness};
use crate::resources::nodes::NodeWatch;
use crate::resources::upgrade::Upgrades;

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

/// Runs sks-apiserver until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
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
    let registry = prometheus::Registry::new();
    let kube = match &args.kubeconfig {
        Some(path) => {
            Some(sks_kubeclient::connect(Some(path), Some(sks_kubeclient::ClientMetrics::register(&registry)?)).await?)
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
    let leading_for_autoscaler = leading.clone();
    let upgrades = Arc::new(Upgrades::new(
        client.clone(),
        args.cluster_id,
        store_of("upgrades"),
        nodes,
        args.upgrade_replacement_timeout,
        leading,
    ));
    tokio::spawn(upgrades.clone().run(Duration::from_secs(1)));
    if let (Some(kube), true) = (kube.clone(), args.autoscaling) {
        let options = crate::autoscaler::Options {
            scan_interval: args.scan_interval,
            scale_down_enabled: args.scale_down_enabled,
            scale_down: sks_autoscaler::ScaleDownOptions {
                utilization_threshold: args.scale_down_utilization_threshold,
                unneeded_time: args.scale_down_unneeded_time,
                delay_after_add: args.scale_down_delay_after_add,
                ..Default::default()
            },
            max_node_provision_time: args.max_node_provision_time,
            max_pod_eviction_time: args.max_pod_eviction_time,
            priorities: args.expander_priorities.iter().cloned().collect(),
            ..Default::default()
        };
        let zone = orchestrator::ClientConfig::from_env().zone.unwrap_or_default();
        let metrics = crate::autoscaler::metrics::Metrics::register(&registry)?;
        let autoscaler = crate::autoscaler::Autoscaler::new(
            options,
            kube,
            client.clone(),
            args.cluster_id,
            zone,
            nodepools.clone(),
            upgrades.clone(),
            metrics,
        );
        tokio::spawn(autoscaler.run(leading_for_autoscaler));
    }
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
    let extra = vec![crate::resources::nodepool::def::eviction_schema()];
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
