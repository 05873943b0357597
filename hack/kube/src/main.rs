//! `kube-standin`: a small in-memory Kubernetes API for tests and local runs.

mod aggregator;
mod audit;
mod conditions;
mod controllers;
mod defaults;
mod events;
mod hooks;
mod kinds;
mod pki;
mod pods;
mod policy;
mod printers;
mod protobuf;
mod real;
mod reviews;
mod scale;
mod scheduler;
mod selector;
mod strategies;
mod tokens;
mod validation;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use sks_rest::authn::{Authenticator, AuthnConfig, TokenReviewer};
use sks_rest::authz::{AccessReviewer, Authorizer};
use sks_rest::cache::{ObjectCache, Sequence};
use sks_rest::handler::{ApiServer, ServerConfig};
use sks_rest::metrics::ServerMetrics;
use sks_rest::storage::{Context, Storage};
use sks_rest::tls::{ClientTrust, ServingCertFiles, server_config};
use uuid::Uuid;

use sks_rest::memory::{Hooks, MemStorage, NoHooks};
use sks_rest::write;

use crate::strategies::KindStrategy;

/// A small in-memory Kubernetes API for tests and local runs.
///
/// This is a STAND-IN, not kube-apiserver: it keeps everything in memory and
/// serves core/v1 namespaces, nodes, pods (status, binding, eviction),
/// services, endpoints, events, configmaps, secrets and serviceaccounts,
/// events.k8s.io/v1 events (the same objects as core/v1's, as in
/// kube-apiserver), apps/v1 deployments and replicasets (status, scale) and
/// daemonsets, policy/v1 poddisruptionbudgets, CSRs (with approval and
/// kubelet-serving signing), leases, APIServices (with aggregation),
/// TokenReviews and SubjectAccessReviews. It behaves like kube-apiserver for
/// what it serves: one global resourceVersion sequence, 409 on stale writes,
/// watch with bookmarks and 410 after compaction, finalizers, graceful pod
/// deletion, propagation policies, merge and JSON patches, its defaults and
/// validation (422 Invalid with its messages) for the fields the project
/// writes, and PodDisruptionBudgets on evictions. Inside it run the subsets of
/// kube-controller-manager (Deployments, ReplicaSets, DaemonSets, disruption
/// budgets, garbage collection, pod GC, node heartbeats, CSR signing) and of
/// kube-scheduler (its filters, least-allocated placement, its
/// FailedScheduling messages) that workloads need, with the simplifications
/// README.md lists (Recreate-like rollouts, no preemption, ties to the first
/// node by name); no kubelet: nodes and pods run as sks-zone's simulated
/// kubelets report them. No admission plugins but
/// the defaults of Priority, DefaultTolerationSeconds and ServiceAccount's
/// account name; no RBAC objects (a policy file stands in for RBAC). Use real
/// etcd, kube-apiserver, kube-controller-manager and kube-scheduler binaries
/// whenever you can: with --kube-assets DIR (or KUBE_ASSETS) it runs them
/// instead of serving, with the same certificates, tokens and policy.
#[derive(Debug, Parser)]
#[command(name = "kube-standin", version)]
struct Args {
    /// Address to serve HTTPS on (port 0 picks a free port; the address is printed first).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory the CAs, certificates, keys and an admin kubeconfig are written to.
    #[arg(long)]
    cert_dir: PathBuf,
    /// Use this SKS cluster's CAs from the zone (EXOSCALE_API_ENDPOINT, EXOSCALE_API_ZONE and
    /// credentials as for any orchestrator client), so the zone's kubeconfigs work here.
    #[arg(long, env = "SKS_CLUSTER_ID")]
    zone_cluster_id: Option<Uuid>,
    /// Static bearer tokens, kube-apiserver's format: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Authorization policy (YAML): who may do which verbs on which resources (see README).
    #[arg(long)]
    policy_file: Option<PathBuf>,
    /// A Node whose Lease is not renewed for this long becomes Ready=Unknown (seconds).
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period_seconds: u64,
    /// Watch events kept per kind; older resourceVersions get 410 Expired (the compaction window).
    #[arg(long, default_value_t = 10_000)]
    watch_history: usize,
    /// Also issue a serving certificate for an aggregated API server: NAME=DNS[,DNS...]
    /// writes NAME.crt and NAME.key to the certificate directory, signed by the cluster CA (ca.crt).
    #[arg(long = "issue-serving-cert")]
    issue_serving_certs: Vec<String>,
    /// Append one JSON line per authorized request of a user outside system:masters to this
    /// file (user, groups, verb, apiGroup, resource, subresource, namespace, name, path, allowed);
    /// decisions are then not cached, so every request is logged.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Write the certificates, keys and admin kubeconfig (for a server at --listen) and exit
    /// without serving: real etcd + kube-apiserver then run with the same CAs (hack/local-up with KUBE_ASSETS).
    #[arg(long)]
    certs_only: bool,
    /// Run the real control plane from this directory instead of serving the stand-in:
    /// etcd and kube-apiserver (required), kube-controller-manager and kube-scheduler
    /// (when present), on loopback with these certificates, tokens and policy (as RBAC).
    /// `--listen`'s port is kube-apiserver's (0: a free one).
    #[arg(long, env = "KUBE_ASSETS")]
    kube_assets: Option<PathBuf>,
    /// Ended pods kept before the oldest are deleted (kube-controller-manager's flag of the same name).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    sks_process::run(None, run(args))?
}

