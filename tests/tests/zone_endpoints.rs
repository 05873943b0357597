//! Every endpoint of orchestrator-api.md §4, driven by the orchestrator client
//! against a running `sks-zone` through a recording proxy; every request the
//! client sent and every answer the zone gave is then checked against the
//! official OpenAPI spec.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use orchestrator::model::*;
use orchestrator::{Client, ClientConfig, RotateAction};
use sks_e2e::proxy::Proxy;
use sks_e2e::zone::{Zone, ZoneOptions, client_for};
use uuid::Uuid;

/// The operations of orchestrator-api.md §4 (plus `get-operation`), all of which the tour must exercise.
const SECTION_4: &[&str] = &[
    "list-zones",
    "get-operation",
    "list-instances",
    "get-instance",
    "create-instance",
    "update-instance",
    "delete-instance",
    "start-instance",
    "stop-instance",
    "reboot-instance",
    "reset-instance",
    "scale-instance",
    "resize-instance-disk",
    "reset-instance-field",
    "list-instance-types",
    "get-instance-type",
    "create-instance-pool",
    "list-instance-pools",
    "get-instance-pool",
    "update-instance-pool",
    "delete-instance-pool",
    "scale-instance-pool",
    "evict-instance-pool-members",
    "reset-instance-pool-field",
    "create-load-balancer",
    "list-load-balancers",
    "get-load-balancer",
    "update-load-balancer",
    "delete-load-balancer",
    "reset-load-balancer-field",
    "add-service-to-load-balancer",
    "get-load-balancer-service",
    "update-load-balancer-service",
    "delete-load-balancer-service",
    "reset-load-balancer-service-field",
    "create-sks-cluster",
    "list-sks-clusters",
    "get-sks-cluster",
    "update-sks-cluster",
    "delete-sks-cluster",
    "upgrade-sks-cluster",
    "upgrade-sks-cluster-service-level",
    "list-sks-cluster-versions",
    "generate-sks-cluster-kubeconfig",
    "get-sks-cluster-authority-cert",
    "list-sks-cluster-deprecated-resources",
    "get-sks-cluster-inspection",
    "rotate-sks-ccm-credentials",
    "rotate-sks-csi-credentials",
    "rotate-sks-karpenter-credentials",
    "rotate-sks-operators-ca",
    "get-active-nodepool-template",
    "create-sks-nodepool",
    "get-sks-nodepool",
    "update-sks-nodepool",
    "delete-sks-nodepool",
    "scale-sks-nodepool",
    "evict-sks-nodepool-members",
];

fn labels(pairs: &[(&str, &str)]) -> Option<Labels> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn assert_loopback_address(i: &Instance) {
    let ip = i.public_ip.expect("public ip");
    assert!(ip.is_loopback() && ip.octets() != [127, 0, 0, 1], "{ip}");
    assert_eq!(i.ipv6_address.expect("ipv6").segments()[0] >> 8, 0xfd);
}

async fn members(c: &Client, pool: Uuid) -> Vec<Instance> {
    let filter =
        InstanceFilter { manager_id: Some(pool), manager_type: Some(ManagerType::InstancePool), ..Default::default() };
    c.list_instances(&filter).await.unwrap()
}

