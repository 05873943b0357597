//! `autoscale`: sks-apiserver's nodepool autoscaler.
//!
//! sks-zone (instances boot for `--boot-delay-ms`, then run a simulated
//! kubelet), kube-standin (the cluster's API and its scheduler), sks-ccm and
//! sks-apiserver run on loopback; sks-apiserver reaches the zone through a
//! recording proxy that timestamps every orchestrator call on arrival, and
//! the bench watches the pods, timestamping each pod's first
//! `PodScheduled=False/Unschedulable` when it arrives. Three phases:
//!
//! 1. **scale-up rounds** (`scale_up`): two autoscaled pools of different
//!    instance types at 0 nodes; bursts of pending pods of a fixed mix (the
//!    first of 500, the next ones while the nodes asked for the first boot).
//!    Per burst: last pod Unschedulable → the scale call at the zone; scale
//!    calls per pool; nodes asked for against the bench's own
//!    first-fit-decreasing count (`ffd`); per round: nodes asked for in the
//!    end against the count for all its pods, and empty nodes.
//! 2. **scale-down** (`scale_down`): a node emptied (its one pod deleted) →
//!    the nodepool eviction at the zone, against `--scale-down-unneeded-time`
//!    (2 s here). `--scale-down-delay-after-add` keeps its 10 min default:
//!    it keeps the bursts' pools whole between rounds, and the scale-down
//!    pool is only ever scaled up by hand, which it does not apply to.
//! 3. **memory** (`memory`): a fresh stack whose Kubernetes API holds 1,000
//!    Nodes and 30,000 Pods; sks-apiserver's RSS.
//!
//! Kubernetes API requests are sks-apiserver's own counts
//! (`kube_client_requests_total`), by verb and resource, per phase.

mod calls;
mod ffd;
mod memory;
mod nodes;
mod pods;
mod scale_down;
mod scale_up;
mod system;
mod workload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use self::memory::Memory;
use self::pods::Board;
use self::scale_down::Cycle;
use self::scale_up::{Pools, Round};
use self::system::System;
use self::workload::POOLS;
use super::{Common, Target, targets_json, targets_table};
use crate::report::{Report, Table};
use crate::requests;
use crate::stats::fmt_ms;

/// Options of the `autoscale` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Scale-up rounds; latencies are medians over them [default: 3, quick: 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Pods of each burst of a round, comma-separated [default: 500,100,100, quick: 40,10,10].
    #[arg(long, value_delimiter = ',')]
    pub bursts: Option<Vec<usize>>,
    /// sks-zone's --instance-boot-delay-ms: how long a new instance boots before its kubelet
    /// starts [default: 5000, quick: 2000].
    #[arg(long, value_name = "MS")]
    pub boot_delay_ms: Option<u64>,
    /// Pause between a burst's first scale call and the next burst (its nodes still boot).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub burst_gap_ms: u64,
    /// spec.autoscaling.maxReplicas of both pools.
    #[arg(long, default_value_t = 200)]
    pub max_nodes: i64,
    /// Empty nodes removed, one a cycle; 0 skips the phase [default: 3, quick: 1].
    #[arg(long)]
    pub scale_down_cycles: Option<usize>,
    /// sks-apiserver's --scale-down-unneeded-time, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub unneeded: u64,
    /// Nodes in the Kubernetes API for the memory measurement; 0 skips it [default: 1000, quick: 50].
    #[arg(long)]
    pub cached_nodes: Option<usize>,
    /// Pods (bound to those Nodes) for the memory measurement [default: 30000, quick: 1500].
    #[arg(long)]
    pub cached_pods: Option<usize>,
    /// Seconds over which sks-apiserver's RSS is sampled once they are in [default: 10, quick: 3].
    #[arg(long, value_name = "SECONDS")]
    pub steady: Option<u64>,
    /// Longest wait for any step, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// An extra sks-apiserver argument (repeatable), e.g. `--apiserver-arg=--scan-interval=10s`.
    #[arg(long = "apiserver-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub apiserver_args: Vec<String>,
    /// Log sks-zone, sks-ccm and sks-apiserver at `info` into files in this directory
    /// (default: `warn` to this terminal).
    #[arg(long, value_name = "DIR")]
    pub logs_dir: Option<std::path::PathBuf>,
}

