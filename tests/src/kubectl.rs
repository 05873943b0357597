//! `kubectl` (the real one) with a kubeconfig, and a kube-rs client from one.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `kubectl` with a kubeconfig and a private discovery cache.
#[derive(Clone)]
pub struct Kubectl {
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// A kubectl using `kubeconfig`.
    pub fn new(kubeconfig: PathBuf, cache: PathBuf) -> Self {
        Kubectl { kubeconfig, cache }
    }

    /// The command, ready for more arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(&self.cache).env_remove("KUBECONFIG");
        cmd
    }

    /// Runs `kubectl args` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running kubectl")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs with `stdin` piped in.
    pub fn with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Waits until the server, `what`, answers `/readyz` (at most `timeout`).
    pub async fn wait_ready(&self, what: &str, timeout: std::time::Duration) {
        crate::wait_for(&format!("{what} to be ready"), timeout, || async {
            self.run(&["get", "--raw", "/readyz"]).status.success().then_some(())
        })
        .await;
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn kube_client(kubeconfig: &std::path::Path) -> kube::Client {
    orchestrator::install_crypto_provider();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}
