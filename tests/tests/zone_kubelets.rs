//! `sks-zone --kubeconfig` runs a simulated kubelet per running nodepool
//! instance against a Kubernetes API (here `kube-standin` sharing the
//! cluster's CAs): Nodes registered as a kubelet registers them, Leases
//! renewed, serving CSRs made as the node, heartbeats that stop when the
//! instance goes away or stops and resume when it starts again, and the admin
//! switch that makes a kubelet report NotReady, across reboots, until set back.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use orchestrator::model::{Authority, Instance};
use sks_e2e::env::TestEnv;
use sks_e2e::kubeapi::KubeOptions;
use sks_e2e::wait_for;
use sks_e2e::zone::ZoneOptions;

const SIGNER: &str = "kubernetes.io/kubelet-serving";

fn ready(node: &Node) -> Option<&str> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

async fn node(nodes: &Api<Node>, name: &str) -> Option<Node> {
    nodes.get_opt(name).await.ok().flatten()
}

async fn renew_time(leases: &Api<Lease>, name: &str) -> Option<Timestamp> {
    leases.get_opt(name).await.ok().flatten()?.spec?.renew_time.map(|t| t.0)
}

async fn wait_ready(nodes: &Api<Node>, name: &str, status: &str, timeout: Duration) {
    wait_for(&format!("node {name} to be Ready={status}"), timeout, || async {
        node(nodes, name).await.filter(|n| ready(n) == Some(status)).map(|_| ())
    })
    .await;
}

async fn serving_csrs(csrs: &Api<CertificateSigningRequest>) -> Vec<CertificateSigningRequest> {
    let list = csrs.list(&ListParams::default()).await.expect("listing CSRs");
    list.items.into_iter().filter(|c| c.spec.signer_name == SIGNER).collect()
}

/// Waits until `name`'s Lease has been renewed `times` more times: the kubelets'
/// own clock, so "nothing else happened meanwhile" is checked over a real interval.
async fn renewals(leases: &Api<Lease>, name: &str, times: usize) {
    let mut last = renew_time(leases, name).await;
    for _ in 0..times {
        let seen = last;
        last = wait_for(&format!("{name}'s lease to be renewed"), Duration::from_secs(20), || async {
            renew_time(leases, name).await.filter(|t| Some(*t) > seen)
        })
        .await
        .into();
    }
}

