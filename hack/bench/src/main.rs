//! `sks-bench`: benchmark scenarios against the real binaries, started on
//! loopback with port 0. Each prints tables and writes a JSON report.

mod client;
mod load;
mod procfs;
mod report;
mod requests;
mod scenario;
mod stack;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use crate::scenario::Scenario;

/// Benchmarks of the SKS binaries (sks-zone, sks-apiserver, sks-ccm) on this machine.
///
/// Binaries are taken from SKS_BIN_DIR, by default the directory of this
/// executable: `cargo build --release --workspace --bins && target/release/sks-bench api`.
#[derive(Debug, Parser)]
#[command(name = "sks-bench", version)]
struct Cli {
    /// Directory of the binaries under test [default: this executable's directory].
    #[arg(long, env = "SKS_BIN_DIR", global = true)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin_dir = match cli.bin_dir.clone() {
        Some(dir) => dir,
        None => std::env::current_exe()?.parent().context("executable directory")?.to_path_buf(),
    };
    // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the environment meanwhile.
    // The e2e helpers find the binaries through this variable.
    #[expect(unsafe_code, reason = "set_var before any other thread exists, see above")]
    unsafe {
        std::env::set_var("SKS_BIN_DIR", &bin_dir);
    }
    orchestrator::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A signal drops the scenario, and with it the stack: its Drop kills the
    // binaries it started, which SIGTERM alone would leave running.
    let report = runtime.block_on(async {
        tokio::select! {
            report = cli.scenario.run() => report,
            _ = sks_process::shutdown_signal() => Err(anyhow::anyhow!("interrupted; the binaries it started are stopped")),
        }
    })?;
    report.print();
    let path = cli
        .scenario
        .common()
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/bench/{}.json", cli.scenario.name())));
    report.write_json(&path)?;
    println!("JSON report: {}", path.display());
    // A scenario lists what went wrong (work not done in time) in results.problems: the run fails.
    let problems = report.results["problems"].as_array().map_or(0, Vec::len);
    // Children (zone, apiserver) were killed when the scenario's stack dropped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if problems > 0 {
        anyhow::bail!("{problems} problem(s), listed in the report");
    }
    Ok(())
}
