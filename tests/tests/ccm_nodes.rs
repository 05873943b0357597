//! sks-ccm against sks-zone and a Kubernetes API: nodes are initialized from
//! their instances, foreign nodes stay tainted, kubelet serving CSRs are
//! approved only when every claim matches an instance, instance lifecycle
//! reaches the Nodes, and only the leader acts.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use orchestrator::model::*;
use serde_json::{Value, json};
use sks_e2e::ccm::{Ccm, QUICK_AUTO_HEAL};
use sks_e2e::env::TestEnv;
use sks_e2e::kubeapi::{KubeApi, KubeOptions, node_policy_rules};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;
use uuid::Uuid;

/// The seeded zone and a Kubernetes API where kubelets may do what they may
/// and mallory may only ask for certificates; Nodes are registered by the
/// tests, not by the zone's kubelets, so each test decides when they appear.
fn stack() -> sks_e2e::env::Builder {
    let mut rules = node_policy_rules();
    rules.push(json!({"users": ["mallory"], "verbs": ["create", "get"], "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"]}));
    TestEnv::builder().kube(KubeOptions { policy: Some(sks_e2e::kubeapi::policy(rules)), ..Default::default() })
}

/// Registers a Node as a kubelet does, as the node itself.
fn register(kube: &KubeApi, name: &str, system_uuid: &str, ip: &str) {
    let k = node_kubectl(kube, name);
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": [{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}]},
        "status": {"nodeInfo": {"systemUUID": system_uuid, "machineID": "m", "bootID": "b", "kernelVersion": "6", "osImage": "x", "containerRuntimeVersion": "c", "kubeletVersion": "v1.34.2", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            "addresses": [{"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}});
    let out = k.with_stdin(&["create", "-f", "-"], &node.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn node_kubectl(kube: &KubeApi, name: &str) -> Kubectl {
    let user = format!("system:node:{name}");
    Kubectl::new(kube.user_kubeconfig(&user, &["system:nodes"]), kube.dir().join(format!("cache-{name}")))
}

fn csr_request(cn: &str, org: &str, dns: &[&str], ips: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(std::string::ToString::to_string).collect::<Vec<_>>()).unwrap();
    for ip in ips {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
    }
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, org);
    base64::engine::general_purpose::STANDARD.encode(params.serialize_request(&key).unwrap().pem().unwrap())
}

fn submit(k: &Kubectl, name: &str, signer: &str, usages: &[&str], request: &str) {
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"signerName": signer, "usages": usages, "request": request}});
    let out = k.with_stdin(&["create", "-f", "-"], &csr.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).unwrap()
}

async fn decided(k: &Kubectl, csr: &str) -> (String, String) {
    wait_for(&format!("CSR {csr} to be decided"), Duration::from_secs(20), || {
        let k = k.clone();
        let csr = csr.to_owned();
        async move {
            let c = get(&k, &["get", "csr", &csr]);
            let cond = c["status"]["conditions"].as_array()?.first()?.clone();
            Some((cond["type"].as_str()?.to_owned(), cond["message"].as_str().unwrap_or("").to_owned()))
        }
    })
    .await
}

const SERVING: &str = "kubernetes.io/kubelet-serving";
const USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_csrs_and_lifecycle() {
    let env = stack().start().await;
    let c = &env.client;
    let cluster = c.get_sks_cluster(env.cluster).await.unwrap();
    let medium = c.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium").unwrap();
    // A second nodepool with labels and taints to propagate.
    let taints = std::collections::BTreeMap::from([(
        "dedicated".to_string(),
        NodepoolTaint { value: "gpu".into(), effect: TaintEffect::NoSchedule },
    )]);
    let labels = std::collections::BTreeMap::from([
        ("team".to_string(), "ml".to_string()),
        ("node-role.kubernetes.io/gpu".to_string(), "x".to_string()),
    ]);
    let gpu = c
        .create_sks_nodepool(
            cluster.id,
            &CreateSksNodepool {
                spec: SksNodepoolSpec {
                    name: Some("gpu".into()),
                    instance_type: Some(Ref::from(medium.id)),
                    disk_size: Some(20),
                    taints: Some(taints),
                    labels: Some(labels),
                    ..Default::default()
                },
                size: 1,
                addons: None,
            },
        )
        .await
        .unwrap()
        .reference_id()
        .unwrap();
    // Another cluster's instance, to attack with.
    let other = c
        .create_sks_cluster(&CreateSksCluster {
            spec: SksClusterSpec { name: Some("other".into()), ..Default::default() },
            level: SksClusterLevel::Pro,
            version: "1.34.2".into(),
            cni: None,
            create_default_security_group: None,
        })
        .await
        .unwrap()
        .reference_id()
        .unwrap();
    c.create_sks_nodepool(
        other,
        &CreateSksNodepool {
            spec: SksNodepoolSpec {
                name: Some("w".into()),
                instance_type: Some(Ref::from(medium.id)),
                disk_size: Some(20),
                ..Default::default()
            },
            size: 1,
            addons: None,
        },
    )
    .await
    .unwrap();

    let _ccm = env.start_ccm(&["--node-sync-period-seconds", "1"]);
    let kube = env.kube();
    let k = kube.kubectl();

    let all = c.list_instances(&InstanceFilter::default()).await.unwrap();
    let gpu_pool = c.get_sks_nodepool(cluster.id, gpu).await.unwrap().instance_pool.unwrap().id;
    let (mine, foreign): (Vec<&Instance>, Vec<&Instance>) = all.iter().partition(|i| {
        let pool = i.manager.as_ref().unwrap().id;
        pool == gpu_pool || pool == cluster.nodepools[0].instance_pool.unwrap().id
    });
    assert_eq!(mine.len(), 4);
    for i in &mine {
        register(kube, &i.name, &i.id.to_string(), &i.public_ip.unwrap().to_string());
    }
    register(kube, "stranger", &Uuid::new_v4().to_string(), "127.0.0.250");

    for i in &mine {
        let node = wait_for(&format!("node {} to be initialized", i.name), Duration::from_secs(20), || {
            let k = k.clone();
            let name = i.name.clone();
            async move {
                let n = get(&k, &["get", "node", &name]);
                n["spec"]["providerID"].is_string().then_some(n)
            }
        })
        .await;
        assert_eq!(node["spec"]["providerID"], format!("exoscale://{}", i.id));
        let l = &node["metadata"]["labels"];
        assert_eq!(l["node.kubernetes.io/instance-type"], "standard.medium");
        assert_eq!(
            (l["topology.kubernetes.io/region"].as_str(), l["topology.kubernetes.io/zone"].as_str()),
            (Some("ch-gva-2"), Some("ch-gva-2"))
        );
        let taints: Vec<&str> = node["spec"]["taints"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x["key"].as_str()).collect())
            .unwrap_or_default();
        assert!(!taints.contains(&"node.cloudprovider.kubernetes.io/uninitialized"));
        let ext: Vec<&str> = node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "ExternalIP")
            .filter_map(|a| a["address"].as_str())
            .collect();
        assert!(ext.contains(&i.public_ip.unwrap().to_string().as_str()));
        if i.manager.as_ref().unwrap().id == gpu_pool {
            assert_eq!(l["node.exoscale.net/nodepool-id"], gpu.to_string());
            assert_eq!(l["team"], "ml");
            assert!(
                l.get("node-role.kubernetes.io/gpu").is_none(),
                "kubernetes.io labels are never taken from nodepools"
            );
            assert_eq!(taints, vec!["dedicated"]);
        }
    }
    // A node with no instance in this cluster stays tainted, with a Warning event.
    let events = wait_for("a NodeNotInCluster event", Duration::from_secs(20), || {
        let k = k.clone();
        async move {
            let e = get(&k, &["get", "events.events.k8s.io", "-A"]);
            e["items"]
                .as_array()?
                .iter()
                .find(|e| e["reason"] == "NodeNotInCluster" && e["regarding"]["name"] == "stranger")
                .cloned()
        }
    })
    .await;
    assert_eq!(events["type"], "Warning");
    let stranger = get(&k, &["get", "node", "stranger"]);
    assert!(stranger["spec"]["providerID"].is_null());
    assert_eq!(stranger["spec"]["taints"][0]["key"], "node.cloudprovider.kubernetes.io/uninitialized");

    // CSRs: the valid one is approved (and signed), every attack denied with its reason.
    let (a, b) = (mine[0], mine[1]);
    let (a_ip, b_ip) = (a.public_ip.unwrap().to_string(), b.public_ip.unwrap().to_string());
    let ka = node_kubectl(kube, &a.name);
    let cn = format!("system:node:{}", a.name);
    submit(&ka, "good", SERVING, USAGES, &csr_request(&cn, "system:nodes", &[&a.name], &[&a_ip]));
    assert_eq!(decided(&k, "good").await.0, "Approved");
    wait_for("the approved CSR to be issued", Duration::from_secs(10), || {
        let k = k.clone();
        async move { get(&k, &["get", "csr", "good"])["status"]["certificate"].is_string().then_some(()) }
    })
    .await;
    type Attack<'a> = (&'a str, Kubectl, &'a str, Vec<&'a str>, String, &'a str);
    let attacks: Vec<Attack> = vec![
        (
            "other-name",
            ka.clone(),
            SERVING,
            USAGES.to_vec(),
            csr_request(&format!("system:node:{}", b.name), "system:nodes", &[&b.name], &[&b_ip]),
            "subject must be",
        ),
        (
            "extra-ip",
            ka.clone(),
            SERVING,
            USAGES.to_vec(),
            csr_request(&cn, "system:nodes", &[&a.name], &[&a_ip, "10.1.2.3"]),
            "IP SAN 10.1.2.3",
        ),
        (
            "ip-of-another",
            ka.clone(),
            SERVING,
            USAGES.to_vec(),
            csr_request(&cn, "system:nodes", &[&a.name], &[&b_ip]),
            "IP SAN",
        ),
        (
            "not-a-node",
            Kubectl::new(kube.user_kubeconfig("mallory", &["system:authenticated"]), kube.dir().join("cache-m")),
            SERVING,
            USAGES.to_vec(),
            csr_request(&cn, "system:nodes", &[&a.name], &[&a_ip]),
            "is not a node",
        ),
        (
            "client-usage",
            ka.clone(),
            SERVING,
            vec!["digital signature", "client auth"],
            csr_request(&cn, "system:nodes", &[&a.name], &[&a_ip]),
            "usage \"client auth\"",
        ),
        (
            "other-cluster",
            node_kubectl(kube, &foreign[0].name),
            SERVING,
            USAGES.to_vec(),
            csr_request(
                &format!("system:node:{}", foreign[0].name),
                "system:nodes",
                &[&foreign[0].name],
                &[&foreign[0].public_ip.unwrap().to_string()],
            ),
            "no instance named",
        ),
    ];
    for (name, kk, signer, usages, req, _) in &attacks {
        submit(kk, name, signer, usages, req);
    }
    submit(
        &ka,
        "other-signer",
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
        &csr_request(&cn, "system:nodes", &[], &[]),
    );
    for (name, _, _, _, _, reason) in &attacks {
        let (kind, message) = decided(&k, name).await;
        assert_eq!(kind, "Denied", "{name}: {message}");
        assert!(message.contains(reason), "{name}: {message:?} lacks {reason:?}");
    }
    let other = get(&k, &["get", "csr", "other-signer"]);
    assert!(other["status"]["conditions"].is_null(), "CSRs for other signers are left alone: {other}");

    // Lifecycle: a stopped instance taints its Node; a deleted one deletes it.
    c.stop_instance(b.id).await.unwrap();
    wait_for("the shutdown taint", Duration::from_secs(20), || {
        let k = k.clone();
        let name = b.name.clone();
        async move {
            let n = get(&k, &["get", "node", &name]);
            n["spec"]["taints"]
                .as_array()?
                .iter()
                .any(|t| t["key"] == "node.cloudprovider.kubernetes.io/shutdown")
                .then_some(())
        }
    })
    .await;
    c.delete_instance(a.id).await.unwrap();
    node_deleted(&k, &a.name, Duration::from_secs(20)).await;
    assert!(k.run(&["get", "node", "stranger"]).status.success(), "a node of no instance of ours is never deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_successor_takes_over() {
    let env = stack().start().await;
    let (c, kube) = (&env.client, env.kube());
    let args = [
        "--leader-elect-lease-duration-seconds",
        "3",
        "--leader-elect-renew-deadline-seconds",
        "2",
        "--leader-elect-retry-period-seconds",
        "1",
    ];
    let mut first = env.start_ccm(&args);
    let k = kube.kubectl();
    let holder = wait_for("a leader", Duration::from_secs(20), || {
        let k = k.clone();
        async move {
            get(&k, &["get", "lease", "sks-ccm", "-n", "kube-system"])["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_owned)
        }
    })
    .await;
    let mut second = env.start_ccm(&args);
    let instances = c.list_instances(&InstanceFilter::default()).await.unwrap();
    register(kube, &instances[0].name, &instances[0].id.to_string(), "127.0.0.1");
    wait_for("the leader to initialize a node", Duration::from_secs(20), || {
        let k = k.clone();
        let name = instances[0].name.clone();
        async move { get(&k, &["get", "node", &name])["spec"]["providerID"].is_string().then_some(()) }
    })
    .await;
    assert_eq!(
        get(&k, &["get", "lease", "sks-ccm", "-n", "kube-system"])["spec"]["holderIdentity"].as_str(),
        Some(holder.as_str()),
        "the second replica did not take the lease"
    );

    first.kill();
    let started = std::time::Instant::now();
    let successor = wait_for("the other replica to take over", Duration::from_secs(15), || {
        let k = k.clone();
        let holder = holder.clone();
        async move {
            let h = get(&k, &["get", "lease", "sks-ccm", "-n", "kube-system"])["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_owned)?;
            (h != holder).then_some(h)
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3 + 3), "took over after {:?}", started.elapsed());
    assert_ne!(successor, holder);
    register(kube, &instances[1].name, &instances[1].id.to_string(), "127.0.0.1");
    wait_for("the new leader to initialize a node", Duration::from_secs(20), || {
        let k = k.clone();
        let name = instances[1].name.clone();
        async move { get(&k, &["get", "node", &name])["spec"]["providerID"].is_string().then_some(()) }
    })
    .await;

    // A leader stopped with SIGTERM gives the lease up on its way out, so the
    // next replica takes over at its next retry instead of waiting it out.
    let mut third = env.start_ccm(&args);
    assert!(second.stop().is_some_and(|s| s.success()), "SIGTERM stops sks-ccm cleanly");
    let holder_now = get(&k, &["get", "lease", "sks-ccm", "-n", "kube-system"])["spec"]["holderIdentity"].clone();
    assert_ne!(holder_now.as_str(), Some(successor.as_str()), "a stopped leader still held the lease");
    wait_for("the third replica to take the released lease", Duration::from_secs(15), || {
        let k = k.clone();
        async move {
            let h = get(&k, &["get", "lease", "sks-ccm", "-n", "kube-system"])["spec"]["holderIdentity"].clone();
            h.as_str().filter(|h| !h.is_empty()).map(|_| ())
        }
    })
    .await;
    assert!(third.stop().is_some_and(|s| s.success()));
}

/// The seeded cluster (3 instances, no Nodes yet) with sks-ccm started on it, and its instances.
async fn cluster(ccm_args: &[&str]) -> (TestEnv, Vec<Instance>) {
    let env = stack().ccm(ccm_args).start().await;
    let instances = env.client.list_instances(&InstanceFilter::default()).await.unwrap();
    (env, instances)
}

/// [`cluster`], with a Node per instance, each initialized.
async fn cluster_with_nodes(ccm_args: &[&str]) -> (TestEnv, Vec<Instance>) {
    let (env, instances) = cluster(ccm_args).await;
    for i in &instances {
        register(env.kube(), &i.name, &i.id.to_string(), &i.public_ip.unwrap().to_string());
    }
    let k = env.kubectl();
    for i in &instances {
        wait_for("initialization", Duration::from_secs(20), || {
            let k = k.clone();
            let name = i.name.clone();
            async move { get(&k, &["get", "node", &name])["spec"]["providerID"].is_string().then_some(()) }
        })
        .await;
    }
    (env, instances)
}

async fn event_for(k: &Kubectl, node: &str, reason: &str) -> Value {
    wait_for(&format!("a {reason} event for {node}"), Duration::from_secs(30), || {
        let k = k.clone();
        let (node, reason) = (node.to_owned(), reason.to_owned());
        async move {
            let e = get(&k, &["get", "events.events.k8s.io", "-A"]);
            e["items"]
                .as_array()?
                .iter()
                .find(|e| e["reason"] == reason.as_str() && e["regarding"]["name"] == node.as_str())
                .cloned()
        }
    })
    .await
}

/// Node `name` reports NotReady, as its kubelet would.
fn report_not_ready(kube: &KubeApi, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "test", "lastTransitionTime": now}]}});
    node_kubectl(kube, name).ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_healing_reboots_then_replaces() {
    let (env, instances) = cluster_with_nodes(&QUICK_AUTO_HEAL).await;
    let k = env.kubectl();
    let sick = &instances[0];
    report_not_ready(env.kube(), &sick.name);
    let reboot = event_for(&k, &sick.name, "AutoHealReboot").await;
    assert_eq!(reboot["type"], "Warning");
    let replace = event_for(&k, &sick.name, "AutoHealReplace").await;
    assert!(replace["note"].as_str().unwrap().contains(&sick.id.to_string()));
    let c = &env.client;
    assert!(c.get_instance(sick.id).await.unwrap_err().is_not_found(), "the sick instance was evicted");
    let np = c.get_sks_cluster(env.cluster).await.unwrap().nodepools.remove(0);
    assert_eq!(np.size, 3, "a replacement keeps the nodepool's size");
    let pool = np.instance_pool.unwrap().id;
    let members = c.get_instance_pool(pool).await.unwrap().instances;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.id != sick.id), "a fresh instance took the sick one's place");
    node_deleted(&k, &sick.name, Duration::from_secs(20)).await;
    // The healthy ones were never touched.
    for i in &instances[1..] {
        assert!(c.get_instance(i.id).await.is_ok());
        let n = get(&k, &["get", "node", &i.name]);
        assert!(n["metadata"]["annotations"]["node.exoscale.net/auto-heal-rebooted-at"].is_null());
    }
    // One eviction, of the sick instance: none asked again of an instance already gone
    // (the Node outlives its instance a moment, and its next looks must not act on it).
    let evictions = env.zone.requests(&["evict-sks-nodepool-members"]).await;
    let asked: Vec<(&Value, &Value)> = evictions.iter().map(|e| (&e["body"]["instances"], &e["status"])).collect();
    assert_eq!(asked, [(&json!([sick.id]), &json!(200))], "{evictions:#?}");
    // Healing counted the Nodes being healed from the cache, not with a LIST
    // per reconcile of the NotReady Node (every second here): the node
    // controller's and load balancing's lists at start are all.
    assert_eq!(env.ccm().kube_requests().await.get("list nodes 200"), Some(&2));
}

