//! `lbs`: sks-ccm's Service controller with many LoadBalancer Services.
//!
//! sks-zone (the cloud, its seeded nodepool running simulated kubelets),
//! kube-standin (the cluster's Kubernetes API, with the zone cluster's CAs)
//! and sks-ccm run on loopback. Three phases:
//!
//! 1. **burst**: N LoadBalancer Services created at once through the
//!    Kubernetes API (concurrent POSTs multiplexed on one HTTP/2 connection);
//!    a Service watch timestamps when each first has
//!    `status.loadBalancer.ingress[0].ip`. Orchestrator calls by operation.
//! 2. **churn**: with the Services present, the nodepool is scaled up and back
//!    down through the orchestrator API (`scale-sks-nodepool`); each step
//!    waits until the Nodes follow (registered by the simulated kubelets,
//!    initialized or deleted by sks-ccm). NLB writes and reads made meanwhile.
//! 3. **steady**: sks-ccm restarted with an accelerated
//!    `--lb-drift-period-seconds`; over a number of drift periods (12 = one
//!    hour at the default 300 s), orchestrator writes and reads by operation.
//!
//! sks-ccm's calls come from its own `/metrics` (`orchestrator_requests_total`).

pub mod kube;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrator::model::{SksCluster, SksNodepool};
use serde::Serialize;
use serde_json::json;
use sks_e2e::ccm::Ccm;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::zone::{Zone, ZoneOptions};

use self::kube::{Follow, Kube, Ready, service_name};
use super::{Common, Target, targets_json, targets_table};
use crate::procfs::{CpuMeter, Memory, Proc};
use crate::report::{Report, Table};
use crate::requests::{self, Counts, request};
use crate::stack::{calls_between, orchestrator_mean_ms, parse_orchestrator_calls};
use crate::stats::{Summary, fmt_ms, summarize_us};

/// sks-ccm's default `--lb-drift-period-seconds`: what one accelerated period stands for.
const DEFAULT_DRIFT_PERIOD_S: u64 = 300;
/// Quiet time after a phase before its closing reading, so trailing calls are counted in it.
const TRAIL: Duration = Duration::from_secs(2);

/// Options of the `lbs` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// LoadBalancer Services created at once [default: 200, quick: 20].
    #[arg(long)]
    pub services: Option<usize>,
    /// Size of the seeded nodepool, before and after the churn [default: 10, quick: 3].
    #[arg(long)]
    pub nodes: Option<i64>,
    /// Size the nodepool is scaled to during the churn [default: 50, quick: 6].
    #[arg(long)]
    pub scale_to: Option<i64>,
    /// sks-ccm's --lb-drift-period-seconds in the steady phase.
    #[arg(long, value_name = "SECONDS", default_value_t = 1)]
    pub drift_period: u64,
    /// Drift periods measured in the steady phase; 12 stand for one hour at the default
    /// 300 s period [default: 12, quick: 3].
    #[arg(long)]
    pub periods: Option<u64>,
    /// Port of every Service (and so of every NLB service).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Run sks-zone's NLB data plane (listeners and health checks for every NLB);
    /// off by default, so the zone's probes do not compete with sks-ccm for the CPUs.
    #[arg(long)]
    pub nlb_dataplane: bool,
    /// sks-zone's --operation-delay-ms: how long every operation stays pending (0: done at once).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub operation_delay_ms: u64,
    /// Longest wait for each step (all Services ready, Nodes following, restart), seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// An extra sks-ccm argument (repeatable, every sks-ccm started), e.g. `--ccm-arg=--concurrent-service-syncs=16`.
    #[arg(long = "ccm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ccm_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Params {
    quick: bool,
    services: usize,
    nodes: i64,
    scale_to: i64,
    drift_period_s: u64,
    periods: u64,
    simulated_hours: f64,
    port: u16,
    nlb_dataplane: bool,
    timeout_s: u64,
    ccm_args: Vec<String>,
    zone_operation_delay_ms: u64,
    node_monitor_grace_s: u64,
    kubelet_lease_interval_s: u64,
    creation: &'static str,
}

