//! A running `sks-ccm`.

use std::collections::BTreeMap;
use std::process::{Child, Command};

use crate::bin;
use crate::kubeapi::KubeApi;
use crate::logs::Logs;
use crate::zone::Zone;

/// sks-ccm flags that heal within seconds: Nodes looked at every second, one
/// NotReady for 2 s rebooted, replaced 3 s later, half the cluster at once.
pub const QUICK_AUTO_HEAL: [&str; 8] = [
    "--node-sync-period-seconds",
    "1",
    "--auto-heal-reboot-after-seconds",
    "2",
    "--auto-heal-replace-after-seconds",
    "3",
    "--auto-heal-max-share",
    "0.5",
];

/// A running `sks-ccm`, killed on drop.
pub struct Ccm {
    child: Option<Child>,
    /// Its health and metrics URL.
    pub url: String,
}

impl Ccm {
    /// Starts `sks-ccm` for `cluster` with extra `args`.
    pub fn start(zone: &Zone, kube: &KubeApi, cluster: &str, args: &[&str]) -> Ccm {
        Self::start_logging(zone, kube, cluster, args, &Logs::default())
    }

    /// [`Ccm::start`], logging as `logs` say.
    pub fn start_logging(zone: &Zone, kube: &KubeApi, cluster: &str, args: &[&str], logs: &Logs) -> Ccm {
        let mut cmd = Command::new(bin("sks-ccm"));
        cmd.arg("--kubeconfig")
            .arg(&kube.kubeconfig)
            .args(["--cluster-id", cluster, "--bind-address", "127.0.0.1:0"])
            .args(args)
            .env_remove("KUBECONFIG");
        let (child, line) = logs.spawn(zone.orchestrator_env(&mut cmd), "sks-ccm");
        let url = line.rsplit(' ').next().unwrap().to_owned();
        Ccm { child: Some(child), url }
    }

    /// Its Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url)).await.unwrap().text().await.unwrap()
    }

    /// Its requests to the Kubernetes API so far (its client's
    /// `kube_client_requests_total`), by `verb resource[/subresource] code`,
    /// e.g. `patch nodes/status 200`.
    pub async fn kube_requests(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for line in self.metrics().await.lines() {
            let Some(rest) = line.strip_prefix("kube_client_requests_total{") else { continue };
            let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
            let label = |k: &str| {
                labels.split(',').find_map(|kv| kv.strip_prefix(&format!("{k}=\"")).map(|v| v.trim_end_matches('"')))
            };
            let (verb, resource, sub, code) = (
                label("verb").unwrap_or_default(),
                label("resource").unwrap_or_default(),
                label("subresource"),
                label("code"),
            );
            let what = match sub.filter(|s| !s.is_empty()) {
                Some(sub) => format!("{verb} {resource}/{sub} {}", code.unwrap_or_default()),
                None => format!("{verb} {resource} {}", code.unwrap_or_default()),
            };
            *out.entry(what).or_insert(0) += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        }
        out
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        crate::kill_child(&mut self.child);
    }

    /// Stops it with SIGTERM: its exit status, `None` if it did not stop within 5 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        crate::terminate_child(&mut self.child)
    }
}

impl Drop for Ccm {
    fn drop(&mut self) {
        self.kill();
    }
}
