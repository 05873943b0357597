//! The Kubernetes objects a simulated kubelet writes: its Node, its Lease and
//! its serving-certificate CSR, shaped as a real kubelet shapes them. Pure
//! functions, so what the kubelet sends is testable without an API server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use uuid::Uuid;

/// The namespace kubelets keep their heartbeat Leases in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a kubelet's Lease is valid, as kubelet's default `nodeLeaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub use sks_keys::KUBELET_SERVING_SIGNER;
pub use sks_keys::taint::UNINITIALIZED as UNINITIALIZED_TAINT;
/// The group every node's credentials carry.
pub const NODES_GROUP: &str = "system:nodes";

/// Pods a kubelet admits by default (`maxPods`).
const MAX_PODS: &str = "110";
/// What the simulated nodes claim to run; plausible values, so tools that print them show something sensible.
const KERNEL_VERSION: &str = "6.8.0-60-generic";
const OS_IMAGE: &str = "Ubuntu 24.04.2 LTS";
const CONTAINER_RUNTIME: &str = "containerd://1.7.27";
/// What kubelet says in its Ready condition when its container runtime does not answer.
pub const NOT_READY_MESSAGE: &str = "container runtime is down";

/// What the zone knows about one instance that runs a kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The zone the instance is in.
    pub zone: String,
    /// The SKS cluster its nodepool belongs to.
    pub cluster_id: Uuid,
    /// The instance id: the node's system UUID, as on a real VM.
    pub instance_id: Uuid,
    /// The instance name: the node name.
    pub name: String,
    /// Public IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// The Kubernetes version of the template the instance runs, without the `v`.
    pub version: String,
    /// CPUs of the instance type.
    pub cpus: i64,
    /// Memory of the instance type, in bytes.
    pub memory_bytes: i64,
    /// Root disk size, in GiB.
    pub disk_gib: i64,
    /// Whether the kubelet finds the node ready (false: the admin switch made it sick).
    pub ready: bool,
}

impl Machine {
    /// The user name the node authenticates as.
    pub fn user(&self) -> String {
        format!("system:node:{}", self.name)
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> NodeCondition {
    NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The node's labels, as a kubelet sets them at registration.
fn labels(m: &Machine) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", m.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// CPU in millicores as a quantity: whole CPUs when it is.
fn cpu_quantity(millis: i64) -> String {
    if millis % 1000 == 0 { (millis / 1000).to_string() } else { format!("{millis}m") }
}

/// Memory in bytes as a quantity: in Ki when it is a whole number of them.
fn memory_quantity(bytes: i64) -> String {
    if bytes % 1024 == 0 { format!("{}Ki", bytes / 1024) } else { bytes.to_string() }
}

/// Capacity is the instance type's; allocatable is what the autoscaler
/// plans with (`sks_autoscaler::allocatable`: the documented system
/// reserve and eviction threshold), so its template nodes and the real ones
/// agree; ephemeral storage keeps kubelet's default `nodefs.available<10%`.
fn resources(m: &Machine, allocatable: bool) -> BTreeMap<String, Quantity> {
    let disk_ki = m.disk_gib * 1024 * 1024;
    let (cpu, memory, disk) = if allocatable {
        let offered = sks_autoscaler::allocatable(m.cpus, m.memory_bytes);
        (
            cpu_quantity(offered.cpu_millis),
            memory_quantity(offered.memory_bytes),
            format!("{}Ki", disk_ki - disk_ki / 10),
        )
    } else {
        (m.cpus.to_string(), memory_quantity(m.memory_bytes), format!("{disk_ki}Ki"))
    };
    [
        ("cpu", cpu),
        ("memory", memory),
        ("ephemeral-storage", disk),
        ("hugepages-1Gi", "0".to_owned()),
        ("hugepages-2Mi", "0".to_owned()),
        ("pods", MAX_PODS.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect()
}

/// The Ready condition a kubelet posts: when it is not ready, kubelet's
/// `KubeletNotReady` with its runtime's error, as when containerd is down.
fn ready_condition(ready: bool, now: Timestamp) -> NodeCondition {
    if ready {
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now)
    } else {
        condition("Ready", "False", "KubeletNotReady", NOT_READY_MESSAGE, now)
    }
}

/// The status the kubelet on `m` reports at `now` (Ready as `m.ready` says);
/// conditions whose status did not change keep their transition time from `previous`.
pub fn node_status(m: &Machine, boot_id: &str, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            now,
        ),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
        ready_condition(m.ready, now),
    ];
    let old = previous.and_then(|s| s.conditions.as_ref());
    for c in &mut conditions {
        if let Some(o) = old.and_then(|o| o.iter().find(|o| o.type_ == c.type_))
            && o.status == c.status
            && o.last_transition_time.is_some()
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    let mut addresses = Vec::new();
    if let Some(ip) = m.ipv4 {
        addresses.push(NodeAddress { type_: "InternalIP".to_owned(), address: ip.to_string() });
    }
    addresses.push(NodeAddress { type_: "Hostname".to_owned(), address: m.name.clone() });
    let kubelet_version = format!("v{}", m.version);
    NodeStatus {
        addresses: Some(addresses),
        capacity: Some(resources(m, false)),
        allocatable: Some(resources(m, true)),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }) }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_owned(),
            boot_id: boot_id.to_owned(),
            container_runtime_version: CONTAINER_RUNTIME.to_owned(),
            kernel_version: KERNEL_VERSION.to_owned(),
            kube_proxy_version: kubelet_version.clone(),
            kubelet_version,
            // A machine id is 32 hex digits; the instance's is stable across boots, as on a VM.
            machine_id: m.instance_id.simple().to_string(),
            operating_system: "linux".to_owned(),
            os_image: OS_IMAGE.to_owned(),
            system_uuid: m.instance_id.to_string(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The Node a kubelet registers: labels, the uninitialized taint (the CCM
/// removes it) and a full status.
pub fn node(m: &Machine, boot_id: &str, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta { name: Some(m.name.clone()), labels: Some(labels(m)), ..ObjectMeta::default() },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: UNINITIALIZED_TAINT.to_owned(),
                value: Some("true".to_owned()),
                effect: "NoSchedule".to_owned(),
                time_added: None,
            }]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(m, boot_id, None, now)),
    }
}