/// The parameters a run used.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    quick: bool,
    rounds: usize,
    bursts: Vec<usize>,
    boot_delay_ms: u64,
    burst_gap_ms: u64,
    max_nodes: i64,
    scale_down_cycles: usize,
    unneeded_s: u64,
    cached_nodes: usize,
    cached_pods: usize,
    steady_s: u64,
    timeout_s: u64,
    apiserver_args: Vec<String>,
    pools: Vec<String>,
    #[serde(skip)]
    logs: sks_e2e::logs::Logs,
}

impl Params {
    fn of(a: &Args) -> Self {
        let c = &a.common;
        let mut apiserver_args = vec![format!("--scale-down-unneeded-time={}s", a.unneeded)];
        apiserver_args.extend(a.apiserver_args.iter().cloned());
        Params {
            quick: c.quick,
            rounds: c.pick(a.rounds, 3, 1),
            bursts: c.pick(a.bursts.clone(), vec![500, 100, 100], vec![40, 10, 10]),
            boot_delay_ms: c.pick(a.boot_delay_ms, 5000, 2000),
            burst_gap_ms: a.burst_gap_ms,
            max_nodes: a.max_nodes,
            scale_down_cycles: c.pick(a.scale_down_cycles, 3, 1),
            unneeded_s: a.unneeded,
            cached_nodes: c.pick(a.cached_nodes, 1000, 50),
            cached_pods: c.pick(a.cached_pods, 30_000, 1500),
            steady_s: c.pick(a.steady, 10, 3),
            timeout_s: a.timeout,
            apiserver_args,
            pools: POOLS.iter().map(|p| format!("{} ({})", p.name, p.instance_type)).collect(),
            logs: a.logs_dir.as_ref().map_or_else(Default::default, |dir| sks_e2e::logs::Logs::Files {
                dir: dir.clone(),
                level: "info".to_owned(),
            }),
        }
    }
}

/// Objects created (or deleted) at once. kube-standin's controllers each
/// look at every pod once per wake-up, and wake-ups coalesce: the more
/// creations in flight, the fewer passes (30,000 pods: 34 s at 200, 145 s at 64).
const CONCURRENCY: usize = 200;

/// Milliseconds, two decimals.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Seconds, three decimals.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// One decimal.
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The median of `values` (the lower middle one for an even count), if any.
fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Runs the scenario.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let p = Params::of(args);
    let sys = System::start(&p).await?;
    let board = Arc::new(Board::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(pods::follow(sys.kube.clone(), board.clone(), ready_tx, stop_rx));
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("opening the pods watch")?
        .context("the pods watch failed to open")?;

    let mut pools = Pools::create(&sys, p.max_nodes).await?;
    // From its start: the lists and watches of the autoscaler's cache, leader election, the metadata store.
    let start_sent = requests::Counts::sent(&sys.sks.metrics().await?);
    let settle = args.common.settle("scale-up rounds").await;
    let mut rounds = Vec::new();
    for r in 1..=p.rounds {
        rounds.push(scale_up::round(&sys, &board, &mut pools, &p, r).await?);
    }
    let cycles = if p.scale_down_cycles > 0 { scale_down::run(&sys, &board, &p).await? } else { Vec::new() };
    let _ = stop_tx.send(true);
    let watch_error = match tokio::time::timeout(Duration::from_secs(5), watcher).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(format!("{e:#}")),
        Ok(Err(e)) => Some(format!("the pods watch task: {e}")),
        Err(_) => Some("the pods watch did not stop".to_owned()),
    };
    drop(sys);
    let memory = if p.cached_nodes > 0 { Some(memory::run(&p).await?) } else { None };
    let mut problems: Vec<String> = watch_error.into_iter().collect();
    for r in rounds.iter().filter(|r| r.running < r.pods) {
        problems.push(format!("round {}: only {} of {} pods ran within {} s", r.round, r.running, r.pods, p.timeout_s));
    }
    for (i, c) in cycles.iter().enumerate().filter(|(_, c)| c.empty_to_evict_ms.is_none()) {
        problems.push(format!("scale-down {}: node {} emptied, never removed", i + 1, c.node));
    }
    let runs = Runs { rounds, cycles, memory, start_sent };
    Ok(report(&p, &runs, settle, problems))
}

/// What the phases measured.
struct Runs {
    rounds: Vec<Round>,
    cycles: Vec<Cycle>,
    memory: Option<Memory>,
    /// What sks-apiserver sent to the Kubernetes API from its start to the first round.
    start_sent: requests::Counts,
}

/// `a / b` per pool, e.g. `57 / 16`.
fn per_pool<T: std::fmt::Display>(values: &[T]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(" / ")
}

fn fmt_opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |m| if m < 0.0 { format!("-{}", fmt_ms(-m)) } else { fmt_ms(m) })
}