/// Checks that `cert_pem` was signed by `ca_pem` and is the node's: subject
/// `system:node:<name>`, SANs the node name and `ip`.
fn check_serving_cert(cert_pem: &str, ca_pem: &str, name: &str, ip: &str) {
    use x509_parser::extensions::GeneralName;
    let (_, cert_pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let cert = cert_pem.parse_x509().unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    cert.verify_signature(Some(ca.public_key())).expect("signed by the cluster's kubelet CA");
    assert_eq!(cert.issuer(), ca.subject());
    let cn: Vec<&str> = cert.subject().iter_common_name().filter_map(|c| c.as_str().ok()).collect();
    assert_eq!(cn, [format!("system:node:{name}")]);
    let sans = cert.subject_alternative_name().unwrap().expect("SANs").value.general_names.clone();
    assert!(sans.iter().any(|g| matches!(g, GeneralName::DNSName(d) if *d == name)), "{sans:?}");
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    assert!(sans.iter().any(|g| matches!(g, GeneralName::IPAddress(b) if *b == ip.octets())), "{sans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_register_heartbeat_and_request_serving_certificates() {
    let zone = ZoneOptions {
        seed: true,
        extra: vec!["--kubelet-lease-interval-seconds".into(), "1".into()],
        ..Default::default()
    };
    let kube = KubeOptions { node_grace_seconds: Some(3), ..Default::default() };
    let mut env = TestEnv::builder().zone(zone).kube(kube).kubelets().start().await;
    let client = env.client.clone();
    let cluster = client.get_sks_cluster(env.cluster).await.unwrap();
    let nodepool = cluster.nodepools.first().cloned().expect("the seeded nodepool");
    let pool_id = nodepool.instance_pool.expect("nodepool instance pool").id;

    let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
    let members = client.get_instance_pool(pool_id).await.unwrap().instances;
    for r in &members {
        let i = client.get_instance(r.id).await.unwrap();
        instances.insert(i.name.clone(), i);
    }
    assert_eq!(instances.len(), 3);
    // A scale-down removes the newest members: the oldest stays.
    let kept = instances.iter().find(|(_, i)| i.id == members[0].id).map(|(n, _)| n.clone()).unwrap();
    let removed: Vec<String> = instances.keys().filter(|n| **n != kept).cloned().collect();

    let kube = env.kube().client().await;
    let nodes: Api<Node> = Api::all(kube.clone());
    let leases: Api<Lease> = Api::namespaced(kube.clone(), "kube-node-lease");
    let csrs: Api<CertificateSigningRequest> = Api::all(kube.clone());

    // 1. Nodes registered as a kubelet registers them.
    for (name, instance) in &instances {
        wait_ready(&nodes, name, "True", Duration::from_secs(30)).await;
        let n = node(&nodes, name).await.unwrap();
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/hostname"), Some(name));
        assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
        assert_eq!(labels.get("kubernetes.io/arch").map(String::as_str), Some("amd64"));
        let taints = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        assert!(
            taints.iter().any(|t| t.key == "node.cloudprovider.kubernetes.io/uninitialized"
                && t.value.as_deref() == Some("true")
                && t.effect == "NoSchedule"),
            "{name} lacks the uninitialized taint: {taints:?}"
        );
        let status = n.status.as_ref().unwrap();
        let info = status.node_info.as_ref().unwrap();
        assert_eq!(info.system_uuid, instance.id.to_string());
        assert_eq!(info.kubelet_version, format!("v{}", nodepool.version.as_deref().unwrap()));
        assert_eq!(info.operating_system, "linux");
        let addresses = status.addresses.clone().unwrap_or_default();
        let internal = addresses.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone());
        assert_eq!(internal, instance.public_ip.map(|ip| ip.to_string()));
        assert!(addresses.iter().any(|a| a.type_ == "Hostname" && a.address == *name));
        let capacity = status.capacity.clone().unwrap_or_default();
        assert_eq!(capacity.get("pods").map(|q| q.0.as_str()), Some("110"));
        assert_eq!(capacity.get("cpu").map(|q| q.0.as_str()), Some("2"), "standard.medium has 2 CPUs");
        assert_eq!(capacity.get("memory").map(|q| q.0.as_str()), Some("4194304Ki"));
        let lease = leases.get(name).await.expect("the node's lease");
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(40));
    }

    // 2. One serving CSR per node, made as the node.
    let pending = wait_for("3 kubelet-serving CSRs", Duration::from_secs(30), || async {
        let list = serving_csrs(&csrs).await;
        (list.len() >= 3).then_some(list)
    })
    .await;
    assert_eq!(pending.len(), 3, "one CSR per node");
    let mut csr_of = BTreeMap::new();
    for csr in &pending {
        let user = csr.spec.username.clone().unwrap_or_default();
        let name = user.strip_prefix("system:node:").unwrap_or_else(|| panic!("CSR made by {user:?}, not a node"));
        assert!(instances.contains_key(name), "CSR of unknown node {name}");
        let groups = csr.spec.groups.clone().unwrap_or_default();
        assert!(groups.iter().any(|g| g == "system:nodes"), "groups {groups:?}");
        assert!(groups.iter().any(|g| g == "system:authenticated"), "groups {groups:?}");
        let usages = csr.spec.usages.clone().unwrap_or_default();
        assert_eq!(usages, ["digital signature", "key encipherment", "server auth"]);
        let pem = String::from_utf8(csr.spec.request.0.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{pem}");
        let csr_name = csr.metadata.name.clone().unwrap();
        assert!(csr_name.starts_with("csr-"), "{csr_name}");
        assert!(csr_of.insert(name.to_owned(), csr_name).is_none(), "two CSRs for {name}");
    }

    // 3. Approval gets them signed by the cluster's kubelet CA; a denied one
    // is not asked for again.
    let k = env.kubectl();
    k.ok(&["certificate", "deny", &csr_of[&kept]]);
    for name in &removed {
        k.ok(&["certificate", "approve", &csr_of[name]]);
    }
    let kubelet_ca = client.get_sks_cluster_authority_cert(cluster.id, Authority::Kubelet).await.unwrap();
    for name in &removed {
        let csr_name = &csr_of[name];
        let cert = wait_for(&format!("{csr_name} to be issued"), Duration::from_secs(20), || async {
            let csr = csrs.get(csr_name).await.ok()?;
            csr.status?.certificate.map(|c| String::from_utf8(c.0).unwrap())
        })
        .await;
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        let ip = instances[name].public_ip.unwrap().to_string();
        check_serving_cert(&cert, &kubelet_ca, name, &ip);
    }
    renewals(&leases, &kept, 2).await;
    assert_eq!(serving_csrs(&csrs).await.len(), 3, "the kubelet whose CSR was denied does not ask again");

    // 4. Scaling down silences the removed instances: their Leases stop, their
    // Nodes stay and go Ready=Unknown; the remaining node keeps heartbeating.
    client.scale_sks_nodepool(cluster.id, nodepool.id, 1).await.unwrap();
    let remaining: Vec<_> = client.get_instance_pool(pool_id).await.unwrap().instances;
    assert_eq!(remaining.iter().map(|r| r.id).collect::<Vec<_>>(), [instances[&kept].id]);
    for name in &removed {
        wait_ready(&nodes, name, "Unknown", Duration::from_secs(20)).await;
    }
    let before: Vec<_> = futures::future::join_all(removed.iter().map(|n| renew_time(&leases, n))).await;
    let kept_before = renew_time(&leases, &kept).await.unwrap();
    renewals(&leases, &kept, 2).await;
    let after: Vec<_> = futures::future::join_all(removed.iter().map(|n| renew_time(&leases, n))).await;
    assert_eq!(before, after, "leases of removed instances {removed:?} must not be renewed");
    assert!(renew_time(&leases, &kept).await.unwrap() > kept_before, "the remaining node renews its lease");
    assert_eq!(ready(&node(&nodes, &kept).await.unwrap()), Some("True"));
    for name in &removed {
        assert!(node(&nodes, name).await.is_some(), "a dead kubelet leaves its Node behind: {name}");
    }

    // 5. Stopping the remaining instance stops its heartbeats; starting it
    // again resumes them on a new boot, without asking for a certificate again.
    let kept_id = instances[&kept].id;
    let boot = |n: &Node| n.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.boot_id.clone());
    let first_boot = boot(&node(&nodes, &kept).await.unwrap());
    client.stop_instance(kept_id).await.unwrap();
    wait_ready(&nodes, &kept, "Unknown", Duration::from_secs(20)).await;
    client.start_instance(kept_id).await.unwrap();
    wait_ready(&nodes, &kept, "True", Duration::from_secs(20)).await;
    let resumed = renew_time(&leases, &kept).await.unwrap();
    assert!(Timestamp::now().duration_since(resumed).unsigned_abs() < Duration::from_secs(5), "lease renewed again");
    assert_ne!(boot(&node(&nodes, &kept).await.unwrap()), first_boot, "a restarted instance reports a new boot id");
    renewals(&leases, &kept, 2).await;
    assert_eq!(serving_csrs(&csrs).await.len(), 3, "a restarted kubelet does not ask again after a denial");

    // 6. An unreachable Kubernetes API does not stop the zone.
    env.kube_mut().kill();
    let started = std::time::Instant::now();
    client.get_sks_cluster(cluster.id).await.expect("the zone keeps serving");
    assert!(started.elapsed() < Duration::from_secs(5), "the zone answered slowly: {:?}", started.elapsed());
}

