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

/// Runs `main` on a multi-threaded runtime (`workers` threads, default one per
/// core), then stops the runtime without waiting more than a second for
/// background tasks: a retry loop must never keep a stopped process alive.
pub fn run<T>(workers: Option<usize>, main: impl std::future::Future<Output = T>) -> std::io::Result<T> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    let out = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(out)
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
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The next connection on `listener`, with `TCP_NODELAY` set (replies are
/// written whole, so Nagle's algorithm only adds delayed-ACK waits). Accept
/// errors (out of file descriptors and the like) are logged and retried after
/// a pause instead of spinning.
pub async fn accept(listener: &tokio::net::TcpListener) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, remote)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
