//! Support for end-to-end tests: start the real binaries on port 0, wait for
//! conditions with bounded retries, and clean up every process started.

pub mod apiserver;
pub mod backend;
pub mod ccm;
pub mod env;
pub mod image;
pub mod kubeapi;
pub mod kubectl;
pub mod logs;
pub mod metrics;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod zone;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The directory holding the workspace's built binaries (`target/debug`),
/// overridable with `SKS_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SKS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").to_path_buf()
}

/// Path of binary `name`, failing with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} not found: build the binaries first (cargo build --workspace --bins)", path.display());
    path
}

/// Spawns `cmd` with stdout piped and returns it with its first stdout line (the
/// address it reports), waiting at most 30 s; stdout keeps being drained so the
/// process never blocks on a full pipe.
pub fn spawn_reporting(cmd: &mut std::process::Command, what: &str) -> (std::process::Child, String) {
    spawn_reporting_within(cmd, what, Duration::from_secs(30))
}

/// [`spawn_reporting`], waiting at most `timeout` for the first line.
pub fn spawn_reporting_within(
    cmd: &mut std::process::Command,
    what: &str,
    timeout: Duration,
) -> (std::process::Child, String) {
    spawn_reporting_copying(cmd, what, timeout, None)
}

/// [`spawn_reporting_within`], writing every line of stdout to `copy` too.
pub fn spawn_reporting_copying(
    cmd: &mut std::process::Command,
    what: &str,
    timeout: Duration,
    mut copy: Option<std::fs::File>,
) -> (std::process::Child, String) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Drained to the end, so the process never blocks on a full pipe.
        for (i, line) in BufReader::new(stdout).lines().enumerate() {
            let Ok(line) = line else { continue };
            if let Some(file) = copy.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            if i == 0 {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not report its address within {timeout:?}");
        }
    }
}

/// Kills a started process (SIGKILL) and reaps it, once.
pub fn kill_child(child: &mut Option<std::process::Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Stops a started process with SIGTERM and reaps it, once: its exit status, or `None`
/// when it had not exited 5 s later (it is then killed).
pub fn terminate_child(child: &mut Option<std::process::Child>) -> Option<std::process::ExitStatus> {
    let mut c = child.take()?;
    let _ = std::process::Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    for _ in 0..100 {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `sks-e2e-<label>-<random>`.
    pub fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sks-e2e-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns `Some`, at most `timeout`; panics naming `what` otherwise.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let waited = wait_until(what, timeout, || {
        let next = check();
        async move { next.await.ok_or_else(String::new) }
    })
    .await;
    waited.0
}

/// Polls `check` until it returns `Ok`, at most `timeout`, and answers its
/// value and how long that took; panics naming `what` and the last reason
/// `check` gave otherwise. Polls back off from 20 ms to 250 ms.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(v) => return (v, started.elapsed()),
            Err(why) if started.elapsed() >= timeout => {
                let why = if why.is_empty() { String::new() } else { format!(": {why}") };
                panic!("timed out after {timeout:?} waiting for {what}{why}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}