/// A condition with its timestamps left out, for comparing what a status says.
fn meaning(c: &NodeCondition) -> (&str, &str, Option<&str>, Option<&str>) {
    (&c.type_, &c.status, c.reason.as_deref(), c.message.as_deref())
}

/// Whether `current` says something other than `desired` about the node
/// (heartbeat times aside), so the kubelet must post its status now rather
/// than at the next periodic report.
pub fn status_differs(current: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    let Some(current) = current else { return true };
    let conditions_differ = desired.conditions.iter().flatten().any(|want| {
        !current
            .conditions
            .iter()
            .flatten()
            .any(|have| meaning(have) == meaning(want) && have.last_heartbeat_time.is_some())
    });
    conditions_differ
        || current.addresses != desired.addresses
        || current.capacity != desired.capacity
        || current.allocatable != desired.allocatable
        || current.node_info != desired.node_info
}

/// Whether the condition `type_` of `status` is `True`.
pub fn condition_true(status: Option<&NodeStatus>, type_: &str) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// `lease` (or a new Lease) held by the node and renewed at `now`, owned by
/// the Node (when its uid is known) so it goes when the Node goes.
pub fn renewed_lease(lease: Option<Lease>, node: &str, node_uid: Option<&str>, now: Timestamp) -> Lease {
    let mut lease = lease.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    if let Some(uid) = node_uid
        && lease.metadata.owner_references.as_ref().is_none_or(std::vec::Vec::is_empty)
    {
        lease.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: node.to_owned(),
            uid: uid.to_owned(),
            ..OwnerReference::default()
        }]);
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node.to_owned());
    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// A kubelet-serving CSR for `m`, as the kubelet's certificate manager makes
