//! What every controller shares: the Kubernetes client, the cloud cache, the
//! event publisher and the metrics, built once per process and kept across
//! leadership changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus::Registry;
use uuid::Uuid;

use crate::cloud::Cloud;
use sks_kubeclient::events::Publisher;
use crate::metrics::Metrics;

/// The zone when the orchestrator configuration names none.
const DEFAULT_ZONE: &str = "ch-gva-2";
/// How long to wait before trying an unreachable orchestrator again.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// What the controllers share.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// The cloud cache.
    pub cloud: Arc<Cloud>,
    /// Event publisher.
    pub events: Arc<Publisher>,
    /// Metrics.
    pub metrics: Metrics,
}

impl Context {
    /// Registers the metrics in `registry`, connects to the orchestrator (from
    /// the environment, waiting while it is unreachable) and to the Kubernetes
    /// API (`kubeconfig`, else in-cluster or `$KUBECONFIG`); events report as
    /// `instance` of sks-ccm.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        cluster: Uuid,
        instance: &str,
        registry: &Registry,
    ) -> anyhow::Result<Context> {
        let client_metrics = orchestrator::ClientMetrics::register(registry)?;
        let metrics = Metrics::register(registry)?;
        let config = orchestrator::ClientConfig::from_env();
        let zone = config.zone.clone().unwrap_or_else(|| DEFAULT_ZONE.to_owned());
        let orchestrator = connect_orchestrator(config, client_metrics).await?;
        let client = kube_client(kubeconfig).await?;
        let cloud = Arc::new(Cloud::new(orchestrator, cluster, zone));
        let events = Arc::new(Publisher::new(client.clone(), "sks-ccm", instance));
        Ok(Context { client, cloud, events, metrics })
    }
}

/// An unreachable orchestrator at start is an outage like any other: keep
/// trying, act on nothing. Bad credentials or configuration are fatal.
async fn connect_orchestrator(
    config: orchestrator::ClientConfig,
    metrics: orchestrator::ClientMetrics,
) -> anyhow::Result<orchestrator::Client> {
    loop {
        let attempt = async {
            let credentials = orchestrator::CredentialSource::from_env()?;
            orchestrator::Client::connect(config.clone(), credentials, Some(metrics.clone())).await
        };
        match attempt.await {
            Ok(c) => return Ok(c),
            Err(e @ (orchestrator::Error::Credentials(_) | orchestrator::Error::Config(_))) => {
                return Err(anyhow::Error::new(e).context("connecting to the orchestrator"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the orchestrator is unreachable; retrying");
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        }
    }
}

async fn kube_client(path: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).with_context(|| format!("reading {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