/// Waits at most `timeout` until Node `name` is gone.
async fn node_deleted(k: &Kubectl, name: &str, timeout: Duration) {
    wait_for(&format!("Node {name} to be deleted"), timeout, || {
        let (k, name) = (k.clone(), name.to_owned());
        async move { (!k.run(&["get", "node", &name]).status.success()).then_some(()) }
    })
    .await;
}

/// The refused calls the zone has answered so far (injected 503s).
async fn refused(zone: &sks_e2e::zone::Zone) -> u64 {
    zone.fault_counts().await["status"]["503"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_whose_growth_fails_evicts_nothing_until_the_pool_grows() {
    let args = [
        "--node-sync-period-seconds",
        "1",
        "--auto-heal-reboot-after-seconds",
        "1",
        "--auto-heal-replace-after-seconds",
        "1",
        "--auto-heal-max-share",
        "0.5",
    ];
    let (env, instances) = cluster_with_nodes(&args).await;
    let k = env.kubectl();
    let c = &env.client;
    let nodepool = c.get_sks_cluster(env.cluster).await.unwrap().nodepools.remove(0).id;
    // Every scale fails: the pool cannot grow first, so nothing may be evicted.
    env.zone.set_faults(1.0, 503, Some(&["scale-sks-nodepool"])).await;
    let sick = &instances[0];
    report_not_ready(env.kube(), &sick.name);
    // A call gives up after 5 attempts; more than 5 refusals mean the Node's next
    // reconcile tried the replacement again.
    let faults = wait_for("a second growth to be refused", Duration::from_secs(30), || async {
        let n = refused(&env.zone).await;
        (n > 5).then_some(n)
    })
    .await;
    assert!(c.get_instance(sick.id).await.is_ok(), "evicted after {faults} refused growths");
    assert_eq!(c.get_sks_nodepool(env.cluster, nodepool).await.unwrap().size, 3, "the pool never shrank");
    let node = get(&k, &["get", "node", &sick.name]);
    assert_eq!(
        node["metadata"]["annotations"]["node.exoscale.net/auto-heal-replacing"].as_str(),
        Some(format!("{nodepool}:3").as_str()),
        "the replacement is recorded on the Node while it cannot proceed"
    );
    // The orchestrator answers again: the pool grows, then the sick instance goes.
    env.zone.set_faults(0.0, 503, None).await;
    node_deleted(&k, &sick.name, Duration::from_secs(30)).await;
    assert!(c.get_instance(sick.id).await.unwrap_err().is_not_found());
    assert_eq!(c.get_sks_nodepool(env.cluster, nodepool).await.unwrap().size, 3, "one in, one out");
    let done: Vec<(String, Value)> = env
        .zone
        .requests(&["scale-sks-nodepool", "evict-sks-nodepool-members"])
        .await
        .into_iter()
        .filter(|r| r["status"] == 200)
        .map(|r| (r["operation"].as_str().unwrap().to_owned(), r["body"].clone()))
        .collect();
    assert_eq!(
        done,
        [
            ("scale-sks-nodepool".to_owned(), json!({"size": 4})),
            ("evict-sks-nodepool-members".to_owned(), json!({"instances": [sick.id]}))
        ],
        "grown first, then the sick instance evicted, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_recording_a_replacement_goes_once_its_pool_is_back_to_size() {
    // As if sks-ccm had stopped in the middle of a replacement whose pool was
    // then shrunk (an eviction without growth): the record on the Node brings it back.
    let (env, instances) = cluster_with_nodes(&["--node-sync-period-seconds", "1"]).await;
    let k = env.kubectl();
    let c = &env.client;
    let nodepool = c.get_sks_cluster(env.cluster).await.unwrap().nodepools.remove(0).id;
    let gone = &instances[0];
    let record =
        json!({"metadata": {"annotations": {"node.exoscale.net/auto-heal-replacing": format!("{nodepool}:3")}}});
    k.ok(&["patch", "node", &gone.name, "--type=merge", "-p", &record.to_string()]);
    env.zone.set_faults(1.0, 503, Some(&["scale-sks-nodepool"])).await;
    c.evict_sks_nodepool_members(env.cluster, nodepool, vec![gone.id]).await.unwrap();
    assert_eq!(c.get_sks_nodepool(env.cluster, nodepool).await.unwrap().size, 2);
    // While the pool cannot grow back, the Node stays (its next reconcile tries again).
    let faults = wait_for("a second restore to be refused", Duration::from_secs(30), || async {
        let n = refused(&env.zone).await;
        (n > 5).then_some(n)
    })
    .await;
    assert!(k.run(&["get", "node", &gone.name]).status.success(), "deleted after {faults} refused restores");
    env.zone.set_faults(0.0, 503, None).await;
    node_deleted(&k, &gone.name, Duration::from_secs(30)).await;
    assert_eq!(c.get_sks_nodepool(env.cluster, nodepool).await.unwrap().size, 3, "restored before the Node went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_instance_is_gone_goes_when_it_turns_not_ready() {
    // A long sync period: without a fresh look when the Node turns NotReady, the
    // cached snapshot still lists the instance and the Node stays for a minute.
    let (env, instances) = cluster_with_nodes(&["--node-sync-period-seconds", "60"]).await;
    let k = env.kubectl();
    let gone = &instances[0];
    env.client.delete_instance(gone.id).await.unwrap();
    report_not_ready(env.kube(), &gone.name);
    node_deleted(&k, &gone.name, Duration::from_secs(10)).await;
    for i in &instances[1..] {
        assert!(k.run(&["get", "node", &i.name]).status.success(), "{} was deleted too", i.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_answering_503_deletes_nothing() {
    let args = ["--node-sync-period-seconds", "1"];
    let (env, instances) = cluster_with_nodes(&args).await;
    let lookup_503s = |url: String| async move {
        let text = reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()?;
        let n: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("orchestrator_requests_total")
                    && l.contains("code=\"503\"")
                    && l.contains("operation=\"get-instance\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(n)
    };
    // An instance disappears while looking instances up fails: the CCM's cache
    // no longer lists it, so it asks, gets 503s, and must not act on them.
    env.zone.set_faults(1.0, 503, Some(&["get-instance"])).await;
    let gone = &instances[0];
    env.client.delete_instance(gone.id).await.unwrap();
    let k = env.kubectl();
    wait_for("the CCM to see 503s looking the instance up", Duration::from_secs(60), || {
        let url = env.ccm().url.clone();
        let alive = k.run(&["get", "node", &gone.name]).status.success();
        assert!(alive, "the Node of {} was deleted on an orchestrator error", gone.name);
        async move { lookup_503s(url).await.filter(|n| *n >= 10.0).map(|_| ()) }
    })
    .await;
    for i in &instances {
        let n = get(&k, &["get", "node", &i.name]);
        let taints: Vec<&str> = n["spec"]["taints"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x["key"].as_str()).collect())
            .unwrap_or_default();
        assert!(!taints.contains(&"node.cloudprovider.kubernetes.io/shutdown"), "an outage tainted {}", i.name);
    }
    // Once the orchestrator answers, the confirmed 404 deletes that Node, and only it.
    env.zone.set_faults(0.0, 503, None).await;
    node_deleted(&k, &gone.name, Duration::from_secs(30)).await;
    for i in &instances[1..] {
        assert!(k.run(&["get", "node", &i.name]).status.success());
    }
}

/// The node controller's finished reconciles so far.
async fn node_reconciles(ccm: &Ccm) -> u64 {
    let metrics = ccm.metrics().await;
    let values = metrics.lines().filter(|l| l.starts_with("ccm_reconciles_total{controller=\"node\""));
    values.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
}

/// Waits until the node controller has reconciled `rounds` times as many
/// times as there are `nodes` more, so that every Node has been looked at
/// again after what the caller did (sks-ccm runs with a 1 s sync period).
async fn reconciled_again(ccm: &Ccm, nodes: u64, rounds: u64) {
    let target = node_reconciles(ccm).await + nodes * rounds;
    wait_for("more node reconciles", Duration::from_secs(30), || async {
        (node_reconciles(ccm).await >= target).then_some(())
    })
    .await;
}

fn taint_keys(node: &Value) -> Vec<String> {
    let taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    taints.iter().filter_map(|t| t["key"].as_str().map(str::to_owned)).collect()
}

/// Waits until `node` carries the shutdown taint (what the lifecycle controller does to a stopped instance's Node).
async fn shutdown_tainted(k: &Kubectl, node: &str) {
    wait_for(&format!("the shutdown taint on {node}"), Duration::from_secs(20), || {
        let (k, node) = (k.clone(), node.to_owned());
        async move { taint_keys(&get(&k, &["get", "node", &node])).iter().any(|t| t == SHUTDOWN).then_some(()) }
    })
    .await;
}

const SHUTDOWN: &str = "node.cloudprovider.kubernetes.io/shutdown";
const UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_cloud_node_controller_initializes_and_relabels_nothing() {
    let (env, instances) = cluster(&["--controllers=*,-cloud-node", "--node-sync-period-seconds", "1"]).await;
    let k = env.kubectl();
    let (new, old) = (&instances[0], &instances[1]);
    register(env.kube(), &new.name, &new.id.to_string(), &new.public_ip.unwrap().to_string());
    // A Node initialized before (by another sks-ccm, say), without the labels and
    // addresses cloud-node would keep current.
    let patch = json!({"spec": {"providerID": format!("exoscale://{}", old.id), "taints": null}});
    register(env.kube(), &old.name, &old.id.to_string(), "127.0.0.1");
    k.ok(&["patch", "node", &old.name, "--type=merge", "-p", &patch.to_string()]);
    // The lifecycle controller still runs: a stopped instance taints its Node,
    // seconds after cloud-node would have initialized the new one.
    env.client.stop_instance(old.id).await.unwrap();
    shutdown_tainted(&k, &old.name).await;
    reconciled_again(env.ccm(), 2, 3).await;

    let n = get(&k, &["get", "node", &new.name]);
    assert!(n["spec"]["providerID"].is_null(), "initialized with cloud-node disabled: {n}");
    assert_eq!(taint_keys(&n), [UNINITIALIZED]);
    let o = get(&k, &["get", "node", &old.name]);
    assert!(o["metadata"]["labels"]["node.exoscale.net/nodepool-id"].is_null(), "labels kept current: {o}");
    assert_eq!(
        o["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "127.0.0.1"}]),
        "addresses kept current"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_lifecycle_controller_deletes_and_taints_nothing() {
    let args = ["--controllers=*,-cloud-node-lifecycle", "--node-sync-period-seconds", "1"];
    let (env, instances) = cluster_with_nodes(&args).await;
    let k = env.kubectl();
    let c = &env.client;
    let (gone, stopped) = (&instances[0], &instances[1]);
    c.delete_instance(gone.id).await.unwrap();
    c.stop_instance(stopped.id).await.unwrap();
    // cloud-node still keeps labels current, so the new nodepool label shows
    // sks-ccm looked at the Nodes after the instances changed.
    let np = c.get_sks_cluster(env.cluster).await.unwrap().nodepools.remove(0).id;
    let labels = std::collections::BTreeMap::from([("wave".to_string(), "2".to_string())]);
    c.update_sks_nodepool(env.cluster, np, &SksNodepoolSpec { labels: Some(labels), ..Default::default() })
        .await
        .unwrap();
    for i in &instances[1..] {
        wait_for(&format!("the new label on {}", i.name), Duration::from_secs(20), || {
            let (k, name) = (k.clone(), i.name.clone());
            async move { (get(&k, &["get", "node", &name])["metadata"]["labels"]["wave"] == "2").then_some(()) }
        })
        .await;
    }
    reconciled_again(env.ccm(), 3, 3).await;

    assert!(k.run(&["get", "node", &gone.name]).status.success(), "deleted with cloud-node-lifecycle disabled");
    let s = get(&k, &["get", "node", &stopped.name]);
    assert!(!taint_keys(&s).iter().any(|t| t == SHUTDOWN), "tainted with cloud-node-lifecycle disabled: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_auto_heal_controller_reboots_nothing() {
    let args = [
        "--controllers=*,-node-auto-heal",
        "--node-sync-period-seconds",
        "1",
        // A NotReady Node is due a reboot, then a replacement, at once.
        "--auto-heal-reboot-after-seconds",
        "0",
        "--auto-heal-replace-after-seconds",
        "0",
        "--auto-heal-max-share",
        "0.5",
    ];
    let (env, instances) = cluster_with_nodes(&args).await;
    let k = env.kubectl();
    let (sick, stopped) = (&instances[0], &instances[1]);
    report_not_ready(env.kube(), &sick.name);
    // The lifecycle controller still runs.
    let c = &env.client;
    c.stop_instance(stopped.id).await.unwrap();
    shutdown_tainted(&k, &stopped.name).await;
    reconciled_again(env.ccm(), 3, 3).await;

    let events = get(&k, &["get", "events.events.k8s.io", "-A"]);
    let healing: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"].as_str().is_some_and(|r| r.starts_with("AutoHeal")))
        .collect();
    assert!(healing.is_empty(), "auto-healing ran while disabled: {healing:?}");
    let n = get(&k, &["get", "node", &sick.name]);
    assert!(n["metadata"]["annotations"]["node.exoscale.net/auto-heal-rebooted-at"].is_null(), "rebooted: {n}");
    assert_eq!(c.get_instance(sick.id).await.unwrap().state, InstanceState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_csr_approval_controller_decides_nothing() {
    let (env, instances) =
        cluster_with_nodes(&["--controllers=*,-node-csr-approval", "--node-sync-period-seconds", "1"]).await;
    let k = env.kubectl();
    let a = &instances[0];
    let ip = a.public_ip.unwrap().to_string();
    let request = csr_request(&format!("system:node:{}", a.name), "system:nodes", &[&a.name], &[&ip]);
    submit(&node_kubectl(env.kube(), &a.name), "good", SERVING, USAGES, &request);
    // cloud-node still runs: a Node registered after the CSR is looked at (and,
    // matching no instance, reported) after the CSR would have been decided.
    register(env.kube(), "stranger", &Uuid::new_v4().to_string(), "127.0.0.250");
    wait_for("a NodeNotInCluster event", Duration::from_secs(20), || {
        let k = k.clone();
        async move {
            let e = get(&k, &["get", "events.events.k8s.io", "-A"]);
            e["items"].as_array()?.iter().any(|e| e["reason"] == "NodeNotInCluster").then_some(())
        }
    })
    .await;
    let csr = get(&k, &["get", "csr", "good"]);
    assert!(csr["status"]["conditions"].is_null(), "decided with node-csr-approval disabled: {csr}");
}

/// sks-ccm's requests to the Kubernetes API (by `verb resource[/subresource] code`)
/// made after `before` was read.
fn requests_since(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, n)| *n > 0 && !k.contains(" leases "))
        .collect()
}

/// What a 1,000-Node burst multiplies: per Node and its serving CSR, sks-ccm
/// writes three times (the Node's addresses, its providerID/labels/taints, the
/// CSR's approval), one Event (the approval), reads nothing beyond the list and
/// watch it opened at start, and never loses a write race; re-checks of
/// initialized Nodes write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_and_csr_costs_three_writes_no_conflict_and_no_read() {
    let (env, _) = cluster(&["--node-sync-period-seconds", "1"]).await;
    let c = &env.client;
    let medium = c.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium").unwrap();
    let spec = SksNodepoolSpec {
        name: Some("two".into()),
        instance_type: Some(Ref::from(medium.id)),
        disk_size: Some(20),
        ..Default::default()
    };
    c.create_sks_nodepool(env.cluster, &CreateSksNodepool { spec, size: 2, addons: None }).await.unwrap();
    let instances = c.list_instances(&InstanceFilter::default()).await.unwrap();
    assert_eq!(instances.len(), 5);
    // Once its watches are open, sks-ccm's reads of the burst would be new ones.
    let before = wait_for("sks-ccm's watches", Duration::from_secs(30), || async {
        let r = env.ccm().kube_requests().await;
        ["nodes", "certificatesigningrequests", "services"]
            .iter()
            .all(|w| r.contains_key(&format!("watch {w} 200")))
            .then_some(r)
    })
    .await;

    for i in &instances {
        let ip = i.public_ip.unwrap().to_string();
        register(env.kube(), &i.name, &i.id.to_string(), &ip);
        let request = csr_request(&format!("system:node:{}", i.name), "system:nodes", &[&i.name], &[&ip]);
        submit(&node_kubectl(env.kube(), &i.name), &format!("serving-{}", i.name), SERVING, USAGES, &request);
    }
    let k = env.kubectl();
    for i in &instances {
        assert_eq!(decided(&k, &format!("serving-{}", i.name)).await.0, "Approved");
        wait_for("initialization", Duration::from_secs(20), || {
            let (k, name) = (k.clone(), i.name.clone());
            async move {
                let node = get(&k, &["get", "node", &name]);
                (node["spec"]["providerID"].is_string() && !taint_keys(&node).iter().any(|t| t == UNINITIALIZED))
                    .then_some(())
            }
        })
        .await;
    }
    // The approvals' Events come after the approvals; then every Node is
    // re-checked twice (1 s sync period), which must write nothing.
    wait_for("the approval events", Duration::from_secs(20), || async {
        (env.ccm().kube_requests().await.get("create events 201").copied().unwrap_or(0) >= 5).then_some(())
    })
    .await;
    reconciled_again(env.ccm(), 5, 2).await;

    let sent = requests_since(&env.ccm().kube_requests().await, &before);
    let want: BTreeMap<String, u64> = [
        ("patch nodes/status 200", 5),
        ("patch nodes 200", 5),
        ("patch certificatesigningrequests/approval 200", 5),
        ("create events 201", 5),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(sent, want, "3 writes and 1 event per Node+CSR, no conflict, no GET, LIST or new watch");
}
