//! `api`: GET and LIST throughput and latency of sks-apiserver over TLS with a
//! client certificate, its memory with many nodepools, and how many
//! orchestrator calls it makes idle and under load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::{Common, Target, targets_json, targets_table};
use crate::load::{self, Outcome, Plan};
use crate::procfs::{self, CpuMeter, Proc};
use crate::report::{Report, Table};
use crate::requests::{self, Counts};
use crate::stack::{NODEPOOLS, Stack, calls_between, orchestrator_mean_ms};
use crate::stats::fmt_ms;

/// kubectl's Accept header for `kubectl get`: a server-side Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Options of the `api` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Nodepools created besides the seeded one [default: 1000, quick: 50].
    #[arg(long)]
    pub nodepools: Option<usize>,
    /// Concurrent GET connections [default: 64, quick: 16].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Concurrent LIST connections [default: 16].
    #[arg(long)]
    pub list_concurrency: Option<usize>,
    /// Measured seconds of each load phase [default: 10, quick: 3].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Seconds without clients to count orchestrator calls [default: 30, quick: 5].
    #[arg(long, value_name = "SECONDS")]
    pub idle: Option<u64>,
    /// The apiserver's --refresh-interval [default: 10s, quick: 1s].
    #[arg(long)]
    pub refresh_interval: Option<String>,
    /// Run sks-apiserver as deployed, with a Kubernetes API (kube-standin, or
    /// the real one with KUBE_ASSETS): metadata in ConfigMaps, leader election,
    /// the Node watch. Its requests to it are reported. `false`: files, no API.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kube: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Params {
    quick: bool,
    nodepools: usize,
    concurrency: usize,
    list_concurrency: usize,
    duration_s: u64,
    warmup_s: f64,
    idle_s: u64,
    refresh_interval: String,
    transport: &'static str,
    kube: bool,
}

impl Params {
    fn of(a: &Args) -> Self {
        let c = &a.common;
        Params {
            quick: c.quick,
            nodepools: c.pick(a.nodepools, 1000, 50),
            concurrency: c.pick(a.concurrency, 64, 16),
            list_concurrency: c.pick(a.list_concurrency, 16, 16),
            duration_s: c.pick(a.duration, 10, 3),
            warmup_s: if c.quick { 0.5 } else { 2.0 },
            idle_s: c.pick(a.idle, 30, 5),
            // Quick windows are a few seconds: a short refresh still shows calls in them.
            refresh_interval: c.pick(a.refresh_interval.clone(), "10s".to_owned(), "1s".to_owned()),
            transport: "TLS 1.3, client certificate, HTTP/1.1 keep-alive, one connection per worker",
            kube: a.kube,
        }
    }
}

/// Orchestrator calls over a window.
#[derive(Debug, Clone, Serialize)]
struct Calls {
    seconds: f64,
    calls: u64,
    per_minute: f64,
    by_operation: BTreeMap<String, u64>,
}

/// CPU use during a window, in cores.
#[derive(Debug, Clone, Serialize)]
struct Cpu {
    apiserver: f64,
    zone: f64,
    bench: f64,
    /// Everything else on the machine (other users of the shared CPUs).
    other: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Phase {
    #[serde(flatten)]
    load: Outcome,
    concurrency: usize,
    cpu_cores: Cpu,
    orchestrator: Calls,
    /// What sks-apiserver sent to the Kubernetes API meanwhile, and what it served.
    #[serde(skip)]
    kube_requests: (Counts, Option<Counts>),
}

/// Counts orchestrator calls and CPU over whatever `f` does.
struct Window {
    calls: BTreeMap<String, u64>,
    kube_requests: (Counts, Option<Counts>),
    cpu: CpuMeter,
    started: Instant,
}

impl Window {
    async fn open(stack: &Stack) -> anyhow::Result<Self> {
        Ok(Window {
            calls: stack.orchestrator_calls().await?,
            kube_requests: (stack.kube_requests().await?, stack.kube_served().await?),
            cpu: CpuMeter::start(&[stack.api_proc, stack.zone_proc, Proc::current()]),
            started: Instant::now(),
        })
    }