/// The scale-up tables: the first bursts (latency, calls, nodes), every burst, every round.
fn scale_up_tables(p: &Params, rounds: &[Round]) -> Vec<Table> {
    let pools = per_pool(&POOLS.iter().map(|s| s.name).collect::<Vec<_>>());
    let mut first = Table::new(
        &format!(
            "Scale-up: the first burst of each round ({} pods) -> scale requests at the zone (per pool: {pools})",
            p.bursts.first().copied().unwrap_or(0)
        ),
        &[
            "round",
            "Unschedulable first -> last, ms",
            "last Unschedulable -> scale, ms",
            "first Unschedulable -> first scale, ms",
            "decisions",
            "scale calls",
            "nodes asked",
            "FFD count (same choice)",
            "FFD count, least waste",
        ],
    );
    let spread = |b: &scale_up::Burst| b.unschedulable_last_ms.zip(b.unschedulable_first_ms).map(|(l, f)| l - f);
    for r in rounds {
        let Some(b) = r.bursts.first() else { continue };
        first.row(vec![
            r.round.to_string(),
            fmt_opt_ms(spread(b)),
            fmt_opt_ms(b.last_unschedulable_to_scale_ms),
            fmt_opt_ms(b.first_unschedulable_to_first_scale_ms),
            b.decisions.to_string(),
            per_pool(&b.scale_sizes.iter().map(Vec::len).collect::<Vec<_>>()),
            per_pool(&b.requested_after),
            per_pool(&b.ffd_so_far),
            format!("{} ({})", per_pool(&b.reference.nodes), b.reference.flexible_to.as_deref().unwrap_or("-")),
        ]);
    }
    let firsts: Vec<&scale_up::Burst> = rounds.iter().filter_map(|r| r.bursts.first()).collect();
    let mut median_row = vec![
        "median".to_owned(),
        fmt_opt_ms(median(firsts.iter().filter_map(|b| spread(b)))),
        fmt_opt_ms(median(firsts.iter().filter_map(|b| b.last_unschedulable_to_scale_ms))),
        fmt_opt_ms(median(firsts.iter().filter_map(|b| b.first_unschedulable_to_first_scale_ms))),
    ];
    median_row.extend(std::iter::repeat_n("-".to_owned(), 5));
    first.row(median_row);
    let mut bursts = Table::new(
        &format!(
            "Bursts: nodes asked for vs. the bench's first-fit-decreasing count, flexible pods where each round's first \
             decision put them (per pool: {pools})"
        ),
        &[
            "round.burst",
            "pods",
            "in service ; asked at start",
            "scale calls (sizes asked)",
            "decisions",
            "last Unschedulable -> scale, ms",
            "asked after",
            "FFD so far",
            "FFD of the burst alone",
            "orchestrator calls",
        ],
    );
    for r in rounds {
        for (i, b) in r.bursts.iter().enumerate() {
            let sizes: Vec<String> = b.scale_sizes.iter().map(|s| format!("{s:?}").replace(' ', "")).collect();
            bursts.row(vec![
                format!("{}.{}", r.round, i + 1),
                b.pods.to_string(),
                format!("{} ; {}", per_pool(&b.in_service_at_start), per_pool(&b.requested_at_start)),
                per_pool(&sizes),
                b.decisions.to_string(),
                fmt_opt_ms(b.last_unschedulable_to_scale_ms),
                per_pool(&b.requested_after),
                per_pool(&b.ffd_so_far),
                per_pool(&b.ffd_alone),
                calls_text(&b.calls),
            ]);
        }
    }
    let mut totals = Table::new(
        "Rounds: every pod of the round running",
        &[
            "round",
            "pods running",
            "s to all running",
            "nodes asked",
            "FFD (flexible pods to)",
            "asked - FFD",
            "after nodes joined: scale calls, nodes",
            "empty nodes",
            "flexible pods on",
            "FFD, least waste",
            "sks-apiserver CPU s / RSS MiB",
            "orchestrator calls",
        ],
    );
    for r in rounds {
        totals.row(vec![
            r.round.to_string(),
            format!("{} of {}", r.running, r.pods),
            r.all_running_s.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
            per_pool(&r.requested),
            format!("{} ({})", per_pool(&r.ffd), r.flexible_to.as_deref().unwrap_or("-")),
            r.beyond_ffd.to_string(),
            format!("{}, +{}", r.late_scale_calls, r.late_nodes),
            r.empty_nodes.to_string(),
            per_pool(&r.flexible_on),
            format!("{} ({})", per_pool(&r.least_waste.nodes), r.least_waste.flexible_to.as_deref().unwrap_or("-")),
            format!("{:.2} / {:.1}", r.sks_cpu_s, r.sks_rss_mib),
            calls_text(&r.calls),
        ]);
    }
    vec![first, bursts, totals]
}

