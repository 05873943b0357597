//! sks-apiserver's memory with many Nodes and Pods in the cluster it
//! autoscales. A stack of its own: sks-zone, kube-standin and a fresh
//! sks-apiserver with the autoscaler on (one autoscaled pool, so every round
//! simulates over the whole cluster). The Nodes and Pods are created straight
//! through the Kubernetes API as the admin (no kubelets: Nodes with a Ready
//! status and a standard.large's allocatable, Pods bound to them at creation);
//! sks-apiserver lists and watches them as it would a real cluster's.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use sks_e2e::apiserver::ApiServer;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::zone::{Zone, ZoneOptions};
use sks_keys::label;

use super::system::Sks;
use super::workload::{self, FILL, NAMESPACE, POOLS};
use super::{CONCURRENCY, Params, round1, secs};
use crate::procfs::{CpuMeter, Proc};
use crate::requests::Counts;
use crate::scenario::lbs::kube::Kube;
use crate::stack::NODEPOOLS;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Nodes and Pods created.
    pub nodes: usize,
    /// See `nodes`.
    pub pods: usize,
    /// Time to create them all, s.
    pub fill_s: f64,
    /// sks-apiserver's RSS before the fill (its nodepools and the autoscaler's empty caches), MiB.
    pub rss_before_mib: f64,
    /// Its RSS sampled every second over the steady window: the largest, MiB.
    pub rss_max_mib: f64,
    /// Its RSS at the end, MiB.
    pub rss_end_mib: f64,
    /// Its peak RSS since it started (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// The Kubernetes API's RSS at the end (kube-standin's, not what is measured), MiB.
    pub kube_rss_mib: f64,
    /// sks-apiserver's CPU over the steady window, cores.
    pub steady_cores: f64,
    /// The steady window, s.
    pub steady_s: f64,
    /// Autoscaler rounds over the steady window (`cluster_autoscaler_function_duration_seconds{function="main"}`).
    pub steady_rounds: u64,
    /// What sks-apiserver sent to the Kubernetes API during the fill.
    #[serde(skip)]
    pub fill_sent: Counts,
    /// ...and during the steady window.
    #[serde(skip)]
    pub steady_sent: Counts,
}

/// A Node as the admin creates it: Ready, a standard.large's capacity and allocatable, in nodepool `pool`.
fn node(name: &str, pool: &str) -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            label::NODEPOOL_ID: pool, label::INSTANCE_TYPE: "standard.large"}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3920m", "memory": "6249Mi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        },
    })
}

/// POSTs every body of `bodies` to `path`; the first error, if any.
async fn create_all(kube: &Kube, path: &str, bodies: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    let results: Vec<Option<String>> = futures::stream::iter(bodies)
        .map(|body| async move {
            match kube.send("POST", path, Some(&body)).await {
                Ok((201, _)) => None,
                Ok((status, answer)) => Some(format!("{status}: {answer}")),
                Err(e) => Some(format!("{e:#}")),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    match results.into_iter().flatten().next() {
        Some(e) => bail!("creating in {path}: {e}"),
        None => Ok(()),
    }
}

/// Rounds of the autoscaler's loop so far.
fn rounds(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("cluster_autoscaler_function_duration_seconds_count{function=\"main\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Runs the measurement with `p.cached_nodes` Nodes and `p.cached_pods` Pods.
pub async fn run(p: &Params) -> anyhow::Result<Memory> {
    eprintln!("memory: starting sks-zone, kube-standin and a fresh sks-apiserver");
    let zone = Zone::start(ZoneOptions { seed: true, extra: vec!["--seed-size=1".into()], ..Default::default() });
    let cluster = zone.client().await.list_sks_clusters().await?.first().context("the seeded cluster")?.id;
    // Nodes created by hand renew no Lease: keep them Ready for the whole run.
    let kube_api = KubeApi::start(KubeOptions { node_grace_seconds: Some(86_400), ..Default::default() }).await;
    let kubeconfig = kube_api.kubeconfig.display().to_string();
    let mut args = vec!["--kubeconfig", kubeconfig.as_str()];
    args.extend(p.apiserver_args.iter().map(String::as_str));
    let server = ApiServer::start(&zone, &cluster.to_string(), &args);
    let sks_proc = Proc::find_child("sks-apiserver", &server.dir().display().to_string())?;
    let kube_proc = Proc::find_child(kube_api.process_name(), &kube_api.cert_dir.display().to_string())?;
    let sks = Sks::of(&server)?;
    sks.wait_ready(Duration::from_secs(60)).await?;
    let kube = Kube::new(&kube_api.url, &kube_api.cert_dir)?;
    // One autoscaled pool (at 0 nodes), so the autoscaler's rounds look at the whole cluster.
    sks.create_pool(&workload::nodepool(&POOLS[1], 1, 0, 10, true)).await?;
    sks.scale(POOLS[1].name, 0).await?;
    let (_, list) = sks.send("GET", &format!("{NODEPOOLS}/workers"), None).await?;
    let workers = list["metadata"]["uid"].as_str().context("the seeded nodepool's uid")?.to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before_mib = sks_proc.memory()?.rss_mib;

    let before = Counts::sent(&sks.metrics().await?);
    eprintln!("memory: creating {} Nodes and {} Pods", p.cached_nodes, p.cached_pods);
    let started = Instant::now();
    let names: Vec<String> = (0..p.cached_nodes).map(|i| format!("bench-node-{i:05}")).collect();
    create_all(&kube, "/api/v1/nodes", names.iter().map(|n| node(n, &workers))).await?;
    let pods = (0..p.cached_pods).map(|i| {
        let on = &names[i % names.len().max(1)];
        workload::bound_pod(&format!("fill-{i:06}"), "memory", &FILL, on)
    });
    create_all(&kube, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), pods).await?;
    let fill_s = secs(started.elapsed());
    let filled = Counts::sent(&sks.metrics().await?);

    eprintln!("memory: sampling sks-apiserver's RSS for {} s", p.steady_s);
    let meter = CpuMeter::start(&[sks_proc]);
    let rounds_before = rounds(&sks.metrics().await?);
    let steady = Instant::now();
    let mut rss_max_mib: f64 = 0.0;
    while steady.elapsed() < Duration::from_secs(p.steady_s) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max_mib = rss_max_mib.max(sks_proc.memory()?.rss_mib);
    }
    let metrics = sks.metrics().await?;
    let end = sks_proc.memory()?;
    Ok(Memory {
        nodes: p.cached_nodes,
        pods: p.cached_pods,
        fill_s,
        rss_before_mib,
        rss_max_mib: rss_max_mib.max(end.rss_mib),
        rss_end_mib: end.rss_mib,
        peak_rss_mib: end.peak_rss_mib,
        kube_rss_mib: kube_proc.memory()?.rss_mib,
        steady_cores: meter.cores()[0],
        steady_s: round1(steady.elapsed().as_secs_f64()),
        steady_rounds: rounds(&metrics).saturating_sub(rounds_before),
        fill_sent: filled.since(&before),
        steady_sent: Counts::sent(&metrics).since(&filled),
    })
}
