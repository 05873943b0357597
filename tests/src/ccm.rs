//! A running `sks-ccm`.

use std::process::{Child, Command, Stdio};

use crate::bin;
use crate::kubeapi::KubeApi;
use crate::zone::{TEST_KEY, TEST_SECRET, Zone};

/// A running `sks-ccm`, killed on drop.
pub struct Ccm {
    child: Option<Child>,
    /// Its health and metrics URL.
    pub url: String,
}

impl Ccm {
    /// Starts `sks-ccm` for `cluster` with extra `args`.
    pub fn start(zone: &Zone, kube: &KubeApi, cluster: &str, args: &[&str]) -> Ccm {
        let mut child = Command::new(bin("sks-ccm"))
            .args(["--kubeconfig"])
            .arg(&kube.kubeconfig)
            .args(["--cluster-id", cluster, "--bind-address", "127.0.0.1:0"])
            .args(args)
            .env("EXOSCALE_API_ENDPOINT", zone.endpoint())
            .env("EXOSCALE_API_ZONE", "ch-gva-2")
            .env("EXOSCALE_API_KEY", TEST_KEY)
            .env("EXOSCALE_API_SECRET", TEST_SECRET)
            .env("RUST_LOG", "warn")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sks-ccm");
        use std::io::{BufRead as _, BufReader};
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("sks-ccm did not start");
        let url = line.rsplit(' ').next().unwrap().to_owned();
        Ccm { child: Some(child), url }
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ccm {
    fn drop(&mut self) {
        self.kill();
    }
}
