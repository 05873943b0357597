//! The scenarios, one module each. A scenario starts what it measures, runs
//! bounded load against it and returns a [`Report`].

pub mod api;
pub mod autoscale;
pub mod lbs;
pub mod nodes;
pub mod watch;

use std::path::PathBuf;

use clap::Subcommand;

use crate::report::{Report, Table};

/// Options every scenario has.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Small sizes: the whole scenario in under 30 s (a smoke test, not a measurement).
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON report goes [default: target/bench/<scenario>.json].
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Before each measured phase, wait up to this many seconds for the machine
    /// to be idle (under --quiet-cores busy), so others' work is not measured.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub quiet_wait: u64,
    /// What counts as idle for --quiet-wait, in busy cores.
    #[arg(long, default_value_t = 0.3)]
    pub quiet_cores: f64,
}

impl Common {
    /// `full` normally, `quick` with --quick, unless `explicit` was given.
    pub fn pick<T>(&self, explicit: Option<T>, full: T, quick: T) -> T {
        explicit.unwrap_or(if self.quick { quick } else { full })
    }
}

impl Common {
    /// Waits for an idle machine as asked; returns (seconds waited, busy cores at the end) for the report.
    pub async fn settle(&self, phase: &str) -> serde_json::Value {
        if self.quiet_wait == 0 {
            return serde_json::Value::Null;
        }
        let (waited, cores) =
            crate::procfs::wait_quiet(std::time::Duration::from_secs(self.quiet_wait), self.quiet_cores).await;
        if cores > self.quiet_cores {
            eprintln!("{phase}: machine still busy ({cores} cores) after {waited} s; measuring anyway");
        }
        serde_json::json!({"waited_s": waited, "busy_cores_before": cores})
    }
}

/// A benchmark scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// sks-apiserver GET and LIST (as Table) throughput and latency over TLS, memory, orchestrator calls.
    Api(api::Args),
    /// sks-apiserver watch fan-out: delay from a change to every open watch, memory with many watches.
    Watch(watch::Args),
    /// sks-ccm: a burst of joining Nodes and kubelet-serving CSRs (time to initialized and approved,
    /// orchestrator calls, memory), then its memory with many Nodes cached.
    Nodes(nodes::Args),
    /// sks-ccm load balancers: many LoadBalancer Services at once (time to ingress IP, orchestrator
    /// calls), NLB calls during node churn, and calls over accelerated drift periods.
    Lbs(lbs::Args),
    /// sks-apiserver's autoscaler: bursts of pending pods (time to the scale request, nodes asked for
    /// against first-fit-decreasing, calls per decision), an emptied node's removal, memory with
    /// 1,000 Nodes and 30,000 Pods, Kubernetes API requests.
    Autoscale(autoscale::Args),
}

impl Scenario {
    /// The scenario's name, used for the default JSON path.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Api(_) => "api",
            Scenario::Autoscale(_) => "autoscale",
            Scenario::Watch(_) => "watch",
            Scenario::Nodes(_) => "nodes",
            Scenario::Lbs(_) => "lbs",
        }
    }

    /// Its common options.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Api(a) => &a.common,
            Scenario::Autoscale(a) => &a.common,
            Scenario::Watch(a) => &a.common,
            Scenario::Nodes(a) => &a.common,
            Scenario::Lbs(a) => &a.common,
        }
    }

    /// Runs it.
    pub async fn run(&self) -> anyhow::Result<Report> {
        match self {
            Scenario::Api(a) => api::run(a).await,
            Scenario::Autoscale(a) => autoscale::run(a).await,
            Scenario::Watch(a) => watch::run(a).await,
            Scenario::Nodes(a) => nodes::run(a).await,
            Scenario::Lbs(a) => lbs::run(a).await,
        }
    }
}

/// One target of the project's issue and whether a run met it.
pub struct Target {
    /// What is required, e.g. "GET ≥ 10,000 req/s".
    pub what: &'static str,
    /// The measured value, formatted.
    pub measured: String,
    /// Whether it was met; `None` when the run was smaller than the target's sizes.
    pub met: Option<bool>,
}

impl Target {
    /// A target judged only when `full_size` (else "n/a").
    pub fn new(what: &'static str, measured: String, full_size: bool, met: bool) -> Self {
        Target { what, measured, met: full_size.then_some(met) }
    }
}

/// A table of targets with the measured values.
pub fn targets_table(targets: &[Target]) -> Table {
    let mut t = Table::new("Targets", &["target", "measured", "met"]);
    for target in targets {
        let met = match target.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a (smaller run)",
        };
        t.row(vec![target.what.to_owned(), target.measured.clone(), met.to_owned()]);
    }
    t
}

/// The targets as JSON.
pub fn targets_json(targets: &[Target]) -> serde_json::Value {
    targets.iter().map(|t| serde_json::json!({"target": t.what, "measured": t.measured, "met": t.met})).collect()
}
