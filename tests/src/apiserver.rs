//! A running `sks-apiserver` and `kubectl` pointed at it.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::kubectl::Kubectl;
use crate::logs::Logs;
use crate::pki::TestPki;
use crate::zone::Zone;
use crate::{TempDir, bin};

/// A running `sks-apiserver` for a zone's cluster, killed on drop.
pub struct ApiServer {
    child: Option<Child>,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Its certificates.
    pub pki: TestPki,
    /// An admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    args: Vec<String>,
    logs: Logs,
    /// Its orchestrator endpoint when not its zone's own (a proxy in front of it).
    orchestrator: Option<String>,
    dir: TempDir,
}

impl ApiServer {
    /// Starts a server for `cluster_id` of `zone` with extra `args`.
    pub fn start(zone: &Zone, cluster_id: &str, args: &[&str]) -> ApiServer {
        Self::start_with(zone, cluster_id, args, None, &Logs::default())
    }

    /// As [`ApiServer::start_with`] (served directly), with the orchestrator
    /// reached at `endpoint` (`<url>/v2`: a proxy in place of `zone`,
    /// [`crate::proxy::Proxy::start_in_place_of`]) instead of at the zone
    /// itself; restarts keep it.
    pub fn start_through(zone: &Zone, endpoint: &str, cluster_id: &str, args: &[&str], logs: &Logs) -> ApiServer {
        Self::start_at(zone, Some(endpoint), cluster_id, args, None, logs)
    }

    /// Starts a server for `cluster_id` of `zone` with extra `args`, logging as `logs`
    /// say. Behind a cluster API, it trusts that API's client and front-proxy CAs
    /// (`ca.crt` and `front-proxy-ca.crt` in `cluster_certs`).
    pub fn start_with(
        zone: &Zone,
        cluster_id: &str,
        args: &[&str],
        cluster_certs: Option<&std::path::Path>,
        logs: &Logs,
    ) -> ApiServer {
        Self::start_at(zone, None, cluster_id, args, cluster_certs, logs)
    }

    fn start_at(
        zone: &Zone,
        endpoint: Option<&str>,
        cluster_id: &str,
        args: &[&str],
        cluster_certs: Option<&std::path::Path>,
        logs: &Logs,
    ) -> ApiServer {
        let dir = TempDir::new("apiserver");
        let pki = TestPki::new(dir.path());
        let (cert, key) = pki.serving("serving", &["sks-apiserver.kube-system.svc"]);
        let (client_ca, proxy_ca) = match cluster_certs {
            Some(d) => (d.join("ca.crt"), d.join("front-proxy-ca.crt")),
            None => {
                (pki.write("client-ca.crt", &pki.client_ca.cert_pem), pki.write("proxy-ca.crt", &pki.proxy_ca.cert_pem))
            }
        };
        let mut all: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-private-key-file".into(),
            key.display().to_string(),
            "--client-ca-file".into(),
            client_ca.display().to_string(),
            "--requestheader-client-ca-file".into(),
            proxy_ca.display().to_string(),
            "--requestheader-allowed-names".into(),
            "front-proxy-client".into(),
            "--cluster-id".into(),
            cluster_id.into(),
            "--metadata-file".into(),
            dir.path().join("metadata.json").display().to_string(),
        ];
        all.extend(args.iter().map(std::string::ToString::to_string));
        let orchestrator = endpoint.map(str::to_owned);
        let (child, url) = spawn(orchestrator.as_deref().unwrap_or(&zone.endpoint()), &all, logs);
        // Behind a cluster API, sks-apiserver trusts that API's client CA only.
        let client_ca = match cluster_certs {
            Some(d) => sks_pki::CertificateAuthority::from_pem(
                &std::fs::read_to_string(d.join("ca.crt")).unwrap(),
                &std::fs::read_to_string(d.join("ca.key")).unwrap(),
            )
            .unwrap(),
            None => pki.client_ca.clone(),
        };
        let admin = TestPki::client(&client_ca, "admin", &["system:masters"]);
        let kubeconfig = pki.kubeconfig("admin.kubeconfig", &url, "admin", &admin);
        ApiServer { child: Some(child), url, pki, kubeconfig, args: all, logs: logs.clone(), orchestrator, dir }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        crate::kill_child(&mut self.child);
    }

    /// Stops it with SIGTERM: its exit status, `None` if it did not stop within 5 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        crate::terminate_child(&mut self.child)
    }

    /// Starts it again on the same port with the same state.
    pub fn restart(&mut self, zone: &Zone) {
        self.kill();
        let listen = self.url.trim_start_matches("https://").to_owned();
        let mut args = self.args.clone();
        let i = args.iter().position(|a| a == "--listen").unwrap();
        args[i + 1] = listen.clone();
        let endpoint = self.orchestrator.clone().unwrap_or_else(|| zone.endpoint());
        let (child, url) = spawn(&endpoint, &args, &self.logs);
        assert_eq!(url, self.url);
        self.child = Some(child);
    }

    /// Registers it with `kube` through an APIService (as `deploy/` does) and
    /// waits until the aggregator reports it Available.
    pub async fn register(&self, k: &Kubectl) {
        use base64::Engine as _;
        let port = self.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&self.pki.serving_ca.cert_pem);
        let registration = [
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sks-apiserver", "namespace": "kube-system"}, "spec": {"type": "ExternalName", "externalName": "localhost"}}),
            serde_json::json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1alpha1.sks.exoscale.net"},
                "spec": {"group": "sks.exoscale.net", "version": "v1alpha1", "groupPriorityMinimum": 2000, "versionPriority": 10, "caBundle": ca_bundle,
                    "service": {"namespace": "kube-system", "name": "sks-apiserver", "port": port}}}),
        ];
        for doc in registration {
            let out = k.with_stdin(&["apply", "-f", "-"], &doc.to_string());
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        crate::wait_for("the APIService to become available", std::time::Duration::from_secs(30), || {
            let k = k.clone();
            async move {
                let a: serde_json::Value =
                    serde_json::from_str(&k.ok(&["get", "apiservice", "v1alpha1.sks.exoscale.net", "-o", "json"]))
                        .ok()?;
                a["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True")
                    .then_some(())
            }
        })
        .await;
        // A real aggregator merges the new group's OpenAPI v3 some time after it is
        // Available (kubectl explain says "couldn't find resource" until then).
        crate::wait_for("the group in the aggregated OpenAPI v3", std::time::Duration::from_secs(120), || {
            let k = k.clone();
            async move {
                let root: serde_json::Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v3"])).ok()?;
                root["paths"].get("apis/sks.exoscale.net/v1alpha1").map(|_| ())
            }
        })
        .await;
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig.clone(), self.dir.path().join("kube-cache"))
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Starts sks-apiserver with `args`, its orchestrator at `endpoint` (`<url>/v2`).
fn spawn(endpoint: &str, args: &[String], logs: &Logs) -> (Child, String) {
    let mut cmd = Command::new(bin("sks-apiserver"));
    cmd.args(args).env_remove("KUBECONFIG");
    let (child, first) = logs.spawn(crate::zone::orchestrator_env(endpoint, &mut cmd), "sks-apiserver");
    let url = first.strip_prefix("sks-apiserver listening on ").expect("address line").trim().to_owned();
    (child, url)
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}