/// The Ready condition of `node`: status, reason and message.
fn ready_condition(node: &Node) -> Option<(String, String, String)> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

fn boot_id(node: &Node) -> Option<String> {
    node.status.as_ref()?.node_info.as_ref().map(|i| i.boot_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_kubelet_reports_not_ready_across_reboots_until_healed_or_replaced() {
    // Operations take a second, so a reboot lasts longer than the zone's 500 ms
    // look at its instances and really restarts the kubelet.
    let zone = ZoneOptions {
        seed: true,
        operation_delay_ms: 1000,
        extra: vec!["--kubelet-lease-interval-seconds".into(), "1".into()],
        ..Default::default()
    };
    let env = TestEnv::builder().zone(zone).kubelets().start().await;
    let client = env.client.clone();
    let cluster = client.get_sks_cluster(env.cluster).await.unwrap();
    let nodepool = cluster.nodepools[0].clone();
    let members = client.get_instance_pool(nodepool.instance_pool.unwrap().id).await.unwrap().instances;
    let mut names = Vec::new();
    for m in &members {
        names.push(client.get_instance(m.id).await.unwrap().name);
    }
    let kube = env.kube().client().await;
    let nodes: Api<Node> = Api::all(kube.clone());
    let leases: Api<Lease> = Api::namespaced(kube, "kube-node-lease");
    for name in &names {
        wait_ready(&nodes, name, "True", Duration::from_secs(30)).await;
    }
    let (sick, sick_name) = (members[0].id, &names[0]);
    let switch = |id: uuid::Uuid, body: serde_json::Value| {
        let zone = &env.zone;
        async move { zone.admin("PUT", &format!("/admin/instance/{id}/kubelet"), Some(&body)).await }
    };

    // Bad requests are refused, naming what is wrong.
    let (code, answer) = switch(uuid::Uuid::new_v4(), serde_json::json!({"ready": false})).await;
    assert_eq!(code, 404, "{answer}");
    let (code, answer) = switch(sick, serde_json::json!({"ready": "no"})).await;
    assert!(code == 400 && answer["message"].as_str().unwrap().starts_with("kubelet:"), "{code} {answer}");
    let (code, answer) = switch(sick, serde_json::json!({"ready": false, "for": 3})).await;
    assert_eq!(code, 400, "unknown fields are refused: {answer}");
    let template = sks_e2e::zone::known_template(&client).await;
    let types = client.list_instance_types().await.unwrap();
    let medium = types.iter().find(|t| t.name() == "standard.medium").unwrap();
    let lone = client
        .create_instance(&orchestrator::model::CreateInstance {
            name: Some("lone".into()),
            instance_type: Some(orchestrator::model::Ref::from(medium.id)),
            template: Some(template),
            disk_size: Some(20),
            ..Default::default()
        })
        .await
        .unwrap()
        .reference_id()
        .unwrap();
    let (code, answer) = switch(lone, serde_json::json!({"ready": false})).await;
    assert!(code == 400 && answer["message"].as_str().unwrap().contains("runs no kubelet"), "{code} {answer}");

    // Sick: the kubelet keeps renewing its Lease but posts NotReady, as one whose runtime is down.
    env.zone.set_kubelet_ready(sick, false).await;
    wait_ready(&nodes, sick_name, "False", Duration::from_secs(10)).await;
    let (_, reason, message) = ready_condition(&node(&nodes, sick_name).await.unwrap()).unwrap();
    assert_eq!((reason.as_str(), message.as_str()), ("KubeletNotReady", "container runtime is down"));
    renewals(&leases, sick_name, 2).await;
    assert_eq!(ready(&node(&nodes, sick_name).await.unwrap()), Some("False"), "it stays NotReady");
    for name in &names[1..] {
        assert_eq!(ready(&node(&nodes, name).await.unwrap()), Some("True"), "{name} got sick too");
    }

    // A reboot starts a new kubelet (a new boot id), as sick as the last one.
    let first_boot = boot_id(&node(&nodes, sick_name).await.unwrap());
    client.reboot_instance(sick).await.unwrap();
    let rebooted = wait_for("the rebooted kubelet's status", Duration::from_secs(20), || async {
        node(&nodes, sick_name).await.filter(|n| boot_id(n) != first_boot)
    })
    .await;
    assert_eq!(ready(&rebooted), Some("False"), "a reboot cured the kubelet");
    renewals(&leases, sick_name, 2).await;
    assert_eq!(ready(&node(&nodes, sick_name).await.unwrap()), Some("False"));

    // Set back: Ready again.
    env.zone.set_kubelet_ready(sick, true).await;
    wait_ready(&nodes, sick_name, "True", Duration::from_secs(10)).await;

    // Sick again, then replaced as auto-heal replaces it: the new instance is healthy.
    env.zone.set_kubelet_ready(sick, false).await;
    wait_ready(&nodes, sick_name, "False", Duration::from_secs(10)).await;
    orchestrator::nodepool::grow_then_evict(&client, cluster.id, nodepool.id, vec![sick], 3).await.unwrap();
    let pool = nodepool.instance_pool.unwrap().id;
    let fresh = wait_for("the replacement instance", Duration::from_secs(20), || async {
        let now = client.get_instance_pool(pool).await.ok()?.instances;
        now.iter().find(|m| members.iter().all(|old| old.id != m.id)).map(|m| m.id)
    })
    .await;
    let fresh = client.get_instance(fresh).await.unwrap().name;
    wait_ready(&nodes, &fresh, "True", Duration::from_secs(30)).await;
}
