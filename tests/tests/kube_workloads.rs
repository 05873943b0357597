//! Workloads on the zone's nodes: Deployments become Running pods placed by
//! the scheduler's fit rules (node selectors, affinity, taints and
//! tolerations, requests against allocatable), pods that fit nowhere wait
//! `Unschedulable` with kube-scheduler's message and a `FailedScheduling`
//! event until the nodepool grows, DaemonSets run a pod per node, evictions
//! honour PodDisruptionBudgets, pods are deleted gracefully, and deleting a
//! Deployment deletes its ReplicaSets and pods. The cluster's API is
//! whatever the harness starts (the stand-in, or real binaries with
//! `KUBE_ASSETS`: every check here holds for both); its nodes are sks-zone's
//! simulated kubelets, initialised by sks-ccm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sks_e2e::ccm::Ccm;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;
use sks_e2e::zone::{Zone, ZoneOptions};
use uuid::Uuid;

/// Long enough for a real control plane's controllers (their resync and backoffs), short for the stand-in's.
const SETTLE: Duration = Duration::from_secs(90);

/// The zone with its seeded cluster (3 standard.medium nodes: 1930m CPU
/// allocatable each), the cluster's API, its kubelets and sks-ccm.
struct Stack {
    zone: Zone,
    kube: KubeApi,
    _ccm: Ccm,
    k: Kubectl,
    client: orchestrator::Client,
    cluster: Uuid,
    nodepool: Uuid,
}

impl Stack {
    async fn start() -> Stack {
        let mut zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
        let client = zone.client().await;
        let cluster = client.list_sks_clusters().await.unwrap().remove(0);
        let nodepool = cluster.nodepools[0].id;
        let kube = KubeApi::start(KubeOptions::for_kubelets_of(&zone, cluster.id)).await;
        zone.restart_with(&[
            "--kubeconfig".to_owned(),
            kube.kubeconfig.display().to_string(),
            "--kubelet-lease-interval-seconds".to_owned(),
            "1".to_owned(),
        ]);
        let ccm = Ccm::start(&zone, &kube, &cluster.id.to_string(), &["--node-sync-period-seconds", "1"]);
        let k = kube.kubectl();
        // Pods need their namespace's `default` account (kube-controller-manager makes it; the stand-in has none).
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}});
        let out = k.with_stdin(&["apply", "-f", "-"], &account.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stack = Stack { zone, kube, _ccm: ccm, k, client, cluster: cluster.id, nodepool };
        stack.schedulable_nodes(3).await;
        stack
    }

    /// Waits until `n` nodes are Ready with no NoSchedule or NoExecute taint; their names.
    async fn schedulable_nodes(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} schedulable nodes"), SETTLE, || async {
            let nodes = self.get(&["get", "nodes"]);
            let ready: Vec<String> = items(&nodes)
                .iter()
                .filter(|n| condition(n, "Ready") == Some("True"))
                .filter(|n| {
                    n["spec"]["taints"].as_array().is_none_or(|t| t.iter().all(|t| t["effect"] == "PreferNoSchedule"))
                })
                .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            (ready.len() == n).then_some(ready)
        })
        .await
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.k.ok(&a)).unwrap()
    }

    fn apply(&self, doc: &Value) {
        let out = self.k.with_stdin(&["apply", "-f", "-"], &doc.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// The pods labelled `app=<app>`.
    fn pods(&self, app: &str) -> Vec<Value> {
        items(&self.get(&["get", "pods", "-l", &format!("app={app}")])).to_vec()
    }

    /// Waits until `n` pods of `app` run Ready, with an IP, on a node; answers them.
    async fn running(&self, app: &str, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} running pods of {app}"), SETTLE, || async {
            let pods = self.pods(app);
            let running: Vec<Value> = pods
                .into_iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| p["status"]["phase"] == "Running" && condition(p, "Ready") == Some("True"))
                .filter(|p| p["status"]["podIP"].is_string() && p["spec"]["nodeName"].is_string())
                .collect();
            (running.len() == n).then_some(running)
        })
        .await
    }

    /// Waits until `n` pods of `app` are Unschedulable; answers them.
    async fn unschedulable(&self, app: &str, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} unschedulable pods of {app}"), SETTLE, || async {
            let pending: Vec<Value> = self
                .pods(app)
                .into_iter()
                .filter(|p| p["status"]["phase"] == "Pending" && p["spec"]["nodeName"].is_null())
                .filter(|p| {
                    pod_condition(p, "PodScheduled")
                        .is_some_and(|c| c["status"] == "False" && c["reason"] == "Unschedulable")
                })
                .collect();
            (pending.len() == n).then_some(pending)
        })
        .await
    }

    /// Sends `body` with `method` to `path` as the admin: status and JSON body.
    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        // kube's client retries a 429 (up to 15 times, backing off to 1000 s): a refused eviction is the answer here.
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kube.kubeconfig).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        config.default_retry = false;
        let client = kube::Client::try_from(config).unwrap();
        let req = http::Request::builder().method(method).uri(path).header("content-type", "application/json");
        let body =
            body.map_or_else(kube::client::Body::empty, |b| kube::client::Body::from(serde_json::to_vec(b).unwrap()));
        let resp = client.send(req.body(body).unwrap()).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// POSTs an Eviction of pod `name` (namespace default).
    async fn evict(&self, name: &str) -> (u16, Value) {
        let eviction =
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
        self.send("POST", &format!("/api/v1/namespaces/default/pods/{name}/eviction"), Some(&eviction)).await
    }

    /// Waits until the PodDisruptionBudget `name` allows `allowed` disruptions; answers its status.
    async fn budget(&self, name: &str, allowed: i64) -> Value {
        wait_for(&format!("{name} to allow {allowed} disruptions"), SETTLE, || async {
            let pdb = self.get(&["get", "pdb", name]);
            let s = &pdb["status"];
            (s["disruptionsAllowed"] == allowed && s["observedGeneration"] == pdb["metadata"]["generation"])
                .then(|| s.clone())
        })
        .await
    }
}

fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    pod_condition(obj, type_)?["status"].as_str()
}

fn pod_condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// A Deployment of `replicas` pods of `app` requesting `cpu` each, with `extra` pod spec fields.
fn deployment(app: &str, replicas: u32, cpu: &str, extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": app, "image": "registry.example/app:1",
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": spec}}})
}

/// kube-scheduler's message for a pod that fits none of `n` nodes for these
/// reasons (each `(count, reason, resolvable by preemption)`).
fn unschedulable_message(n: usize, reasons: &[(usize, &str, bool)]) -> String {
    let mut fit: Vec<String> = reasons.iter().map(|(c, r, _)| format!("{c} {r}")).collect();
    fit.sort();
    let helpful: usize = reasons.iter().filter(|r| r.2).map(|r| r.0).sum();
    let mut preemption = Vec::new();
    if n > helpful {
        preemption.push(format!("{} Preemption is not helpful for scheduling", n - helpful));
    }
    if helpful > 0 {
        preemption.push(format!("{helpful} No preemption victims found for incoming pod"));
    }
    format!(
        "0/{n} nodes are available: {}. no new claims to deallocate, preemption: 0/{n} nodes are available: {}.",
        fit.join(", "),
        preemption.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_placed_by_the_schedulers_rules_and_wait_for_room() {
    let s = Stack::start().await;
    let nodes: BTreeSet<String> = s.schedulable_nodes(3).await.into_iter().collect();

    // 1. Three pods of 1 CPU: one per node (1930m allocatable each), Running, with IPs.
    s.apply(&deployment("web", 3, "1", json!({})));
    let web = s.running("web", 3).await;
    let placed: BTreeSet<String> = web.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap().to_owned()).collect();
    assert_eq!(placed, nodes, "one 1-CPU pod per node: no node has room for two");
    let table = s.k.ok(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    );
    for line in table.lines().skip(1) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cells[1], cells[2], cells[3]), ("1/1", "Running", "0"), "{line}");
        assert!(cells[5].starts_with("10."), "a pod IP: {line}");
        assert!(nodes.contains(cells[6]), "on a zone node: {line}");
    }
    let deploy = wait_for("web's status to catch up", SETTLE, || async {
        let d = s.get(&["get", "deployment", "web"]);
        (d["status"]["availableReplicas"] == 3 && condition(&d, "Progressing").is_some()).then_some(d)
    })
    .await;
    assert_eq!(deploy["status"]["readyReplicas"], 3);
    assert_eq!(condition(&deploy, "Available"), Some("True"));
    s.k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let sets = s.get(&["get", "replicasets", "-l", "app=web"]);
    assert_eq!(items(&sets).len(), 1, "one ReplicaSet per template");
    let hash = items(&sets)[0]["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_owned();
    assert_eq!(items(&sets)[0]["metadata"]["name"], format!("web-{hash}"));
    assert!(web.iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()));

    // 2. Pods that fit nowhere wait, Unschedulable, with kube-scheduler's message and event.
    s.apply(&deployment("big", 2, "1500m", json!({})));
    let waiting = s.unschedulable("big", 2).await;
    let expected = unschedulable_message(3, &[(3, "Insufficient cpu", true)]);
    for p in &waiting {
        assert_eq!(pod_condition(p, "PodScheduled").unwrap()["message"], expected.as_str(), "{p}");
    }
    let name = waiting[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let event = wait_for("a FailedScheduling event", SETTLE, || async {
        let selector = format!("reason=FailedScheduling,involvedObject.name={name}");
        items(&s.get(&["get", "events", "--field-selector", &selector])).first().cloned()
    })
    .await;
    assert_eq!((event["type"].as_str(), event["message"].as_str()), (Some("Warning"), Some(expected.as_str())));
    assert_eq!(event["reportingComponent"], "default-scheduler");
    let table = s.k.ok(&["get", "pods", "-l", "app=big"]);
    assert!(table.lines().skip(1).all(|l| l.split_whitespace().nth(2) == Some("Pending")), "{table}");

    // 3. Selectors, affinity and taints, against the three nodes.
    let node_list: Vec<String> = nodes.iter().cloned().collect();
    let (first, second, third) = (&node_list[0], &node_list[1], &node_list[2]);
    s.apply(&deployment("pinned", 1, "10m", json!({"nodeSelector": {"kubernetes.io/hostname": first}})));
    let not_in = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [first, second]}]}]}}});
    s.apply(&deployment("avoiding", 1, "10m", json!({"affinity": not_in})));
    s.apply(&deployment("nowhere", 1, "10m", json!({"nodeSelector": {"disk": "nvme"}})));
    assert_eq!(s.running("pinned", 1).await[0]["spec"]["nodeName"], first.as_str());
    assert_eq!(s.running("avoiding", 1).await[0]["spec"]["nodeName"], third.as_str());
    let nowhere = s.unschedulable("nowhere", 1).await;
    assert_eq!(
        pod_condition(&nowhere[0], "PodScheduled").unwrap()["message"],
        unschedulable_message(3, &[(3, "node(s) didn't match Pod's node affinity/selector", false)]).as_str()
    );
    s.k.ok(&["taint", "node", second, "dedicated=gpu:NoSchedule"]);
    let on_second = json!({"kubernetes.io/hostname": second});
    s.apply(&deployment("intolerant", 1, "10m", json!({"nodeSelector": on_second})));
    let tolerations = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    s.apply(&deployment("tolerant", 1, "10m", json!({"nodeSelector": on_second, "tolerations": tolerations})));
    assert_eq!(s.running("tolerant", 1).await[0]["spec"]["nodeName"], second.as_str());
    let intolerant = s.unschedulable("intolerant", 1).await;
    assert_eq!(
        pod_condition(&intolerant[0], "PodScheduled").unwrap()["message"],
        unschedulable_message(
            3,
            &[
                (1, "node(s) had untolerated taint(s)", false),
                (2, "node(s) didn't match Pod's node affinity/selector", false)
            ]
        )
        .as_str()
    );
    s.k.ok(&["taint", "node", second, "dedicated=gpu:NoSchedule-"]);
    s.running("intolerant", 1).await;

    // 4. A DaemonSet runs one pod on each node, pinned to it for the scheduler.
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:1", "resources": {"requests": {"cpu": "10m"}}}]}}}});
    s.apply(&ds);
    let agents = s.running("agent", 3).await;
    let mut on: BTreeMap<String, usize> = BTreeMap::new();
    for p in &agents {
        *on.entry(p["spec"]["nodeName"].as_str().unwrap().to_owned()).or_default() += 1;
        let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchFields"][0]["values"][0], p["spec"]["nodeName"], "{p}");
    }
    assert_eq!(on.keys().cloned().collect::<BTreeSet<_>>(), nodes);

    // 5. Room appears: two more nodes, and the waiting pods run there, one each.
    s.client.scale_sks_nodepool(s.cluster, s.nodepool, 5).await.unwrap();
    let all: BTreeSet<String> = s.schedulable_nodes(5).await.into_iter().collect();
    let new: BTreeSet<String> = all.difference(&nodes).cloned().collect();
    let big = s.running("big", 2).await;
    let big_nodes: BTreeSet<String> = big.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap().to_owned()).collect();
    assert_eq!(big_nodes, new, "one 1500m pod on each new node");
    s.running("agent", 5).await;
    let daemonset = s.get(&["get", "daemonset", "agent"]);
    assert_eq!(
        (daemonset["status"]["desiredNumberScheduled"].as_i64(), daemonset["status"]["numberReady"].as_i64()),
        (Some(5), Some(5))
    );
    drop(s.zone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_honour_budgets_and_deletions_wait_for_the_kubelet() {
    let s = Stack::start().await;
    s.apply(&deployment("web", 2, "100m", json!({})));
    s.running("web", 2).await;
    s.apply(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}));
    let status = s.budget("web", 0).await;
    assert_eq!(
        (status["expectedPods"].as_i64(), status["currentHealthy"].as_i64(), status["desiredHealthy"].as_i64()),
        (Some(2), Some(2), Some(2))
    );

    // 1. At its limit, the budget refuses the eviction: 429, as kube-apiserver words it.
    let victim = s.pods("web")[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let (code, refused) = s.evict(&victim).await;
    assert_eq!((code, refused["reason"].as_str()), (429, Some("TooManyRequests")), "{refused}");
    assert_eq!(refused["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(
        refused["details"]["causes"],
        json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
    );
    assert!(
        s.pods("web")
            .iter()
            .any(|p| p["metadata"]["name"] == victim.as_str() && p["metadata"]["deletionTimestamp"].is_null())
    );

    // 2. A third replica makes room for one eviction: 201, the pod goes, a replacement comes.
    s.k.ok(&["scale", "deployment", "web", "--replicas=3"]);
    s.running("web", 3).await;
    s.budget("web", 1).await;
    let (code, evicted) = s.evict(&victim).await;
    assert_eq!(
        (code, evicted["kind"].as_str(), evicted["status"].as_str()),
        (201, Some("Status"), Some("Success")),
        "{evicted}"
    );
    wait_for("the evicted pod to be gone", SETTLE, || async {
        s.pods("web").iter().all(|p| p["metadata"]["name"] != victim.as_str()).then_some(())
    })
    .await;
    let replaced = s.running("web", 3).await;
    let second = replaced.iter().find(|p| p["metadata"]["name"] != victim.as_str()).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    s.budget("web", 1).await;
    let (code, again) = s.evict(&second).await;
    assert_eq!(code, 201, "allowed again once the replacement is Ready: {again}");

    // 3. Two budgets over one pod: kube-apiserver does not decide between them.
    s.running("web", 3).await;
    s.apply(&json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web-too", "namespace": "default"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}));
    s.budget("web-too", 1).await;
    let third = s.pods("web")[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let (_, ambiguous) = s.evict(&third).await;
    assert_eq!((ambiguous["status"].as_str(), ambiguous["code"].as_i64()), (Some("Failure"), Some(500)), "{ambiguous}");
    assert_eq!(
        ambiguous["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    // 4. Graceful deletion: a pod bound to a node whose kubelet never finishes it keeps its grace period.
    let ghost = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost", "namespace": "default"},
        "spec": {"nodeName": "no-such-node", "terminationGracePeriodSeconds": 45, "containers": [{"name": "c", "image": "registry.example/c:1"}]}});
    s.apply(&ghost);
    let (code, deleted) = s.send("DELETE", "/api/v1/namespaces/default/pods/ghost", None).await;
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 45, "the pod's own grace period: {deleted}");
    let stamp: jiff::Timestamp = deleted["metadata"]["deletionTimestamp"].as_str().unwrap().parse().unwrap();
    let ahead = stamp.as_second() - jiff::Timestamp::now().as_second();
    assert!((30..=46).contains(&ahead), "deletionTimestamp is when the grace period ends: {ahead} s ahead");
    let still = s.get(&["get", "pod", "ghost"]);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    let table = s.k.ok(&["get", "pod", "ghost"]);
    assert_eq!(table.lines().nth(1).unwrap().split_whitespace().nth(2), Some("Terminating"), "{table}");
    let (code, _) = s.send("DELETE", "/api/v1/namespaces/default/pods/ghost?gracePeriodSeconds=0", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        s.send("GET", "/api/v1/namespaces/default/pods/ghost", None).await.0,
        404,
        "grace period 0 deletes at once"
    );
    // A pod no scheduler places is not bound: deleted at once.
    let unbound = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unbound", "namespace": "default"},
        "spec": {"schedulerName": "no-such-scheduler", "containers": [{"name": "c", "image": "registry.example/c:1"}]}});
    s.apply(&unbound);
    assert_eq!(s.send("DELETE", "/api/v1/namespaces/default/pods/unbound", None).await.0, 200);
    assert_eq!(s.send("GET", "/api/v1/namespaces/default/pods/unbound", None).await.0, 404);
    // A running pod's deletion is finished by its kubelet.
    let running = s.pods("web")[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let (_, deleting) = s.send("DELETE", &format!("/api/v1/namespaces/default/pods/{running}"), None).await;
    assert_eq!(deleting["metadata"]["deletionGracePeriodSeconds"], 30, "{deleting}");
    wait_for("the kubelet to finish the deletion", SETTLE, || async {
        (s.send("GET", &format!("/api/v1/namespaces/default/pods/{running}"), None).await.0 == 404).then_some(())
    })
    .await;

    // 5. Deleting the Deployment deletes its ReplicaSets and their pods.
    s.k.ok(&["delete", "deployment", "web"]);
    wait_for("web's ReplicaSets and pods to be collected", SETTLE, || async {
        let sets = s.get(&["get", "replicasets", "-l", "app=web"]);
        (items(&sets).is_empty() && s.pods("web").is_empty()).then_some(())
    })
    .await;
}
