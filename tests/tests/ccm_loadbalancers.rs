//! sks-ccm's Service controller against sks-zone (with its NLB data plane and
//! simulated kubelets) and a Kubernetes API, driven with kubectl: Services get
//! NLBs that really forward to every instance, follow annotation changes in
//! place, survive out-of-band deletion, and never touch NLBs that are not
//! theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::Api;
use orchestrator::model::{
    CreateLoadBalancer, CreateSksNodepool, HealthStatus, Healthcheck, HealthcheckMode, Instance, LoadBalancer,
    LoadBalancerServiceSpec, Protocol, Ref, SksNodepoolSpec, Strategy,
};
use serde_json::{Value, json};
use sks_e2e::backend::{self, Backend};
use sks_e2e::ccm::Ccm;
use sks_e2e::env::TestEnv;
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;
use uuid::Uuid;

use sks_keys::annotation::LB_PREFIX as PREFIX;

/// sks-zone with the seeded 3-node cluster and its kubelets, a Kubernetes API and sks-ccm.
struct Stack {
    env: TestEnv,
    instances: Vec<Instance>,
}

impl std::ops::Deref for Stack {
    type Target = TestEnv;
    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl Stack {
    async fn start(ccm_args: &[&str]) -> Stack {
        let env = TestEnv::builder().kubelets().ccm(ccm_args).start().await;
        let cluster = env.client.get_sks_cluster(env.cluster).await.unwrap();
        let pool = cluster.nodepools[0].instance_pool.unwrap().id;
        let mut instances = Vec::new();
        for r in env.client.get_instance_pool(pool).await.unwrap().instances {
            instances.push(env.client.get_instance(r.id).await.unwrap());
        }
        // Pool inference reads the nodepool label sks-ccm puts on initialized Nodes.
        let nodes: Api<Node> = Api::all(env.kube().client().await);
        wait_for("3 initialized nodes", Duration::from_secs(60), || async {
            let list = nodes.list(&Default::default()).await.ok()?;
            let done = list.items.iter().filter(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_ref()).is_some());
            (done.count() == 3).then_some(())
        })
        .await;
        Stack { env, instances }
    }

    fn kubectl(&self) -> Kubectl {
        self.kube().kubectl()
    }

    async fn services(&self) -> Api<Service> {
        Api::namespaced(self.kube().client().await, "default")
    }

    /// A backend per instance on its public address at `port`.
    async fn backends(&self, port: u16) -> Vec<Backend> {
        let mut out = Vec::new();
        for i in &self.instances {
            let ip = i.public_ip.expect("instance address");
            out.push(Backend::start(&i.name, SocketAddr::new(ip.into(), port)).await);
        }
        out
    }

    async fn nlb(&self, id: Uuid) -> Option<LoadBalancer> {
        self.client.get_load_balancer(id).await.ok()
    }
}

