//! `--kube-assets DIR`: instead of serving the stand-in, run the real control
//! plane from DIR on loopback (etcd and kube-apiserver; kube-controller-manager
//! and kube-scheduler when DIR holds them), with the same certificates, tokens
//! and policy (as RBAC) the stand-in would use. Tests, `hack/local-up` and
//! `sks-bench` start the cluster's API the same way whichever runs it, so the
//! flags real binaries need live here once.
//!
//! Facts this follows (seen on kube-apiserver v1.36, see
//! shared/docs/real-kube-apiserver-notes.md): `--service-account-key-file`
//! takes a public key; `/openapi/v2` answers 503 for a while after `/readyz`
//! is ok, so both are waited for; an aggregated server on loopback needs
//! `--enable-aggregator-routing=false`; `--endpoint-reconciler-type=none`
//! keeps it from failing to write the loopback `kubernetes` Endpoints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::policy::{Policy, Rule};

/// The binaries the real control plane is made of; the first two are required.
pub const BINARIES: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// What kube-controller-manager runs: what tests and the autoscaler need of a
/// cluster (kubelet-serving signing, node lifecycle, workloads and their
/// pods, disruption budgets, garbage collection, service accounts).
pub const CONTROLLERS: &[&str] = &[
    "certificatesigningrequest-signing-controller",
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "disruption-controller",
    "garbage-collector-controller",
    "pod-garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "endpointslice-controller",
    "namespace-controller",
];

/// Where everything goes and which ports are used.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The stand-in's certificate directory (`--cert-dir`): CAs, keys, kubeconfigs.
    pub cert_dir: PathBuf,
    /// etcd's data directory.
    pub data_dir: PathBuf,
    /// Where each binary's output is written.
    pub log_dir: PathBuf,
    /// kube-apiserver's secure port.
    pub port: u16,
    /// etcd's client and peer ports.
    pub etcd_ports: (u16, u16),
    /// `--node-monitor-grace-period` of the node lifecycle controller.
    pub node_grace: Duration,
}

/// One process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The binary's name in the assets directory.
    pub name: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The command lines of the real control plane, for the binaries `present` in the assets directory.
pub fn launches(layout: &Layout, present: &dyn Fn(&str) -> bool) -> Vec<Launch> {
    let c = |name: &str| path(&layout.cert_dir, name);
    let (client, peer) = layout.etcd_ports;
    let args = |list: &[&str]| list.iter().map(std::string::ToString::to_string).collect::<Vec<_>>();
    let mut out = vec![
        Launch {
            name: "etcd",
            args: args(&[
                "--data-dir",
                &layout.data_dir.display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ]),
        },
        Launch {
            name: "kube-apiserver",
            args: args(&[
                "--etcd-servers",
                &format!("http://127.0.0.1:{client}"),
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                &layout.port.to_string(),
                "--endpoint-reconciler-type",
                "none",
                "--tls-cert-file",
                &c("serving.crt"),
                "--tls-private-key-file",
                &c("serving.key"),
                "--client-ca-file",
                &c("ca.crt"),
                "--token-auth-file",
                &c("tokens.csv"),
                "--authorization-mode",
                "Node,RBAC",
                "--service-cluster-ip-range",
                "10.96.0.0/16",
                "--service-node-port-range",
                "30000-32767",
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                &c("sa.pub"),
                "--service-account-signing-key-file",
                &c("sa.key"),
                "--requestheader-client-ca-file",
                &c("front-proxy-ca.crt"),
                "--requestheader-allowed-names",
                "front-proxy-client",
                "--requestheader-username-headers",
                "X-Remote-User",
                "--requestheader-group-headers",
                "X-Remote-Group",
                "--requestheader-extra-headers-prefix",
                "X-Remote-Extra-",
                "--requestheader-uid-headers",
                "X-Remote-Uid",
                "--proxy-client-cert-file",
                &c("front-proxy-client.crt"),
                "--proxy-client-key-file",
                &c("front-proxy-client.key"),
                "--enable-aggregator-routing=false",
            ]),
        },
    ];
    if present("kube-controller-manager") {
        out.push(Launch {
            name: "kube-controller-manager",
            args: args(&[
                "--kubeconfig",
                &c("admin.kubeconfig"),
                "--controllers",
                &CONTROLLERS.join(","),
                "--cluster-signing-kubelet-serving-cert-file",
                &c("kubelet-ca.crt"),
                "--cluster-signing-kubelet-serving-key-file",
                &c("kubelet-ca.key"),
                "--service-account-private-key-file",
                &c("sa.key"),
                "--root-ca-file",
                &c("ca.crt"),
                "--node-monitor-grace-period",
                &format!("{}s", layout.node_grace.as_secs()),
                "--leader-elect=false",
                "--secure-port",
                "0",
            ]),
        });
    }
    if present("kube-scheduler") {
        out.push(Launch {
            name: "kube-scheduler",
            args: args(&["--kubeconfig", &c("admin.kubeconfig"), "--leader-elect=false", "--secure-port", "0"]),
        });
    }
    out
}