    async fn close(self, stack: &Stack) -> anyhow::Result<(Calls, Cpu, (Counts, Option<Counts>))> {
        let seconds = self.started.elapsed().as_secs_f64();
        let cores = self.cpu.cores();
        let (by_operation, calls) = calls_between(&self.calls, &stack.orchestrator_calls().await?);
        let per_minute = (calls as f64 / seconds * 60.0 * 10.0).round() / 10.0;
        let (sent, served) = &self.kube_requests;
        let kube_requests = (
            stack.kube_requests().await?.since(sent),
            stack.kube_served().await?.zip(served.as_ref()).map(|(now, before)| now.since(before)),
        );
        Ok((
            Calls { seconds: (seconds * 10.0).round() / 10.0, calls, per_minute, by_operation },
            Cpu {
                apiserver: cores[0],
                zone: cores[1],
                bench: cores[2],
                other: ((self.cpu.machine_cores() - cores.iter().sum::<f64>()).max(0.0) * 100.0).round() / 100.0,
            },
            kube_requests,
        ))
    }
}

async fn phase(stack: &Stack, plan: &Plan) -> anyhow::Result<Phase> {
    let window = Window::open(stack).await?;
    let load = load::run(&stack.target, plan).await?;
    let (orchestrator, cpu_cores, kube_requests) = window.close(stack).await?;
    Ok(Phase { load, concurrency: plan.concurrency, cpu_cores, orchestrator, kube_requests })
}

/// Runs the scenario.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let p = Params::of(args);
    let stack = Stack::start(p.nodepools, &["--refresh-interval", &p.refresh_interval], p.kube).await?;
    let mem_loaded = stack.api_proc.memory()?;
    let start_requests = (stack.kube_requests().await?, stack.kube_served().await?);

    let mut settle = serde_json::Map::new();
    settle.insert("idle".into(), args.common.settle("idle").await);
    eprintln!("idle for {} s (orchestrator calls without clients)", p.idle_s);
    let window = Window::open(&stack).await?;
    tokio::time::sleep(Duration::from_secs(p.idle_s)).await;
    let (idle, idle_cpu, idle_requests) = window.close(&stack).await?;

    let warmup = Duration::from_secs_f64(p.warmup_s);
    let duration = Duration::from_secs(p.duration_s);
    settle.insert("get".into(), args.common.settle("GET").await);
    eprintln!("GET one nodepool, {} connections, {} s", p.concurrency, p.duration_s);
    let gets = Arc::new(stack.names.iter().map(|n| format!("{NODEPOOLS}/{n}")).collect::<Vec<_>>());
    let get_plan = Plan { paths: gets, accept: "application/json", concurrency: p.concurrency, warmup, duration };
    let get = phase(&stack, &get_plan).await?;
    let mem_after_get = stack.api_proc.memory()?;

    settle.insert("list".into(), args.common.settle("LIST").await);
    eprintln!("LIST {} nodepools as Table, {} connections, {} s", p.nodepools + 1, p.list_concurrency, p.duration_s);
    let lists = Arc::new(vec![NODEPOOLS.to_owned()]);
    let list_plan = Plan { paths: lists, accept: TABLE_ACCEPT, concurrency: p.list_concurrency, warmup, duration };
    let list = phase(&stack, &list_plan).await?;
    let mem_end = stack.api_proc.memory()?;
    let orchestrator_ms = orchestrator_mean_ms(&stack.metrics().await?);