fn apply(k: &Kubectl, manifest: Value) {
    let out = k.with_stdin(&["apply", "-f", "-"], &manifest.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn annotations(svc: &Service) -> BTreeMap<String, String> {
    svc.metadata.annotations.clone().unwrap_or_default()
}

fn ingress_ip(svc: &Service) -> Option<String> {
    svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?.ip.clone()
}

/// Waits until Service `name` has an ingress IP (and the `id` annotation), returning both.
async fn provisioned(api: &Api<Service>, name: &str) -> (Uuid, String) {
    wait_for(&format!("{name} to get an NLB"), Duration::from_secs(30), || async {
        let svc = api.get_opt(name).await.ok()??;
        let id = annotations(&svc).get(&format!("{PREFIX}id"))?.parse().ok()?;
        Some((id, ingress_ip(&svc)?))
    })
    .await
}

fn node_port(svc: &Service, i: usize) -> u16 {
    svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[i].node_port.unwrap() as u16
}

/// The backends reached by `n` requests through `addr`.
async fn reached(addr: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        if let Some(name) = backend::get(addr).await {
            seen.insert(name);
        }
    }
    seen
}

async fn events_of(api_client: kube::Client, name: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(api_client, "default");
    let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_follow_their_services() {
    let s = Stack::start(&["--lb-drift-period-seconds", "2"]).await;
    let k = s.kubectl();
    let api = s.services().await;
    apply(
        &k,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    k.ok(&[
        "expose",
        "service",
        "web",
        "--name",
        "web-lb",
        "--type",
        "LoadBalancer",
        "--port",
        "8080",
        "--target-port",
        "8080",
    ]);

    // 1. An external IP, an NLB owned by this Service, one NLB service targeting the nodepool.
    let (id, ip) = provisioned(&api, "web-lb").await;
    let table = k.ok(&["get", "svc", "web-lb"]);
    assert!(table.contains(&ip), "kubectl get svc shows the NLB address:\n{table}");
    let svc = api.get("web-lb").await.unwrap();
    assert!(
        svc.metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .contains(&"service.kubernetes.io/load-balancer-cleanup".into())
    );
    let uid = svc.metadata.uid.clone().unwrap();
    let nlb = s.nlb(id).await.unwrap();
    assert_eq!(nlb.ip.map(|i| i.to_string()), Some(ip.clone()));
    assert_eq!(nlb.spec.name, Some(format!("k8s-{uid}")));
    let labels = nlb.spec.labels.clone().unwrap();
    assert_eq!(
        (labels["k8s-cluster-id"].as_str(), labels["k8s-service-uid"].as_str()),
        (s.cluster.to_string().as_str(), uid.as_str())
    );
    let np = node_port(&svc, 0);
    let [one] = nlb.services.as_slice() else { panic!("one NLB service per port: {:?}", nlb.services) };
    let pool = s.instances[0].manager.clone().unwrap().id;
    assert_eq!(one.spec.instance_pool, Some(Ref::from(pool)));
    assert_eq!(
        (one.spec.port, one.spec.target_port, one.spec.protocol.clone()),
        (Some(8080), Some(np.into()), Some(Protocol::Tcp))
    );
    let hc = one.spec.healthcheck.clone().unwrap();
    assert_eq!((hc.mode, hc.port), (Some(HealthcheckMode::Tcp), Some(np.into())), "eTP Cluster: TCP on the nodePort");

    // 2. Real requests reach every backend; faster health checks are an in-place update.
    let mut backends = s.backends(np).await;
    let lb_addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
    let everyone: BTreeSet<String> = s.instances.iter().map(|i| i.name.clone()).collect();
    k.ok(&[
        "annotate",
        "svc",
        "web-lb",
        &format!("{PREFIX}service-healthcheck-interval=5s"),
        &format!("{PREFIX}service-healthcheck-timeout=2s"),
    ]);
    wait_for("the health check interval to be updated", Duration::from_secs(20), || async {
        let lb = s.nlb(id).await?;
        (lb.services[0].spec.healthcheck.as_ref()?.interval == Some(5)).then_some(())
    })
    .await;
    let updated = s.nlb(id).await.unwrap();
    assert_eq!((updated.ip, updated.services[0].id), (nlb.ip, one.id), "same NLB, same IP, same NLB service");
    wait_for("requests to reach every backend", Duration::from_secs(30), || async {
        (reached(lb_addr, 12).await == everyone).then_some(())
    })
    .await;

    // 3. A backend that stops is taken out after its checks, and comes back.
    let down = s.instances[1].public_ip.unwrap();
    backends[1].stop();
    wait_for("the stopped backend to fail its health check", Duration::from_secs(30), || async {
        let lb = s.nlb(id).await?;
        let st = lb.services[0].healthcheck_status.clone()?;
        st.iter().any(|b| b.public_ip == Some(down) && b.status == Some(HealthStatus::Failure)).then_some(())
    })
    .await;
    let mut expected = everyone.clone();
    expected.remove(&s.instances[1].name);
    for _ in 0..9 {
        assert!(backend::get(lb_addr).await.is_some(), "an unhealthy backend got a new connection");
    }
    assert_eq!(reached(lb_addr, 9).await, expected);
    backends[1].resume().await;
    wait_for("the backend to come back", Duration::from_secs(30), || async {
        (reached(lb_addr, 9).await == everyone).then_some(())
    })
    .await;

    // 4. Changing the strategy updates the NLB service in place.
    k.ok(&["annotate", "svc", "web-lb", &format!("{PREFIX}service-strategy=source-hash")]);
    wait_for("the strategy to be updated", Duration::from_secs(20), || async {
        (s.nlb(id).await?.services[0].spec.strategy == Some(Strategy::SourceHash)).then_some(())
    })
    .await;
    let lb = s.nlb(id).await.unwrap();
    assert_eq!((lb.ip, lb.services.len(), lb.services[0].id), (nlb.ip, 1, one.id));
    assert_eq!(reached(lb_addr, 6).await.len(), 1, "source-hash keeps one client on one backend");

    // 5. Adding a port adds an NLB service (with two ports, each needs a name).
    k.ok(&[
        "patch",
        "svc",
        "web-lb",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/ports/0/name","value":"web"},{"op":"add","path":"/spec/ports/-","value":{"name":"alt","port":9090,"targetPort":9090}}]"#,
    ]);
    wait_for("a second NLB service", Duration::from_secs(20), || async {
        (s.nlb(id).await?.services.len() == 2).then_some(())
    })
    .await;
    let lb = s.nlb(id).await.unwrap();
    assert_eq!(lb.ip, nlb.ip);
    assert!(lb.services.iter().any(|x| x.spec.port == Some(9090)));

    // 6. An invalid annotation leaves the NLB exactly as it is and says which key is wrong.
    let before = s.nlb(id).await.unwrap();
    k.ok(&[
        "annotate",
        "--overwrite",
        "svc",
        "web-lb",
        &format!("{PREFIX}service-healthcheck-retries=many"),
        &format!("{PREFIX}service-strategy=round-robin"),
    ]);
    let note = wait_for("a Warning event naming the key", Duration::from_secs(20), || async {
        let notes = events_of(s.kube().client().await, "web-lb", "SyncLoadBalancerFailed").await;
        notes.into_iter().find(|n| n.contains("service-healthcheck-retries"))
    })
    .await;
    assert!(note.contains("\"many\"") && note.contains("expected a whole number"), "{note}");
    let settled = |mut lb: LoadBalancer| {
        lb.services.iter_mut().for_each(|x| x.healthcheck_status = None);
        lb
    };
    let after = s.nlb(id).await.unwrap();
    assert_eq!(
        settled(after),
        settled(before),
        "the strategy change next to the bad annotation was not applied either"
    );
    k.ok(&["annotate", "svc", "web-lb", &format!("{PREFIX}service-healthcheck-retries-")]);
    wait_for("the valid annotations to apply", Duration::from_secs(20), || async {
        (s.nlb(id).await?.services[0].spec.strategy == Some(Strategy::RoundRobin)).then_some(())
    })
    .await;

    // 7. Deleted out of band: the drift check brings it back with the same configuration.
    s.client.delete_load_balancer(id).await.unwrap();
    let (new_id, new_ip) = wait_for("the NLB to be recreated", Duration::from_secs(30), || async {
        let (nid, nip) = provisioned(&api, "web-lb").await;
        (nid != id).then_some((nid, nip))
    })
    .await;
    let again = s.nlb(new_id).await.unwrap();
    assert_eq!(again.services.len(), 2);
    assert_eq!(again.spec.name, Some(format!("k8s-{uid}")));
    wait_for("traffic through the new NLB", Duration::from_secs(30), || async {
        let addr: SocketAddr = format!("{new_ip}:8080").parse().ok()?;
        (reached(addr, 6).await == everyone).then_some(())
    })
    .await;

    // 8. Deleting the Service removes the NLB, then the finalizer.
    k.ok(&["delete", "svc", "web-lb", "--wait=true", "--timeout=30s"]);
    assert!(api.get_opt("web-lb").await.unwrap().is_none());
    assert!(s.nlb(new_id).await.is_none(), "the NLB is deleted with its Service");
    let notes = events_of(s.kube().client().await, "web-lb", "DeletedLoadBalancer").await;
    assert!(!notes.is_empty(), "a DeletedLoadBalancer event");
    drop(backends);

    // 9. Every controller's queue drained, and says so.
    let metrics = s.ccm.as_ref().unwrap().metrics().await;
    for controller in ["node", "csr", "service"] {
        let line = format!("ccm_queue_depth{{controller=\"{controller}\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_never_touch_what_is_not_theirs() {
    let s = Stack::start(&[]).await;
    let k = s.kubectl();
    let api = s.services().await;
    let pool = s.instances[0].manager.clone().unwrap().id;
    let foreign_service = LoadBalancerServiceSpec {
        name: Some("ssh".into()),
        description: None,
        instance_pool: Some(Ref::from(pool)),
        protocol: Some(Protocol::Tcp),
        strategy: Some(Strategy::RoundRobin),
        port: Some(22),
        target_port: Some(22),
        healthcheck: Some(Healthcheck {
            mode: Some(HealthcheckMode::Tcp),
            port: Some(22),
            interval: Some(10),
            timeout: Some(5),
            retries: Some(1),
            ..Default::default()
        }),
    };
    let create = |name: &str, labels: Option<BTreeMap<String, String>>| {
        let c = s.client.clone();
        let body = CreateLoadBalancer { name: Some(name.into()), description: None, labels };
        async move { c.create_load_balancer(&body).await.unwrap().reference_id().unwrap() }
    };
    // Another cluster's NLB named "shop", and a shared NLB with a service of its own.
    let other_cluster = BTreeMap::from([
        ("k8s-cluster-id".to_string(), Uuid::new_v4().to_string()),
        ("k8s-service-uid".to_string(), "u-other".to_string()),
    ]);
    let theirs = create("shop", Some(other_cluster)).await;
    let shared = create("shared", None).await;
    s.client.add_service_to_load_balancer(shared, &foreign_service).await.unwrap();
    let theirs_before = s.nlb(theirs).await.unwrap();
    let shared_before = s.nlb(shared).await.unwrap();

    let lb_service = |name: &str, class: Option<&str>, ann: Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "annotations": ann},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]}})
    };
    apply(&k, lb_service("other-class", Some("example.com/other"), json!({})));
    apply(&k, lb_service("shop", None, json!({format!("{PREFIX}name"): "shop"})));
    apply(&k, lb_service("thief", None, json!({format!("{PREFIX}id"): theirs.to_string()})));
    apply(
        &k,
        lb_service("tenant", None, json!({format!("{PREFIX}name"): "shared", format!("{PREFIX}external"): "true"})),
    );

    // Same name, another cluster: a new NLB of our own; theirs untouched.
    let (shop, _) = provisioned(&api, "shop").await;
    assert_ne!(shop, theirs);
    assert_eq!(s.nlb(shop).await.unwrap().spec.name.as_deref(), Some("shop"));
    // An id naming another cluster's NLB: refused with an event, nothing written.
    let note = wait_for("the refusal event", Duration::from_secs(20), || async {
        events_of(s.kube().client().await, "thief", "SyncLoadBalancerFailed").await.into_iter().next()
    })
    .await;
    assert!(note.contains(&theirs.to_string()) && note.contains("belongs to") && note.contains("external"), "{note}");
    // External by name: our port is added next to the foreign service.
    let (tenant_id, tenant_ip) = provisioned(&api, "tenant").await;
    assert_eq!(tenant_id, shared);
    assert_eq!(Some(tenant_ip), shared_before.ip.map(|i| i.to_string()));
    let on_shared = s.nlb(shared).await.unwrap();
    assert_eq!(on_shared.services.len(), 2);
    assert_eq!(on_shared.spec, shared_before.spec, "an external NLB is never renamed or relabelled");
    // The other class was seen before the Services above were served, and left alone.
    let other = api.get("other-class").await.unwrap();
    assert_eq!(other.metadata.finalizers, None);
    assert_eq!(ingress_ip(&other), None);

    // No longer a LoadBalancer: its NLB is deleted, then its finalizer and ingress removed.
    k.ok(&["patch", "svc", "shop", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    wait_for("the type change to release the NLB", Duration::from_secs(20), || async {
        let svc = api.get("shop").await.ok()?;
        let released = svc.metadata.finalizers.clone().unwrap_or_default().is_empty() && ingress_ip(&svc).is_none();
        (released && s.nlb(shop).await.is_none()).then_some(())
    })
    .await;

    // Deleting: the external NLB stays with its own service; ours goes.
    k.ok(&["delete", "svc", "tenant", "shop", "thief", "--wait=true", "--timeout=30s"]);
    let after = s.nlb(shared).await.expect("an external NLB is never deleted");
    assert_eq!(
        after.services.iter().map(|x| x.spec.name.clone().unwrap()).collect::<Vec<_>>(),
        vec!["ssh".to_string()]
    );
    assert!(s.nlb(shop).await.is_none());
    let mut theirs_after = s.nlb(theirs).await.unwrap();
    theirs_after.state = theirs_before.state.clone();
    assert_eq!(theirs_after, theirs_before, "another cluster's NLB is never touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_faults_never_duplicate_load_balancers() {
    let s = Stack::start(&[]).await;
    let k = s.kubectl();
    let api = s.services().await;
    let lb_service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]}})
    };
    // Every create is carried out but its answer is lost (a proxy's 502): the CCM must find it, not repeat it.
    s.zone.set_faults_after(1.0, 502, Some(&["create-load-balancer"]), true).await;
    for i in 0..4 {
        apply(&k, lb_service(&format!("lost-{i}")));
    }
    for i in 0..4 {
        provisioned(&api, &format!("lost-{i}")).await;
    }
    // Then a third of all calls refused with 503 or throttled: retried with backoff.
    s.zone.set_faults(0.33, 503, None).await;
    for i in 0..4 {
        apply(&k, lb_service(&format!("busy-{i}")));
    }
    for i in 0..4 {
        provisioned(&api, &format!("busy-{i}")).await;
    }
    s.zone.set_faults(0.0, 503, None).await;
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for lb in s.client.list_load_balancers().await.unwrap() {
        let uid = lb.spec.labels.as_ref().and_then(|l| l.get("k8s-service-uid")).cloned().unwrap_or_default();
        *owners.entry(uid).or_default() += 1;
    }
    assert_eq!(owners.len(), 8, "one NLB per Service: {owners:?}");
    assert!(owners.values().all(|n| *n == 1), "no duplicates: {owners:?}");

    // Every NLB delete is carried out but its answer is lost (and so is every
    // retry's): the Service still goes, with its NLB and only its NLB.
    s.zone.set_faults_after(1.0, 502, Some(&["delete-load-balancer"]), true).await;
    k.ok(&["delete", "svc", "lost-0", "--wait=true", "--timeout=60s"]);
    s.zone.set_faults(0.0, 503, None).await;
    let left = s.client.list_load_balancers().await.unwrap();
    assert_eq!(left.len(), 7, "the deleted Service's NLB is gone, the others stay");
}