/// it: a fresh ECDSA P-256 key, subject `CN=system:node:<name>, O=system:nodes`,
/// the node name and its addresses as SANs. Returns the object and the key (PEM).
pub fn serving_csr(m: &Machine) -> anyhow::Result<(CertificateSigningRequest, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the serving key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // O before CN, the order Go's x509.CreateCertificateRequest writes them in.
    params.distinguished_name.push(DnType::OrganizationName, NODES_GROUP);
    params.distinguished_name.push(DnType::CommonName, m.user());
    let dns = m.name.clone().try_into().with_context(|| format!("node name {:?} is not a DNS name", m.name))?;
    params.subject_alt_names.push(SanType::DnsName(dns));
    params.subject_alt_names.extend(m.ipv4.map(|ip| SanType::IpAddress(IpAddr::V4(ip))));
    params.subject_alt_names.extend(m.ipv6.map(|ip| SanType::IpAddress(IpAddr::V6(ip))));
    let pem = params.serialize_request(&key).context("building the CSR")?.pem().context("encoding the CSR")?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("csr-".to_owned()), ..ObjectMeta::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: KUBELET_SERVING_SIGNER.to_owned(),
            usages: Some(["digital signature", "key encipherment", "server auth"].map(str::to_owned).to_vec()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    Ok((csr, key.serialize_pem()))
}

/// Where a CSR stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrState {
    /// Neither approved nor denied yet.
    Pending,
    /// Approved, not signed yet.
    Approved,
    /// Approved and signed.
    Issued,
    /// Denied or failed, with the reason given.
    Refused(String),
}