    let full = p.nodepools >= 1000;
    let targets = vec![
        Target::new(
            "GET ≥ 10,000 req/s at concurrency 64",
            format!("{:.0} req/s at {}", get.load.throughput_rps, get.concurrency),
            get.concurrency == 64,
            get.load.throughput_rps >= 10_000.0,
        ),
        Target::new(
            "GET p99 < 5 ms at concurrency 64",
            format!("{} ms", fmt_ms(get.load.latency.p99_ms)),
            get.concurrency == 64,
            get.load.latency.p99_ms < 5.0,
        ),
        Target::new(
            "LIST 1,000 as Table ≥ 300 req/s",
            format!("{:.0} req/s ({} items)", list.load.throughput_rps, p.nodepools + 1),
            full,
            list.load.throughput_rps >= 300.0,
        ),
        Target::new(
            "LIST 1,000 as Table p99 < 100 ms",
            format!("{} ms", fmt_ms(list.load.latency.p99_ms)),
            full,
            list.load.latency.p99_ms < 100.0,
        ),
        Target::new(
            "orchestrator calls independent of clients",
            format!(
                "{}/min idle, {}/min GET, {}/min LIST",
                idle.per_minute, get.orchestrator.per_minute, list.orchestrator.per_minute
            ),
            true,
            [&get.orchestrator, &list.orchestrator]
                .iter()
                .all(|c| within_refresh_budget(&idle, c, refresh_seconds(&p.refresh_interval))),
        ),
    ];

    let mut load_table = Table::new(
        &format!("sks-apiserver with {} nodepools: TLS + client certificate, HTTP/1.1 keep-alive", p.nodepools + 1),
        &[
            "request",
            "conns",
            "requests",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "body B",
            "apiserver CPU",
            "bench CPU",
            "other CPU",
        ],
    );
    for (name, ph) in [("GET nodepool (JSON)", &get), ("LIST nodepools (Table)", &list)] {
        let l = &ph.load;
        load_table.row(vec![
            name.to_owned(),
            ph.concurrency.to_string(),
            l.requests.to_string(),
            format!("{:.0}", l.throughput_rps),
            fmt_ms(l.latency.p50_ms),
            fmt_ms(l.latency.p90_ms),
            fmt_ms(l.latency.p99_ms),
            fmt_ms(l.latency.max_ms),
            l.errors.to_string(),
            l.mean_body_bytes.to_string(),
            format!("{:.2}", ph.cpu_cores.apiserver),
            format!("{:.2}", ph.cpu_cores.bench),
            format!("{:.2}", ph.cpu_cores.other),
        ]);
    }
    let mut calls_table = Table::new(
        &format!("Orchestrator calls by sks-apiserver (--refresh-interval {})", p.refresh_interval),
        &["window", "clients", "seconds", "calls", "calls/min"],
    );
    for (name, clients, c) in [
        ("idle", 0, &idle),
        ("GET load", p.concurrency, &get.orchestrator),
        ("LIST load", p.list_concurrency, &list.orchestrator),
    ] {
        calls_table.row(vec![
            name.to_owned(),
            clients.to_string(),
            format!("{:.1}", c.seconds),
            c.calls.to_string(),
            format!("{:.1}", c.per_minute),
        ]);
    }
    let mut op_table =
        Table::new("Orchestrator request time seen by sks-apiserver (mean since start)", &["operation", "ms"]);
    for (op, ms) in &orchestrator_ms {
        op_table.row(vec![op.clone(), fmt_ms(*ms)]);
    }
    let mut mem_table = Table::new("sks-apiserver memory", &["when", "RSS MiB", "peak RSS MiB"]);
    for (when, m) in [
        (format!("{} nodepools loaded", p.nodepools + 1), &mem_loaded),
        ("after GET load".to_owned(), &mem_after_get),
        ("after LIST load".to_owned(), &mem_end),
    ] {
        mem_table.row(vec![when, format!("{:.1}", m.rss_mib), format!("{:.1}", m.peak_rss_mib)]);
    }
    let mut setup_table = Table::new("Setup", &["step", "seconds"]);
    setup_table
        .row(vec![format!("create {} nodepools in sks-zone", p.nodepools), format!("{:.2}", stack.create_seconds)]);
    setup_table.row(vec!["sks-apiserver start to complete LIST".to_owned(), format!("{:.2}", stack.ready_seconds)]);

