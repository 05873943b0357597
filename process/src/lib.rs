//! Process plumbing shared by the sks binaries, so they log and stop alike.

/// Installs the global JSON logger on stderr with an EnvFilter (`--log` / `RUST_LOG`).
pub fn init_logging(filter: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter)?)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C, for a graceful stop.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C stops us; completing here would stop at once.
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
    tracing::info!("shutting down");
}
