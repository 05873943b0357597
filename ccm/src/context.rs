//! What every controller shares: the Kubernetes client, the cloud cache, the
//! event publisher and the metrics, built once per process and kept across
//! leadership changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use uuid::Uuid;

use crate::cloud::Cloud;
use crate::metrics::Metrics;
use sks_kubeclient::events::Publisher;

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
    /// API (`kubeconfig`, else in-cluster or `$KUBECONFIG`; every request
    /// counted in `kube_client_requests_total`); events report as `instance`
    /// of sks-ccm.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        cluster: Uuid,
        instance: &str,
        registry: &Registry,
    ) -> anyhow::Result<Context> {
        let client_metrics = orchestrator::ClientMetrics::register(registry)?;
        let kube_metrics = sks_kubeclient::ClientMetrics::register(registry)?;
        let metrics = Metrics::register(registry)?;
        let config = orchestrator::ClientConfig::from_env();
        let zone = config.zone.clone().unwrap_or_else(|| DEFAULT_ZONE.to_owned());
        let orchestrator = connect_orchestrator(config, client_metrics).await?;
        let client = sks_kubeclient::connect(kubeconfig, Some(kube_metrics)).await?;
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
