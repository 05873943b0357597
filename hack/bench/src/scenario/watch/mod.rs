//! `watch`: many watches on nodepools multiplexed over a few HTTP/2
//! connections; changes made through the apiserver; the delay until every
//! watch has the change; the apiserver's memory with the watches open.

mod delays;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::json;

use self::delays::delays;
use self::stream::{Log, Opened, Shared, open_on, watcher};
use super::api::kube_window;
use super::{Common, Target, targets_json, targets_table};
use crate::procfs::{self, CpuMeter, Proc};
use crate::report::{Report, Table};
use crate::requests;
use crate::stack::{NODEPOOLS, SEED_NODEPOOL, Stack, metric_total, nodepool_name};
use crate::stats::fmt_ms;

/// Longest a watch stays open (asked of the server; the scenario ends well before).
const WATCH_TIMEOUT_S: u64 = 900;

/// Options of the `watch` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Nodepools created besides the seeded one [default: 1000, quick: 50].
    #[arg(long)]
    pub nodepools: Option<usize>,
    /// Watches opened on nodepools [default: 1000, quick: 100].
    #[arg(long)]
    pub watches: Option<usize>,
    /// HTTP/2 connections the watches are spread over [default: 10].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Changes made, one at a time [default: 20, quick: 5].
    #[arg(long)]
    pub changes: Option<usize>,
    /// Longest wait for one change to reach every watch, seconds.
    #[arg(long, default_value_t = 15)]
    pub change_timeout: u64,
    /// The apiserver's --refresh-interval [default: 10s, quick: 1s].
    #[arg(long)]
    pub refresh_interval: Option<String>,
    /// Run sks-apiserver as deployed, with a Kubernetes API (see `api --help`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kube: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Params {
    quick: bool,
    nodepools: usize,
    watches: usize,
    connections: usize,
    changes: usize,
    change_timeout_s: u64,
    refresh_interval: String,
    changed_nodepool: String,
    transport: &'static str,
    kube: bool,
}

impl Params {
    fn of(a: &Args) -> Self {
        let c = &a.common;
        let nodepools = c.pick(a.nodepools, 1000, 50);
        Params {
            quick: c.quick,
            nodepools,
            watches: c.pick(a.watches, 1000, 100),
            connections: c.pick(a.connections, 10, 10).max(1),
            changes: c.pick(a.changes, 20, 5),
            change_timeout_s: a.change_timeout,
            // Quick windows are a few seconds: a short refresh still shows calls in them.
            refresh_interval: c.pick(a.refresh_interval.clone(), "10s".to_owned(), "1s".to_owned()),
            changed_nodepool: if nodepools > 0 { nodepool_name(0) } else { SEED_NODEPOOL.to_owned() },
            transport: "TLS 1.3, client certificate, HTTP/2 (ALPN h2), watches multiplexed as streams",
            kube: a.kube,
        }
    }
}

