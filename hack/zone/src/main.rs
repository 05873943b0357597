//! `sks-zone`: the local zone. An orchestrator API server (the Exoscale API v2
//! subset of orchestrator-api.md) with its state on disk, for tests and local
//! runs. It is a stand-in for a real zone, not part of the product.

mod account;
mod admin;
mod app;
mod auth;
mod catalog;
mod control_plane;
mod dataplane;
mod faults;
mod handlers;
mod http;
mod ipam;
mod journal;
mod kubelets;
mod lifecycle;
mod seed;
mod serve;
mod store;
mod upgrades;
mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use crate::app::{App, Config};

/// The local zone: an orchestrator API (Exoscale API v2 subset) with state on disk.
///
/// Every request but `GET /v2/zone` must carry an EXO2-HMAC-SHA256 signature.
/// Dev credentials are created in the state directory at first start.
#[derive(Debug, Parser)]
#[command(name = "sks-zone", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "SKS_ZONE_LISTEN", default_value = "127.0.0.1:8480")]
    listen: SocketAddr,

    /// Directory holding the state database and the dev credentials.
    #[arg(long, env = "SKS_ZONE_STATE_DIR", default_value = ".local/zone")]
    state_dir: PathBuf,

    /// Zone served (repeatable); the first also answers on the bare `/v2` prefix.
    #[arg(long = "zone", env = "SKS_ZONE_NAMES", value_delimiter = ',', default_value = "ch-gva-2")]
    zones: Vec<String>,

    /// How long every operation stays `pending`, in milliseconds (0: operations return `success` at once).
    #[arg(long, default_value_t = 0)]
    operation_delay_ms: u64,

    /// How long new instances stay `starting` before `running`, in milliseconds.
    #[arg(long, default_value_t = 200)]
    instance_boot_delay_ms: u64,

    /// How long an SKS upgrade takes to replace one control-plane component, in milliseconds (0: an upgrade
    /// completes at once). The upgrade's operation stays `pending` until every component runs the target.
    #[arg(long, default_value_t = 1000)]
    component_upgrade_ms: u64,

    /// Base URL clients use to reach this zone (default: http://<listen address>).
    #[arg(long)]
    public_url: Option<String>,

    /// API server URL reported as every cluster's endpoint (and used in kubeconfigs).
    #[arg(long)]
    cluster_endpoint: Option<String>,

    /// Create an SKS cluster and a nodepool at start unless a cluster of that name exists.
    #[arg(long)]
    seed: bool,

    /// Name of the seeded cluster.
    #[arg(long, default_value = "demo")]
    seed_cluster: String,

    /// Name of the seeded nodepool.
    #[arg(long, default_value = "workers")]
    seed_nodepool: String,

    /// Size of the seeded nodepool.
    #[arg(long, default_value_t = 3)]
    seed_size: i64,

    /// Accept this API key (with --api-secret) in addition to the dev credentials.
    #[arg(long, env = "SKS_ZONE_API_KEY", requires = "api_secret")]
    api_key: Option<String>,

    /// Secret of --api-key.
    #[arg(long, env = "SKS_ZONE_API_SECRET", hide_env_values = true, requires = "api_key")]
    api_secret: Option<String>,

    /// Kubeconfig of the cluster's Kubernetes API: when set, every running instance of the cluster's nodepools
    /// runs a simulated kubelet against it (Node with the instance type's capacity and the autoscaler's
    /// allocatable, Lease, serving CSR, and the pods bound to the node, reported Running at once and deleted once
    /// terminating), authenticated as `system:node:<name>` with a client certificate from the cluster's
    /// control-plane CA. Only the server URL and CA are taken from this file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// The SKS cluster whose nodes get simulated kubelets (default: the --seed-cluster one, else the oldest).
    #[arg(long, requires = "kubeconfig")]
    kubelet_cluster: Option<uuid::Uuid>,

    /// How often each simulated kubelet renews its Lease and checks its Node status, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    kubelet_lease_interval_seconds: u64,

    /// Also simulate kube-proxy on those nodes: the nodePorts of NodePort and LoadBalancer Services answer HTTP,
    /// and so do `:10256/healthz` and each `healthCheckNodePort`, so NLB traffic reaches something. Uses the
    /// kubeconfig's own credentials to list Services.
    #[arg(long, requires = "kubeconfig")]
    kube_proxy: bool,

    /// Run the NLB data plane: every running NLB listens on its address and forwards to the healthy running
    /// members of each service's instance pool (`--nlb-dataplane=false`: NLBs are only stored).
    #[arg(long, env = "SKS_ZONE_NLB_DATAPLANE", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    nlb_dataplane: bool,

    /// How long one second of an NLB healthcheck's interval and timeout lasts, in milliseconds. The API allows
    /// no interval under 5 s; tests shorten the second instead.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    nlb_healthcheck_second_ms: u64,

    /// Faults injected into orchestrator API answers from the start, as JSON: `{"rules": [...]}` or one rule, the
    /// body of `PUT /admin/faults` (README: sks-zone). Not kept across restarts.
    #[arg(long, env = "SKS_ZONE_FAULTS", conflicts_with = "faults_file")]
    faults: Option<String>,

    /// As --faults, read from this file.
    #[arg(long)]
    faults_file: Option<PathBuf>,

    /// Largest request body accepted, in bytes; a larger one is answered 413.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    max_body_bytes: u64,

    /// How long a client may take to send a request's headers, in milliseconds, counted from the connection's
    /// start or the end of the previous answer: slow clients and idle keep-alive connections are closed after it.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,

    /// Refuse (403) a signed write (any method but GET and HEAD) whose signature was already accepted: a
    /// replay. `--reject-replays=false` accepts them, for clients that re-send a signed write unchanged.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    reject_replays: bool,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    sks_process::run(Some(2), run(args))?
}

