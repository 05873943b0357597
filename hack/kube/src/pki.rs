//! The stand-in's certificates: the zone's cluster CAs when a cluster id is
//! given (so kubeconfigs from the zone work against it), else new ones; all
//! written to the certificate directory for tests and tools.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use sks_pki::{CertificateAuthority, IssuedCert};
use uuid::Uuid;

const YEAR: Duration = Duration::from_secs(365 * 86400);

/// The CAs and certificates the stand-in runs with.
pub struct Pki {
    /// Signs the serving certificate and user client certificates.
    pub control_plane: CertificateAuthority,
    /// Signs the front-proxy client certificate.
    pub aggregation: CertificateAuthority,
    /// Signs kubelet serving certificates.
    pub kubelet: CertificateAuthority,
    /// Serving certificate (localhost, 127.0.0.1, kubernetes.default.svc).
    pub serving: IssuedCert,
    /// The aggregator's client certificate (CN front-proxy-client).
    pub front_proxy: IssuedCert,
}

/// Fetches the cluster's CAs from the zone's admin endpoint (a signed request, as any other).
async fn from_zone(
    cluster: Uuid,
) -> anyhow::Result<(CertificateAuthority, CertificateAuthority, CertificateAuthority)> {
    orchestrator::install_crypto_provider();
    let config = orchestrator::ClientConfig::from_env();
    let creds = orchestrator::CredentialSource::from_env()?.current()?;
    let endpoint = url::Url::parse(&config.endpoint).context("EXOSCALE_API_ENDPOINT")?;
    let zone = config.zone.clone().unwrap_or_default();
    let path = format!("/admin/sks-cluster/{cluster}/pki");
    let query = vec![("zone".to_owned(), zone.clone())];
    let expires = jiff::Timestamp::now().as_second() + 600;
    let req = orchestrator::signing::Request { method: "GET", path: &path, query: &query, body: b"" };
    let auth = orchestrator::signing::authorization(creds.api_key(), creds.api_secret(), &req, expires);
    let url = format!("{}{path}?zone={zone}", endpoint.origin().ascii_serialization());
    let resp = reqwest::Client::new()
        .get(&url)
        .header("authorization", auth)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "the zone refused the PKI request ({status}): {}", body["message"]);
    let ca = |name: &str| {
        CertificateAuthority::from_pem(
            body[name]["cert"].as_str().unwrap_or(""),
            body[name]["key"].as_str().unwrap_or(""),
        )
    };
    Ok((ca("control-plane")?, ca("aggregation")?, ca("kubelet")?))
}

impl Pki {
    /// The zone's CAs for `cluster`, or new ones.
    pub async fn load(cluster: Option<Uuid>) -> anyhow::Result<Pki> {
        let (control_plane, aggregation, kubelet) = match cluster {
            Some(id) => from_zone(id).await.context("fetching the cluster's CAs from the zone")?,
            None => (
                CertificateAuthority::generate("kube-standin control-plane CA")?,
                CertificateAuthority::generate("kube-standin front-proxy CA")?,
                CertificateAuthority::generate("kube-standin kubelet CA")?,
            ),
        };
        let dns: Vec<String> = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let serving = control_plane.issue_serving(&dns, &["127.0.0.1".parse()?], YEAR)?;
        let front_proxy = aggregation.issue_client("front-proxy-client", &[], YEAR)?;
        Ok(Pki { control_plane, aggregation, kubelet, serving, front_proxy })
    }

    /// Writes every file to `dir` (keys with mode 0600) and returns the admin kubeconfig's path.
    pub fn write(&self, dir: &Path, server: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let write = |name: &str, contents: &str, secret: bool| -> anyhow::Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            if secret {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        };
        write("ca.crt", &self.control_plane.cert_pem, false)?;
        write("ca.key", self.control_plane.key_pem(), true)?;
        write("front-proxy-ca.crt", &self.aggregation.cert_pem, false)?;
        write("front-proxy-ca.key", self.aggregation.key_pem(), true)?;
        write("kubelet-ca.crt", &self.kubelet.cert_pem, false)?;
        // For a real kube-controller-manager's kubelet-serving signer (--certs-only).
        write("kubelet-ca.key", self.kubelet.key_pem(), true)?;
        write("serving.crt", &self.serving.cert_pem, false)?;
        write("serving.key", &self.serving.key_pem, true)?;
        write("front-proxy-client.crt", &self.front_proxy.cert_pem, false)?;
        write("front-proxy-client.key", &self.front_proxy.key_pem, true)?;
        let admin = self.control_plane.issue_client("kube-admin", &["system:masters".to_owned()], YEAR)?;
        let kubeconfig =
            sks_pki::render_kubeconfig("kube-standin", server, &self.control_plane.cert_pem, "kube-admin", &admin);
        write("admin.kubeconfig", &kubeconfig, true)?;
        Ok(dir.join("admin.kubeconfig"))
    }
}
