//! `nodes`: sks-ccm under a burst of joining Nodes and their kubelet-serving
//! CSRs (time until every Node is initialized and every CSR approved,
//! orchestrator calls, memory), then its memory with many Nodes cached.
//!
//! sks-zone (the cloud), kube-standin (the cluster's Kubernetes API, with the
//! zone cluster's CAs) and sks-ccm run on loopback. The burst comes from a
//! new nodepool of N instances, registered either by the bench exactly as the
//! zone's simulated kubelets register (`--via direct`, the default: every
//! request prepared and every connection open beforehand, so all N Nodes and
//! CSRs are sent within a few hundred milliseconds) or by the zone's simulated
//! kubelets themselves (`--via kubelets`, which start one by one and spread
//! the registrations over many seconds).

mod kubelet;
mod observe;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use orchestrator::model::{CreateSksNodepool, InstanceFilter, InstanceType, Ref, SksNodepoolSpec};
use serde::Serialize;
use serde_json::json;
use sks_e2e::ccm::Ccm;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::zone::{Zone, ZoneOptions};
use uuid::Uuid;

use self::kubelet::{ApiAccess, Kubelet, Machine};
use self::observe::{Board, Kind, Seen};
use super::{Common, Target, targets_json, targets_table};
use crate::procfs::{CpuMeter, Memory, Proc};
use crate::report::{Report, Table};
use crate::requests::{self, Counts, request};
use crate::stack::{metric_total, parse_orchestrator_calls};
use crate::stats::{Summary, summarize_us};

/// How the burst is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The bench registers every Node and CSR as its kubelet would, all released at once.
    Direct,
    /// sks-zone's simulated kubelets register them (`sks-zone --kubeconfig`).
    Kubelets,
}

/// Options of the `nodes` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Nodes (and serving CSRs) registering at once [default: 1000, quick: 50].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Nodes in the cluster for the memory measurement, the burst's and the seeded
    /// ones included; 0 skips it [default: 5000, quick: 200].
    #[arg(long)]
    pub cached: Option<usize>,
    /// Who registers the Nodes and CSRs.
    #[arg(long, value_enum, default_value_t = Via::Direct)]
    pub via: Via,
    /// Seconds of steady state, once every Node is initialized, over which
    /// sks-ccm's memory is sampled; over 60 s covers one periodic resync of every
    /// Node at sks-ccm's default --node-sync-period-seconds [default: 65, quick: 5].
    #[arg(long, value_name = "SECONDS")]
    pub steady: Option<u64>,
    /// Longest wait for the burst to be done, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// An extra sks-ccm argument (repeatable), e.g. `--ccm-arg=--workers=16`.
    #[arg(long = "ccm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ccm_args: Vec<String>,
    /// sks-ccm's log filter (its stderr is this terminal; `warn` logs every retried reconcile).
    #[arg(long, default_value = "error")]
    pub ccm_log: String,
}

#[derive(Debug, Clone, Serialize)]
struct Params {
    quick: bool,
    nodes: usize,
    cached: usize,
    via: Via,
    steady_s: u64,
    timeout_s: u64,
    ccm_args: Vec<String>,
    registration: &'static str,
}

impl Params {
    fn of(a: &Args) -> Self {
        let c = &a.common;
        Params {
            quick: c.quick,
            nodes: c.pick(a.nodes, 1000, 50),
            cached: c.pick(a.cached, 5000, 200),
            via: a.via,
            steady_s: c.pick(a.steady, 65, 5),
            timeout_s: a.timeout,
            ccm_args: std::iter::once(format!("--log={}", a.ccm_log)).chain(a.ccm_args.iter().cloned()).collect(),
            registration: match a.via {
                Via::Direct => {
                    "each node on its own TLS connection as system:node:<name>: POST Node (uninitialized taint, \
                     full status), then POST its kubelet-serving CSR; all nodes released at once"
                }
                Via::Kubelets => "sks-zone's simulated kubelets (sks-zone --kubeconfig)",
            },
        }
    }
}

/// Registers Nodes in chunks of this many (prepared, then sent together) outside the burst.
const FILL_CHUNK: usize = 500;
/// Connections opened at once while preparing the burst.
const PREPARE_CONCURRENCY: usize = 32;
/// The youngest an instance is when its node registers. A real VM boots for
/// tens of seconds first; sks-ccm treats a cloud snapshot younger than 0.5 s as
/// fresh, so a burst right after the instances were created could be checked
/// against a snapshot taken just before them.
const MIN_INSTANCE_AGE: Duration = Duration::from_secs(1);

/// The running system: zone, Kubernetes API, sks-ccm, and how to reach them.
struct System {
    // Dropped in declaration order: sks-ccm first, the zone last.
    ccm: Ccm,
    _kube: KubeApi,
    zone: Zone,
    cluster: Uuid,
    medium: InstanceType,
    api: ApiAccess,
    /// Admin client without a timeout (watches).
    watch_client: reqwest::Client,
    procs: Procs,
}