/// The sum of sks-ccm's metric samples whose line starts with `prefix`.
async fn metric_sum(ccm: &Ccm, prefix: &str) -> u64 {
    let metrics = ccm.metrics().await;
    let values = metrics.lines().filter(|l| l.starts_with(prefix));
    values.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
}

/// sks-ccm's orchestrator calls of `operation` so far, whatever their answer.
async fn ccm_calls(ccm: &Ccm, operation: &str) -> u64 {
    metric_sum(ccm, &format!("orchestrator_requests_total{{operation=\"{operation}\"")).await
}

/// sks-ccm's finished service reconciles so far.
async fn service_reconciles(ccm: &Ccm) -> u64 {
    metric_sum(ccm, "ccm_reconciles_total{controller=\"service\"").await
}

fn labelled_for(lbs: &[LoadBalancer], uid: &str) -> Vec<Uuid> {
    lbs.iter()
        .filter(|lb| lb.spec.labels.as_ref().and_then(|l| l.get("k8s-service-uid")).map(String::as_str) == Some(uid))
        .map(|lb| lb.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_nlbs_stale_ids_and_default_health_checks() {
    let s = Stack::start(&["--lb-drift-period-seconds", "2"]).await;
    let k = s.kubectl();
    let api = s.services().await;
    let service = |name: &str, ann: Value, spec: Value| {
        let mut spec = spec;
        spec["type"] = json!("LoadBalancer");
        spec["selector"] = json!({"app": name});
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "annotations": ann}, "spec": spec})
    };

    // externalTrafficPolicy Local: HTTP /healthz on the healthCheckNodePort; a UDP port gets a UDP NLB service.
    apply(
        &k,
        service(
            "owner",
            json!({}),
            json!({"externalTrafficPolicy": "Local", "ports": [{"name": "web", "port": 80, "targetPort": 80}]}),
        ),
    );
    apply(&k, service("dns", json!({}), json!({"ports": [{"port": 53, "targetPort": 53, "protocol": "UDP"}]})));
    let (owner_nlb, _) = provisioned(&api, "owner").await;
    let owner = api.get("owner").await.unwrap();
    let health_port = owner.spec.as_ref().unwrap().health_check_node_port.expect("a healthCheckNodePort");
    let lb = s.nlb(owner_nlb).await.unwrap();
    let hc = lb.services[0].spec.healthcheck.clone().unwrap();
    assert_eq!(
        (hc.mode, hc.port, hc.uri.as_deref()),
        (Some(HealthcheckMode::Http), Some(health_port.into()), Some("/healthz")),
        "externalTrafficPolicy Local is checked on the healthCheckNodePort"
    );
    let (dns_nlb, _) = provisioned(&api, "dns").await;
    let dns = s.nlb(dns_nlb).await.unwrap();
    let [udp] = dns.services.as_slice() else { panic!("{:?}", dns.services) };
    assert_eq!((udp.spec.protocol.clone(), udp.spec.port), (Some(Protocol::Udp), Some(53)));
    for reason in ["EnsuringLoadBalancer", "EnsuredLoadBalancer"] {
        let notes = events_of(s.kube().client().await, "owner", reason).await;
        assert!(notes.iter().any(|n| n.contains("load balancer")), "a {reason} event: {notes:?}");
    }

    // Another Service shares the owner's NLB on another port: neither removes the
    // other's NLB service, drift check after drift check.
    apply(
        &k,
        service(
            "sharer",
            json!({format!("{PREFIX}id"): owner_nlb.to_string(), format!("{PREFIX}external"): "true"}),
            json!({"ports": [{"port": 8443, "targetPort": 8443}]}),
        ),
    );
    let (shared, _) = provisioned(&api, "sharer").await;
    assert_eq!(shared, owner_nlb);
    let ports = |lb: &LoadBalancer| lb.services.iter().map(|x| x.spec.port.unwrap()).collect::<BTreeSet<_>>();
    assert_eq!(ports(&s.nlb(owner_nlb).await.unwrap()), BTreeSet::from([80, 8443]));
    let writes = ["delete-load-balancer-service", "update-load-balancer-service", "add-service-to-load-balancer"];
    let mut before = Vec::new();
    for op in writes {
        before.push(ccm_calls(s.ccm.as_ref().unwrap(), op).await);
    }
    let reconciles = service_reconciles(s.ccm.as_ref().unwrap()).await;
    wait_for("three drift checks of every Service", Duration::from_secs(30), || async {
        (service_reconciles(s.ccm.as_ref().unwrap()).await >= reconciles + 9).then_some(())
    })
    .await;
    for (op, n) in writes.iter().zip(before) {
        assert_eq!(
            ccm_calls(s.ccm.as_ref().unwrap(), op).await,
            n,
            "{op} at steady state: the owner and the sharer must not flap"
        );
    }
    assert_eq!(ports(&s.nlb(owner_nlb).await.unwrap()), BTreeSet::from([80, 8443]));

    // A third Service asking for the owner's port on the shared NLB: refused with an event, nothing taken.
    let owner_service = s.nlb(owner_nlb).await.unwrap().services.into_iter().find(|x| x.spec.port == Some(80));
    apply(
        &k,
        service(
            "clash",
            json!({format!("{PREFIX}id"): owner_nlb.to_string(), format!("{PREFIX}external"): "true"}),
            json!({"ports": [{"port": 80, "targetPort": 80}]}),
        ),
    );
    let note = wait_for("the port clash event", Duration::from_secs(20), || async {
        events_of(s.kube().client().await, "clash", "SyncLoadBalancerFailed").await.into_iter().next()
    })
    .await;
    assert!(note.contains("port 80") && note.contains("another Service"), "{note}");
    let now = s.nlb(owner_nlb).await.unwrap().services.into_iter().find(|x| x.spec.port == Some(80));
    assert_eq!(
        now.map(|x| (x.id, x.spec)),
        owner_service.map(|x| (x.id, x.spec)),
        "the owner's NLB service is untouched"
    );
    k.ok(&["delete", "svc", "clash", "sharer", "--wait=true", "--timeout=30s"]);
    assert_eq!(ports(&s.nlb(owner_nlb).await.unwrap()), BTreeSet::from([80]), "the sharer's port left with it");

    // The id annotation names an NLB deleted out of band while another labelled for
    // the Service exists (a recreate whose id was never written): that one is used,
    // and none is duplicated or left behind.
    let uid = owner.metadata.uid.clone().unwrap();
    let labels = s.nlb(owner_nlb).await.unwrap().spec.labels;
    let body = CreateLoadBalancer { name: Some(format!("k8s-{uid}")), description: None, labels };
    let replacement = s.client.create_load_balancer(&body).await.unwrap().reference_id().unwrap();
    s.client.delete_load_balancer(owner_nlb).await.unwrap();
    let (adopted, _) = wait_for("the labelled NLB to be used", Duration::from_secs(30), || async {
        let (id, ip) = provisioned(&api, "owner").await;
        (id != owner_nlb).then_some((id, ip))
    })
    .await;
    assert_eq!(adopted, replacement, "the NLB labelled for the Service, not a new one");
    wait_for("the port on the adopted NLB", Duration::from_secs(20), || async {
        (ports(&s.nlb(replacement).await?) == BTreeSet::from([80])).then_some(())
    })
    .await;
    assert_eq!(labelled_for(&s.client.list_load_balancers().await.unwrap(), &uid), vec![replacement]);
    k.ok(&["delete", "svc", "owner", "dns", "--wait=true", "--timeout=30s"]);
    let left = s.client.list_load_balancers().await.unwrap();
    assert!(left.is_empty(), "no NLB left behind: {left:?}");
    let notes = events_of(s.kube().client().await, "owner", "DeletingLoadBalancer").await;
    assert!(!notes.is_empty(), "a DeletingLoadBalancer event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_controller_leaves_load_balancers_alone() {
    let s = Stack::start(&["--controllers=*,-service"]).await;
    let k = s.kubectl();
    let api = s.services().await;
    apply(
        &k,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]}}),
    );
    // A Node that joins after the Service was made, initialized by the same sks-ccm:
    // had the Service controller run, it would have handled the Service by then.
    let np = s.client.get_sks_cluster(s.cluster).await.unwrap().nodepools.remove(0);
    s.client.scale_sks_nodepool(s.cluster, np.id, 4).await.unwrap();
    let nodes: Api<Node> = Api::all(s.kube().client().await);
    wait_for("a 4th initialized Node", Duration::from_secs(60), || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        let done = list.items.iter().filter(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_ref()).is_some());
        (done.count() == 4).then_some(())
    })
    .await;
    let svc = api.get("web").await.unwrap();
    assert_eq!((ingress_ip(&svc), svc.metadata.finalizers), (None, None));
    assert!(s.client.list_load_balancers().await.unwrap().is_empty(), "no NLB is made");
    assert_eq!(ccm_calls(s.ccm.as_ref().unwrap(), "list-load-balancers").await, 0, "not even listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_nodepool_asks_for_a_choice_and_keeps_inferred_pools() {
    let s = Stack::start(&[]).await;
    let k = s.kubectl();
    let api = s.services().await;
    let lb_service = |name: &str, ann: Value| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "annotations": ann},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]}})
    };
    apply(&k, lb_service("early", json!({})));
    let (early, _) = provisioned(&api, "early").await;
    let workers = s.instances[0].manager.clone().unwrap().id;
    let pool_of = |lb: LoadBalancer| lb.services[0].spec.instance_pool.map(|p| p.id);
    assert_eq!(pool_of(s.nlb(early).await.unwrap()), Some(workers), "the one nodepool, inferred");

    // A second nodepool joins: its Node carries its own nodepool label.
    let medium = s.client.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium");
    let spec = SksNodepoolSpec {
        name: Some("gpu".into()),
        instance_type: Some(Ref::from(medium.expect("a medium type").id)),
        disk_size: Some(20),
        ..Default::default()
    };
    let op = s.client.create_sks_nodepool(s.cluster, &CreateSksNodepool { spec, size: 1, addons: None }).await.unwrap();
    let gpu_np = op.reference_id().unwrap();
    let nodes: Api<Node> = Api::all(s.kube().client().await);
    wait_for("the gpu Node to be initialized", Duration::from_secs(60), || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        let labelled = list.items.iter().filter(|n| {
            n.metadata.labels.as_ref().and_then(|l| l.get("node.exoscale.net/nodepool-id")) == Some(&gpu_np.to_string())
        });
        (labelled.count() == 1).then_some(())
    })
    .await;

    // A new Service without a choice: a Warning naming both nodepools, no NLB guessed.
    apply(&k, lb_service("late", json!({})));
    let note = wait_for("the ambiguity event", Duration::from_secs(20), || async {
        events_of(s.kube().client().await, "late", "SyncLoadBalancerFailed").await.into_iter().next()
    })
    .await;
    assert!(note.contains("2 nodepools") && note.contains("gpu") && note.contains("workers"), "{note}");
    let late = api.get("late").await.unwrap();
    assert_eq!(annotations(&late).get(&format!("{PREFIX}id")), None, "no NLB is made for a guess");
    // Choosing one resolves it.
    k.ok(&[
        "annotate",
        "svc",
        "late",
        &format!("{PREFIX}service-sks-nodepool-name=gpu"),
        &format!("{PREFIX}sks-cluster-name=demo"),
    ]);
    let (late_nlb, _) = provisioned(&api, "late").await;
    let gpu_pool = s.client.get_sks_cluster(s.cluster).await.unwrap().nodepools.into_iter().find(|np| np.id == gpu_np);
    assert_eq!(pool_of(s.nlb(late_nlb).await.unwrap()), gpu_pool.and_then(|np| np.instance_pool).map(|p| p.id));

    // The Service that inferred its pool earlier keeps it, with no Warning, when it changes.
    k.ok(&["annotate", "svc", "early", &format!("{PREFIX}service-strategy=source-hash")]);
    wait_for("the early Service's change to apply", Duration::from_secs(20), || async {
        (s.nlb(early).await?.services[0].spec.strategy == Some(Strategy::SourceHash)).then_some(())
    })
    .await;
    assert_eq!(pool_of(s.nlb(early).await.unwrap()), Some(workers));
    assert!(events_of(s.kube().client().await, "early", "SyncLoadBalancerFailed").await.is_empty());
}