fn subjects(rule: &Rule) -> Vec<Value> {
    let subject =
        |kind: &str, name: &String| json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"});
    rule.users.iter().map(|u| subject("User", u)).chain(rule.groups.iter().map(|g| subject("Group", g))).collect()
}

/// The policy as RBAC objects: a ClusterRole and binding per rule, or a Role
/// and binding in each namespace the rule names.
pub fn rbac(policy: &Policy) -> Vec<Value> {
    const RBAC: &str = "rbac.authorization.k8s.io/v1";
    let mut out = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let name = format!("kube-standin-policy-{i}");
        let mut r = json!({"verbs": rule.verbs});
        if rule.non_resource_urls.is_empty() {
            r["apiGroups"] = json!(rule.api_groups);
            r["resources"] = json!(rule.resources);
        } else {
            r["nonResourceURLs"] = json!(rule.non_resource_urls);
        }
        let subjects = subjects(rule);
        if rule.namespaces.is_empty() {
            out.push(json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": [r]}));
            out.push(json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "subjects": subjects}));
            continue;
        }
        for ns in &rule.namespaces {
            let meta = json!({"name": name, "namespace": ns});
            out.push(json!({"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": [r]}));
            out.push(json!({"apiVersion": RBAC, "kind": "RoleBinding", "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subjects}));
        }
    }
    out
}

/// The API path of an RBAC object.
fn object_path(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let plural = format!("{}s", kind.to_lowercase());
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}/{name}"),
        None => format!("/apis/rbac.authorization.k8s.io/v1/{plural}/{name}"),
    }
}

