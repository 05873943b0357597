//! Nodes and kubelet-serving CSRs registered through the Kubernetes API as the
//! zone's simulated kubelets register them (`hack/zone/src/kubelets/objects.rs`):
//! the same Node (labels, uninitialized taint, full status) and the same
//! PKCS#10 request (fresh ECDSA P-256 key, `O=system:nodes, CN=system:node:<name>`,
//! the node name and its addresses as SANs), each sent as its node
//! (`system:node:<name>` in `system:nodes`, a client certificate from the
//! cluster's CA) on its own connection. Everything is prepared and every
//! connection opened before the burst, so a burst is released at once.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use orchestrator::model::{Instance, InstanceType};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use serde_json::{Value, json};
use sks_pki::CertificateAuthority;

pub use sks_keys::taint::UNINITIALIZED;
/// The signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Lifetime of the nodes' client certificates (longer than any run).
const CLIENT_CERT_TTL: Duration = Duration::from_secs(86400);
/// Timeout of one request of a node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's Kubernetes API as the bench reaches it: its URL, the CA its
/// serving certificate chains to, and the CA that issues client certificates.
pub struct ApiAccess {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    ca_pem: String,
    ca: CertificateAuthority,
}

impl ApiAccess {
    /// Reads `ca.crt` and `ca.key` of the stand-in's certificate directory.
    pub fn new(url: &str, cert_dir: &std::path::Path) -> anyhow::Result<Self> {
        let read = |n: &str| std::fs::read_to_string(cert_dir.join(n)).with_context(|| format!("reading {n}"));
        let ca_pem = read("ca.crt")?;
        let ca = CertificateAuthority::from_pem(&ca_pem, &read("ca.key")?)?;
        Ok(ApiAccess { url: url.to_owned(), ca_pem, ca })
    }

    /// A client authenticated as `user` in `groups`, with one connection pool of its own.
    pub fn client(&self, user: &str, groups: &[&str], timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let groups: Vec<String> = groups.iter().map(std::string::ToString::to_string).collect();
        let cert = self.ca.issue_client(user, &groups, CLIENT_CERT_TTL)?;
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?])
            .identity(reqwest::Identity::from_pem(format!("{}{}", cert.cert_pem, cert.key_pem).as_bytes())?);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        Ok(b.build()?)
    }
}

/// What a node's kubelet reports: from its instance and instance type.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Instance name, the node name.
    pub name: String,
    /// Instance id, the node's system UUID.
    pub instance_id: uuid::Uuid,
    /// Public IPv4.
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// IPv6.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Kubernetes version, without `v`.
    pub version: String,
    /// CPUs.
    pub cpus: i64,
    /// Memory, bytes.
    pub memory_bytes: i64,
    /// Root disk, GiB.
    pub disk_gib: i64,
}

impl Machine {
    /// The machine of `instance` of type `kind` running `version`.
    pub fn of(instance: &Instance, kind: Option<&InstanceType>, version: &str) -> Self {
        Machine {
            name: instance.name.clone(),
            instance_id: instance.id,
            ipv4: instance.public_ip,
            ipv6: instance.ipv6_address,
            version: version.to_owned(),
            cpus: kind.map_or(1, |t| t.cpus),
            memory_bytes: kind.map_or(1 << 30, |t| t.memory),
            disk_gib: instance.disk_size.unwrap_or(50),
        }
    }
}

fn resources(m: &Machine, allocatable: bool) -> Value {
    let memory_ki = m.memory_bytes / 1024;
    let disk_ki = m.disk_gib * 1024 * 1024;
    // kubelet's defaults: hard eviction at memory.available<100Mi and nodefs.available<10%.
    let (memory_ki, disk_ki) =
        if allocatable { ((memory_ki - 100 * 1024).max(0), disk_ki - disk_ki / 10) } else { (memory_ki, disk_ki) };
    json!({"cpu": m.cpus.to_string(), "memory": format!("{memory_ki}Ki"), "ephemeral-storage": format!("{disk_ki}Ki"),
        "hugepages-1Gi": "0", "hugepages-2Mi": "0", "pods": "110"})
}

/// The Node the zone's kubelet registers for `m`.
pub fn node(m: &Machine, now: &str) -> Value {
    let cond = |t: &str, s: &str, reason: &str, message: &str| json!({"type": t, "status": s, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let mut addresses = Vec::new();
    if let Some(ip) = m.ipv4 {
        addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    addresses.push(json!({"type": "Hostname", "address": m.name}));
    let version = format!("v{}", m.version);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": m.name, "labels": {
            "kubernetes.io/hostname": m.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}},
        "spec": {"taints": [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "addresses": addresses,
            "capacity": resources(m, false),
            "allocatable": resources(m, true),
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": uuid::Uuid::new_v4().to_string(),
                "containerRuntimeVersion": "containerd://1.7.27", "kernelVersion": "6.8.0-60-generic",
                "kubeProxyVersion": version, "kubeletVersion": version,
                "machineID": m.instance_id.simple().to_string(), "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.2 LTS", "systemUUID": m.instance_id.to_string(),
            },
        },
    })
}