impl Params {
    fn of(a: &Args) -> Self {
        let c = &a.common;
        let periods = c.pick(a.periods, 12, 3);
        Params {
            quick: c.quick,
            services: c.pick(a.services, 200, 20),
            nodes: c.pick(a.nodes, 10, 3),
            scale_to: c.pick(a.scale_to, 50, 6),
            drift_period_s: a.drift_period.max(1),
            periods,
            simulated_hours: (periods * DEFAULT_DRIFT_PERIOD_S) as f64 / 3600.0,
            port: a.port,
            nlb_dataplane: a.nlb_dataplane,
            timeout_s: a.timeout,
            ccm_args: a.ccm_args.clone(),
            zone_operation_delay_ms: a.operation_delay_ms,
            // Quick runs make a silent kubelet's Node go NotReady (and so get re-checked and deleted) in seconds.
            node_monitor_grace_s: if c.quick { 3 } else { 40 },
            kubelet_lease_interval_s: if c.quick { 1 } else { 10 },
            creation: "every POST sent at once, multiplexed on one HTTP/2 TLS connection (admin certificate)",
        }
    }
}

/// The running system; dropped in declaration order (sks-ccm first, the zone last).
struct System {
    ccm: Ccm,
    kube: KubeApi,
    zone: Zone,
    client: orchestrator::Client,
    cluster: SksCluster,
    nodepool: SksNodepool,
    api: Kube,
    procs: Procs,
}

#[derive(Clone, Copy)]
struct Procs {
    ccm: Proc,
    kube: Proc,
    zone: Proc,
}

/// One reading of sks-ccm's /metrics (and of the Kubernetes API's).
struct Sample {
    calls: BTreeMap<String, u64>,
    service_reconciles: u64,
    text: String,
    /// What sks-ccm sent to the Kubernetes API so far.
    sent: Counts,
    /// What the Kubernetes API served so far (everyone's requests).
    served: Counts,
}

impl Sample {
    fn lists(&self) -> u64 {
        self.calls.get("list-load-balancers").copied().unwrap_or(0)
    }
}

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
fn metric_where(text: &str, metric: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(metric).is_some_and(|rest| rest.starts_with('{')))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// Whether an operation id only reads.
fn is_read(op: &str) -> bool {
    op.starts_with("get-") || op.starts_with("list-")
}

/// Whether an operation id touches NLBs (`*-load-balancer*`, reset-* of their fields included).
fn is_nlb(op: &str) -> bool {
    op.contains("load-balancer")
}

/// Orchestrator calls of one phase, by operation and by kind.
#[derive(Debug, Clone, Serialize)]
struct Calls {
    seconds: f64,
    total: u64,
    writes: u64,
    nlb_writes: u64,
    nlb_reads: u64,
    by_operation: BTreeMap<String, u64>,
}

impl Calls {
    fn of(by_operation: BTreeMap<String, u64>, seconds: f64) -> Self {
        let sum = |f: &dyn Fn(&str) -> bool| by_operation.iter().filter(|(op, _)| f(op)).map(|(_, n)| n).sum();
        Calls {
            seconds: round2(seconds),
            total: by_operation.values().sum(),
            writes: sum(&|op| !is_read(op)),
            nlb_writes: sum(&|op| !is_read(op) && is_nlb(op)),
            nlb_reads: sum(&|op| is_read(op) && is_nlb(op)),
            by_operation,
        }
    }

    fn between(before: &Sample, after: &Sample, seconds: f64) -> Self {
        Calls::of(calls_between(&before.calls, &after.calls).0, seconds)
    }
}

/// CPU over a phase: cores of each process and of everything else, and sks-ccm's CPU seconds.
#[derive(Debug, Clone, Serialize)]
struct Cpu {
    ccm_seconds: f64,
    ccm_cores: f64,
    zone_cores: f64,
    kube_cores: f64,
    bench_cores: f64,
    other_cores: f64,
}

struct CpuWindow {
    meter: CpuMeter,
    ccm: Proc,
    ccm_before: f64,
}

impl CpuWindow {
    fn open(p: Procs) -> Self {
        CpuWindow {
            meter: CpuMeter::start(&[p.ccm, p.zone, p.kube, Proc::current()]),
            ccm: p.ccm,
            ccm_before: p.ccm.cpu_seconds().unwrap_or(0.0),
        }
    }

