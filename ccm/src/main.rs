//! `sks-ccm`: the cloud controller manager of SKS clusters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sks_ccm::cloud::Cloud;
use sks_ccm::controllers::{Ctx, Metrics, run_csrs, run_nodes};
use sks_ccm::events::Publisher;
use sks_lease as leader;
use uuid::Uuid;

/// The controllers this binary runs.
const CONTROLLERS: &[&str] = &["cloud-node", "cloud-node-lifecycle", "node-csr-approval", "service"];

/// Cloud controller manager for SKS clusters: initializes Nodes from their
/// instances, approves kubelet serving certificates it can tie to an instance,
/// follows instances' lifecycle, and serves LoadBalancer Services (no
/// `loadBalancerClass`, or `exoscale.net/nlb`) with Network Load Balancers.
///
/// Orchestrator access comes from the Exoscale CCM's variables:
/// EXOSCALE_API_ENDPOINT, EXOSCALE_API_ZONE (or EXOSCALE_ZONE), and
/// EXOSCALE_API_KEY/EXOSCALE_API_SECRET or EXOSCALE_API_CREDENTIALS_FILE
/// (a JSON file or a mounted Secret directory, re-read when it changes).
#[derive(Debug, Parser)]
#[command(name = "sks-ccm", version)]
struct Args {
    /// Kubeconfig of the cluster (default: in-cluster or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// ID of the SKS cluster whose nodes are managed.
    #[arg(long, env = "SKS_CLUSTER_ID")]
    cluster_id: Uuid,
    /// Controllers to run: `*` for all, `-name` to disable one (cloud-node, cloud-node-lifecycle,
    /// node-csr-approval, service). `*,-service` turns load balancing off.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Elect a leader through a Lease; only the leader acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Lease duration.
    #[arg(long, default_value = "15")]
    leader_elect_lease_duration_seconds: u64,
    /// How long the leader tries to renew before it stops acting.
    #[arg(long, default_value = "10")]
    leader_elect_renew_deadline_seconds: u64,
    /// Interval between election attempts.
    #[arg(long, default_value = "2")]
    leader_elect_retry_period_seconds: u64,
    /// Lease namespace and name.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Lease name.
    #[arg(long, default_value = "sks-ccm")]
    leader_elect_resource_name: String,
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:10258")]
    bind_address: SocketAddr,
    /// How often initialized Nodes are re-checked against their instance.
    #[arg(long, default_value = "60")]
    node_sync_period_seconds: u64,
    /// Reboot, then replace, instances of Nodes that stay NotReady.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auto_heal: bool,
    /// NotReady this long (with a running instance): reboot it.
    #[arg(long, default_value = "900")]
    auto_heal_reboot_after_seconds: u64,
    /// Still NotReady this long after the reboot: evict it so its nodepool replaces it.
    #[arg(long, default_value = "900")]
    auto_heal_replace_after_seconds: u64,
    /// Largest share of the cluster's nodes healed at once (at least one node).
    #[arg(long, default_value = "0.1")]
    auto_heal_max_share: f64,
    /// How often every NLB is compared with its Service (one list call per period).
    #[arg(long, default_value = "300")]
    lb_drift_period_seconds: u64,
    /// Without health-check annotations and with `externalTrafficPolicy: Cluster`, probe
    /// kube-proxy's `:10256/healthz` (HTTP) instead of the nodePort (TCP).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    lb_kube_proxy_healthcheck: bool,
    /// Concurrent Service reconciles. A reconcile waiting on an orchestrator
    /// operation (seconds each, two in a row for a new NLB) holds no thread, so
    /// a burst of a few hundred Services waits on its operations together.
    #[arg(long, default_value = "256")]
    concurrent_service_syncs: u16,
    /// Concurrent reconciles per controller.
    #[arg(long, default_value = "8")]
    workers: u16,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn enabled(list: &[String], name: &str) -> bool {
    if list.iter().any(|c| c == &format!("-{name}")) {
        return false;
    }
    list.iter().any(|c| c == "*" || c == name)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    for c in &args.controllers {
        let name = c.trim_start_matches('-');
        anyhow::ensure!(
            name == "*" || CONTROLLERS.contains(&name),
            "--controllers: unknown controller {name:?} (known: {CONTROLLERS:?})"
        );
    }
    sks_process::run(None, run(args))?
}

async fn kube_client(path: &Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).with_context(|| format!("reading {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(args: Args) -> anyhow::Result<()> {
    orchestrator::install_crypto_provider();
    let registry = prometheus::Registry::new();
    let client_metrics = orchestrator::ClientMetrics::register(&registry)?;
    let metrics = Metrics::register(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.bind_address)
        .await
        .with_context(|| format!("binding {}", args.bind_address))?;
    println!("sks-ccm serving health and metrics on http://{}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tokio::spawn(sks_ccm::serve::serve(listener, registry, ready.clone()));

    // An unreachable orchestrator at start is an outage like any other: keep trying, act on nothing.
    let config = orchestrator::ClientConfig::from_env();
    let zone = config.zone.clone().unwrap_or_else(|| "ch-gva-2".to_owned());
    let orchestrator_client = loop {
        let attempt = async {
            orchestrator::Client::connect(
                config.clone(),
                orchestrator::CredentialSource::from_env()?,
                Some(client_metrics.clone()),
            )
            .await
        };
        match attempt.await {
            Ok(c) => break c,
            Err(e @ (orchestrator::Error::Credentials(_) | orchestrator::Error::Config(_))) => {
                return Err(anyhow::Error::new(e).context("connecting to the orchestrator"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the orchestrator is unreachable; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let client = kube_client(&args.kubeconfig).await?;
    let cloud = Arc::new(Cloud::new(orchestrator_client, args.cluster_id, zone));
    let identity = leader::default_identity("sks-ccm");
    let events = Arc::new(Publisher::new(client.clone(), "sks-ccm", &identity));
    let sync = Duration::from_secs(args.node_sync_period_seconds);
    let heal = sks_ccm::heal::Config {
        enabled: args.auto_heal,
        reboot_after: Duration::from_secs(args.auto_heal_reboot_after_seconds),
        replace_after: Duration::from_secs(args.auto_heal_replace_after_seconds),
        max_share: args.auto_heal_max_share,
    };
    let ctx = Arc::new(Ctx::new(client.clone(), cloud.clone(), events, metrics, sync, heal));
    {
        let (cloud, ready) = (cloud.clone(), ready.clone());
        tokio::spawn(async move {
            loop {
                match cloud.ensure_fresh(sync).await {
                    Ok(()) => ready.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!(error = %e, "refreshing the cloud cache failed"),
                }
                tokio::time::sleep(sync.min(Duration::from_secs(30))).await;
            }
        });
    }

    // Without an election this replica always leads; the sender lives as long as the loop.
    let (_always, mut leading) = tokio::sync::watch::channel(!args.leader_elect);
    let mut election = None;
    if args.leader_elect {
        let cfg = leader::Config {
            namespace: args.leader_elect_resource_namespace.clone(),
            name: args.leader_elect_resource_name.clone(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(args.leader_elect_lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.leader_elect_renew_deadline_seconds),
            retry_period: Duration::from_secs(args.leader_elect_retry_period_seconds),
        };
        cfg.check().map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
        let e = leader::Election::start(client.clone(), cfg);
        leading = e.leading();
        election = Some(e);
    }
    let shutdown = sks_process::shutdown_signal();
    tokio::pin!(shutdown);
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let lead = *leading.borrow_and_update();
        if lead && running.is_empty() {
            if enabled(&args.controllers, "cloud-node") || enabled(&args.controllers, "cloud-node-lifecycle") {
                running.push(tokio::spawn(run_nodes(ctx.clone(), args.workers)));
            }
            if enabled(&args.controllers, "node-csr-approval") {
                running.push(tokio::spawn(run_csrs(ctx.clone(), args.workers)));
            }
            if enabled(&args.controllers, "service") {
                let config = sks_ccm::lb::controller::Config {
                    drift_period: Duration::from_secs(args.lb_drift_period_seconds.max(1)),
                    options: sks_ccm::lb::desired::Options { kube_proxy_healthcheck: args.lb_kube_proxy_healthcheck },
                    workers: args.concurrent_service_syncs,
                };
                let lb = sks_ccm::lb::controller::run(
                    client.clone(),
                    cloud.clone(),
                    ctx.events.clone(),
                    ctx.metrics.clone(),
                    config,
                );
                running.push(tokio::spawn(lb));
            }
            tracing::info!(controllers = running.len(), "controllers started");
        } else if !lead && !running.is_empty() {
            // Losing the lease stops every action at once.
            for task in running.drain(..) {
                task.abort();
            }
            tracing::warn!("controllers stopped: not the leader");
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = &mut shutdown => break,
        }
    }
    for task in running {
        task.abort();
    }
    if let Some(e) = election {
        e.resign().await;
    }
    tracing::info!("stopped");
    Ok(())
}