/// The kubelet-serving CSR the zone's kubelet makes for `m` (a fresh key each time).
pub fn serving_csr(m: &Machine) -> anyhow::Result<Value> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // O before CN, the order Go's x509.CreateCertificateRequest writes them in.
    params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(DnType::CommonName, format!("system:node:{}", m.name));
    params.subject_alt_names.push(SanType::DnsName(m.name.clone().try_into()?));
    params.subject_alt_names.extend(m.ipv4.map(|ip| SanType::IpAddress(IpAddr::V4(ip))));
    params.subject_alt_names.extend(m.ipv6.map(|ip| SanType::IpAddress(IpAddr::V6(ip))));
    let pem = params.serialize_request(&key)?.pem()?;
    Ok(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": SERVING_SIGNER,
            "usages": ["digital signature", "key encipherment", "server auth"],
        },
    }))
}

/// One node ready to register: its client and its two request bodies.
pub struct Kubelet {
    /// The node name.
    pub name: String,
    client: reqwest::Client,
    url: String,
    node: Bytes,
    csr: Bytes,
}

/// What happened when a node registered.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The node name.
    pub name: String,
    /// When the Node POST was sent.
    pub node_sent: Instant,
    /// When the CSR POST was sent, if it was.
    pub csr_sent: Option<Instant>,
    /// A failure of either POST.
    pub error: Option<String>,
}

impl Kubelet {
    /// Prepares `m`'s kubelet: identity, Node and CSR bodies.
    pub fn new(api: &ApiAccess, m: &Machine) -> anyhow::Result<Self> {
        let user = format!("system:node:{}", m.name);
        let now = jiff::Timestamp::now().to_string();
        Ok(Kubelet {
            name: m.name.clone(),
            client: api.client(&user, &["system:nodes"], Some(REQUEST_TIMEOUT))?,
            url: api.url.clone(),
            node: Bytes::from(node(m, &now).to_string()),
            csr: Bytes::from(serving_csr(m)?.to_string()),
        })
    }

    /// Looks its Node up, as a kubelet does before creating it; opens the connection (a 404 is expected).
    pub async fn lookup(&self) -> anyhow::Result<u16> {
        let resp = self.client.get(format!("{}/api/v1/nodes/{}", self.url, self.name)).send().await?;
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        Ok(status)
    }

    async fn post(&self, path: &str, body: &Bytes) -> Result<(), String> {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = resp.status();
        let text = resp.bytes().await.map_err(|e| format!("POST {path}: {e}"))?;
        if status.as_u16() != 201 {
            return Err(format!("POST {path}: {status}: {}", String::from_utf8_lossy(&text)));
        }
        Ok(())
    }

    /// Registers the Node, then asks for its serving certificate (the kubelet's order).
    pub async fn register(&self) -> Registration {
        let node_sent = Instant::now();
        let mut r = Registration { name: self.name.clone(), node_sent, csr_sent: None, error: None };
        if let Err(e) = self.post("/api/v1/nodes", &self.node).await {
            r.error = Some(e);
            return r;
        }
        r.csr_sent = Some(Instant::now());
        if let Err(e) = self.post("/apis/certificates.k8s.io/v1/certificatesigningrequests", &self.csr).await {
            r.error = Some(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            name: "pool-1a2b3-4c5d6".into(),
            instance_id: uuid::Uuid::new_v4(),
            ipv4: Some("127.64.0.7".parse().unwrap()),
            ipv6: Some("fd5c:a1e0::7".parse().unwrap()),
            version: "1.34.2".into(),
            cpus: 2,
            memory_bytes: 4 << 30,
            disk_gib: 20,
        }
    }

    #[test]
    fn node_is_shaped_as_the_zones_kubelet_shapes_it() {
        let m = machine();
        let n = node(&m, "2026-11-21T00:00:00Z");
        assert_eq!(n["spec"]["taints"][0]["key"], UNINITIALIZED);
        assert_eq!(n["status"]["nodeInfo"]["systemUUID"], m.instance_id.to_string());
        assert_eq!(n["status"]["addresses"][0]["address"], "127.64.0.7");
        assert_eq!(n["status"]["capacity"]["memory"], "4194304Ki");
        assert_eq!(n["status"]["allocatable"]["memory"], "4091904Ki");
    }

    #[test]
    fn csr_carries_the_nodes_subject_and_sans() {
        let m = machine();
        let csr = serving_csr(&m).unwrap();
        let pem = base64::engine::general_purpose::STANDARD.decode(csr["spec"]["request"].as_str().unwrap()).unwrap();
        let pem = String::from_utf8(pem).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let der = x509_der(&pem);
        // The subject's CN and both IP SANs are in the DER.
        let find = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(find(format!("system:node:{}", m.name).as_bytes()));
        assert!(find(&[127, 64, 0, 7]));
        assert_eq!(csr["spec"]["signerName"], SERVING_SIGNER);
    }

    fn x509_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }
}
