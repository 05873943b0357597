//! A running `kube-standin` (the in-memory Kubernetes API) sharing a zone
//! cluster's CAs, and a way to run `sks-zone` again on a test zone's state
//! with extra arguments (such as `--kubeconfig`, which needs the stand-in's
//! address, known only after the zone's cluster exists).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::apiserver::Kubectl;
use crate::zone::{TEST_KEY, TEST_SECRET, Zone};
use crate::{TempDir, bin};

/// What kube-apiserver's Node authorizer and the `system:node` ClusterRole let
/// kubelets do, as a stand-in policy file: the stand-in has no RBAC objects and
/// denies everyone but `system:masters` without a policy.
pub const NODE_POLICY: &str = r#"
rules:
- groups: ["system:nodes"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
  apiGroups: [""]
  resources: ["nodes", "nodes/status"]
- groups: ["system:nodes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
  apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  namespaces: ["kube-node-lease"]
- groups: ["system:nodes"]
  verbs: ["get", "list", "watch", "create"]
  apiGroups: ["certificates.k8s.io"]
  resources: ["certificatesigningrequests"]
- groups: ["system:nodes"]
  verbs: ["create", "patch", "update"]
  apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
"#;

/// Reads a child's first stdout line (within 30 s), then keeps draining so it never blocks on a full pipe.
fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{what} did not report its address within 30 s"))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A running `kube-standin` with the CAs of a zone's cluster; killed on drop.
pub struct Standin {
    child: Option<Child>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The admin (`system:masters`) kubeconfig the stand-in wrote.
    pub kubeconfig: PathBuf,
    dir: TempDir,
}

impl Standin {
    /// Starts a stand-in on a free port using `cluster_id`'s CAs from `zone`,
    /// with [`NODE_POLICY`] and extra `args`.
    pub fn start(zone: &Zone, cluster_id: &str, args: &[&str]) -> Standin {
        let dir = TempDir::new("standin");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, NODE_POLICY).expect("writing the policy");
        let certs = dir.path().join("certs");
        let mut child = Command::new(bin("kube-standin"))
            .args(["--listen", "127.0.0.1:0", "--cert-dir"])
            .arg(&certs)
            .arg("--policy-file")
            .arg(&policy)
            .args(["--zone-cluster-id", cluster_id])
            .args(args)
            .env("EXOSCALE_API_ENDPOINT", zone.endpoint())
            .env("EXOSCALE_API_ZONE", "ch-gva-2")
            .env("EXOSCALE_API_KEY", TEST_KEY)
            .env("EXOSCALE_API_SECRET", TEST_SECRET)
            .env_remove("EXOSCALE_API_CREDENTIALS_FILE")
            .env("RUST_LOG", "warn")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kube-standin");
        let first = first_line(&mut child, "kube-standin");
        let url = first
            .strip_prefix("kube-standin listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from kube-standin: {first:?}"))
            .trim()
            .to_owned();
        Standin { child: Some(child), url, kubeconfig: certs.join("admin.kubeconfig"), dir }
    }

    /// The directory the stand-in wrote its CAs and certificates to.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig.clone(), self.dir.path().join("kube-cache"))
    }

    /// Kills the process (SIGKILL), as an unreachable API server.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        crate::apiserver::kube_client(&self.kubeconfig).await
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// `sks-zone` run again on a test [`Zone`]'s address and state directory with
/// extra arguments; killed on drop (drop it before the `Zone`, which owns the state).
pub struct ZoneProcess {
    child: Option<Child>,
}

impl ZoneProcess {
    /// Kills `zone`'s process and starts `sks-zone` on its address and state
    /// with `extra` arguments (operations and boots immediate, as `Zone`'s
    /// defaults), so `zone.client()` keeps working. Kubelet logs are on.
    pub fn relaunch(zone: &mut Zone, extra: &[String]) -> ZoneProcess {
        zone.kill9();
        let listen = zone.url.trim_start_matches("http://").to_owned();
        let mut child = spawn_zone(zone.state_dir(), &listen, extra);
        let first = first_line(&mut child, "sks-zone");
        let url = first.strip_prefix("sks-zone listening on ").and_then(|rest| rest.split_whitespace().next());
        assert_eq!(url, Some(zone.url.as_str()), "unexpected first line from sks-zone: {first:?}");
        ZoneProcess { child: Some(child) }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

fn spawn_zone(state: &Path, listen: &str, extra: &[String]) -> Child {
    Command::new(bin("sks-zone"))
        .args(["--listen", listen, "--state-dir"])
        .arg(state)
        .args(["--api-key", TEST_KEY, "--api-secret", TEST_SECRET])
        .args(["--operation-delay-ms", "0", "--instance-boot-delay-ms", "0"])
        .args(extra)
        .env("RUST_LOG", "warn,sks_zone::kubelets=info")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting sks-zone")
}

impl Drop for ZoneProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
