//! A Kubernetes API for end-to-end tests: the `kube-standin`, or real etcd and
//! kube-apiserver (and kube-controller-manager, if present) when `KUBE_ASSETS`
//! names a directory holding their binaries. Tests use either unchanged.
//!
//! Real binaries are started on loopback with the same CAs, front-proxy
//! settings and a policy translated into RBAC:
//!
//! ```text
//! etcd --data-dir D --listen-client-urls http://127.0.0.1:E --advertise-client-urls http://127.0.0.1:E
//!      --listen-peer-urls http://127.0.0.1:P --initial-advertise-peer-urls http://127.0.0.1:P
//!      --initial-cluster default=http://127.0.0.1:P
//! kube-apiserver --etcd-servers http://127.0.0.1:E --bind-address 127.0.0.1 --secure-port S
//!      --advertise-address 127.0.0.1 --tls-cert-file serving.crt --tls-private-key-file serving.key
//!      --client-ca-file ca.crt --token-auth-file tokens.csv --authorization-mode RBAC
//!      --service-cluster-ip-range 10.96.0.0/16 --service-node-port-range 30000-32767
//!      --service-account-issuer https://kubernetes.default.svc
//!      --service-account-key-file ca.key --service-account-signing-key-file ca.key
//!      --requestheader-client-ca-file front-proxy-ca.crt --requestheader-allowed-names front-proxy-client
//!      --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group
//!      --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-uid-headers X-Remote-Uid
//!      --proxy-client-cert-file front-proxy-client.crt --proxy-client-key-file front-proxy-client.key
//!      --enable-aggregator-routing=false
//! kube-controller-manager --kubeconfig admin.kubeconfig --controllers csrsigning,nodelifecycle
//!      --cluster-signing-kubelet-serving-cert-file kubelet-ca.crt
//!      --cluster-signing-kubelet-serving-key-file kubelet-ca.key --node-monitor-grace-period 40s
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::apiserver::Kubectl;
use crate::{TempDir, bin, wait_for};