#[derive(Clone, Copy)]
struct Procs {
    ccm: Proc,
    kube: Proc,
    zone: Proc,
}

impl System {
    async fn start(p: &Params) -> anyhow::Result<System> {
        eprintln!("starting sks-zone, kube-standin and sks-ccm from {}", sks_e2e::bin_dir().display());
        let mut zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
        let client = zone.client().await;
        let cluster = client.list_sks_clusters().await?.first().context("the seeded cluster")?.id;
        let types = client.list_instance_types().await?;
        let medium = types.into_iter().find(|t| t.name() == "standard.medium").context("standard.medium")?;
        let kube = KubeApi::start(KubeOptions {
            // Nodes registered directly renew no Lease: keep them Ready for the whole run.
            node_grace_seconds: (p.via == Via::Direct).then_some(86_400),
            ..KubeOptions::for_kubelets_of(&zone, cluster)
        })
        .await;
        if p.via == Via::Kubelets {
            zone.attach_kubelets(&kube.kubeconfig);
        }
        let ccm_args: Vec<&str> = p.ccm_args.iter().map(String::as_str).collect();
        let ccm = Ccm::start(&zone, &kube, &cluster.to_string(), &ccm_args);
        let procs = Procs {
            ccm: Proc::find_child("sks-ccm", &kube.kubeconfig.display().to_string())?,
            kube: Proc::find_child(kube.process_name(), &kube.cert_dir.display().to_string())?,
            zone: Proc::find_child("sks-zone", &zone.state_dir().display().to_string())?,
        };
        let api = ApiAccess::new(&kube.url, &kube.cert_dir)?;
        let watch_client = api.client("bench-admin", &["system:masters"], None)?;
        Ok(System { ccm, _kube: kube, zone, cluster, medium, api, watch_client, procs })
    }

    async fn ccm_metrics(&self) -> anyhow::Result<String> {
        let resp = reqwest::get(format!("{}/metrics", self.ccm.url)).await?.error_for_status()?;
        Ok(resp.text().await?)
    }

    /// The Kubernetes API's /metrics (as the admin).
    async fn kube_metrics(&self) -> anyhow::Result<String> {
        let resp = self.watch_client.get(format!("{}/metrics", self.api.url)).send().await?.error_for_status()?;
        Ok(resp.text().await?)
    }

    /// Creates nodepool `name` of `size` instances; returns (the time it took, its instances' machines).
    async fn nodepool(&self, name: &str, size: i64) -> anyhow::Result<(f64, Vec<Machine>)> {
        let client = self.zone.client().await;
        let started = Instant::now();
        let body = CreateSksNodepool {
            spec: SksNodepoolSpec {
                name: Some(name.to_owned()),
                instance_type: Some(Ref { id: self.medium.id }),
                disk_size: Some(20),
                ..Default::default()
            },
            size,
            addons: None,
        };
        let op = client.create_sks_nodepool(self.cluster, &body).await.with_context(|| format!("creating {name}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let id = op.reference_id().context("the nodepool's id")?;
        Ok((seconds, self.machines(id).await?))
    }

    /// The machines of a nodepool's instances.
    async fn machines(&self, nodepool: Uuid) -> anyhow::Result<Vec<Machine>> {
        let client = self.zone.client().await;
        let np = client.get_sks_nodepool(self.cluster, nodepool).await?;
        let cluster = client.get_sks_cluster(self.cluster).await?;
        let version = np.version.clone().unwrap_or(cluster.version);
        let pool = np.instance_pool.context("the nodepool's instance pool")?.id;
        let filter = InstanceFilter { manager_id: Some(pool), ..Default::default() };
        let instances = client.list_instances(&filter).await?;
        Ok(instances.iter().map(|i| Machine::of(i, Some(&self.medium), &version)).collect())
    }

    /// The machines of the seeded nodepool.
    async fn seeded(&self) -> anyhow::Result<Vec<Machine>> {
        let client = self.zone.client().await;
        let cluster = client.get_sks_cluster(self.cluster).await?;
        let np = cluster.nodepools.first().context("the seeded nodepool")?;
        self.machines(np.id).await
    }

    /// Kubelets for `machines`, prepared (keys, certificates, bodies).
    fn kubelets(&self, machines: &[Machine]) -> anyhow::Result<Vec<Arc<Kubelet>>> {
        machines.iter().map(|m| Kubelet::new(&self.api, m).map(Arc::new)).collect()
    }
}

/// Opens every kubelet's connection with the lookup a kubelet makes before registering.
async fn open(kubelets: &[Arc<Kubelet>]) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(kubelets.iter().cloned())
        .map(|k| async move { (k.name.clone(), k.lookup().await) })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .collect()
        .await;
    for (name, r) in results {
        match r {
            Ok(404) => {}
            Ok(status) => bail!("looking up node {name} before registering it answered {status}, not 404"),
            Err(e) => bail!("looking up node {name}: {e:#}"),
        }
    }
    Ok(())
}

/// Registers every kubelet at the same moment: returns when they were released and what each did.
async fn release(kubelets: &[Arc<Kubelet>]) -> (Instant, Vec<kubelet::Registration>) {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = kubelets
        .iter()
        .cloned()
        .map(|k| {
            let mut go = go_rx.clone();
            tokio::spawn(async move {
                let _ = go.wait_for(|g| *g).await;
                k.register().await
            })
        })
        .collect();
    // Let every task park on the barrier first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = Instant::now();
    let _ = go_tx.send(true);
    let mut out = Vec::with_capacity(tasks.len());
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(r) => out.push(r),
            Err(e) => out.push(kubelet::Registration {
                name: String::new(),
                node_sent: released,
                csr_sent: None,
                error: Some(format!("registration task failed: {e}")),
            }),
        }
    }
    (released, out)
}