/// Where `csr` stands, from its conditions and certificate.
pub fn csr_state(csr: &CertificateSigningRequest) -> CsrState {
    let status = csr.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref()).map(Vec::as_slice).unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t && c.status != "False");
    if let Some(c) = find("Denied").or_else(|| find("Failed")) {
        let why = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
        return CsrState::Refused(format!("{}{}{why}", c.type_, if why.is_empty() { "" } else { ": " }));
    }
    if status.and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty()) {
        return CsrState::Issued;
    }
    if find("Approved").is_some() { CsrState::Approved } else { CsrState::Pending }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestCondition, CertificateSigningRequestStatus};
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer as _;

    fn machine() -> Machine {
        Machine {
            zone: "ch-gva-2".into(),
            cluster_id: Uuid::new_v4(),
            instance_id: Uuid::new_v4(),
            name: "pool-1a2b3-4c5d6".into(),
            ipv4: Some(Ipv4Addr::new(127, 64, 0, 7)),
            ipv6: Some("fd5c:a1e0::7".parse().unwrap()),
            version: "1.34.2".into(),
            cpus: 2,
            memory_bytes: 4 << 30,
            disk_gib: 50,
            ready: true,
        }
    }

    #[test]
    fn registered_node_looks_like_a_kubelets() {
        let m = machine();
        let now = Timestamp::now();
        let node = serde_json::to_value(node(&m, "boot", now)).unwrap();
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], m.name.as_str());
        assert_eq!(node["spec"]["taints"][0]["key"], UNINITIALIZED_TAINT);
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        let info = &node["status"]["nodeInfo"];
        assert_eq!(info["systemUUID"], m.instance_id.to_string());
        assert_eq!(info["kubeletVersion"], "v1.34.2");
        assert_eq!(node["status"]["addresses"][0], serde_json::json!({"type": "InternalIP", "address": "127.64.0.7"}));
        assert_eq!(node["status"]["capacity"]["memory"], "4194304Ki");
        // standard.medium's allocatable in the autoscaler's reserve table: 1930m and 2972 MiB.
        assert_eq!(node["status"]["allocatable"]["cpu"], "1930m");
        assert_eq!(node["status"]["allocatable"]["memory"], "3043328Ki");
        assert_eq!(node["status"]["capacity"]["cpu"], "2");
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        let ready = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
    }

    #[test]
    fn status_keeps_transition_times_and_notices_changes() {
        let m = machine();
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_060).unwrap();
        let first = node_status(&m, "boot", None, t0);
        let second = node_status(&m, "boot", Some(&first), t1);
        let ready =
            |s: &NodeStatus| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap().clone();
        assert_eq!(ready(&second).last_transition_time, Some(Time(t0)));
        assert_eq!(ready(&second).last_heartbeat_time, Some(Time(t1)));
        assert!(!status_differs(Some(&first), &second), "only heartbeats changed");
        assert!(status_differs(Some(&first), &node_status(&m, "new-boot", None, t1)));
        let mut unknown = first.clone();
        for c in unknown.conditions.as_mut().unwrap() {
            if c.type_ == "Ready" {
                c.status = "Unknown".into();
            }
        }
        assert!(status_differs(Some(&unknown), &second));
        assert!(!condition_true(Some(&unknown), "Ready"));
        let back = node_status(&m, "boot", Some(&unknown), t1);
        assert_eq!(ready(&back).last_transition_time, Some(Time(t1)), "Unknown -> True is a transition");
    }

    #[test]
    fn a_sick_kubelet_posts_kubelet_not_ready_and_its_recovery_is_a_transition() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_060).unwrap();
        let healthy = node_status(&machine(), "boot", None, t0);
        let sick_machine = Machine { ready: false, ..machine() };
        let sick = node_status(&sick_machine, "boot", Some(&healthy), t1);
        let ready =
            |s: &NodeStatus| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").cloned().unwrap();
        let r = ready(&sick);
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref(), r.message.as_deref()),
            ("False", Some("KubeletNotReady"), Some(NOT_READY_MESSAGE))
        );
        assert_eq!(r.last_transition_time, Some(Time(t1)), "True -> False is a transition");
        assert!(status_differs(Some(&healthy), &sick), "posted at once");
        assert!(!condition_true(Some(&sick), "Ready"));
        let pressure = sick.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(pressure.last_transition_time, Some(Time(t0)), "the other conditions did not change");
        let still = node_status(&sick_machine, "boot", Some(&sick), t1 + jiff::SignedDuration::from_secs(60));
        assert_eq!(ready(&still).last_transition_time, Some(Time(t1)), "stays sick, no new transition");
        assert!(!status_differs(Some(&sick), &still));
        let back = node_status(&machine(), "boot", Some(&sick), t1 + jiff::SignedDuration::from_secs(60));
        assert!(condition_true(Some(&back), "Ready") && status_differs(Some(&sick), &back));
    }

    #[test]
    fn lease_renewal_formats_micro_time() {
        let now: Timestamp = "2026-11-21T16:00:00.123456789Z".parse().unwrap();
        let lease = renewed_lease(None, "n1", Some("uid-1"), now);
        let v = serde_json::to_value(&lease).unwrap();
        assert_eq!(v["spec"]["renewTime"], "2026-11-21T16:00:00.123456Z");
        assert_eq!(v["spec"]["holderIdentity"], "n1");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(v["metadata"]["namespace"], LEASE_NAMESPACE);
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    }

    #[test]
    fn csr_is_a_real_pkcs10_request_the_kubelet_ca_can_sign() {
        let m = machine();
        let (csr, key) = serving_csr(&m).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(csr.spec.signer_name, KUBELET_SERVING_SIGNER);
        let pem = String::from_utf8(csr.spec.request.0.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents;
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        assert_eq!(req.certification_request_info.subject.to_string(), format!("O={NODES_GROUP}, CN={}", m.user()));
        let mut sans = Vec::new();
        for ext in req.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    sans.push(match *name {
                        GeneralName::DNSName(d) => d.to_owned(),
                        GeneralName::IPAddress(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d).to_string(),
                        GeneralName::IPAddress(b) => Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap()).to_string(),
                        ref other => panic!("unexpected SAN {other}"),
                    });
                }
            }
        }
        assert_eq!(sans, vec![m.name.clone(), "127.64.0.7".into(), "fd5c:a1e0::7".into()]);
        let ca = sks_pki::CertificateAuthority::generate("kubelet CA").unwrap();
        ca.sign_csr(&pem, std::time::Duration::from_secs(3600)).expect("signed");
    }

    #[test]
    fn csr_states() {
        let (mut csr, _) = serving_csr(&machine()).unwrap();
        assert_eq!(csr_state(&csr), CsrState::Pending);
        let cond = |t: &str| CertificateSigningRequestCondition {
            type_: t.into(),
            status: "True".into(),
            reason: Some("Because".into()),
            ..Default::default()
        };
        csr.status =
            Some(CertificateSigningRequestStatus { conditions: Some(vec![cond("Approved")]), certificate: None });
        assert_eq!(csr_state(&csr), CsrState::Approved);
        csr.status.as_mut().unwrap().certificate = Some(ByteString(b"pem".to_vec()));
        assert_eq!(csr_state(&csr), CsrState::Issued);
        csr.status =
            Some(CertificateSigningRequestStatus { conditions: Some(vec![cond("Denied")]), certificate: None });
        assert_eq!(csr_state(&csr), CsrState::Refused("Denied: Because".into()));
    }
}