fn calls_text(calls: &std::collections::BTreeMap<String, u64>) -> String {
    if calls.is_empty() {
        return "none".to_owned();
    }
    calls.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
}

fn scale_down_table(p: &Params, cycles: &[Cycle]) -> Table {
    let mut t = Table::new(
        &format!(
            "Scale-down: node emptied -> nodepool eviction at the zone (--scale-down-unneeded-time {} s)",
            p.unneeded_s
        ),
        &[
            "cycle",
            "node",
            "pod DELETE -> gone, ms",
            "empty -> eviction, ms",
            "beyond the unneeded time, ms",
            "evictions",
            "orchestrator calls",
        ],
    );
    for (i, c) in cycles.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            c.node.clone(),
            fmt_ms(c.delete_ms),
            fmt_opt_ms(c.empty_to_evict_ms),
            fmt_opt_ms(c.beyond_unneeded_ms),
            c.evictions.to_string(),
            calls_text(&c.calls),
        ]);
    }
    t.row(vec![
        "median".to_owned(),
        "-".to_owned(),
        fmt_opt_ms(median(cycles.iter().map(|c| c.delete_ms))),
        fmt_opt_ms(median(cycles.iter().filter_map(|c| c.empty_to_evict_ms))),
        fmt_opt_ms(median(cycles.iter().filter_map(|c| c.beyond_unneeded_ms))),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    t
}

fn memory_table(m: &Memory) -> Table {
    let mut t = Table::new(
        &format!("sks-apiserver with {} Nodes and {} Pods in its cluster", m.nodes, m.pods),
        &["what", "value"],
    );
    for (what, value) in [
        ("Nodes + Pods created through the API in, s", format!("{:.1}", m.fill_s)),
        ("sks-apiserver RSS before they were created, MiB", format!("{:.1}", m.rss_before_mib)),
        (
            "sks-apiserver RSS: max sampled over the steady window / at its end, MiB",
            format!("{:.1} / {:.1} (over {:.0} s)", m.rss_max_mib, m.rss_end_mib, m.steady_s),
        ),
        ("sks-apiserver peak RSS since it started (VmHWM), MiB", format!("{:.1}", m.peak_rss_mib)),
        (
            "sks-apiserver CPU in the steady window, cores",
            format!("{:.2} ({} autoscaler rounds)", m.steady_cores, m.steady_rounds),
        ),
        ("kube-standin RSS (the API server's, not what is measured), MiB", format!("{:.1}", m.kube_rss_mib)),
    ] {
        t.row(vec![what.to_owned(), value]);
    }
    t
}

fn request_windows(runs: &Runs) -> Vec<requests::Window> {
    let (rounds, cycles, memory) = (&runs.rounds, &runs.cycles, runs.memory.as_ref());
    let window = |name: String, sent: requests::Counts, per: Option<(usize, &str)>| requests::Window {
        name,
        sent,
        per: per.map(|(n, what)| (n, what.to_owned())),
        served: None,
        bench_writes: Default::default(),
        checked: vec![],
    };
    let mut out = vec![window("start".to_owned(), runs.start_sent.clone(), None)];
    out.extend(rounds.iter().map(|r| window(format!("round {}", r.round), r.sent.clone(), Some((r.pods, "pod")))));
    if !cycles.is_empty() {
        let mut sent = requests::Counts::default();
        for c in cycles {
            sent = sent.plus(&c.sent);
        }
        out.push(window("scale-down".to_owned(), sent, Some((cycles.len(), "node removed"))));
    }
    if let Some(m) = memory {
        out.push(window("memory fill".to_owned(), m.fill_sent.clone(), Some((m.pods, "pod"))));
        out.push(window("memory steady".to_owned(), m.steady_sent.clone(), None));
    }
    out
}

fn targets(p: &Params, rounds: &[Round], cycles: &[Cycle], memory: Option<&Memory>) -> Vec<Target> {
    let full = p.bursts.first().is_some_and(|&n| n >= 500) && p.rounds >= 3;
    let firsts: Vec<&scale_up::Burst> = rounds.iter().filter_map(|r| r.bursts.first()).collect();
    let latency = median(firsts.iter().filter_map(|b| b.last_unschedulable_to_scale_ms.map(|l| l.max(0.0))));
    let asked = |b: &scale_up::Burst| b.requested_after.iter().sum::<i64>();
    let counted = |v: &[usize]| i64::try_from(v.iter().sum::<usize>()).unwrap_or(i64::MAX);
    let first_ok = firsts.iter().all(|b| asked(b) <= counted(&b.ffd_so_far) && b.decisions == 1);
    let beyond: i64 = rounds.iter().map(|r| r.beyond_ffd).max().unwrap_or(0);
    let empty: usize = rounds.iter().map(|r| r.empty_nodes).sum();
    let late: i64 = rounds.iter().map(|r| r.late_nodes).max().unwrap_or(0);
    let per_pool_calls = rounds.iter().flat_map(|r| &r.bursts).map(|b| b.most_per_pool).max().unwrap_or(0);
    let mut out = vec![
        Target::new(
            "last of 500 pods Unschedulable -> scale request at the orchestrator <= 1 s (median of rounds)",
            fmt_opt_ms(latency) + " ms",
            full,
            latency.is_some_and(|l| l <= 1000.0),
        ),
        Target::new(
            "nodes asked for 500 pods over 2 pools <= the first-fit-decreasing count (one decision)",
            firsts
                .iter()
                .map(|b| format!("{} vs {} ({} decision)", asked(b), counted(&b.ffd_so_far), b.decisions))
                .collect::<Vec<_>>()
                .join(", "),
            full,
            first_ok,
        ),
        Target::new(
            "0 overshoot across 3 bursts (nodes asked <= FFD count of all pods; no empty node)",
            format!(
                "{beyond} beyond the FFD count (worst round), {empty} empty nodes; up to {late} nodes asked after nodes joined"
            ),
            full && p.bursts.len() >= 3,
            beyond <= 0 && empty == 0,
        ),
        Target::new(
            "1 scale call per pool per decision",
            format!("at most {per_pool_calls} per pool per decision"),
            full,
            per_pool_calls <= 1,
        ),
    ];
    if let Some(m) = memory {
        out.push(Target::new(
            "sks-apiserver RSS < 64 MiB with 1,000 Nodes and 30,000 Pods",
            format!("{:.1} MiB (max sampled; peak {:.1})", m.rss_max_mib, m.peak_rss_mib),
            m.nodes >= 1000 && m.pods >= 30_000,
            m.rss_max_mib < 64.0,
        ));
    }
    if !cycles.is_empty() {
        let beyond = median(cycles.iter().filter_map(|c| c.beyond_unneeded_ms));
        let all = cycles.iter().all(|c| c.beyond_unneeded_ms.is_some_and(|b| b <= 2000.0));
        out.push(Target::new(
            "empty node removed within 2 s of the unneeded time",
            format!("{} ms beyond it (median of {})", fmt_opt_ms(beyond), cycles.len()),
            cycles.len() >= 3,
            all,
        ));
    }
    out
}

fn report(p: &Params, runs: &Runs, settle: serde_json::Value, problems: Vec<String>) -> Report {
    let (rounds, cycles, memory) = (&runs.rounds, &runs.cycles, runs.memory.as_ref());
    let targets = targets(p, rounds, cycles, memory);
    let mut tables = scale_up_tables(p, rounds);
    if !cycles.is_empty() {
        tables.push(scale_down_table(p, cycles));
    }
    if let Some(m) = memory {
        tables.push(memory_table(m));
    }
    let windows = request_windows(runs);
    tables.push(requests::table("sks-apiserver", &windows));
    tables.push(targets_table(&targets));
    if !problems.is_empty() {
        let mut t = Table::new("Problems", &["problem"]);
        for e in &problems {
            t.row(vec![e.clone()]);
        }
        tables.push(t);
    }
    let results = json!({
        "rounds": rounds,
        "scale_down": cycles,
        "memory": memory,
        "kube_requests": requests::windows_json(&windows),
        "quiet_wait": settle,
        "problems": problems,
        "targets": targets_json(&targets),
    });
    Report { scenario: "autoscale", parameters: serde_json::to_value(p).unwrap_or_default(), results, tables }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_units() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.0), "the lower middle of an even count");
        assert_eq!(median(std::iter::empty()), None);
        assert_eq!(ms(Duration::from_micros(1234)), 1.23);
        assert_eq!(secs(Duration::from_millis(1500)), 1.5);
        assert_eq!(fmt_opt_ms(Some(-12.5)), "-12.5");
        assert_eq!(per_pool(&[3, 4]), "3 / 4");
    }
}