/// What a burst of LoadBalancer Services multiplies: per Service, sks-ccm
/// writes three times (the cleanup finalizer before the NLB exists, the `id`
/// annotation, the ingress status) and two Events (EnsuringLoadBalancer,
/// EnsuredLoadBalancer), reads nothing beyond the list and watch it opened at
/// start, and never loses a write race; drift checks write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_load_balancer_service_costs_three_writes_and_no_read() {
    let s = Stack::start(&["--lb-drift-period-seconds", "1"]).await;
    let k = s.kubectl();
    let api = s.services().await;
    let before = s.ccm.as_ref().unwrap().kube_requests().await;
    let names = ["lb-a", "lb-b", "lb-c"];
    for name in names {
        apply(
            &k,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        );
    }
    for name in names {
        provisioned(&api, name).await;
    }
    wait_for("the EnsuredLoadBalancer events", Duration::from_secs(20), || async {
        let client = s.kube().client().await;
        let mut all = 0;
        for name in names {
            all += events_of(client.clone(), name, "EnsuredLoadBalancer").await.len();
        }
        (all == names.len()).then_some(())
    })
    .await;
    // Every Service is compared with its NLB again, twice (1 s drift period): no write.
    let target = service_reconciles(s.ccm.as_ref().unwrap()).await + 2 * names.len() as u64;
    wait_for("two more drift checks", Duration::from_secs(30), || async {
        (service_reconciles(s.ccm.as_ref().unwrap()).await >= target).then_some(())
    })
    .await;

    let now = s.ccm.as_ref().unwrap().kube_requests().await;
    let sent: BTreeMap<String, u64> = now
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, n)| *n > 0 && !k.contains(" leases "))
        .collect();
    let want: BTreeMap<String, u64> =
        [("patch services 200", 6), ("patch services/status 200", 3), ("create events 201", 6)]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
    assert_eq!(sent, want, "3 writes and 2 events per Service, no conflict, no GET, LIST or new watch");
}