    fn close(&self) -> Cpu {
        let cores = self.meter.cores();
        Cpu {
            ccm_seconds: round2(self.ccm.cpu_seconds().unwrap_or(self.ccm_before) - self.ccm_before),
            ccm_cores: cores[0],
            zone_cores: cores[1],
            kube_cores: cores[2],
            bench_cores: cores[3],
            other_cores: round2((self.meter.machine_cores() - cores.iter().sum::<f64>()).max(0.0)),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn ccm_args<'a>(p: &'a Params, extra: &'a [String]) -> Vec<&'a str> {
    extra.iter().chain(&p.ccm_args).map(String::as_str).collect()
}

impl System {
    async fn start(p: &Params) -> anyhow::Result<System> {
        eprintln!("starting sks-zone, kube-standin and sks-ccm from {}", sks_e2e::bin_dir().display());
        let mut extra = vec!["--seed-size".to_owned(), p.nodes.to_string()];
        extra.push(format!("--nlb-dataplane={}", p.nlb_dataplane));
        extra.extend(["--kubelet-lease-interval-seconds".to_owned(), p.kubelet_lease_interval_s.to_string()]);
        let options =
            ZoneOptions { seed: true, extra, operation_delay_ms: p.zone_operation_delay_ms, ..Default::default() };
        let mut zone = Zone::start(options);
        let client = zone.client().await;
        let seeded = client.list_sks_clusters().await?.into_iter().next().context("the seeded cluster")?;
        let nodepool = seeded.nodepools.first().context("the seeded nodepool")?.clone();
        let cluster = seeded;
        let kube = KubeApi::start(KubeOptions {
            node_grace_seconds: Some(p.node_monitor_grace_s),
            ..KubeOptions::for_kubelets_of(&zone, cluster.id)
        })
        .await;
        // The simulated kubelets need the Kubernetes API, which needs the cluster's CAs: restart with it.
        zone.attach_kubelets(&kube.kubeconfig);
        let ccm = Ccm::start(&zone, &kube, &cluster.id.to_string(), &ccm_args(p, &[]));
        let procs = Procs {
            ccm: Proc::find_child("sks-ccm", &kube.kubeconfig.display().to_string())?,
            kube: Proc::find_child(kube.process_name(), &kube.cert_dir.display().to_string())?,
            zone: Proc::find_child("sks-zone", &zone.state_dir().display().to_string())?,
        };
        let api = Kube::new(&kube.url, &kube.cert_dir)?;
        let n = usize::try_from(p.nodes)?;
        let seconds = api.wait_nodes(0, n, Instant::now(), Duration::from_secs(p.timeout_s)).await?.done_s;
        eprintln!("{n} Nodes initialized {seconds:.1} s after sks-ccm started");
        Ok(System { ccm, kube, zone, client, cluster, nodepool, api, procs })
    }

    async fn sample(&self) -> anyhow::Result<Sample> {
        let resp = reqwest::get(format!("{}/metrics", self.ccm.url)).await?.error_for_status()?;
        let text = resp.text().await?;
        let served = Counts::served(&self.api.metrics().await?);
        Ok(Sample {
            calls: parse_orchestrator_calls(&text),
            service_reconciles: metric_where(&text, "ccm_reconciles_total", &["controller=\"service\""]),
            sent: Counts::sent(&text),
            served,
            text,
        })
    }

    /// Stops sks-ccm (SIGTERM) and starts a new one with `extra` arguments.
    fn restart_ccm(&mut self, p: &Params, extra: &[String]) -> anyhow::Result<()> {
        if self.ccm.stop().is_none() {
            eprintln!("sks-ccm did not stop within 5 s of SIGTERM; it was killed");
        }
        self.ccm = Ccm::start(&self.zone, &self.kube, &self.cluster.id.to_string(), &ccm_args(p, extra));
        self.procs.ccm = Proc::find_child("sks-ccm", &self.kube.kubeconfig.display().to_string())?;
        Ok(())
    }
}

/// Phase 1's figures.
#[derive(Debug, Clone, Serialize)]
struct Burst {
    services: usize,
    /// Services that got an ingress IP in time.
    ready_count: usize,
    create_errors: Vec<String>,
    /// From the first POST sent until the last POST answered.
    all_created_s: f64,
    /// From the first POST sent until the last Service had an ingress IP (`None` if some never did).
    all_ready_s: Option<f64>,
    /// Per Service, from its POST being sent to its ingress IP being seen.
    ready: Summary,
    /// POST round trips.
    create: Summary,
    distinct_ips: usize,
    orchestrator: Calls,
    /// Mean orchestrator request time by operation, over sks-ccm's life so far.
    orchestrator_mean_ms: BTreeMap<String, f64>,
    service_reconciles: u64,
    cpu: Cpu,
    #[serde(skip)]
    requests: requests::Window,
}

async fn burst(sys: &System, p: &Params) -> anyhow::Result<(Burst, BTreeMap<String, String>)> {
    let (_, rv) = sys.api.services().await?;
    let ready: Ready = Default::default();
    let (tx, mut progress) = tokio::sync::watch::channel(0usize);
    let watcher = tokio::spawn(sys.api.clone().watch_ingress(rv, ready.clone(), tx));
    let before = sys.sample().await?;
    let cpu = CpuWindow::open(sys.procs);
    eprintln!("creating {} LoadBalancer Services at once", p.services);
    let started = Instant::now();
    let creations = futures::future::join_all((0..p.services).map(|i| {
        let api = sys.api.clone();
        async move {
            let name = service_name(i);
            let (sent, result) = api.create_service(&name, p.port).await;
            (name, sent, result)
        }
    }))
    .await;
    let all_created_s = started.elapsed().as_secs_f64();
    let mut sent_at = BTreeMap::new();
    let mut create_us = Vec::new();
    let mut create_errors = Vec::new();
    for (name, sent, result) in creations {
        match result {
            Ok(rtt) => {
                create_us.push(rtt.as_micros() as u64);
                sent_at.insert(name, sent);
            }
            Err(e) => create_errors.push(format!("{e:#}")),
        }
    }
    let deadline = tokio::time::Instant::from_std(started + Duration::from_secs(p.timeout_s));
    while *progress.borrow_and_update() < sent_at.len() {
        if !matches!(tokio::time::timeout_at(deadline, progress.changed()).await, Ok(Ok(()))) {
            break;
        }
    }
    let ips: BTreeMap<String, String>;
    let mut ready_us = Vec::new();
    let mut last = None::<Instant>;
    {
        let map = ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, sent) in &sent_at {
            if let Some((at, _)) = map.get(name) {
                ready_us.push(at.saturating_duration_since(*sent).as_micros() as u64);
                last = Some(last.map_or(*at, |l| l.max(*at)));
            }
        }
        ips =
            map.iter().filter(|(n, _)| sent_at.contains_key(*n)).map(|(n, (_, ip))| (n.clone(), ip.clone())).collect();
    }
    let ready_count = ready_us.len();
    if ready_count < p.services {
        eprintln!("only {ready_count} of {} Services got an ingress IP within {} s", p.services, p.timeout_s);
    }
    let all_ready_s = last
        .filter(|_| ready_count == p.services)
        .map(|l| (l.duration_since(started).as_secs_f64() * 1000.0).round() / 1000.0);
    tokio::time::sleep(TRAIL).await;
    let after = sys.sample().await?;
    watcher.abort();
    let distinct_ips = ips.values().collect::<std::collections::BTreeSet<_>>().len();
    let burst = Burst {
        services: p.services,
        ready_count,
        create_errors,
        all_created_s: round2(all_created_s),
        all_ready_s,
        ready: summarize_us(&mut ready_us),
        create: summarize_us(&mut create_us),
        distinct_ips,
        orchestrator: Calls::between(&before, &after, started.elapsed().as_secs_f64()),
        orchestrator_mean_ms: orchestrator_mean_ms(&after.text),
        service_reconciles: after.service_reconciles - before.service_reconciles,
        cpu: cpu.close(),
        requests: requests::Window {
            name: "burst".into(),
            sent: after.sent.since(&before.sent),
            per: Some((p.services, "Service".into())),
            served: Some(after.served.since(&before.served)),
            bench_writes: [(request("create", "services", ""), p.services as u64)].into(),
            // The zone's kubelets renew their Leases and report status meanwhile.
            checked: vec!["services", "events"],
        },
    };
    Ok((burst, ips))
}

/// Phase 2's figures.
#[derive(Debug, Clone, Serialize)]
struct Churn {
    from: i64,
    to: i64,
    /// From the scale-up call: first new Node, all Ready, all initialized.
    scale_up: Follow,
    /// From the scale-down call: first Node deleted, the removed ones no longer Ready, all deleted.
    scale_down: Follow,
    /// Services whose ingress IP is still the one they got in the burst.
    ingress_unchanged: usize,
    orchestrator: Calls,
    cpu: Cpu,
    #[serde(skip)]
    requests: requests::Window,
}

async fn churn(sys: &System, p: &Params, ips: &BTreeMap<String, String>) -> anyhow::Result<Churn> {
    let before = sys.sample().await?;
    let cpu = CpuWindow::open(sys.procs);
    let timeout = Duration::from_secs(p.timeout_s);
    let started = Instant::now();
    eprintln!("scaling nodepool {} → {}", p.nodes, p.scale_to);
    sys.client.scale_sks_nodepool(sys.cluster.id, sys.nodepool.id, p.scale_to).await.context("scaling up")?;
    let (from, to) = (usize::try_from(p.nodes)?, usize::try_from(p.scale_to)?);
    let up = sys.api.wait_nodes(from, to, started, timeout).await?;
    eprintln!("{} Nodes initialized after {:.1} s; scaling back to {}", p.scale_to, up.done_s, p.nodes);
    let down_started = Instant::now();
    sys.client.scale_sks_nodepool(sys.cluster.id, sys.nodepool.id, p.nodes).await.context("scaling down")?;
    let down = sys.api.wait_nodes(to, from, down_started, timeout).await?;
    eprintln!("back to {} Nodes after {:.1} s", p.nodes, down.done_s);
    tokio::time::sleep(TRAIL).await;
    let after = sys.sample().await?;
    let (services, _) = sys.api.services().await?;
    let ingress_unchanged = services
        .iter()
        .filter(|s| {
            let name = s.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or_default();
            let ip = s.pointer("/status/loadBalancer/ingress/0/ip").and_then(serde_json::Value::as_str);
            ips.get(name).is_some_and(|was| Some(was.as_str()) == ip)
        })
        .count();
    Ok(Churn {
        from: p.nodes,
        to: p.scale_to,
        scale_up: up,
        scale_down: down,
        ingress_unchanged,
        orchestrator: Calls::between(&before, &after, started.elapsed().as_secs_f64()),
        cpu: cpu.close(),
        requests: requests::Window {
            name: "churn".into(),
            sent: after.sent.since(&before.sent),
            per: Some((2 * to.abs_diff(from), "Node added or removed".into())),
            served: None,
            bench_writes: BTreeMap::new(),
            checked: vec![],
        },
    })
}

/// Phase 3's figures.
#[derive(Debug, Clone, Serialize)]
struct Steady {
    drift_period_s: u64,
    periods: u64,
    /// From SIGTERM to the old sks-ccm until the new one reconciled every Service
    /// (it waits for the old one's Lease to expire).
    restart_s: f64,
    /// Calls of the new sks-ccm from its start until every Service was reconciled.
    restart: Calls,
    /// Calls over `periods` drift periods, starting just after a drift list.
    window: Calls,
    list_load_balancers_per_period: f64,
    service_reconciles: u64,
    cpu: Cpu,
    #[serde(skip)]
    restart_requests: requests::Window,
    #[serde(skip)]
    requests: requests::Window,
}

async fn steady(sys: &mut System, p: &Params) -> anyhow::Result<Steady> {
    let period = Duration::from_secs(p.drift_period_s);
    eprintln!("restarting sks-ccm with --lb-drift-period-seconds {}", p.drift_period_s);
    let restart_started = Instant::now();
    sys.restart_ccm(p, &["--lb-drift-period-seconds".to_owned(), p.drift_period_s.to_string()])?;
    let deadline = restart_started + Duration::from_secs(p.timeout_s);
    let restarted = loop {
        let s = sys.sample().await?;
        if s.service_reconciles >= p.services as u64 {
            break s;
        }
        anyhow::ensure!(Instant::now() < deadline, "the restarted sks-ccm did not reconcile every Service in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let restart_s = restart_started.elapsed().as_secs_f64();
    let restart = Calls::of(restarted.calls.clone(), restart_s);
    // Start right after a drift list, so a window of N periods and a half holds exactly N of them.
    let base = restarted.lists();
    let before = loop {
        let s = sys.sample().await?;
        if s.lists() > base {
            break s;
        }
        anyhow::ensure!(Instant::now() < deadline + period * 3, "no drift list within three periods");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("steady state: {} drift periods of {} s", p.periods, p.drift_period_s);
    let cpu = CpuWindow::open(sys.procs);
    let started = Instant::now();
    tokio::time::sleep(period * p.periods as u32 + period / 2).await;
    let after = sys.sample().await?;
    let window = Calls::between(&before, &after, started.elapsed().as_secs_f64());
    let lists = window.by_operation.get("list-load-balancers").copied().unwrap_or(0);
    Ok(Steady {
        drift_period_s: p.drift_period_s,
        periods: p.periods,
        restart_s: round2(restart_s),
        restart,
        list_load_balancers_per_period: round2(lists as f64 / p.periods as f64),
        window,
        service_reconciles: after.service_reconciles - before.service_reconciles,
        cpu: cpu.close(),
        restart_requests: requests::Window {
            name: "restart".into(),
            sent: restarted.sent.clone(),
            per: Some((p.services, "Service".into())),
            served: None,
            bench_writes: BTreeMap::new(),
            checked: vec![],
        },
        requests: requests::Window {
            name: "steady".into(),
            sent: after.sent.since(&before.sent),
            per: Some((p.periods as usize, "drift period".into())),
            served: None,
            bench_writes: BTreeMap::new(),
            checked: vec![],
        },
    })
}

/// Runs the scenario.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let p = Params::of(args);
    let mut sys = System::start(&p).await?;
    let mut settle = serde_json::Map::new();
    // Only the burst's latencies depend on the machine being idle; the other phases count calls.
    settle.insert("burst".into(), args.common.settle("burst").await);
    let (burst, ips) = burst(&sys, &p).await?;
    let churn = churn(&sys, &p, &ips).await?;
    let ccm_first: Memory = sys.procs.ccm.memory()?;
    let ccm_first_cpu = sys.procs.ccm.cpu_seconds()?;
    let steady = steady(&mut sys, &p).await?;
    let ccm_second: Memory = sys.procs.ccm.memory()?;

    let full = p.services >= 200;
    let instant = p.zone_operation_delay_ms == 0;
    let ready_s = || {
        burst
            .all_ready_s
            .map_or_else(|| format!("{} of {} ready", burst.ready_count, p.services), |s| format!("{s:.2} s"))
    };
    let churn_full = full && p.nodes == 10 && p.scale_to == 50;
    let window = &steady.window;
    let lists = window.by_operation.get("list-load-balancers").copied().unwrap_or(0);
    let mut targets = vec![
        Target::new(
            "200 LoadBalancer Services → ingress IP: all within 20 s",
            ready_s(),
            full && instant,
            burst.all_ready_s.is_some_and(|s| s <= 20.0),
        ),
        Target::new(
            "same, TARGETS.md: within 2 s",
            ready_s(),
            full && instant,
            burst.all_ready_s.is_some_and(|s| s <= 2.0),
        ),
        Target::new(
            "nodepool 10 → 50 → 10 with 200 Services: 0 NLB writes",
            format!("{} NLB writes", churn.orchestrator.nlb_writes),
            churn_full,
            churn.orchestrator.nlb_writes == 0,
        ),
        Target::new(
            "same, TARGETS.md: 0 NLB reads",
            format!("{} NLB reads", churn.orchestrator.nlb_reads),
            churn_full,
            churn.orchestrator.nlb_reads == 0,
        ),
        Target::new(
            "steady state: 0 orchestrator writes",
            format!("{} writes in {} drift periods", window.writes, p.periods),
            true,
            window.writes == 0,
        ),
        Target::new(
            "steady state: ≤ 1 list-load-balancers per drift period",
            format!("{lists} in {} periods", p.periods),
            true,
            lists <= p.periods,
        ),
    ];
    let sent = burst.requests.sent.summary();
    let per_service = |n: u64| n as f64 / p.services.max(1) as f64;
    targets.push(Target::new(
        "≤ 3 Kubernetes writes per Service in the burst (finalizer, id annotation, status; events apart), 0 conflicts",
        format!(
            "{:.2} writes, {:.2} conflicts, {:.2} events per Service",
            per_service(sent.writes),
            per_service(sent.conflicts),
            per_service(sent.events)
        ),
        true,
        per_service(sent.writes) <= 3.0 && sent.conflicts == 0,
    ));
    if !instant {
        targets.push(Target::new(
            "TARGETS.md: same, operations take 2 s: all within 10 s",
            ready_s(),
            full && p.zone_operation_delay_ms == 2000,
            burst.all_ready_s.is_some_and(|s| s <= 10.0),
        ));
    }

    let mut burst_table = Table::new(
        &format!(
            "{} LoadBalancer Services created at once → ingress IP (sks-ccm defaults, operations {} ms)",
            p.services, p.zone_operation_delay_ms
        ),
        &["measure", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"],
    );
    burst_table.row(burst.ready.row("POST → ingress IP seen"));
    burst_table.row(burst.create.row("POST round trip"));
    let mut summary = Table::new("Summary", &["measure", "value"]);
    let mut add = |k: &str, v: String| summary.row(vec![k.to_owned(), v]);
    add("all POSTs answered (s)", format!("{:.2}", burst.all_created_s));
    add(
        "all Services ready (s)",
        burst
            .all_ready_s
            .map_or_else(|| format!("NOT ALL: {} of {}", burst.ready_count, p.services), |s| format!("{s:.2}")),
    );
    add("distinct ingress IPs", burst.distinct_ips.to_string());
    add("create errors", burst.create_errors.len().to_string());
    let opt = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"));
    add(
        &format!("scale {} → {}: first new Node / all Ready / all initialized (s)", p.nodes, p.scale_to),
        format!(
            "{} / {} / {:.1}",
            opt(churn.scale_up.first_change_s),
            opt(churn.scale_up.ready_s),
            churn.scale_up.done_s
        ),
    );
    add(
        &format!("scale {} → {}: removed Nodes NotReady / first deleted / all deleted (s)", p.scale_to, p.nodes),
        format!(
            "{} / {} / {:.1}",
            opt(churn.scale_down.ready_s),
            opt(churn.scale_down.first_change_s),
            churn.scale_down.done_s
        ),
    );
    add("ingress IPs unchanged after the churn", format!("{} of {}", churn.ingress_unchanged, ips.len()));
    add("sks-ccm restart → every Service reconciled (s)", format!("{:.1}", steady.restart_s));
    add(
        &format!("steady: {} periods of {} s = {} simulated h", p.periods, p.drift_period_s, p.simulated_hours),
        format!("{} calls, {} writes, {} service reconciles", window.total, window.writes, steady.service_reconciles),
    );

    let mut ops: Vec<&String> = burst
        .orchestrator
        .by_operation
        .keys()
        .chain(churn.orchestrator.by_operation.keys())
        .chain(steady.restart.by_operation.keys())
        .chain(window.by_operation.keys())
        .collect();
    ops.sort();
    ops.dedup();
    let mut calls_table = Table::new(
        "Orchestrator calls by sks-ccm, by operation",
        &["operation", "burst", "churn", "restart", "steady", "mean ms (burst)"],
    );
    let n = |c: &Calls, op: &str| c.by_operation.get(op).copied().unwrap_or(0).to_string();
    for op in ops {
        calls_table.row(vec![
            op.clone(),
            n(&burst.orchestrator, op),
            n(&churn.orchestrator, op),
            n(&steady.restart, op),
            n(window, op),
            burst.orchestrator_mean_ms.get(op).map_or_else(|| "-".to_owned(), |ms| fmt_ms(*ms)),
        ]);
    }
    calls_table.row(vec![
        "total (writes / NLB writes / NLB reads)".to_owned(),
        format!(
            "{} ({}/{}/{})",
            burst.orchestrator.total,
            burst.orchestrator.writes,
            burst.orchestrator.nlb_writes,
            burst.orchestrator.nlb_reads
        ),
        format!(
            "{} ({}/{}/{})",
            churn.orchestrator.total,
            churn.orchestrator.writes,
            churn.orchestrator.nlb_writes,
            churn.orchestrator.nlb_reads
        ),
        format!(
            "{} ({}/{}/{})",
            steady.restart.total, steady.restart.writes, steady.restart.nlb_writes, steady.restart.nlb_reads
        ),
        format!("{} ({}/{}/{})", window.total, window.writes, window.nlb_writes, window.nlb_reads),
        "-".to_owned(),
    ]);

    let mut cpu_table = Table::new(
        "CPU by phase",
        &["phase", "seconds", "sks-ccm CPU s", "sks-ccm", "sks-zone", "kube API", "bench", "other"],
    );
    for (name, seconds, c) in [
        ("burst", burst.orchestrator.seconds, &burst.cpu),
        ("churn", churn.orchestrator.seconds, &churn.cpu),
        ("steady", window.seconds, &steady.cpu),
    ] {
        cpu_table.row(vec![
            name.to_owned(),
            format!("{seconds:.1}"),
            format!("{:.2}", c.ccm_seconds),
            format!("{:.2}", c.ccm_cores),
            format!("{:.2}", c.zone_cores),
            format!("{:.2}", c.kube_cores),
            format!("{:.2}", c.bench_cores),
            format!("{:.2}", c.other_cores),
        ]);
    }
    let mut mem_table = Table::new("sks-ccm memory and CPU time", &["process", "RSS MiB", "peak RSS MiB", "CPU s"]);
    mem_table.row(vec![
        "first (burst + churn), at the end of the churn".to_owned(),
        format!("{:.1}", ccm_first.rss_mib),
        format!("{:.1}", ccm_first.peak_rss_mib),
        format!("{ccm_first_cpu:.2}"),
    ]);
    mem_table.row(vec![
        format!("restarted (drift {} s), after the steady phase", p.drift_period_s),
        format!("{:.1}", ccm_second.rss_mib),
        format!("{:.1}", ccm_second.peak_rss_mib),
        format!("{:.2}", sys.procs.ccm.cpu_seconds()?),
    ]);

    let windows =
        [burst.requests.clone(), churn.requests.clone(), steady.restart_requests.clone(), steady.requests.clone()];
    let mut tables =
        vec![burst_table, summary, calls_table, cpu_table, mem_table, requests::table("sks-ccm", &windows)];
    tables.extend(requests::cross_check_table("sks-ccm", &windows));
    tables.push(targets_table(&targets));
    let results = json!({
        "kube_requests": requests::windows_json(&windows),
        "burst": burst,
        "churn": churn,
        "steady": steady,
        "ccm_memory": {"first": ccm_first, "first_cpu_s": ccm_first_cpu, "restarted": ccm_second},
        "quiet_wait": settle,
        "targets": targets_json(&targets),
    });
    Ok(Report { scenario: "lbs", parameters: serde_json::to_value(&p)?, results, tables })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_classified() {
        let calls: BTreeMap<String, u64> = [
            ("create-load-balancer", 3),
            ("get-load-balancer", 3),
            ("list-load-balancers", 1),
            ("reset-load-balancer-service-field", 1),
            ("list-instances", 2),
            ("scale-sks-nodepool", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let c = Calls::of(calls, 1.0);
        assert_eq!((c.total, c.writes, c.nlb_writes, c.nlb_reads), (11, 5, 4, 4));
    }

    #[test]
    fn labelled_samples_are_summed() {
        let text = "ccm_reconciles_total{controller=\"service\",result=\"ok\"} 5\n\
            ccm_reconciles_total{controller=\"service\",result=\"error\"} 2\n\
            ccm_reconciles_total{controller=\"node\",result=\"ok\"} 9\n";
        assert_eq!(metric_where(text, "ccm_reconciles_total", &["controller=\"service\""]), 7);
        assert_eq!(metric_where(text, "ccm_reconciles_total", &["result=\"ok\""]), 14);
    }
}