/// Runs the scenario.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let p = Params::of(args);
    // Every watch is the bench's one user; sks-apiserver's per-user limit (250
    // by default) is for many users behind kube-apiserver, so it is lifted here.
    let limit = (p.watches + 10).to_string();
    let api_args = ["--refresh-interval", &p.refresh_interval, "--max-watches-per-user", &limit];
    let stack = Stack::start(p.nodepools, &api_args, p.kube).await?;
    let mem_loaded = stack.api_proc.memory()?;
    let start_requests = (stack.kube_requests().await?, stack.kube_served().await?);
    let (status, list) = stack.get_json(NODEPOOLS).await?;
    if status != 200 {
        bail!("LIST answered {status}: {list}");
    }
    let rv = list["metadata"]["resourceVersion"].as_str().context("LIST resourceVersion")?.to_owned();
    let start_replicas = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == p.changed_nodepool.as_str()))
        .and_then(|i| i["spec"]["replicas"].as_i64())
        .context("replicas of the changed nodepool")?;
    // Alternate so every change differs from the one before it.
    let values: Vec<i64> =
        (0..p.changes).map(|k| if k % 2 == 0 { start_replicas + 1 } else { start_replicas }).collect();
    let shared = Arc::new(Shared {
        name: p.changed_nodepool.clone(),
        values: values.clone(),
        seen: (0..p.changes).map(|_| AtomicUsize::new(0)).collect(),
    });

    eprintln!("opening {} watches over {} HTTP/2 connections", p.watches, p.connections);
    let sockets_before = stack.api_proc.sockets();
    let opening = Instant::now();
    let mut conns = Vec::with_capacity(p.connections);
    for i in 0..p.connections {
        conns.push(stack.target.h2().await.with_context(|| format!("HTTP/2 connection {i}"))?);
    }
    let path = format!("{NODEPOOLS}?watch=1&resourceVersion={rv}&timeoutSeconds={WATCH_TIMEOUT_S}");
    let per_conn: Vec<usize> =
        (0..p.connections).map(|i| p.watches / p.connections + usize::from(i < p.watches % p.connections)).collect();
    let opened: Vec<Opened> =
        futures::future::join_all(conns.iter().zip(&per_conn).map(|(c, &n)| open_on(c.clone(), path.clone(), n))).await;
    let open_seconds = opening.elapsed().as_secs_f64();
    let failures: Vec<String> = opened
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.failure.as_ref().map(|f| format!("connection {i}: {} opened, then {f}", o.bodies.len())))
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watchers: Vec<_> = opened
        .into_iter()
        .flat_map(|o| o.bodies)
        .map(|body| tokio::spawn(watcher(body, shared.clone(), stop_rx.clone())))
        .collect();
    let open = watchers.len();
    for f in &failures {
        eprintln!("watch open failure: {f}");
    }
    let metrics = stack.metrics().await?;
    let server_watches = metric_total(&metrics, "apiserver_open_watches");
    let sockets = stack.api_proc.sockets().saturating_sub(sockets_before);
    // Give the server a moment to settle (streams registered, buffers allocated) before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_watching = stack.api_proc.memory()?;

    let settle = args.common.settle("changes").await;
    eprintln!("{} changes of {} through the apiserver", p.changes, p.changed_nodepool);
    let cpu = CpuMeter::start(&[stack.api_proc, Proc::current(), stack.zone_proc]);
    let requests_before = (stack.kube_requests().await?, stack.kube_served().await?);
    let mut sent = Vec::with_capacity(p.changes);
    let mut answered = Vec::with_capacity(p.changes);
    let mut incomplete = 0;
    let patch_url = format!("{}{NODEPOOLS}/{}", stack.api.url, p.changed_nodepool);
    for (k, value) in values.iter().enumerate() {
        let t0 = Instant::now();
        let resp = stack
            .http
            .patch(&patch_url)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"spec": {"replicas": value}}).to_string())
            .send()
            .await?;
        let t1 = Instant::now();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status != 200 || body["spec"]["replicas"] != *value {
            bail!("PATCH replicas={value} answered {status}: {body}");
        }
        sent.push(t0);
        answered.push(t1);
        let deadline = t1 + Duration::from_secs(p.change_timeout_s);
        // Watchers stamp their own arrival times; polling here only decides when to go on.
        while shared.seen[k].load(Ordering::SeqCst) < open && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if shared.seen[k].load(Ordering::SeqCst) < open {
            incomplete += 1;
            eprintln!(
                "change {k}: {} of {open} watches had it after {}s",
                shared.seen[k].load(Ordering::SeqCst),
                p.change_timeout_s
            );
        }
    }
    let change_requests = (
        stack.kube_requests().await?.since(&requests_before.0),
        stack.kube_served().await?.zip(requests_before.1.as_ref()).map(|(now, before)| now.since(before)),
    );
    let cores = cpu.cores();
    let other_cores = ((cpu.machine_cores() - cores.iter().sum::<f64>()).max(0.0) * 100.0).round() / 100.0;
    let mem_end = stack.api_proc.memory()?;
    let _ = stop_tx.send(true);
    let logs: Vec<Log> = futures::stream::iter(watchers)
        .then(|w| async move { tokio::time::timeout(Duration::from_secs(10), w).await })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.ok().and_then(Result::ok).unwrap_or_default())
        .collect();

    let watch_errors: Vec<String> = logs.iter().filter_map(|l| l.error.clone()).take(5).collect();
    let events: u64 = logs.iter().map(|l| l.events).sum();
    let d = delays(&logs, &sent, &answered, &values, open);
    let (missed, early) = (d.missed, d.early);

    let all_open = open == p.watches;
    let targets = vec![
        Target::new(
            "change to all watches p99 < 1 s (1,000 watches)",
            format!("{} ms from PATCH sent ({open} watches, {missed} missed)", fmt_ms(d.from_sent.p99_ms)),
            p.watches >= 1000,
            // From the PATCH being sent is an upper bound: it includes the orchestrator write and refresh.
            d.from_sent.p99_ms < 1000.0 && missed == 0 && all_open,
        ),
        Target::new(
            "RSS < 50 MiB, 1,000 nodepools + 1,000 watches",
            format!("{:.1} MiB peak", mem_end.peak_rss_mib),
            p.watches >= 1000 && p.nodepools >= 1000,
            mem_end.peak_rss_mib < 50.0 && all_open,
        ),
    ];

    let mut watch_table = Table::new(
        &format!(
            "{open} of {} watches on {} connections, {} nodepools; {} changes of {}",
            p.watches,
            p.connections,
            p.nodepools + 1,
            p.changes,
            p.changed_nodepool
        ),
        &["delay to each watch", "deliveries", "p50 ms", "p90 ms", "p99 ms", "max ms"],
    );
    watch_table.row(d.from_sent.row("from PATCH sent (upper bound)"));
    watch_table.row(d.from_first.row("from first watch to get it (fan-out)"));
    watch_table.row(d.from_response.row("from PATCH response (0 if before)"));
    watch_table.row(d.spread.row("first to last watch, per change"));
    watch_table.row(d.patch.row("PATCH round trip, per change"));
    let mut facts = Table::new("Watch fan-out", &["what", "value"]);
    for (what, value) in [
        ("watches open (client / server gauge)", format!("{open} / {server_watches}")),
        ("time to open them, s", format!("{open_seconds:.2}")),
        ("new server sockets", sockets.to_string()),
        ("deliveries missed", missed.to_string()),
        ("changes not delivered to all in time", incomplete.to_string()),
        ("deliveries before the PATCH response", early.to_string()),
        ("events received", events.to_string()),
        ("apiserver CPU during changes, cores", format!("{:.2}", cores[0])),
        ("bench CPU during changes, cores", format!("{:.2}", cores[1])),
        ("sks-zone CPU during changes, cores", format!("{:.2}", cores[2])),
        ("other CPU during changes, cores", format!("{other_cores:.2}")),
    ] {
        facts.row(vec![what.to_owned(), value]);
    }
    let mut mem_table = Table::new("sks-apiserver memory", &["when", "RSS MiB", "peak RSS MiB"]);
    for (when, m) in [
        (format!("{} nodepools loaded", p.nodepools + 1), &mem_loaded),
        (format!("{open} watches open"), &mem_watching),
        ("after the changes".to_owned(), &mem_end),
    ] {
        mem_table.row(vec![when, format!("{:.1}", m.rss_mib), format!("{:.1}", m.peak_rss_mib)]);
    }
    let windows = [
        kube_window("start", start_requests, Some((p.nodepools + 1, "nodepool"))),
        kube_window("changes", change_requests, Some((p.changes, "change"))),
    ];
    let mut tables = vec![watch_table, facts, mem_table];
    tables.extend(p.kube.then(|| requests::table("sks-apiserver", &windows)));
    tables.extend(requests::cross_check_table("sks-apiserver", &windows));
    tables.push(targets_table(&targets));
    if !failures.is_empty() || !watch_errors.is_empty() {
        let mut t = Table::new("Problems", &["problem"]);
        for f in failures.iter().chain(&watch_errors) {
            t.row(vec![f.clone()]);
        }
        tables.push(t);
    }

    let results = json!({
        "kube_requests": p.kube.then(|| requests::windows_json(&windows)),
        "watches_open": open,
        "server_open_watches": server_watches,
        "open_seconds": open_seconds,
        "open_failures": failures,
        "new_server_sockets": sockets,
        "delay_from_patch_sent": d.from_sent,
        "delay_from_first_delivery": d.from_first,
        "delay_from_patch_response": d.from_response,
        "spread_first_to_last": d.spread,
        "patch": d.patch,
        "deliveries_missed": missed,
        "changes_incomplete": incomplete,
        "deliveries_before_response": early,
        "events_received": events,
        "watch_errors": watch_errors,
        "changes": d.changes,
        "cpu_cores_during_changes": {"apiserver": cores[0], "bench": cores[1], "zone": cores[2], "other": other_cores},
        "apiserver_memory": {"loaded": mem_loaded, "watching": mem_watching, "end": mem_end, "peak_rss_mib": procfs::peak_mib(&[mem_loaded, mem_watching, mem_end])},
        "setup": {"create_nodepools_s": stack.create_seconds, "apiserver_ready_s": stack.ready_seconds},
        "quiet_wait": settle,
        "targets": targets_json(&targets),
    });
    Ok(Report { scenario: "watch", parameters: serde_json::to_value(&p)?, results, tables })
}
