//! A Kubernetes API for end-to-end tests: the `kube-standin`, or the real
//! control plane (etcd, kube-apiserver, and kube-controller-manager and
//! kube-scheduler when present) when `KUBE_ASSETS` names a directory holding
//! their binaries. Both are started by `kube-standin` (`--kube-assets` runs
//! the real binaries with the stand-in's certificates, tokens and policy as
//! RBAC: see hack/kube/src/real.rs), so tests use either unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kubectl::Kubectl;
use crate::{TempDir, bin};

/// What kube-apiserver's Node authorizer and the `system:node` role let kubelets
/// do, as a policy (JSON, so the RBAC translation for real binaries reads it too;
/// that translation grants rules cluster-wide, ignoring `namespaces`).
pub fn node_policy_rules() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create", "update", "patch"], "apiGroups": [""], "resources": ["nodes", "nodes/status"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["kube-node-lease"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create"], "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["create", "patch", "update"], "apiGroups": ["", "events.k8s.io"], "resources": ["events"]}),
        // The system:node role's pod rules (the Node authorizer limits them to the node's own pods).
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create", "delete"], "apiGroups": [""], "resources": ["pods"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["update", "patch"], "apiGroups": [""], "resources": ["pods/status"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["create"], "apiGroups": [""], "resources": ["pods/eviction"]}),
    ]
}

/// A policy document of `rules`.
pub fn policy(rules: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "rules": rules }).to_string()
}

/// How to start the API.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Authorization policy (the stand-in's YAML format; RBAC objects for real binaries).
    pub policy: Option<String>,
    /// Static tokens (`token,user,uid,"groups"`).
    pub tokens: Option<String>,
    /// Node monitor grace period in seconds.
    pub node_grace_seconds: Option<u64>,
    /// Watch history per kind (stand-in only: its compaction window).
    pub watch_history: Option<usize>,
    /// Use this zone cluster's CAs (stand-in only): (endpoint, cluster id).
    pub zone_cluster: Option<(String, String)>,
    /// Log each request of a user outside system:masters ([`KubeApi::audit_log`]). The
    /// stand-in's audit log: with it the stand-in runs even when `KUBE_ASSETS` is set.
    pub audit_log: bool,
}

impl KubeOptions {
    /// The API of zone cluster `cluster`, whose Nodes are the zone's kubelets
    /// (authorized as kube-apiserver authorizes kubelets).
    pub fn for_kubelets_of(zone: &crate::zone::Zone, cluster: impl ToString) -> Self {
        KubeOptions {
            zone_cluster: Some((zone.endpoint(), cluster.to_string())),
            policy: Some(policy(node_policy_rules())),
            ..Default::default()
        }
    }
}

/// A running Kubernetes API; its processes are killed on drop.
pub struct KubeApi {
    child: Option<Child>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// Certificates and keys (ca.crt/ca.key, front-proxy-ca.crt, kubelet-ca.crt, ...).
    pub cert_dir: PathBuf,
    /// Whether these are real binaries.
    pub real: bool,
    audit_log: Option<PathBuf>,
    dir: TempDir,
}

impl KubeApi {
    /// Starts the stand-in, or real binaries when `KUBE_ASSETS` is set.
    pub async fn start(opts: KubeOptions) -> KubeApi {
        let dir = TempDir::new("kube");
        let assets = std::env::var_os("KUBE_ASSETS").filter(|a| !a.is_empty() && !opts.audit_log).map(PathBuf::from);
        let api = Self::spawn(&opts, dir, assets.as_deref());
        api.kubectl().wait_ready("the Kubernetes API", Duration::from_secs(60)).await;
        api
    }

    fn spawn(opts: &KubeOptions, dir: TempDir, assets: Option<&Path>) -> KubeApi {
        let cert_dir = dir.path().join("pki");
        let mut cmd = Command::new(bin("kube-standin"));
        cmd.args(["--listen", "127.0.0.1:0", "--cert-dir"])
            .arg(&cert_dir)
            .env("RUST_LOG", "warn")
            .env_remove("KUBECONFIG")
            .env_remove("KUBE_ASSETS")
            .stderr(Stdio::inherit());
        if let Some(assets) = assets {
            // Its own process group, so a kill takes etcd and kube-apiserver with it.
            std::os::unix::process::CommandExt::process_group(cmd.arg("--kube-assets").arg(assets), 0);
        }
        if let Some(p) = &opts.policy {
            let path = dir.path().join("policy.yaml");
            std::fs::write(&path, p).unwrap();
            cmd.arg("--policy-file").arg(path);
        }
        if let Some(t) = &opts.tokens {
            let path = dir.path().join("tokens.csv");
            std::fs::write(&path, t).unwrap();
            cmd.arg("--token-auth-file").arg(path);
        }
        let audit_log = opts.audit_log.then(|| dir.path().join("audit.jsonl"));
        if let Some(path) = &audit_log {
            cmd.arg("--audit-log").arg(path);
        }
        if let Some(g) = opts.node_grace_seconds {
            cmd.args(["--node-monitor-grace-period-seconds", &g.to_string()]);
        }
        if let Some(h) = opts.watch_history {
            cmd.args(["--watch-history", &h.to_string()]);
        }
        if let Some((endpoint, cluster)) = &opts.zone_cluster {
            crate::zone::orchestrator_env(endpoint, cmd.args(["--zone-cluster-id", cluster]));
        }
        // The real control plane reports once /openapi/v2 is served, which can take a minute.
        let (child, line) = crate::spawn_reporting_within(&mut cmd, "kube-standin", Duration::from_secs(180));
        let url = line.split(" listening on ").nth(1).and_then(|r| r.split_whitespace().next());
        let url = url.unwrap_or_else(|| panic!("kube-standin's first line has no address: {line}")).to_owned();
        KubeApi {
            child: Some(child),
            url,
            kubeconfig: cert_dir.join("admin.kubeconfig"),
            cert_dir,
            real: assets.is_some(),
            audit_log,
            dir,
        }
    }

    /// Kills every process of the API (SIGKILL), as an unreachable API server.
    pub fn kill(&mut self) {
        if let (true, Some(child)) = (self.real, &self.child) {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        crate::kill_child(&mut self.child);
    }

    /// A kube-rs client as the admin.
    pub async fn client(&self) -> kube::Client {
        crate::kubectl::kube_client(&self.kubeconfig).await
    }

    /// `kubectl` as the admin.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig.clone(), self.dir.path().join("kube-cache"))
    }

    /// A kubeconfig for `user` in `groups` (client certificate from the cluster CA).
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let ca = sks_pki::CertificateAuthority::from_pem(
            &std::fs::read_to_string(self.cert_dir.join("ca.crt")).unwrap(),
            &std::fs::read_to_string(self.cert_dir.join("ca.key")).unwrap(),
        )
        .unwrap();
        let groups: Vec<String> = groups.iter().map(std::string::ToString::to_string).collect();
        let cert = ca.issue_client(user, &groups, Duration::from_secs(86400)).unwrap();
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, sks_pki::render_kubeconfig("test", &self.url, &ca.cert_pem, user, &cert)).unwrap();
        path
    }

    /// The name of the process that serves the API: `kube-standin`, or `kube-apiserver`
    /// (run by `kube-standin --kube-assets`).
    pub fn process_name(&self) -> &'static str {
        if self.real { "kube-apiserver" } else { "kube-standin" }
    }

    /// The audit log, one JSON line per request (when asked for with [`KubeOptions::audit_log`]).
    pub fn audit_log(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.kill();
    }
}