    let windows = [
        kube_window("start", start_requests, Some((p.nodepools + 1, "nodepool"))),
        kube_window("idle", idle_requests, None),
        kube_window("GET load", get.kube_requests.clone(), None),
        kube_window("LIST load", list.kube_requests.clone(), None),
    ];
    let cross_check = requests::cross_check_table("sks-apiserver", &windows);
    let results = json!({
        "kube_requests": p.kube.then(|| requests::windows_json(&windows)),
        "get": get,
        "list": list,
        "idle": {"orchestrator": idle, "cpu_cores": idle_cpu},
        "orchestrator_mean_ms_by_operation": orchestrator_ms,
        "apiserver_memory": {"loaded": mem_loaded, "after_get": mem_after_get, "after_list": mem_end, "peak_rss_mib": procfs::peak_mib(&[mem_loaded, mem_after_get, mem_end])},
        "setup": {"create_nodepools_s": stack.create_seconds, "apiserver_ready_s": stack.ready_seconds},
        "quiet_wait": settle,
        "targets": targets_json(&targets),
    });
    Ok(Report {
        scenario: "api",
        parameters: serde_json::to_value(&p)?,
        results,
        tables: [load_table, calls_table, op_table, mem_table, setup_table]
            .into_iter()
            .chain(p.kube.then(|| requests::table("sks-apiserver", &windows)))
            .chain(cross_check)
            .chain([targets_table(&targets)])
            .collect(),
    })
}

/// A window of sks-apiserver's requests to the Kubernetes API, and what the
/// API served meanwhile (only sks-apiserver writes there: the bench reads
/// /metrics, which is no write).
pub fn kube_window(
    name: &str,
    (sent, served): (Counts, Option<Counts>),
    per: Option<(usize, &str)>,
) -> requests::Window {
    requests::Window {
        name: name.to_owned(),
        sent,
        per: per.map(|(n, what)| (n, what.to_owned())),
        served,
        bench_writes: BTreeMap::new(),
        checked: vec![],
    }
}

/// Whether a window under load made no more calls than the periodic refresh
/// explains: calls per refresh (from the idle window) times the refreshes that
/// fit in the window, plus one, since a window may catch one more than its length.
fn within_refresh_budget(idle: &Calls, load: &Calls, refresh_s: f64) -> bool {
    let idle_refreshes = (idle.seconds / refresh_s).round().max(1.0);
    let per_refresh = idle.calls as f64 / idle_refreshes;
    let budget = per_refresh * ((load.seconds / refresh_s).floor() + 1.0);
    load.calls as f64 <= budget.ceil()
}

/// Seconds of a duration flag like `10s`, `500ms` or `1m` (10 when unparsable).
fn refresh_seconds(s: &str) -> f64 {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: f64 = s[..split].parse().unwrap_or(10.0);
    match &s[split..] {
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_intervals_parse() {
        assert_eq!(refresh_seconds("10s"), 10.0);
        assert_eq!(refresh_seconds("500ms"), 0.5);
        assert_eq!(refresh_seconds("2m"), 120.0);
        assert_eq!(refresh_seconds("7"), 7.0);
    }

    #[test]
    fn refresh_budget() {
        let calls = |seconds: f64, calls: u64| Calls { seconds, calls, per_minute: 0.0, by_operation: BTreeMap::new() };
        let idle = calls(30.0, 6);
        assert!(within_refresh_budget(&idle, &calls(12.0, 4), 10.0));
        assert!(!within_refresh_budget(&idle, &calls(12.0, 5), 10.0));
        assert!(!within_refresh_budget(&idle, &calls(12.0, 200), 10.0));
    }
}