async fn tour(c: &Client) {
    let zones = c.list_zones().await.unwrap();
    assert_eq!(zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["ch-gva-2"]);

    let types = c.list_instance_types().await.unwrap();
    let medium = types.iter().find(|t| t.name() == "standard.medium").expect("standard.medium").clone();
    let large = types.iter().find(|t| t.name() == "standard.large").expect("standard.large").clone();
    assert_eq!(c.get_instance_type(medium.id).await.unwrap(), medium);
    assert!(c.get_instance_type(Uuid::new_v4()).await.unwrap_err().is_not_found());

    let versions = c.list_sks_cluster_versions().await.unwrap();
    assert_eq!(versions[0], "1.34.2", "newest first: {versions:?}");

    // Cluster.
    let op = c
        .create_sks_cluster(&CreateSksCluster {
            spec: SksClusterSpec {
                name: Some("tour".into()),
                description: Some("the tour".into()),
                labels: labels(&[("team", "platform")]),
                ..Default::default()
            },
            level: SksClusterLevel::Starter,
            version: "1.33.5".into(),
            cni: Some(SksCni::Cilium),
            create_default_security_group: None,
        })
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Success);
    let cid = op.reference_id().expect("cluster id");
    let cluster = c.get_sks_cluster(cid).await.unwrap();
    assert_eq!((cluster.state, cluster.version.as_str()), (SksClusterState::Running, "1.33.5"));
    assert_eq!(cluster.cni, Some(SksCni::Cilium));
    assert!(c.list_sks_clusters().await.unwrap().iter().any(|x| x.id == cid));
    c.update_sks_cluster(cid, &SksClusterSpec { description: Some("changed".into()), ..Default::default() })
        .await
        .unwrap();
    let cluster = c.get_sks_cluster(cid).await.unwrap();
    assert_eq!(cluster.spec.description.as_deref(), Some("changed"));
    assert_eq!(cluster.spec.labels, labels(&[("team", "platform")]), "a partial update keeps other fields");

    // Nodepool and its instance pool.
    let taints = BTreeMap::from([(
        "dedicated".to_string(),
        NodepoolTaint { value: "gpu".into(), effect: TaintEffect::NoSchedule },
    )]);
    let op = c
        .create_sks_nodepool(
            cid,
            &CreateSksNodepool {
                spec: SksNodepoolSpec {
                    name: Some("np".into()),
                    instance_type: Some(Ref::from(medium.id)),
                    disk_size: Some(20),
                    labels: labels(&[("role", "worker")]),
                    taints: Some(taints.clone()),
                    ..Default::default()
                },
                size: 2,
                addons: None,
            },
        )
        .await
        .unwrap();
    let npid = op.reference_id().expect("nodepool id");
    let np = c.get_sks_nodepool(cid, npid).await.unwrap();
    assert_eq!((np.size, np.version.as_deref(), np.spec.taints.as_ref()), (2, Some("1.33.5"), Some(&taints)));
    let pool_id = np.instance_pool.expect("instance pool").id;
    assert_ne!(pool_id, npid, "the pool has its own id");
    assert_eq!(c.get_sks_cluster(cid).await.unwrap().nodepools, vec![np.clone()]);
    let pool = c.get_instance_pool(pool_id).await.unwrap();
    assert_eq!(pool.spec.name.as_deref(), Some(format!("nodepool-np-{npid}").as_str()));
    assert_eq!(pool.manager, Some(Manager { id: npid, kind: ManagerType::SksNodepool }));
    let nodes = members(c, pool_id).await;
    assert_eq!(nodes.len(), 2);
    for n in &nodes {
        assert_loopback_address(n);
        assert_eq!(n.manager, Some(Manager { id: pool_id, kind: ManagerType::InstancePool }));
        let parts: Vec<&str> = n.name.split('-').collect();
        assert!(parts.len() == 3 && parts[0] == "pool" && parts[1].len() == 5 && parts[2].len() == 5, "{}", n.name);
        assert_eq!(c.get_instance(n.id).await.unwrap().name, n.name);
    }
    c.scale_sks_nodepool(cid, npid, 3).await.unwrap();
    let nodes = members(c, pool_id).await;
    assert_eq!(nodes.len(), 3);
    let evicted = nodes[1].id;
    c.evict_sks_nodepool_members(cid, npid, vec![evicted]).await.unwrap();
    let left: Vec<Uuid> = members(c, pool_id).await.iter().map(|i| i.id).collect();
    assert_eq!(left, vec![nodes[0].id, nodes[2].id], "exactly the evicted member is gone");
    assert_eq!(c.get_sks_nodepool(cid, npid).await.unwrap().size, 2);
    assert!(c.get_instance(evicted).await.unwrap_err().is_not_found());
    c.update_sks_nodepool(cid, npid, &SksNodepoolSpec { description: Some("workers".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(c.get_sks_nodepool(cid, npid).await.unwrap().spec.description.as_deref(), Some("workers"));
    let err = c.scale_instance_pool(pool_id, 5).await.unwrap_err();
    assert!(matches!(err, orchestrator::Error::Forbidden { .. }), "a nodepool's pool is SKS's: {err}");

    // Cluster extras.
    let kubeconfig = c
        .generate_sks_cluster_kubeconfig(
            cid,
            &KubeconfigRequest { user: "alice".into(), groups: vec!["devs".into()], ttl: Some(3600) },
        )
        .await
        .unwrap();
    for needle in
        ["client-certificate-data", "client-key-data", "certificate-authority-data", "current-context", "alice"]
    {
        assert!(kubeconfig.contains(needle), "kubeconfig lacks {needle}");
    }
    let mut cas = BTreeSet::new();
    for authority in [Authority::ControlPlane, Authority::Aggregation, Authority::Kubelet] {
        let pem = c.get_sks_cluster_authority_cert(cid, authority).await.unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        cas.insert(pem);
    }
    assert_eq!(cas.len(), 3, "three distinct CAs");
    assert!(c.list_sks_cluster_deprecated_resources(cid).await.unwrap().is_empty());
    assert!(c.get_sks_cluster_inspection(cid).await.unwrap().is_object());
    assert!(c.get_active_nodepool_template("1.33.5", "standard").await.unwrap().active_template.is_some());
    for action in [
        RotateAction::CcmCredentials,
        RotateAction::CsiCredentials,
        RotateAction::KarpenterCredentials,
        RotateAction::OperatorsCa,
    ] {
        c.rotate_sks_cluster(cid, action).await.unwrap();
    }
    let err = c.upgrade_sks_cluster(cid, "1.32.10").await.unwrap_err().to_string();
    assert!(err.contains("allowed: [1.33.6, 1.34.2]"), "{err}");
    c.upgrade_sks_cluster(cid, "1.34.2").await.unwrap();
    assert_eq!(c.get_sks_cluster(cid).await.unwrap().version, "1.34.2");
    c.upgrade_sks_cluster_service_level(cid).await.unwrap();
    assert_eq!(c.get_sks_cluster(cid).await.unwrap().level, SksClusterLevel::Pro);

    // A standalone instance through its whole life.
    let template = sks_e2e::zone::known_template(c).await;
    let op = c
        .create_instance(&CreateInstance {
            name: Some("solo".into()),
            instance_type: Some(Ref::from(medium.id)),
            template: Some(template),
            disk_size: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    let iid = op.reference_id().expect("instance id");
    let solo = c.get_instance(iid).await.unwrap();
    assert_eq!((solo.name.as_str(), solo.state.clone(), solo.manager.clone()), ("solo", InstanceState::Running, None));
    assert_loopback_address(&solo);
    c.update_instance(iid, &UpdateInstance { labels: labels(&[("a", "b")]), ..Default::default() }).await.unwrap();
    assert_eq!(c.get_instance(iid).await.unwrap().labels, labels(&[("a", "b")]));
    c.reset_instance_field(iid, "labels").await.unwrap();
    assert_eq!(c.get_instance(iid).await.unwrap().labels, None);
    c.stop_instance(iid).await.unwrap();
    assert_eq!(c.get_instance(iid).await.unwrap().state, InstanceState::Stopped);
    c.scale_instance(iid, &ScaleInstance { instance_type: Ref::from(large.id) }).await.unwrap();
    c.start_instance(iid).await.unwrap();
    c.reboot_instance(iid).await.unwrap();
    c.resize_instance_disk(iid, &ResizeInstanceDisk { disk_size: 30 }).await.unwrap();
    c.reset_instance(iid, &ResetInstance::default()).await.unwrap();
    let solo = c.get_instance(iid).await.unwrap();
    assert_eq!((solo.state, solo.instance_type.id, solo.disk_size), (InstanceState::Running, large.id, Some(30)));
    c.delete_instance(iid).await.unwrap();
    assert!(c.get_instance(iid).await.unwrap_err().is_not_found());

    // A plain instance pool.
    let op = c
        .create_instance_pool(&CreateInstancePool {
            spec: InstancePoolSpec {
                name: Some("ip".into()),
                description: Some("d".into()),
                instance_type: Some(Ref::from(medium.id)),
                template: Some(template),
                disk_size: Some(10),
                instance_prefix: Some("web".into()),
                ..Default::default()
            },
            size: 2,
        })
        .await
        .unwrap();
    let ipid = op.reference_id().expect("pool id");
    assert!(c.list_instance_pools().await.unwrap().iter().any(|p| p.id == ipid));
    c.update_instance_pool(ipid, &InstancePoolSpec { labels: labels(&[("x", "y")]), ..Default::default() })
        .await
        .unwrap();
    c.reset_instance_pool_field(ipid, "description").await.unwrap();
    let p = c.get_instance_pool(ipid).await.unwrap();
    assert_eq!((p.spec.description, p.spec.labels, p.instances.len()), (None, labels(&[("x", "y")]), 2));
    c.scale_instance_pool(ipid, 3).await.unwrap();
    let web = members(c, ipid).await;
    assert!(web.iter().all(|i| i.name.starts_with("web-")));
    c.evict_instance_pool_members(ipid, vec![web[0].id]).await.unwrap();
    assert_eq!(c.get_instance_pool(ipid).await.unwrap().size, 2);

    // An NLB: stored and returned exactly as sent.
    let op = c
        .create_load_balancer(&LoadBalancerSpec {
            name: Some("lb".into()),
            description: Some("d".into()),
            labels: labels(&[("k", "v")]),
        })
        .await
        .unwrap();
    let lbid = op.reference_id().expect("nlb id");
    let lb = c.get_load_balancer(lbid).await.unwrap();
    let ip = lb.ip.expect("NLB ip");
    assert!(IpAddr::V4(ip).is_loopback() && ip.octets() != [127, 0, 0, 1]);
    assert!(c.list_load_balancers().await.unwrap().iter().any(|l| l.id == lbid));
    let sent = LoadBalancerServiceSpec {
        name: Some("svc".into()),
        description: Some("web".into()),
        instance_pool: Some(Ref::from(ipid)),
        protocol: Some(Protocol::Tcp),
        strategy: Some(Strategy::RoundRobin),
        port: Some(80),
        target_port: Some(30080),
        healthcheck: Some(Healthcheck {
            mode: Some(HealthcheckMode::Tcp),
            port: Some(30080),
            interval: Some(10),
            timeout: Some(5),
            retries: Some(1),
            ..Default::default()
        }),
    };
    let op = c.add_service_to_load_balancer(lbid, &sent).await.unwrap();
    assert_eq!(op.reference_id(), Some(lbid), "add-service references the NLB");
    let svc = c.get_load_balancer(lbid).await.unwrap().services.remove(0);
    assert_eq!(svc.spec, sent, "no injected defaults");
    assert_eq!(c.get_load_balancer_service(lbid, svc.id).await.unwrap(), svc);
    let change = LoadBalancerServiceSpec { strategy: Some(Strategy::SourceHash), ..Default::default() };
    c.update_load_balancer_service(lbid, svc.id, &change).await.unwrap();
    c.reset_load_balancer_service_field(lbid, svc.id, "description").await.unwrap();
    let svc2 = c.get_load_balancer_service(lbid, svc.id).await.unwrap();
    assert_eq!(
        svc2.spec,
        LoadBalancerServiceSpec { strategy: Some(Strategy::SourceHash), description: None, ..sent.clone() }
    );
    c.update_load_balancer(lbid, &LoadBalancerSpec { name: Some("lb2".into()), ..Default::default() }).await.unwrap();
    c.reset_load_balancer_field(lbid, "description").await.unwrap();
    let lb = c.get_load_balancer(lbid).await.unwrap();
    assert_eq!((lb.spec.name.as_deref(), lb.spec.description.as_deref(), lb.ip), (Some("lb2"), None, Some(ip)));
    c.delete_load_balancer_service(lbid, svc.id).await.unwrap();
    assert!(c.get_load_balancer(lbid).await.unwrap().services.is_empty());
    c.delete_load_balancer(lbid).await.unwrap();
    assert!(c.get_load_balancer(lbid).await.unwrap_err().is_not_found());

    // Past operations stay readable.
    assert_eq!(c.get_operation(op.id).await.unwrap().state, OperationState::Success);

    // Teardown cascades.
    c.delete_instance_pool(ipid).await.unwrap();
    assert!(members(c, ipid).await.is_empty());
    c.delete_sks_nodepool(cid, npid).await.unwrap();
    assert!(c.get_instance_pool(pool_id).await.unwrap_err().is_not_found());
    assert!(members(c, pool_id).await.is_empty());
    c.delete_sks_cluster(cid).await.unwrap();
    assert!(c.get_sks_cluster(cid).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_works_and_conforms_to_the_spec() {
    let zone = Zone::start(ZoneOptions::default());
    let proxy = Proxy::start(&zone.url).await;
    // No zone switch: the zone's api-endpoint would bypass the proxy.
    let config = ClientConfig { endpoint: format!("{}/v2", proxy.url), zone: None, ..zone.client_config() };
    tour(&client_for(config).await).await;

    let (calls, problems) = sks_e2e::proxy::review(&proxy.exchanges());
    let seen: BTreeSet<String> = calls.into_iter().map(|c| c.operation).collect();
    assert!(problems.is_empty(), "spec or completeness violations:\n{}", problems.join("\n"));
    let missing: Vec<&str> = SECTION_4.iter().copied().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "operations of section 4 not exercised: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_switches_to_the_zone_endpoint() {
    let zone =
        Zone::start(ZoneOptions { extra: vec!["--zone".into(), "ch-gva-2,de-fra-1".into()], ..Default::default() });
    let gva = zone.client().await;
    assert_eq!(gva.endpoint().as_str(), format!("{}/ch-gva-2/v2", zone.url));
    let fra = gva.switch_zone("de-fra-1").await.unwrap();
    assert_eq!(fra.endpoint().as_str(), format!("{}/de-fra-1/v2", zone.url));
    let op =
        fra.create_load_balancer(&LoadBalancerSpec { name: Some("fra".into()), ..Default::default() }).await.unwrap();
    assert!(fra.get_load_balancer(op.reference_id().unwrap()).await.is_ok());
    assert!(
        gva.get_load_balancer(op.reference_id().unwrap()).await.unwrap_err().is_not_found(),
        "resources are zone-local"
    );
    let err = gva.switch_zone("nowhere").await.unwrap_err().to_string();
    assert!(err.contains("known: [\"ch-gva-2\", \"de-fra-1\"]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfigs_are_read_by_kubectl() {
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let c = zone.client().await;
    let cluster = c.list_sks_clusters().await.unwrap().remove(0);
    let req = KubeconfigRequest {
        user: "bob \"the\" admin".into(),
        groups: vec!["system:masters".into(), "ops".into()],
        ttl: None,
    };
    let kubeconfig = c.generate_sks_cluster_kubeconfig(cluster.id, &req).await.unwrap();
    let dir = sks_e2e::TempDir::new("kubeconfig");
    let path = dir.path().join("config");
    std::fs::write(&path, &kubeconfig).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&path)
        .output()
        .expect("running kubectl");
    assert!(out.status.success(), "kubectl rejected the kubeconfig: {}", String::from_utf8_lossy(&out.stderr));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["clusters"][0]["cluster"]["server"], cluster.endpoint.unwrap());
    assert_eq!(view["users"][0]["name"], "bob \"the\" admin");
    assert_eq!(view["current-context"], view["contexts"][0]["name"]);
    let ca = c.get_sks_cluster_authority_cert(cluster.id, Authority::ControlPlane).await.unwrap();
    use base64::Engine as _;
    let ca_data = base64::engine::general_purpose::STANDARD
        .decode(view["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(ca_data).unwrap(), ca, "the kubeconfig trusts the control-plane CA");
}