/// What kube-apiserver's Node authorizer and the `system:node` role let kubelets
/// do, as a policy (JSON, so the RBAC translation for real binaries reads it too;
/// that translation grants rules cluster-wide, ignoring `namespaces`).
pub fn node_policy_rules() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create", "update", "patch"], "apiGroups": [""], "resources": ["nodes", "nodes/status"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["kube-node-lease"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["get", "list", "watch", "create"], "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"]}),
        serde_json::json!({"groups": ["system:nodes"], "verbs": ["create", "patch", "update"], "apiGroups": ["", "events.k8s.io"], "resources": ["events"]}),
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
    children: Vec<Child>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// Certificates and keys (ca.crt/ca.key, front-proxy-ca.crt, kubelet-ca.crt, ...).
    pub cert_dir: PathBuf,
    /// Whether these are real binaries.
    pub real: bool,
    dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl KubeApi {
    /// Starts the stand-in, or real binaries when `KUBE_ASSETS` is set.
    pub async fn start(opts: KubeOptions) -> KubeApi {
        let dir = TempDir::new("kube");
        let api = match std::env::var_os("KUBE_ASSETS") {
            Some(assets) => Self::start_real(Path::new(&assets), &opts, dir),
            None => Self::start_standin(&opts, dir),
        };
        let k = api.kubectl();
        wait_for("the Kubernetes API to answer", Duration::from_secs(60), || {
            let k = k.clone();
            async move { k.run(&["get", "--raw", "/readyz"]).status.success().then_some(()) }
        })
        .await;
        if let (true, Some(policy)) = (api.real, &opts.policy) {
            api.apply_rbac(policy);
        }
        api
    }

    fn start_standin(opts: &KubeOptions, dir: TempDir) -> KubeApi {
        let cert_dir = dir.path().join("pki");
        let mut cmd = Command::new(bin("kube-standin"));
        cmd.args(["--listen", "127.0.0.1:0", "--cert-dir"])
            .arg(&cert_dir)
            .env("RUST_LOG", "warn")
            .env_remove("KUBECONFIG")
            .stderr(Stdio::inherit());
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
        if let Some(g) = opts.node_grace_seconds {
            cmd.args(["--node-monitor-grace-period-seconds", &g.to_string()]);
        }
        if let Some(h) = opts.watch_history {
            cmd.args(["--watch-history", &h.to_string()]);
        }
        if let Some((endpoint, cluster)) = &opts.zone_cluster {
            crate::zone::orchestrator_env(endpoint, cmd.args(["--zone-cluster-id", cluster]));
        }
        let (child, line) = crate::spawn_reporting(&mut cmd, "kube-standin");
        let url = line.strip_prefix("kube-standin listening on ").expect("address line").trim().to_owned();
        KubeApi {
            children: vec![child],
            url,
            kubeconfig: cert_dir.join("admin.kubeconfig"),
            cert_dir,
            real: false,
            dir,
        }
    }

    fn start_real(assets: &Path, opts: &KubeOptions, dir: TempDir) -> KubeApi {
        let cert_dir = dir.path().join("pki");
        std::fs::create_dir_all(&cert_dir).unwrap();
        let year = Duration::from_secs(365 * 86400);
        let ca = sks_pki::CertificateAuthority::generate("test control-plane CA").unwrap();
        let proxy = sks_pki::CertificateAuthority::generate("test front-proxy CA").unwrap();
        let kubelet = sks_pki::CertificateAuthority::generate("test kubelet CA").unwrap();
        let dns: Vec<String> =
            ["localhost", "kubernetes", "kubernetes.default.svc"].iter().map(|s| s.to_string()).collect();
        let serving = ca.issue_serving(&dns, &["127.0.0.1".parse().unwrap()], year).unwrap();
        let proxy_client = proxy.issue_client("front-proxy-client", &[], year).unwrap();
        let write = |n: &str, c: &str| std::fs::write(cert_dir.join(n), c).unwrap();
        write("ca.crt", &ca.cert_pem);
        write("ca.key", ca.key_pem());
        write("front-proxy-ca.crt", &proxy.cert_pem);
        write("front-proxy-ca.key", proxy.key_pem());
        write("kubelet-ca.crt", &kubelet.cert_pem);
        write("kubelet-ca.key", kubelet.key_pem());
        write("serving.crt", &serving.cert_pem);
        write("serving.key", &serving.key_pem);
        write("front-proxy-client.crt", &proxy_client.cert_pem);
        write("front-proxy-client.key", &proxy_client.key_pem);
        write("tokens.csv", opts.tokens.as_deref().unwrap_or(""));
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let url = format!("https://127.0.0.1:{port}");
        let admin = ca.issue_client("kube-admin", &["system:masters".to_owned()], year).unwrap();
        write("admin.kubeconfig", &sks_pki::render_kubeconfig("real", &url, &ca.cert_pem, "kube-admin", &admin));
        let etcd = Command::new(assets.join("etcd"))
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd");
        let f = |n: &str| cert_dir.join(n).display().to_string();
        let apiserver = Command::new(assets.join("kube-apiserver"))
            .args(["--etcd-servers", &format!("http://127.0.0.1:{etcd_port}")])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .args(["--tls-cert-file", &f("serving.crt"), "--tls-private-key-file", &f("serving.key")])
            .args([
                "--client-ca-file",
                &f("ca.crt"),
                "--token-auth-file",
                &f("tokens.csv"),
                "--authorization-mode",
                "RBAC",
            ])
            .args(["--service-cluster-ip-range", "10.96.0.0/16", "--service-node-port-range", "30000-32767"])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--service-account-key-file", &f("ca.key"), "--service-account-signing-key-file", &f("ca.key")])
            .args([
                "--requestheader-client-ca-file",
                &f("front-proxy-ca.crt"),
                "--requestheader-allowed-names",
                "front-proxy-client",
            ])
            .args([
                "--requestheader-username-headers",
                "X-Remote-User",
                "--requestheader-group-headers",
                "X-Remote-Group",
            ])
            .args([
                "--requestheader-extra-headers-prefix",
                "X-Remote-Extra-",
                "--requestheader-uid-headers",
                "X-Remote-Uid",
            ])
            .args([
                "--proxy-client-cert-file",
                &f("front-proxy-client.crt"),
                "--proxy-client-key-file",
                &f("front-proxy-client.key"),
            ])
            .arg("--enable-aggregator-routing=false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kube-apiserver");
        let mut children = vec![etcd, apiserver];
        let kcm = assets.join("kube-controller-manager");
        if kcm.exists() {
            let grace = format!("{}s", opts.node_grace_seconds.unwrap_or(40));
            children.push(
                Command::new(kcm)
                    .args(["--kubeconfig", &f("admin.kubeconfig"), "--controllers", "csrsigning,nodelifecycle"])
                    .args(["--cluster-signing-kubelet-serving-cert-file", &f("kubelet-ca.crt")])
                    .args(["--cluster-signing-kubelet-serving-key-file", &f("kubelet-ca.key")])
                    .args(["--node-monitor-grace-period", &grace, "--secure-port", "0"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting kube-controller-manager"),
            );
        }
        KubeApi { children, url, kubeconfig: cert_dir.join("admin.kubeconfig"), cert_dir, real: true, dir }
    }

    /// The policy as RBAC objects, applied to real binaries.
    fn apply_rbac(&self, policy: &str) {
        let doc: serde_json::Value = serde_json::to_value(serde_yaml_like(policy)).unwrap();
        let mut objects = Vec::new();
        for (i, rule) in doc["rules"].as_array().into_iter().flatten().enumerate() {
            let mut r = serde_json::json!({"verbs": rule["verbs"]});
            if rule["nonResourceURLs"].is_array() {
                r["nonResourceURLs"] = rule["nonResourceURLs"].clone();
            } else {
                r["apiGroups"] = rule["apiGroups"].clone();
                r["resources"] = rule["resources"].clone();
            }
            let subjects: Vec<serde_json::Value> =
                rule["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| serde_json::json!({"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"}))
                    .chain(rule["groups"].as_array().into_iter().flatten().map(
                        |g| serde_json::json!({"kind": "Group", "name": g, "apiGroup": "rbac.authorization.k8s.io"}),
                    ))
                    .collect();
            let name = format!("test-policy-{i}");
            objects.push(serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": [r]}));
            objects.push(serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "subjects": subjects}));
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let out = self.kubectl().with_stdin(&["apply", "-f", "-"], &list.to_string());
        assert!(out.status.success(), "applying RBAC: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Kills every process of the API (SIGKILL), as an unreachable API server.
    pub fn kill(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    /// A kube-rs client as the admin.
    pub async fn client(&self) -> kube::Client {
        crate::apiserver::kube_client(&self.kubeconfig).await
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
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let cert = ca.issue_client(user, &groups, Duration::from_secs(86400)).unwrap();
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, sks_pki::render_kubeconfig("test", &self.url, &ca.cert_pem, user, &cert)).unwrap();
        path
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The policy files are YAML; the harness reads the subset it writes (JSON is YAML).
fn serde_yaml_like(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("harness policies are written as JSON so both runtimes read them")
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.kill();
    }
}