/// Dev credentials in the orchestrator crate's credentials-file format, so
/// `EXOSCALE_API_CREDENTIALS_FILE` can point straight at them.
fn dev_credentials(state_dir: &Path) -> anyhow::Result<(PathBuf, String, String, bool)> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct File {
        api_key: String,
        api_secret: String,
    }
    let path = state_dir.join("credentials.json");
    if let Ok(bytes) = std::fs::read(&path) {
        let f: File = serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
        return Ok((path, f.api_key, f.api_secret, false));
    }
    let key = format!("EXO{}", uuid::Uuid::new_v4().simple());
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rand::random::<[u8; 32]>());
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&File { api_key: key.clone(), api_secret: secret.clone() })?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok((path, key, secret, true))
}

async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    let (cred_path, key, secret, created) = dev_credentials(&args.state_dir)?;
    let mut keys = BTreeMap::from([(key.clone(), secret)]);
    if let (Some(k), Some(s)) = (&args.api_key, &args.api_secret) {
        keys.insert(k.clone(), s.clone());
    }
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let config = Config {
        zones: args.zones.clone(),
        public_url: public_url.clone(),
        operation_delay: Duration::from_millis(args.operation_delay_ms),
        boot_delay: Duration::from_millis(args.instance_boot_delay_ms),
        component_upgrade: Duration::from_millis(args.component_upgrade_ms),
        cluster_endpoint: args.cluster_endpoint.clone(),
        nlb_dataplane: args.nlb_dataplane,
    };
    let store = store::Store::open(&args.state_dir.join("zone.redb"))?;
    let app = Arc::new(App::new(config, store, keys)?);
    app.replays.set_enabled(args.reject_replays);
    if let Some(faults) = faults::from_flags(args.faults.as_deref(), args.faults_file.as_deref())? {
        app.set_faults(faults);
    }
    if args.seed {
        seed::ensure(&app, &args.seed_cluster, &args.seed_nodepool, args.seed_size)?;
        // Scripts (hack/local-up) read the seeded cluster's id from here.
        let zone = &args.zones[0];
        let id = app.read(|w| {
            w.zone(zone)
                .clusters
                .values()
                .find(|c| c.cluster.spec.name.as_deref() == Some(args.seed_cluster.as_str()))
                .map(|c| c.cluster.id)
        });
        if let Some(id) = id {
            std::fs::write(
                args.state_dir.join("seed.json"),
                serde_json::json!({"cluster-id": id, "zone": zone}).to_string(),
            )?;
        }
    }
    tokio::spawn(tick_loop(app.clone()));
    if args.nlb_dataplane {
        let options = dataplane::Options { healthcheck_second: Duration::from_millis(args.nlb_healthcheck_second_ms) };
        dataplane::spawn(app.clone(), options).context("starting the NLB data plane")?;
    }
    if let Some(kubeconfig) = &args.kubeconfig {
        orchestrator::install_crypto_provider();
        let options = kubelets::Options {
            kubeconfig: kubeconfig.clone(),
            cluster: args.kubelet_cluster,
            default_cluster_name: args.seed_cluster.clone(),
            lease_interval: Duration::from_secs(args.kubelet_lease_interval_seconds),
        };
        if args.kube_proxy {
            kubelets::proxy::spawn(app.clone(), options.clone());
        }
        kubelets::spawn(app.clone(), options);
    }

    let zone = &args.zones[0];
    println!("sks-zone listening on {public_url} (zones: {})", args.zones.join(", "));
    println!(
        "{} dev credentials in {} (API key {key}). Use them with:",
        if created { "created" } else { "using" },
        cred_path.display()
    );
    println!(
        "  export EXOSCALE_API_ENDPOINT={public_url}/v2 EXOSCALE_API_ZONE={zone} EXOSCALE_API_CREDENTIALS_FILE={}",
        std::fs::canonicalize(&cred_path).unwrap_or(cred_path.clone()).display()
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let limits = serve::Limits {
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
    };
    serve::serve(listener, http::router(app), limits, sks_process::shutdown_signal()).await?;
    Ok(())
}

/// Completes due operations and boots instances, a few times a second.
async fn tick_loop(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let now = lifecycle::now_ms();
        let due = app.read(|w| {
            w.zones.values().any(|z| {
                z.operations
                    .values()
                    .any(|o| o.op.state == orchestrator::model::OperationState::Pending && o.due_ms <= now)
                    || z.instances.values().any(|i| i.ready_at_ms.is_some_and(|t| t <= now))
            })
        });
        if due {
            let _ = app.write(|tx| Ok(lifecycle::tick(tx, &app.config, now)));
        }
    }
}