fn system() -> Context {
    Context {
        user: sks_rest::authn::UserInfo {
            name: "system:apiserver".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
        namespace: None,
        dry_run: false,
    }
}

/// Creates `obj` in `storage` through the write pipeline, as the stand-in's own clients do.
async fn create(storage: &MemStorage, ctx: &Context, obj: serde_json::Value) -> anyhow::Result<()> {
    write::create(storage.def(), storage, ctx, obj).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    orchestrator::install_crypto_provider();
    let pki = pki::Pki::load(args.zone_cluster_id).await?;
    let write_certs = |url: &str| -> anyhow::Result<()> {
        pki.write(&args.cert_dir, url)?;
        for spec in &args.issue_serving_certs {
            let (name, dns) = spec.split_once('=').context("--issue-serving-cert: expected NAME=DNS[,DNS...]")?;
            let dns: Vec<String> = dns.split(',').map(str::to_owned).collect();
            let year = Duration::from_secs(365 * 86400);
            let cert = pki.control_plane.issue_serving(&dns, &["127.0.0.1".parse()?], year)?;
            std::fs::write(args.cert_dir.join(format!("{name}.crt")), &cert.cert_pem)?;
            std::fs::write(args.cert_dir.join(format!("{name}.key")), &cert.key_pem)?;
        }
        Ok(())
    };
    if args.certs_only {
        write_certs(&format!("https://{}", args.listen))?;
        println!("certificates written to {}", args.cert_dir.display());
        return Ok(());
    }
    if let Some(assets) = &args.kube_assets {
        let port = match args.listen.port() {
            0 => real::free_port()?,
            p => p,
        };
        let url = format!("https://127.0.0.1:{port}");
        write_certs(&url)?;
        if let Some(tokens) = &args.token_auth_file {
            std::fs::copy(tokens, args.cert_dir.join("tokens.csv")).context("--token-auth-file")?;
        }
        let layout = real::Layout {
            data_dir: args.cert_dir.join("etcd"),
            log_dir: args.cert_dir.join("logs"),
            port,
            etcd_ports: (real::free_port()?, real::free_port()?),
            node_grace: Duration::from_secs(args.node_monitor_grace_period_seconds),
            cert_dir: args.cert_dir.clone(),
        };
        let policy = match &args.policy_file {
            Some(p) => policy::Policy::load(p).with_context(|| format!("reading {}", p.display()))?,
            None => policy::Policy::default(),
        };
        return real::run(assets, &layout, &policy, || {
            // The same two lines the stand-in prints, so whoever started it reads either.
            println!("kube-apiserver listening on {url} (real binaries from {})", assets.display());
            println!("admin kubeconfig: {}", args.cert_dir.join("admin.kubeconfig").display());
            use std::io::Write as _;
            std::io::stdout().flush()?;
            Ok(())
        })
        .await;
    }
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let url = format!("https://{}", listener.local_addr()?);
    write_certs(&url)?;

    let tokens = Arc::new(match &args.token_auth_file {
        Some(p) => tokens::StaticTokens::parse(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => tokens::StaticTokens::default(),
    });
    let policy = Arc::new(match &args.policy_file {
        Some(p) => policy::Policy::load(p).with_context(|| format!("reading {}", p.display()))?,
        None => policy::Policy::default(),
    });

    let sequence = Sequence::default();
    let epoch = ObjectCache::random_epoch();
    let cache = || Arc::new(ObjectCache::with_sequence(epoch, args.watch_history, sequence.clone()));
    let ns_cache = cache();
    let mut by_name = std::collections::HashMap::new();
    let mut order = Vec::new();
    // core/v1 Events are stored; events.k8s.io/v1 shows them (kinds::stored() lists core/v1 first).
    let event_view = Arc::new(events::Mirror::new(epoch, args.watch_history, &sequence));
    let mut event_v1_def = None;
    for (def, opts) in kinds::stored() {
        if def.group == "events.k8s.io" {
            event_v1_def = Some(def);
            order.push("events.k8s.io/events".to_owned());
            continue;
        }
        let hooks: Arc<dyn Hooks> = match (def.group, def.plural) {
            ("", "services") => Arc::new(hooks::ServiceHooks),
            ("", "events") => Arc::new(events::EventHooks { mirror: event_view.clone() }),
            ("certificates.k8s.io", _) => Arc::new(hooks::CsrHooks { kubelet_ca: pki.kubelet.clone() }),
            _ => Arc::new(NoHooks),
        };
        let key = format!("{}/{}", def.group, def.plural);
        let c = if key == "/namespaces" { ns_cache.clone() } else { cache() };
        let namespaces = def.namespaced.then(|| ns_cache.clone());
        let strategy = Arc::new(KindStrategy::new(def.group, def.plural, def.kind, opts));
        let storage = Arc::new(MemStorage::new(def, strategy, c, hooks, namespaces));
        order.push(key.clone());
        by_name.insert(key, storage);
    }
    let get = |k: &str| by_name.get(k).cloned().expect("kind is served");
    // What clients reach: the stores, with the kinds whose subresources do more than store.
    let mut storages: Vec<Arc<dyn Storage>> = Vec::new();
    for key in &order {
        storages.push(match key.as_str() {
            "events.k8s.io/events" => {
                let def = event_v1_def.clone().context("events.k8s.io/v1 is served")?;
                Arc::new(events::EventsV1::new(def, get("/events"), event_view.clone()))
            }
            "/pods" => Arc::new(pods::Pods::new(get("/pods"), get("policy/poddisruptionbudgets"))),
            "apps/deployments" | "apps/replicasets" => Arc::new(scale::Scaled::new(get(key))),
            _ => get(key),
        });
    }
    for def in kinds::reviews() {
        storages.push(Arc::new(reviews::Reviews::new(def, tokens.clone(), policy.clone())));
    }

    // What a fresh cluster has.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}});
        create(&get("/namespaces"), &system(), namespace).await?;
    }
    let list = |v: &[&str]| serde_json::to_string(v).expect("json");
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": pki.control_plane.cert_pem,
            "requestheader-client-ca-file": pki.aggregation.cert_pem,
            "requestheader-allowed-names": list(&["front-proxy-client"]),
            "requestheader-username-headers": list(&["X-Remote-User"]),
            "requestheader-group-headers": list(&["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": list(&["X-Remote-Extra-"]),
            "requestheader-uid-headers": list(&["X-Remote-Uid"]),
        }
    });
    let ctx = Context { namespace: Some("kube-system".into()), ..system() };
    create(&get("/configmaps"), &ctx, cm).await?;

    let trust = ClientTrust::default();
    let authn = Arc::new(Authenticator::new(
        AuthnConfig { client_ca_pem: Some(pki.control_plane.cert_pem.clone()), request_header: None },
        trust.clone(),
        Some(tokens.clone() as Arc<dyn TokenReviewer>),
        Duration::from_secs(10),
    )?);
    let (reviewer, ttl): (Arc<dyn AccessReviewer>, Duration) = match &args.audit_log {
        Some(path) => {
            let audited = audit::Audited::open(policy.clone(), path)
                .with_context(|| format!("opening the audit log {}", path.display()))?;
            (Arc::new(audited), Duration::ZERO)
        }
        None => (policy.clone(), Duration::from_secs(1)),
    };
    let authz = Arc::new(Authorizer::new(Some(reviewer), ttl, ttl));
    let identity = format!("{}{}", pki.front_proxy.cert_pem, pki.front_proxy.key_pem);
    let aggregator = Arc::new(aggregator::Aggregator::new(
        get("apiregistration.k8s.io/apiservices").cache().clone(),
        get("/services").cache().clone(),
        get("/endpoints").cache().clone(),
        identity,
    ));
    let config = ServerConfig {
        title: "kube-standin".into(),
        bookmark_interval: Duration::from_secs(10),
        version: json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "platform": "linux/amd64"}),
        ..ServerConfig::default()
    };
    let api = Arc::new(
        ApiServer::new(
            storages,
            authn,
            authz,
            ServerMetrics::new(prometheus::Registry::new())?,
            config,
            kinds::subresource_schemas(),
        )
        .with_extension(Arc::new(protobuf::Chain(vec![Arc::new(protobuf::ProtobufApprovals), aggregator.clone()]))),
    );

    tokio::spawn(controllers::node_heartbeats(
        get("/nodes"),
        get("coordination.k8s.io/leases").cache().clone(),
        Duration::from_secs(args.node_monitor_grace_period_seconds),
    ));
    let cluster = workloads::Cluster {
        pods: get("/pods"),
        nodes: get("/nodes"),
        deployments: get("apps/deployments"),
        replicasets: get("apps/replicasets"),
        daemonsets: get("apps/daemonsets"),
        budgets: get("policy/poddisruptionbudgets"),
        all: order.iter().filter_map(|k| by_name.get(k).cloned()).collect(),
    };
    tokio::spawn(workloads::deployment::run(cluster.clone()));
    tokio::spawn(workloads::replicaset::run(cluster.clone()));
    tokio::spawn(workloads::daemonset::run(cluster.clone()));
    tokio::spawn(workloads::disruption::run(cluster.clone()));
    tokio::spawn(workloads::garbage::run(cluster.clone()));
    tokio::spawn(workloads::podgc::run(cluster.clone(), args.terminated_pod_gc_threshold));
    tokio::spawn(scheduler::run(scheduler::Stores {
        pods: get("/pods"),
        nodes: get("/nodes"),
        events: get("/events"),
    }));
    tokio::spawn(controllers::apiservice_availability(
        get("apiregistration.k8s.io/apiservices"),
        aggregator,
        Duration::from_secs(2),
    ));

    let tls = server_config(
        ServingCertFiles { cert: args.cert_dir.join("serving.crt"), key: args.cert_dir.join("serving.key") },
        trust,
    )?;
    println!("kube-standin listening on {url}");
    println!("admin kubeconfig: {}", args.cert_dir.join("admin.kubeconfig").display());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    sks_rest::server::serve(listener, tls, api, sks_process::shutdown_signal()).await?;
    Ok(())
}