/// Waits until every node in `names` is done (initialized and approved), one
/// has its CSR denied, or the deadline; returns how many are done.
async fn wait_done(board: &Board, names: &[String], timeout: Duration, what: &str) -> usize {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let seen = board.of(names);
        let done = seen.iter().filter(|s| s.done().is_some()).count();
        let denied = seen.iter().filter(|s| s.csr_denied.is_some()).count();
        if done == names.len() || denied > 0 || Instant::now() >= deadline {
            if done < names.len() {
                let init = seen.iter().filter(|s| s.node_init.is_some()).count();
                let approved = seen.iter().filter(|s| s.csr_approved.is_some()).count();
                eprintln!(
                    "{what}: {done} of {} done ({init} initialized, {approved} approved, {denied} denied) after {:.1} s",
                    names.len(),
                    timeout.as_secs_f64() - deadline.saturating_duration_since(Instant::now()).as_secs_f64()
                );
            }
            return done;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("{what}: {done} of {} done so far", names.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn summary(samples: impl Iterator<Item = Duration>) -> Summary {
    let mut v: Vec<u64> = samples.map(us).collect();
    summarize_us(&mut v)
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Sums of every series of `metric` by its label set, from a Prometheus text exposition.
fn series(text: &str, metric: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        if !rest.starts_with(['{', ' ']) {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once(' ') else { continue };
        let labels = labels.trim().trim_start_matches('{').trim_end_matches('}').to_owned();
        *out.entry(labels).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// Mean of a histogram by label set over a window, ms: Δsum / Δcount.
fn means_ms(before: &str, after: &str, name: &str) -> BTreeMap<String, f64> {
    let sums = delta(&series(before, &format!("{name}_sum")), &series(after, &format!("{name}_sum")));
    let counts = delta(&series(before, &format!("{name}_count")), &series(after, &format!("{name}_count")));
    counts
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(k, n)| (k.clone(), (sums.get(k).copied().unwrap_or(0.0) / n * 1e4).round() / 10.0))
        .collect()
}

/// `after - before` of every series, dropping zeros.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// What a window saw: orchestrator calls by operation, sks-ccm reconciles, CPU.
#[derive(Debug, Clone, Serialize)]
struct Window {
    seconds: f64,
    orchestrator_calls: u64,
    orchestrator_by_operation: BTreeMap<String, u64>,
    reconciles: BTreeMap<String, f64>,
    /// Mean reconcile time by controller, ms (sks-ccm's `ccm_reconcile_duration_seconds`).
    reconcile_mean_ms: BTreeMap<String, f64>,
    cpu_cores: Cpu,
    /// What sks-ccm sent to the Kubernetes API.
    #[serde(skip)]
    sent: Counts,
    /// What the Kubernetes API served (everyone's requests).
    #[serde(skip)]
    served: Counts,
}

#[derive(Debug, Clone, Serialize)]
struct Cpu {
    ccm: f64,
    kube_standin: f64,
    zone: f64,
    bench: f64,
    other: f64,
}

struct Meter {
    metrics: String,
    served: Counts,
    cpu: CpuMeter,
    started: Instant,
}

impl Meter {
    async fn start(sys: &System) -> anyhow::Result<Meter> {
        Ok(Meter {
            served: Counts::served(&sys.kube_metrics().await?),
            metrics: sys.ccm_metrics().await?,
            cpu: CpuMeter::start(&[sys.procs.ccm, sys.procs.kube, sys.procs.zone, Proc::current()]),
            started: Instant::now(),
        })
    }

    async fn stop(self, sys: &System) -> anyhow::Result<Window> {
        let seconds = self.started.elapsed().as_secs_f64();
        let c = self.cpu.cores();
        let other = ((self.cpu.machine_cores() - c.iter().sum::<f64>()).max(0.0) * 100.0).round() / 100.0;
        let after = sys.ccm_metrics().await?;
        let served = Counts::served(&sys.kube_metrics().await?).since(&self.served);
        let (before_calls, after_calls) = (parse_orchestrator_calls(&self.metrics), parse_orchestrator_calls(&after));
        let by_op: BTreeMap<String, u64> = after_calls
            .iter()
            .map(|(op, n)| (op.clone(), n - before_calls.get(op).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        Ok(Window {
            seconds: (seconds * 100.0).round() / 100.0,
            orchestrator_calls: by_op.values().sum(),
            orchestrator_by_operation: by_op,
            reconciles: delta(&series(&self.metrics, "ccm_reconciles_total"), &series(&after, "ccm_reconciles_total")),
            reconcile_mean_ms: means_ms(&self.metrics, &after, "ccm_reconcile_duration_seconds"),
            cpu_cores: Cpu { ccm: c[0], kube_standin: c[1], zone: c[2], bench: c[3], other },
            sent: Counts::sent(&after).since(&Counts::sent(&self.metrics)),
            served,
        })
    }
}

/// The burst's figures.
#[derive(Debug, Clone, Serialize)]
struct Burst {
    nodes: usize,
    done: usize,
    not_done: usize,
    csrs_denied: usize,
    registration_errors: usize,
    registration_error_samples: Vec<String>,
    denial_samples: Vec<String>,
    /// First to last Node registration (POST sent, or seen ADDED with kubelets).
    registration_spread_s: f64,
    /// From the burst's start (release, or the nodepool creation with kubelets) to the last node done.
    all_done_s: f64,
    /// From the first Node registration to the last node done.
    all_done_from_first_registration_s: f64,
    node_initialized: Summary,
    csr_approved: Summary,
    node_initialized_and_csr_approved: Summary,
    csr_issued: Summary,
    ccm_init_delay_metric_mean_s: Option<f64>,
    /// Whether a periodic refresh of sks-ccm cached the new instances between the
    /// nodepool's creation and the burst (then the burst needs no orchestrator call).
    instances_cached_before: Option<bool>,
    window: Window,
    ccm_memory_after: Memory,
}

#[expect(clippy::too_many_arguments, reason = "the burst's inputs, gathered once when it ends")]
fn burst_figures(
    names: &[String],
    seen: &[Seen],
    regs: &BTreeMap<String, kubelet::Registration>,
    start: Instant,
    window: Window,
    memory: Memory,
    denials: Vec<String>,
    ccm_mean: Option<f64>,
) -> Burst {
    let reg = |n: &String, s: &Seen| regs.get(n).map(|r| r.node_sent).or(s.node_added);
    let csr_reg = |n: &String, s: &Seen| regs.get(n).and_then(|r| r.csr_sent).or(s.csr_added);
    let regs_at: Vec<Instant> = names.iter().zip(seen).filter_map(|(n, s)| reg(n, s)).collect();
    let first = regs_at.iter().min().copied();
    let last_reg = regs_at.iter().max().copied();
    let last_done = seen.iter().filter_map(Seen::done).max();
    let errors: Vec<String> = regs.values().filter_map(|r| r.error.clone()).collect();
    let pair = |a: Option<Instant>, b: Option<Instant>| Some(b?.saturating_duration_since(a?));
    Burst {
        nodes: names.len(),
        done: seen.iter().filter(|s| s.done().is_some()).count(),
        not_done: seen.iter().filter(|s| s.done().is_none()).count(),
        csrs_denied: seen.iter().filter(|s| s.csr_denied.is_some()).count(),
        registration_errors: errors.len(),
        registration_error_samples: errors.into_iter().take(5).collect(),
        denial_samples: denials,
        registration_spread_s: pair(first, last_reg).map_or(0.0, secs),
        all_done_s: last_done.map_or(f64::NAN, |d| secs(d.saturating_duration_since(start))),
        all_done_from_first_registration_s: pair(first, last_done).map_or(f64::NAN, secs),
        node_initialized: summary(names.iter().zip(seen).filter_map(|(n, s)| pair(reg(n, s), s.node_init))),
        csr_approved: summary(names.iter().zip(seen).filter_map(|(n, s)| pair(csr_reg(n, s), s.csr_approved))),
        node_initialized_and_csr_approved: summary(
            names.iter().zip(seen).filter_map(|(n, s)| pair(reg(n, s), s.done())),
        ),
        csr_issued: summary(names.iter().zip(seen).filter_map(|(n, s)| pair(csr_reg(n, s), s.csr_issued))),
        ccm_init_delay_metric_mean_s: ccm_mean,
        instances_cached_before: None,
        window,
        ccm_memory_after: memory,
    }
}

/// `list-instances` calls sks-ccm made so far.
fn list_calls(metrics: &str) -> u64 {
    parse_orchestrator_calls(metrics).get("list-instances").copied().unwrap_or(0)
}

/// Mean of a Prometheus histogram over a window: (Δsum / Δcount).
fn histogram_mean(before: &str, after: &str, name: &str) -> Option<f64> {
    let sum = metric_total(after, &format!("{name}_sum")) - metric_total(before, &format!("{name}_sum"));
    let count = metric_total(after, &format!("{name}_count")) - metric_total(before, &format!("{name}_count"));
    (count > 0.0).then(|| (sum / count * 1000.0).round() / 1000.0)
}

/// The many-Nodes phase's figures.
#[derive(Debug, Clone, Serialize)]
struct Cached {
    nodes_total: usize,
    added: usize,
    create_nodepool_s: f64,
    /// From the first of the added Nodes being sent to the last one done.
    fill_s: f64,
    fill_done: usize,
    fill_window: Window,
    steady_window: Window,
    rss_start_mib: f64,
    rss_end_mib: f64,
    rss_max_sampled_mib: f64,
    peak_rss_mib: f64,
}

/// Runs the scenario.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let p = Params::of(args);
    let sys = System::start(&p).await?;
    let board = Arc::new(Board::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for kind in [Kind::Nodes, Kind::Csrs] {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        watchers.push(tokio::spawn(observe::follow(
            sys.watch_client.clone(),
            sys.api.url.clone(),
            kind,
            board.clone(),
            ready_tx,
            stop_rx.clone(),
        )));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("opening the watches")?
            .context("a watch failed to open")?;
    }

    // Warm-up: the seeded nodepool's nodes, so sks-ccm is leading, its watches
    // are open and its instance types are cached before the burst.
    let seeded = sys.seeded().await?;
    let seed_names: Vec<String> = seeded.iter().map(|m| m.name.clone()).collect();
    eprintln!("warm-up: the {} seeded nodes", seed_names.len());
    if p.via == Via::Direct {
        let k = sys.kubelets(&seeded)?;
        open(&k).await?;
        let (_, regs) = release(&k).await;
        if let Some(e) = regs.iter().find_map(|r| r.error.clone()) {
            bail!("registering a seeded node: {e}");
        }
    }
    if wait_done(&board, &seed_names, Duration::from_secs(60), "warm-up").await < seed_names.len() {
        bail!("sks-ccm did not initialize the seeded nodes within 60 s");
    }

    // The burst.
    let size = p.nodes as i64;
    let (burst, create_burst_s) = match p.via {
        Via::Direct => {
            // Waiting for a quiet machine comes first: sks-ccm refreshes its cloud
            // cache periodically, and the longer the wait between the nodepool's
            // creation and the burst, the likelier the new instances are cached already.
            let settle = args.common.settle("burst").await;
            eprintln!("creating nodepool burst of {size} instances");
            let (create_s, machines) = sys.nodepool("burst", size).await?;
            let created = Instant::now();
            let at_create = list_calls(&sys.ccm_metrics().await?);
            eprintln!("preparing {} kubelets (keys, certificates, connections)", machines.len());
            let kubelets = sys.kubelets(&machines)?;
            open(&kubelets).await?;
            tokio::time::sleep(MIN_INSTANCE_AGE.saturating_sub(created.elapsed())).await;
            let before = sys.ccm_metrics().await?;
            let prefetched = list_calls(&before) > at_create;
            let meter = Meter::start(&sys).await?;
            eprintln!("burst: {} Nodes and CSRs at once", kubelets.len());
            let (released, regs) = release(&kubelets).await;
            let names: Vec<String> = kubelets.iter().map(|k| k.name.clone()).collect();
            wait_done(&board, &names, Duration::from_secs(p.timeout_s), "burst").await;
            // A little after the last one, so late calls of the burst are counted.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let window = meter.stop(&sys).await?;
            let after = sys.ccm_metrics().await?;
            let regs: BTreeMap<String, kubelet::Registration> = regs.into_iter().map(|r| (r.name.clone(), r)).collect();
            let b = burst_figures(
                &names,
                &board.of(&names),
                &regs,
                released,
                window,
                sys.procs.ccm.memory()?,
                board.denials(),
                histogram_mean(&before, &after, "ccm_node_initialization_delay_seconds"),
            );
            let b = Burst { instances_cached_before: Some(prefetched), ..b };
            ((b, settle), create_s)
        }
        Via::Kubelets => {
            let settle = args.common.settle("burst").await;
            let before = sys.ccm_metrics().await?;
            let meter = Meter::start(&sys).await?;
            eprintln!("burst: nodepool burst of {size} instances, whose kubelets register");
            let start = Instant::now();
            let (create_s, machines) = sys.nodepool("burst", size).await?;
            let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
            wait_done(&board, &names, Duration::from_secs(p.timeout_s), "burst").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let window = meter.stop(&sys).await?;
            let after = sys.ccm_metrics().await?;
            let b = burst_figures(
                &names,
                &board.of(&names),
                &BTreeMap::new(),
                start,
                window,
                sys.procs.ccm.memory()?,
                board.denials(),
                histogram_mean(&before, &after, "ccm_node_initialization_delay_seconds"),
            );
            ((b, settle), create_s)
        }
    };
    let (burst, settle) = burst;

    // Many Nodes cached.
    let existing = seed_names.len() + p.nodes;
    let cached = if p.cached > existing {
        let added = p.cached - existing;
        eprintln!("filling the cluster to {} Nodes: nodepool fill of {added}", p.cached);
        let meter = Meter::start(&sys).await?;
        let started = Instant::now();
        let (create_s, machines) = sys.nodepool("fill", added as i64).await?;
        tokio::time::sleep(MIN_INSTANCE_AGE).await;
        let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
        let mut first_sent = None;
        if p.via == Via::Direct {
            for chunk in machines.chunks(FILL_CHUNK) {
                let kubelets = sys.kubelets(chunk)?;
                let (released, regs) = release(&kubelets).await;
                first_sent.get_or_insert(released);
                if let Some(e) = regs.iter().find_map(|r| r.error.clone()) {
                    bail!("registering a node of nodepool fill: {e}");
                }
            }
        }
        let timeout = Duration::from_secs(p.timeout_s.max(added as u64 / 10));
        let fill_done = wait_done(&board, &names, timeout, "fill").await;
        let seen = board.of(&names);
        let from = first_sent.unwrap_or(started);
        let fill_s = seen.iter().filter_map(Seen::done).max().map_or(f64::NAN, |d| secs(d - from));
        let fill_window = meter.stop(&sys).await?;

        eprintln!("steady state with {} Nodes: sampling sks-ccm's memory for {} s", p.cached, p.steady_s);
        let meter = Meter::start(&sys).await?;
        let rss_start = sys.procs.ccm.memory()?.rss_mib;
        let mut max_rss: f64 = rss_start;
        let end = Instant::now() + Duration::from_secs(p.steady_s);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            max_rss = max_rss.max(sys.procs.ccm.memory()?.rss_mib);
        }
        let m = sys.procs.ccm.memory()?;
        let steady_window = meter.stop(&sys).await?;
        Some(Cached {
            nodes_total: p.cached,
            added,
            create_nodepool_s: (create_s * 1000.0).round() / 1000.0,
            fill_s,
            fill_done,
            fill_window,
            steady_window,
            rss_start_mib: rss_start,
            rss_end_mib: m.rss_mib,
            rss_max_sampled_mib: max_rss.max(m.rss_mib),
            peak_rss_mib: m.peak_rss_mib,
        })
    } else {
        None
    };
    let _ = stop_tx.send(true);
    let mut watch_errors = Vec::new();
    for w in watchers {
        match tokio::time::timeout(Duration::from_secs(5), w).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => watch_errors.push(format!("{e:#}")),
            Ok(Err(e)) => watch_errors.push(format!("watch task: {e}")),
            Err(_) => watch_errors.push("a watch did not stop".to_owned()),
        }
    }

    Ok(report(&p, &burst, create_burst_s, cached.as_ref(), settle, watch_errors, board.events()))
}

fn report(
    p: &Params,
    b: &Burst,
    create_burst_s: f64,
    cached: Option<&Cached>,
    settle: serde_json::Value,
    watch_errors: Vec<String>,
    events: u64,
) -> Report {
    let full = p.nodes >= 1000;
    let all_ok = b.not_done == 0 && b.registration_errors == 0 && b.csrs_denied == 0;
    let sent = b.window.sent.summary();
    let per_pair = |n: u64| n as f64 / b.nodes.max(1) as f64;
    let mut targets = vec![
        Target::new(
            "≤ 3 writes per Node+CSR pair in the burst (events apart), 0 conflicts",
            format!(
                "{:.2} writes, {:.2} conflicts (409), {:.2} not applicable (422) per pair",
                per_pair(sent.writes),
                per_pair(sent.conflicts),
                per_pair(sent.not_applicable)
            ),
            true,
            all_ok && per_pair(sent.writes) <= 3.0 && sent.conflicts == 0 && sent.not_applicable == 0,
        ),
        Target::new(
            "0 reads per Node in the burst beyond list+watch",
            format!("{} GETs, {} LISTs", sent.gets, sent.lists),
            true,
            sent.gets == 0 && sent.lists == 0,
        ),
        Target::new(
            "1,000 Nodes initialized + CSRs approved within 10 s",
            format!("{} s to all ({} of {} done)", fmt_s(b.all_done_s), b.done, b.nodes),
            full,
            all_ok && b.all_done_s <= 10.0,
        ),
        Target::new(
            "< 50 orchestrator calls for the burst",
            format!("{} calls", b.window.orchestrator_calls),
            full,
            b.window.orchestrator_calls < 50,
        ),
    ];
    if let Some(c) = cached {
        targets.push(Target::new(
            "sks-ccm RSS < 40 MiB with 5,000 Nodes",
            format!("{:.1} MiB (max sampled over {} s; {} Nodes)", c.rss_max_sampled_mib, p.steady_s, c.nodes_total),
            c.nodes_total >= 5000,
            c.rss_max_sampled_mib < 40.0 && c.fill_done == c.added,
        ));
    }

    let mut delays = Table::new(
        &format!("Burst: {} Nodes + {} kubelet-serving CSRs registered at once (via {:?})", b.nodes, b.nodes, p.via),
        &["per node", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"],
    );
    delays.row(b.node_initialized.row("Node registered -> initialized"));
    delays.row(b.csr_approved.row("CSR created -> Approved"));
    delays.row(b.node_initialized_and_csr_approved.row("Node registered -> both done"));
    delays.row(b.csr_issued.row("CSR created -> certificate issued"));

    let w = &b.window;
    let mut facts = Table::new("Burst", &["what", "value"]);
    for (what, value) in [
        ("time to all done, from the burst's start, s".to_owned(), fmt_s(b.all_done_s)),
        ("time to all done, from the first registration, s".to_owned(), fmt_s(b.all_done_from_first_registration_s)),
        ("registrations spread (first to last Node), s".to_owned(), format!("{:.2}", b.registration_spread_s)),
        ("nodes done / not done".to_owned(), format!("{} / {}", b.done, b.not_done)),
        ("CSRs denied, registration errors".to_owned(), format!("{}, {}", b.csrs_denied, b.registration_errors)),
        (format!("orchestrator calls by sks-ccm in {:.1} s", w.seconds), w.orchestrator_calls.to_string()),
        (
            "new instances cached by a periodic refresh before the burst".to_owned(),
            b.instances_cached_before.map_or("-".to_owned(), |c| if c { "yes" } else { "no" }.to_owned()),
        ),
        ("sks-ccm reconciles".to_owned(), fmt_series(&w.reconciles)),
        ("sks-ccm mean reconcile time, ms".to_owned(), fmt_series(&w.reconcile_mean_ms)),
        (
            "CPU cores: sks-ccm / kube API / sks-zone / bench / other".to_owned(),
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                w.cpu_cores.ccm, w.cpu_cores.kube_standin, w.cpu_cores.zone, w.cpu_cores.bench, w.cpu_cores.other
            ),
        ),
        (
            "sks-ccm RSS after the burst / peak RSS, MiB".to_owned(),
            format!("{:.1} / {:.1}", b.ccm_memory_after.rss_mib, b.ccm_memory_after.peak_rss_mib),
        ),
        (
            "sks-ccm's own init delay metric (mean, from creationTimestamp), s".to_owned(),
            b.ccm_init_delay_metric_mean_s.map_or("-".to_owned(), |m| format!("{m:.3}")),
        ),
        ("create nodepool burst in sks-zone, s".to_owned(), format!("{create_burst_s:.2}")),
    ] {
        facts.row(vec![what, value]);
    }
    let mut calls = Table::new("Orchestrator calls by sks-ccm", &["window", "operation", "calls"]);
    let mut call_rows = |window: &str, w: &Window| {
        if w.orchestrator_by_operation.is_empty() {
            calls.row(vec![window.to_owned(), "-".to_owned(), "0".to_owned()]);
        }
        for (op, n) in &w.orchestrator_by_operation {
            calls.row(vec![window.to_owned(), op.clone(), n.to_string()]);
        }
    };
    call_rows("burst", &b.window);
    let mut tables = vec![delays, facts];
    if let Some(c) = cached {
        call_rows("fill", &c.fill_window);
        call_rows("steady", &c.steady_window);
        let mut t = Table::new(&format!("sks-ccm with {} Nodes", c.nodes_total), &["what", "value"]);
        let sw = &c.steady_window;
        for (what, value) in [
            (format!("{} more Nodes initialized + approved in, s", c.added), fmt_s(c.fill_s)),
            ("of them done".to_owned(), format!("{} of {}", c.fill_done, c.added)),
            (
                "fill: CPU cores sks-ccm / kube API / bench".to_owned(),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    c.fill_window.cpu_cores.ccm, c.fill_window.cpu_cores.kube_standin, c.fill_window.cpu_cores.bench
                ),
            ),
            (
                format!("RSS at start / end / max sampled over {:.0} s, MiB", sw.seconds),
                format!("{:.1} / {:.1} / {:.1}", c.rss_start_mib, c.rss_end_mib, c.rss_max_sampled_mib),
            ),
            ("peak RSS since start (VmHWM), MiB".to_owned(), format!("{:.1}", c.peak_rss_mib)),
            (
                "steady: CPU cores sks-ccm / other".to_owned(),
                format!("{:.2} / {:.2}", sw.cpu_cores.ccm, sw.cpu_cores.other),
            ),
            ("fill: sks-ccm reconciles".to_owned(), fmt_series(&c.fill_window.reconciles)),
            ("steady: sks-ccm reconciles".to_owned(), fmt_series(&sw.reconciles)),
        ] {
            t.row(vec![what, value]);
        }
        tables.push(t);
    }
    tables.push(calls);
    let windows = request_windows(p, b, cached);
    tables.push(requests::table("sks-ccm", &windows));
    if let Some(t) = requests::cross_check_table("sks-ccm", &windows) {
        tables.push(t);
    }
    tables.push(targets_table(&targets));
    let problems: Vec<String> =
        b.registration_error_samples.iter().chain(&b.denial_samples).chain(&watch_errors).cloned().collect();
    if !problems.is_empty() {
        let mut t = Table::new("Problems", &["problem"]);
        for pr in &problems {
            t.row(vec![pr.clone()]);
        }
        tables.push(t);
    }
    let results = json!({
        "kube_requests": requests::windows_json(&windows),
        "burst": b,
        "create_burst_nodepool_s": create_burst_s,
        "cached": cached,
        "watch_events": events,
        "watch_errors": watch_errors,
        "quiet_wait": settle,
        "targets": targets_json(&targets),
    });
    Report { scenario: "nodes", parameters: serde_json::to_value(p).unwrap_or_default(), results, tables }
}

/// sks-ccm's Kubernetes API requests in the burst (per Node+CSR pair), the
/// fill (per pair) and the steady state, cross-checked with what the API
/// served minus the bench's own registrations when the bench registered them.
fn request_windows(p: &Params, b: &Burst, cached: Option<&Cached>) -> Vec<requests::Window> {
    let direct = p.via == Via::Direct;
    let registrations = |n: usize| -> BTreeMap<requests::Request, u64> {
        [(request("create", "nodes", ""), n as u64), (request("create", "certificatesigningrequests", ""), n as u64)]
            .into()
    };
    let window = |name: &str, w: &Window, per: Option<(usize, &str)>, bench: BTreeMap<requests::Request, u64>| {
        requests::Window {
            name: name.to_owned(),
            sent: w.sent.clone(),
            per: per.map(|(n, what)| (n, what.to_owned())),
            served: direct.then(|| w.served.clone()),
            bench_writes: bench,
            checked: vec![],
        }
    };
    let mut out = vec![window("burst", &b.window, Some((b.nodes, "Node+CSR")), registrations(b.nodes))];
    if let Some(c) = cached {
        out.push(window("fill", &c.fill_window, Some((c.added, "Node+CSR")), registrations(c.added)));
        out.push(window("steady", &c.steady_window, Some((c.nodes_total, "Node")), BTreeMap::new()));
    }
    out
}

/// Seconds with two decimals, "-" when unknown.
fn fmt_s(s: f64) -> String {
    if s.is_finite() { format!("{s:.2}") } else { "-".to_owned() }
}

fn fmt_series(s: &BTreeMap<String, f64>) -> String {
    if s.is_empty() {
        return "none".to_owned();
    }
    s.iter().map(|(k, v)| format!("{} {v}", k.replace('"', ""))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_by_labels_and_deltas() {
        let before = "ccm_reconciles_total{controller=\"node\",result=\"ok\"} 3\n";
        let after = "# HELP x\nccm_reconciles_total{controller=\"node\",result=\"ok\"} 10\n\
                     ccm_reconciles_total{controller=\"csr\",result=\"ok\"} 4\n";
        let d = delta(&series(before, "ccm_reconciles_total"), &series(after, "ccm_reconciles_total"));
        assert_eq!(d["controller=\"node\",result=\"ok\""], 7.0);
        assert_eq!(d["controller=\"csr\",result=\"ok\""], 4.0);
        assert_eq!(fmt_series(&d), "controller=csr,result=ok 4, controller=node,result=ok 7");
    }

    #[test]
    fn histogram_means_over_a_window() {
        let before = "h_sum 1\nh_count 2\n";
        let after = "h_sum 4\nh_count 5\n";
        assert_eq!(histogram_mean(before, after, "h"), Some(1.0));
        assert_eq!(histogram_mean(before, before, "h"), None);
        let before = "d_sum{controller=\"node\"} 1\nd_count{controller=\"node\"} 10\n";
        let after = "d_sum{controller=\"node\"} 1.5\nd_count{controller=\"node\"} 20\n";
        assert_eq!(means_ms(before, after, "d")["controller=\"node\""], 50.0);
    }
}
