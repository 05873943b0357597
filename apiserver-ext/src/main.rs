//! `sks-apiserver`: serves the SKS group (`sks.exoscale.net`) as an aggregated API.

use anyhow::Context as _;
use clap::Parser as _;
use sks_apiserver::app::{Args, run};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    sks_process::run(None, run(args))?
}