/// Writes the service-account token key pair unless one is there (tokens
/// issued before a restart stay valid).
pub fn ensure_token_key(cert_dir: &Path) -> anyhow::Result<()> {
    if cert_dir.join("sa.key").exists() && cert_dir.join("sa.pub").exists() {
        return Ok(());
    }
    let (private, public) = sks_pki::token_signing_key()?;
    std::fs::write(cert_dir.join("sa.key"), private)?;
    std::fs::write(cert_dir.join("sa.pub"), public)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(cert_dir.join("sa.key"), std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A free port on loopback (bound and released: the binaries bind it next).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn get(client: &kube::Client, path: &str) -> Result<String, String> {
    let req = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
    client.request_text(req).await.map_err(|e| e.to_string())
}

/// Waits until `path` answers, at most `timeout`.
async fn wait_for(client: &kube::Client, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match get(client, path).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => anyhow::bail!("{path} did not answer within {timeout:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Creates or replaces `obj` (server-side apply, so a restart on the same etcd data is fine).
async fn apply(client: &kube::Client, obj: &Value) -> anyhow::Result<()> {
    let path = format!("{}?fieldManager=kube-standin&force=true", object_path(obj));
    let req = http::Request::patch(&path)
        .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
        .body(serde_json::to_vec(obj)?)?;
    client.request_text(req).await.with_context(|| format!("applying {path}"))?;
    Ok(())
}

/// A started binary.
struct Running {
    name: &'static str,
    child: tokio::process::Child,
}

/// Runs the real control plane until a signal (it is then stopped) or until
/// one of its processes exits (an error). `on_ready` is called once the API
/// serves `/readyz` and `/openapi/v2` and the policy is applied.
pub async fn run(
    assets: &Path,
    layout: &Layout,
    policy: &Policy,
    on_ready: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let present = |name: &str| assets.join(name).is_file();
    for required in &BINARIES[..2] {
        anyhow::ensure!(present(required), "--kube-assets {}: no executable {required}", assets.display());
    }
    ensure_token_key(&layout.cert_dir)?;
    let tokens = layout.cert_dir.join("tokens.csv");
    if !tokens.exists() {
        std::fs::write(&tokens, "")?;
    }
    std::fs::create_dir_all(&layout.log_dir)?;
    let mut running = Vec::new();
    for launch in launches(layout, &present) {
        let log = std::fs::File::create(layout.log_dir.join(format!("{}.log", launch.name)))?;
        let child = tokio::process::Command::new(assets.join(launch.name))
            .args(&launch.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", launch.name))?;
        tracing::info!(binary = launch.name, pid = child.id(), "started");
        running.push(Running { name: launch.name, child });
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(layout.cert_dir.join("admin.kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let ready = async {
        wait_for(&client, "/readyz", Duration::from_secs(90)).await?;
        // kubectl's client-side validation needs it, and it lags /readyz.
        wait_for(&client, "/openapi/v2", Duration::from_secs(90)).await?;
        for obj in rbac(policy) {
            apply(&client, &obj).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = ready => r?,
        (name, status) = first_exit(&mut running) => anyhow::bail!("{name} exited before the API was ready ({status}); see {}", layout.log_dir.display()),
    }
    on_ready()?;
    tokio::select! {
        _ = sks_process::shutdown_signal() => {
            stop(&mut running).await;
            Ok(())
        }
        (name, status) = first_exit(&mut running) => {
            stop(&mut running).await;
            anyhow::bail!("{name} exited ({status}); see {}", layout.log_dir.display())
        }
    }
}

/// The first of `running` to exit.
async fn first_exit(running: &mut [Running]) -> (&'static str, String) {
    let waits = running.iter_mut().map(|r| {
        Box::pin(async move {
            let status = r.child.wait().await.map_or_else(|e| e.to_string(), |s| s.to_string());
            (r.name, status)
        })
    });
    futures::future::select_all(waits).await.0
}

/// Stops every process, the last started first (SIGTERM, then SIGKILL after 5 s).
async fn stop(running: &mut Vec<Running>) {
    for mut r in running.drain(..).rev() {
        if let Some(pid) = r.child.id() {
            // A graceful stop first (etcd syncs, kube-apiserver drains); std has no SIGTERM.
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(5), r.child.wait()).await.is_err() {
            let _ = r.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            cert_dir: "/c".into(),
            data_dir: "/d".into(),
            log_dir: "/l".into(),
            port: 6443,
            etcd_ports: (2379, 2380),
            node_grace: Duration::from_secs(40),
        }
    }

    fn flag<'a>(l: &'a Launch, name: &str) -> Option<&'a str> {
        l.args.iter().position(|a| a == name).map(|i| l.args[i + 1].as_str())
    }

    #[test]
    fn the_api_server_gets_a_public_key_and_the_stand_ins_certificates() {
        let all = launches(&layout(), &|_| true);
        let names: Vec<&str> = all.iter().map(|l| l.name).collect();
        assert_eq!(names, BINARIES);
        let api = &all[1];
        assert_eq!(flag(api, "--service-account-key-file"), Some("/c/sa.pub"), "a public key, not ca.key");
        assert_eq!(flag(api, "--service-account-signing-key-file"), Some("/c/sa.key"));
        assert_eq!(flag(api, "--client-ca-file"), Some("/c/ca.crt"));
        assert_eq!(flag(api, "--requestheader-client-ca-file"), Some("/c/front-proxy-ca.crt"));
        assert_eq!(flag(api, "--etcd-servers"), Some("http://127.0.0.1:2379"));
        assert!(api.args.contains(&"--enable-aggregator-routing=false".to_owned()));
        let kcm = &all[2];
        assert_eq!(flag(kcm, "--cluster-signing-kubelet-serving-key-file"), Some("/c/kubelet-ca.key"));
        assert_eq!(flag(kcm, "--node-monitor-grace-period"), Some("40s"));
        assert!(flag(kcm, "--controllers").unwrap().contains("disruption-controller"));
        let only_required = launches(&layout(), &|n| n == "etcd" || n == "kube-apiserver");
        assert_eq!(only_required.len(), 2, "optional binaries are started only when present");
    }

    #[test]
    fn the_token_key_pair_is_a_private_and_a_public_pem_kept_across_restarts() {
        let dir = std::env::temp_dir().join(format!("kube-real-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        ensure_token_key(&dir).unwrap();
        let public = std::fs::read_to_string(dir.join("sa.pub")).unwrap();
        let private = std::fs::read_to_string(dir.join("sa.key")).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        ensure_token_key(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("sa.pub")).unwrap(), public, "kept");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn policy_rules_become_cluster_roles_or_namespaced_roles() {
        let policy: Policy = serde_yaml::from_str(
            r#"rules:
- groups: ["system:nodes"]
  verbs: ["get"]
  apiGroups: [""]
  resources: ["nodes"]
- users: ["kubelet"]
  verbs: ["create"]
  apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  namespaces: ["kube-node-lease"]
- users: ["alice"]
  verbs: ["get"]
  nonResourceURLs: ["/metrics"]
"#,
        )
        .unwrap();
        let objects = rbac(&policy);
        let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
        );
        assert_eq!(
            objects[1]["subjects"][0],
            json!({"kind": "Group", "name": "system:nodes", "apiGroup": "rbac.authorization.k8s.io"})
        );
        assert_eq!(
            object_path(&objects[3]),
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-node-lease/rolebindings/kube-standin-policy-1"
        );
        assert_eq!(objects[4]["rules"][0], json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}));
    }
}
