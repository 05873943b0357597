//! `sks-ccm`: the cloud controller manager of SKS clusters.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Parser as _;
use sks_ccm::context::Context;
use sks_ccm::flags::Args;
use sks_ccm::manager::Controllers;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sks_process::init_logging(&args.log).context("--log")?;
    let controllers = args.controllers().map_err(|e| anyhow::anyhow!("--controllers: {e}"))?;
    let identity = sks_lease::default_identity("sks-ccm");
    let election = args.election(&identity).map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
    sks_process::run(None, async move {
        orchestrator::install_crypto_provider();
        let registry = prometheus::Registry::new();
        let ready = Arc::new(AtomicBool::new(false));
        sks_ccm::serve::start(args.bind_address, registry.clone(), ready.clone()).await?;
        let ctx = Context::connect(args.kubeconfig.as_deref(), args.cluster_id, &identity, &registry).await?;
        let ctx = Arc::new(ctx);
        // Filled whether or not this replica leads: a new leader acts on a filled cache.
        tokio::spawn(ctx.cloud.clone().keep_fresh(args.node_sync_period(), ready));
        Controllers::new(ctx, controllers).run(election, sks_process::shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })?
}
