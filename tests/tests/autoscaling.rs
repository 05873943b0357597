//! Nodepool autoscaling end to end: sks-zone (the cloud, with simulated
//! kubelets that run bound pods), the Kubernetes API with its scheduler and
//! workload controllers (the stand-in's subsets, or the real binaries with
//! `KUBE_ASSETS`), sks-ccm initializing and deleting Nodes, and sks-apiserver
//! autoscaling the nodepools that set `spec.autoscaling`. Every input is what
//! a user writes (Deployments, NodePools, PodDisruptionBudgets, annotations)
//! and every check reads what a user reads (the nodepool's size, events,
//! conditions, metrics).
//!
//! The seeded nodepool `workers` has 3 `standard.medium` nodes: 1930m CPU and
//! 2972 MiB allocatable each (see docs/operations.md), so two 900m pods fit a
//! node and a third does not.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sks_e2e::env::TestEnv;
use sks_e2e::kubectl::Kubectl;
use sks_e2e::zone::ZoneOptions;
use sks_e2e::{metrics, wait_for, wait_until};

/// sks-ccm: Nodes re-checked every 2 s, so a removed instance's Node goes quickly.
const CCM_ARGS: &[&str] = &["--node-sync-period-seconds", "2"];

/// The stack with `workers` Ready, sks-apiserver autoscaling with `args`
/// (after the test defaults: 1 s refresh; scale-down only when a test asks).
async fn start(zone: ZoneOptions, args: &[&str]) -> TestEnv {
    let mut all = vec!["--refresh-interval", "1s"];
    all.extend_from_slice(args);
    TestEnv::builder().zone(zone).kubelets().ccm(CCM_ARGS).apiserver(&all).ready_nodes(3).start().await
}

fn seeded() -> ZoneOptions {
    ZoneOptions { seed: true, ..Default::default() }
}

/// Scale-down after 2 s unneeded, right after a scale-up.
const FAST_SCALE_DOWN: &[&str] = &["--scale-down-unneeded-time", "2s", "--scale-down-delay-after-add", "0s"];

fn autoscale(k: &Kubectl, nodepool: &str, min: i64, max: i64) {
    let patch = json!({"spec": {"autoscaling": {"minReplicas": min, "maxReplicas": max}}}).to_string();
    k.ok(&["patch", "np", nodepool, "--type=merge", "-p", &patch]);
}

fn apply(k: &Kubectl, obj: &Value) {
    let out = k.with_stdin(&["apply", "-f", "-"], &obj.to_string());
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).expect("kubectl prints JSON")
}

/// A Deployment of `replicas` pods labelled `app=<name>`, each requesting
/// `cpu` and 128Mi, with `pod_spec` merged into the pod spec.
fn deployment(name: &str, replicas: u32, cpu: &str, pod_spec: Value) -> Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "app", "image": "registry.example/app:1",
            "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}}}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), pod_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    })
}

/// A pod requesting `cpu`, with `pod_spec` merged into its spec.
fn pod(name: &str, cpu: &str, pod_spec: Value) -> Value {
    let mut obj = deployment(name, 1, cpu, pod_spec)["spec"]["template"].clone();
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!("Pod");
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["namespace"] = json!("default");
    obj
}

/// Pods matching `selector` that run (phase Running, bound).
fn running(k: &Kubectl, selector: &str) -> Vec<Value> {
    let pods = get(k, &["get", "pods", "-A", "-l", selector]);
    pods["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["spec"]["nodeName"].is_string())
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

async fn wait_running(k: &Kubectl, selector: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let (pods, _) = wait_until(&format!("{n} running pods {selector}"), timeout, || {
        let k = k.clone();
        async move {
            let pods = running(&k, selector);
            if pods.len() == n { Ok(pods) } else { Err(format!("{} running", pods.len())) }
        }
    })
    .await;
    pods
}

/// Events of `reason` (core/v1 view), oldest first.
fn events(k: &Kubectl, reason: &str) -> Vec<Value> {
    let list = get(k, &["get", "events", "-A", "--field-selector", &format!("reason={reason}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn events_about(k: &Kubectl, reason: &str, kind: &str, name: &str) -> Vec<Value> {
    events(k, reason)
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
        .collect()
}

async fn wait_event(k: &Kubectl, reason: &str, kind: &str, name: &str, timeout: Duration) -> Value {
    let what = format!("a {reason} event about {kind} {name}");
    let (e, _) = wait_until(&what, timeout, || {
        let k = k.clone();
        async move { events_about(&k, reason, kind, name).pop().ok_or_else(|| "none yet".to_owned()) }
    })
    .await;
    e
}

/// The orchestrator's size of nodepool `name` of `cluster`.
async fn size_of(client: &orchestrator::Client, cluster: uuid::Uuid, name: &str) -> Result<i64, orchestrator::Error> {
    let c = client.get_sks_cluster(cluster).await?;
    Ok(c.nodepools.iter().find(|p| p.spec.name.as_deref() == Some(name)).map(|p| p.size).expect("the nodepool exists"))
}

/// The orchestrator's size of nodepool `name`.
async fn pool_size(env: &TestEnv, name: &str) -> i64 {
    size_of(&env.client, env.cluster, name).await.expect("reading the nodepool")
}

async fn wait_pool_size(env: &TestEnv, name: &str, size: i64, timeout: Duration) {
    wait_until(&format!("nodepool {name} at size {size}"), timeout, || async {
        let now = pool_size(env, name).await;
        if now == size { Ok(()) } else { Err(format!("size {now}")) }
    })
    .await;
}

/// sks-apiserver's metrics.
fn sks_metrics(env: &TestEnv) -> String {
    env.sks().kubectl().ok(&["get", "--raw", "/metrics"])
}

/// sks-apiserver's successful orchestrator calls of `operation`.
fn calls(env: &TestEnv, operation: &str) -> u64 {
    metrics::sum(&sks_metrics(env), "orchestrator_requests_total", &[("operation", operation), ("code", "200")]) as u64
}

fn condition(obj: &Value, type_: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

/// Names of the Nodes of nodepool `name`.
fn nodes_of(k: &Kubectl, nodepool_uid: &str) -> BTreeSet<String> {
    let nodes = get(k, &["get", "nodes", "-l", &format!("{}={nodepool_uid}", sks_keys::label::NODEPOOL_ID)]);
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .map(str::to_owned)
        .collect()
}

fn uid_of(k: &Kubectl, nodepool: &str) -> String {
    get(k, &["get", "np", nodepool])["metadata"]["uid"].as_str().expect("a uid").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_pending_pods_is_one_scale_to_the_bin_packed_count() {
    let env = start(seeded(), &[]).await;
    let k = env.kubectl();
    autoscale(&k, "workers", 1, 10);
    let scales_before = calls(&env, "scale-sks-nodepool");

    // 3 nodes hold 6 pods of 900m; the 6 others need exactly 3 more nodes.
    apply(&k, &deployment("web", 12, "900m", json!({})));
    wait_running(&k, "app=web", 12, Duration::from_secs(120)).await;

    assert_eq!(pool_size(&env, "workers").await, 6, "3 nodes added, as first-fit packing says");
    assert_eq!(calls(&env, "scale-sks-nodepool") - scales_before, 1, "one orchestrator call for the burst");
    let up = wait_event(&k, "ScaledUpGroup", "NodePool", "workers", Duration::from_secs(10)).await;
    assert_eq!(up["message"], "Scale-up: setting group workers size to 6 instead of 3 (max: 10)");
    let triggered: Vec<Value> =
        events(&k, "TriggeredScaleUp").into_iter().filter(|e| e["involvedObject"]["kind"] == "Pod").collect();
    assert_eq!(triggered.len(), 6, "one TriggeredScaleUp per pod that waited: {triggered:#?}");
    assert!(triggered.iter().all(|e| e["message"] == "pod triggered scale-up: [{workers 3->6 (max: 10)}]"));
    let np = get(&k, &["get", "np", "workers"]);
    let last = &np["status"]["autoscaling"]["lastScaleUp"];
    assert_eq!((last["from"].as_i64(), last["to"].as_i64()), (Some(3), Some(6)), "{np:#}");
    assert_eq!(last["reason"], "6 pending pod(s)");
    assert_eq!(condition(&np, "ScalingLimited")["status"], "False");
    let wide = k.ok(&["get", "np", "workers", "-o", "wide", "--no-headers"]);
    assert!(wide.split_whitespace().any(|c| c == "10"), "MAX column shows 10: {wide}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_reach_the_pool_their_selectors_and_tolerations_name_and_others_say_why_not() {
    let env = start(seeded(), &[]).await;
    let k = env.kubectl();
    autoscale(&k, "workers", 1, 4);
    apply(
        &k,
        &json!({
            "apiVersion": "sks.exoscale.net/v1alpha1", "kind": "NodePool",
            "metadata": {"name": "gpu", "labels": {"role": "gpu"}},
            "spec": {"replicas": 1, "instanceType": "standard.large",
                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
                "autoscaling": {"minReplicas": 1, "maxReplicas": 3}},
        }),
    );
    env.wait_ready_nodes(4).await;

    let gpu_only = json!({
        "nodeSelector": {"role": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    });
    // A large node (3920m) holds one 3000m pod: 1 node there, 2 more needed.
    apply(&k, &deployment("train", 3, "3000m", gpu_only.clone()));
    // Plain pods never go to the tainted pool: 6 fit, 2 need one more worker.
    apply(&k, &deployment("web", 8, "900m", json!({})));
    // Fits nowhere: a label no pool has; more CPU than any instance type.
    apply(&k, &pod("nowhere", "100m", json!({"nodeSelector": {"role": "db"}})));
    apply(&k, &pod("huge", "8", gpu_only));

    let train = wait_running(&k, "app=train", 3, Duration::from_secs(120)).await;
    let web = wait_running(&k, "app=web", 8, Duration::from_secs(120)).await;
    assert_eq!(pool_size(&env, "gpu").await, 3);
    assert_eq!(pool_size(&env, "workers").await, 4);
    let gpu_nodes = nodes_of(&k, &uid_of(&k, "gpu"));
    assert!(train.iter().all(|p| gpu_nodes.contains(p["spec"]["nodeName"].as_str().unwrap())));
    assert!(web.iter().all(|p| !gpu_nodes.contains(p["spec"]["nodeName"].as_str().unwrap())));

    let why = wait_event(&k, "NotTriggerScaleUp", "Pod", "nowhere", Duration::from_secs(30)).await;
    assert_eq!(
        why["message"],
        "pod didn't trigger scale-up: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint(s)"
    );
    let why = wait_event(&k, "NotTriggerScaleUp", "Pod", "huge", Duration::from_secs(30)).await;
    // workers lacks the label, and the large instance type the CPU.
    assert_eq!(
        why["message"],
        "pod didn't trigger scale-up: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector"
    );
    let unschedulable = metrics::sum(&sks_metrics(&env), "cluster_autoscaler_unschedulable_pods_count", &[]);
    assert_eq!(unschedulable, 2.0, "the two pods no pool can help still wait");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_maximum_holds_and_scaling_limited_says_so_until_it_is_raised() {
    let env = start(seeded(), &[]).await;
    let k = env.kubectl();
    autoscale(&k, "workers", 1, 4);
    // 10 pods of 900m want 5 nodes; the maximum is 4.
    apply(&k, &deployment("web", 10, "900m", json!({})));
    wait_running(&k, "app=web", 8, Duration::from_secs(120)).await;
    assert_eq!(pool_size(&env, "workers").await, 4);

    let (np, _) = wait_until("ScalingLimited to be True", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let np = get(&k, &["get", "np", "workers"]);
            let c = condition(&np, "ScalingLimited");
            if c["status"] == "True" { Ok(np) } else { Err(c.to_string()) }
        }
    })
    .await;
    let limited = condition(&np, "ScalingLimited");
    assert_eq!(limited["reason"], "MaxReplicasReached");
    assert_eq!(limited["message"], "pods wait: nodepool workers is at spec.autoscaling.maxReplicas (4)");
    let pending = get(&k, &["get", "pods", "-l", "app=web", "--field-selector", "status.phase=Pending"]);
    let pending = pending["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(pending.len(), 2);
    for p in &pending {
        let name = p["metadata"]["name"].as_str().unwrap();
        let why = wait_event(&k, "NotTriggerScaleUp", "Pod", name, Duration::from_secs(30)).await;
        assert_eq!(why["message"], "pod didn't trigger scale-up: 1 max node group size reached");
    }
    assert_eq!(pool_size(&env, "workers").await, 4, "never above the maximum");

    autoscale(&k, "workers", 1, 6);
    wait_running(&k, "app=web", 10, Duration::from_secs(120)).await;
    assert_eq!(pool_size(&env, "workers").await, 5, "one more node for the two pods, not two");
    wait_for("ScalingLimited to be False", Duration::from_secs(30), || {
        let k = k.clone();
        async move { (condition(&get(&k, &["get", "np", "workers"]), "ScalingLimited")["status"] == "False").then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_their_way_count_so_later_pods_never_overshoot() {
    // Instances take 4 s to boot: later bursts arrive while earlier nodes boot.
    let zone = ZoneOptions { seed: true, boot_delay_ms: 4000, ..Default::default() };
    let env = start(zone, &[]).await;
    let k = env.kubectl();
    autoscale(&k, "workers", 1, 20);
    // Three bursts while nodes boot: 10 pods (6 fit the 3 seeded nodes, 4 want
    // 2 new ones), then 3 and 2 more: 15 pods of 900m at 2 per node is 8 nodes.
    apply(&k, &deployment("a", 6 + 4, "900m", json!({})));
    wait_pool_size(&env, "workers", 5, Duration::from_secs(30)).await;
    apply(&k, &deployment("b", 3, "900m", json!({})));
    apply(&k, &deployment("c", 2, "900m", json!({})));
    wait_running(&k, "app in (a,b,c)", 15, Duration::from_secs(180)).await;
    // First-fit decreasing: 15 pods of 900m, 2 per node, is 8 nodes.
    assert_eq!(pool_size(&env, "workers").await, 8, "exactly what packing 15 pods needs: no overshoot");
    let ups: Vec<Value> = events_about(&k, "ScaledUpGroup", "NodePool", "workers");
    assert!(ups.len() <= 3, "at most one scale-up per burst: {ups:#?}");
}

/// Nodes of `workers`, sorted by name.
fn worker_nodes(k: &Kubectl) -> Vec<String> {
    nodes_of(k, &uid_of(k, "workers")).into_iter().collect()
}

/// Runs `obj` (a Deployment of one pod, or a pod) on node `on` only, the way a
/// user would get it there without pinning it: every other node cordoned
/// while it is scheduled. The pod itself can go anywhere afterwards.
async fn place(k: &Kubectl, obj: &Value, selector: &str, on: &str) {
    let others: Vec<String> = get(k, &["get", "nodes"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .filter(|n| *n != on)
        .map(str::to_owned)
        .collect();
    for n in &others {
        k.ok(&["cordon", n]);
    }
    apply(k, obj);
    let (pods, _) = wait_until(&format!("{selector} to run on {on}"), Duration::from_secs(60), || {
        let k = k.clone();
        async move {
            let pods = running(&k, selector);
            if pods.iter().any(|p| p["spec"]["nodeName"] == on) { Ok(pods) } else { Err(format!("{pods:?}")) }
        }
    })
    .await;
    assert!(pods.iter().all(|p| p["spec"]["nodeName"] == on));
    for n in &others {
        k.ok(&["uncordon", n]);
    }
}

/// Whether node `name` is in service: uncordoned, without the autoscaler's taint and record.
fn in_service(k: &Kubectl, name: &str) -> bool {
    serving(&get(k, &["get", "node", name]))
}

/// Whether a Node object is in service (see [`in_service`]).
fn serving(n: &Value) -> bool {
    let tainted =
        n["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == sks_keys::taint::TO_BE_DELETED));
    n["spec"]["unschedulable"] != true
        && !tainted
        && n["metadata"]["annotations"][sks_keys::annotation::SCALE_DOWN_REMOVING].is_null()
}

/// Whether the Node `name` exists.
fn node_exists(k: &Kubectl, name: &str) -> bool {
    k.run(&["get", "node", name]).status.success()
}

async fn wait_node_gone(k: &Kubectl, name: &str, timeout: Duration) {
    wait_for(&format!("node {name} to be gone"), timeout, || {
        let k = k.clone();
        async move { (!node_exists(&k, name)).then_some(()) }
    })
    .await;
}

/// The autoscaler's count of `decision` for `reason`.
fn decisions(env: &TestEnv, decision: &str, reason: &str) -> f64 {
    metrics::sum(&sks_metrics(env), "sks_autoscaler_decisions_total", &[("decision", decision), ("reason", reason)])
}

/// Waits until the autoscaler has judged `reason` at least `rounds` more times,
/// so "it did not act" is observed over that many rounds, not a guessed delay.
async fn wait_judged(env: &TestEnv, decision: &str, reason: &str, rounds: f64) {
    let start = decisions(env, decision, reason);
    wait_until(&format!("{rounds} more {decision}/{reason} decisions"), Duration::from_secs(60), || async {
        let now = decisions(env, decision, reason);
        if now >= start + rounds { Ok(()) } else { Err(format!("{now} (from {start})")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_node_and_a_half_used_node_whose_pods_fit_elsewhere_go() {
    let env = start(seeded(), FAST_SCALE_DOWN).await;
    let k = env.kubectl();
    let nodes = worker_nodes(&k);
    // One small pod on each of two nodes; the third is empty.
    place(&k, &deployment("a", 1, "400m", json!({})), "app=a", &nodes[0]).await;
    place(&k, &deployment("b", 1, "400m", json!({})), "app=b", &nodes[1]).await;
    let moved = running(&k, "app in (a,b)");

    autoscale(&k, "workers", 1, 5);
    wait_pool_size(&env, "workers", 1, Duration::from_secs(60)).await;
    let pods = wait_running(&k, "app in (a,b)", 2, Duration::from_secs(60)).await;
    let left: BTreeSet<&str> = pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    assert_eq!(left.len(), 1, "both pods share the one node left: {left:?}");
    wait_node_gone(&k, &nodes[2], Duration::from_secs(30)).await;
    let remaining = worker_nodes(&k);
    assert_eq!(remaining.len(), 1, "{remaining:?}");

    let downs = events_about(&k, "ScaleDown", "NodePool", "workers");
    let notes: Vec<&str> = downs.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(notes.iter().any(|n| n.contains(&format!("node {} removed (empty", nodes[2]))), "{notes:#?}");
    assert!(notes.iter().any(|n| n.contains("(underutilized")), "{notes:#?}");
    // The pod of the removed half-used node was evicted (an event on it) and replaced.
    let evicted: Vec<&Value> = moved.iter().filter(|p| p["spec"]["nodeName"] != remaining[0].as_str()).collect();
    assert_eq!(evicted.len(), 1);
    let name = evicted[0]["metadata"]["name"].as_str().unwrap();
    let e = wait_event(&k, "ScaleDown", "Pod", name, Duration::from_secs(10)).await;
    assert_eq!(e["message"], "deleting pod for node scale down");
    let m = sks_metrics(&env);
    let removed = |reason| metrics::sum(&m, "cluster_autoscaler_scaled_down_nodes_total", &[("reason", reason)]);
    assert_eq!((removed("empty"), removed("underutilized")), (1.0, 1.0), "{m}");
    let np = get(&k, &["get", "np", "workers"]);
    let last = &np["status"]["autoscaling"]["lastScaleDown"];
    assert_eq!((last["from"].as_i64(), last["to"].as_i64()), (Some(2), Some(1)), "{np:#}");

    // The minimum holds: the last node stays, however idle.
    k.ok(&["delete", "deployment", "a", "b"]);
    wait_judged(&env, "unremovable", "NodeGroupMinSizeReached", 3.0).await;
    assert_eq!(pool_size(&env, "workers").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_that_must_stay_are_never_removed() {
    let env = start(seeded(), FAST_SCALE_DOWN).await;
    let k = env.kubectl();
    k.ok(&["scale", "np", "workers", "--replicas=7"]);
    env.wait_ready_nodes(7).await;
    let n = worker_nodes(&k);
    assert_eq!(n.len(), 7);

    k.ok(&["annotate", "node", &n[0], "cluster-autoscaler.kubernetes.io/scale-down-disabled=true"]);
    let not_safe = json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}});
    let mut d = deployment("not-safe", 1, "100m", json!({}));
    d["spec"]["template"]["metadata"]["annotations"] = not_safe["metadata"]["annotations"].clone();
    place(&k, &d, "app=not-safe", &n[1]).await;
    let scratch = json!({"volumes": [{"name": "scratch", "emptyDir": {}}]});
    place(&k, &deployment("local", 1, "100m", scratch.clone()), "app=local", &n[2]).await;
    let mut system = deployment("system", 1, "100m", json!({}));
    system["metadata"]["namespace"] = json!("kube-system");
    place(&k, &system, "app=system", &n[3]).await;
    let mut bare = pod("bare", "100m", json!({}));
    bare["spec"]["nodeName"] = json!(n[4]);
    apply(&k, &bare);
    wait_running(&k, "app=bare", 1, Duration::from_secs(30)).await;
    // Local storage declared safe to lose: no reason to stay.
    let mut safe = deployment("local-safe", 1, "100m", scratch);
    safe["spec"]["template"]["metadata"]["annotations"] =
        json!({"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "scratch"});
    place(&k, &safe, "app=local-safe", &n[5]).await;
    // n[6] is empty.

    autoscale(&k, "workers", 0, 10);
    wait_pool_size(&env, "workers", 5, Duration::from_secs(60)).await;
    wait_node_gone(&k, &n[5], Duration::from_secs(30)).await;
    wait_node_gone(&k, &n[6], Duration::from_secs(30)).await;
    // Several more rounds judge the others; none of them goes.
    wait_judged(&env, "unremovable", "BlockedByPod", 12.0).await;
    wait_judged(&env, "unremovable", "ScaleDownDisabledAnnotation", 3.0).await;
    assert_eq!(pool_size(&env, "workers").await, 5);
    for name in &n[..5] {
        assert!(node_exists(&k, name) && in_service(&k, name), "{name} must stay in service");
    }
    wait_running(&k, "app=local-safe", 1, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disruption_budget_holds_a_node_until_it_allows() {
    let env = start(seeded(), FAST_SCALE_DOWN).await;
    let k = env.kubectl();
    let n = worker_nodes(&k);
    place(&k, &deployment("db", 1, "100m", json!({})), "app=db", &n[0]).await;
    let mut bare = pod("anchor", "100m", json!({}));
    bare["spec"]["nodeName"] = json!(n[1]);
    apply(&k, &bare);
    wait_running(&k, "app=anchor", 1, Duration::from_secs(30)).await;
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    apply(&k, &pdb);
    wait_for("the budget to allow no disruption", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let p = get(&k, &["get", "pdb", "db"]);
            (p["status"]["observedGeneration"].as_i64() >= Some(1) && p["status"]["disruptionsAllowed"] == 0)
                .then_some(())
        }
    })
    .await;

    autoscale(&k, "workers", 1, 5);
    // The empty node goes; the budgeted one stays while the budget allows nothing.
    wait_pool_size(&env, "workers", 2, Duration::from_secs(60)).await;
    wait_judged(&env, "unremovable", "BlockedByPod", 4.0).await;
    assert_eq!(pool_size(&env, "workers").await, 2);
    assert!(in_service(&k, &n[0]));

    // One disruption allowed: the node goes, its pod moves next to the anchor.
    let relaxed = json!({"spec": {"minAvailable": null, "maxUnavailable": 1}}).to_string();
    k.ok(&["patch", "pdb", "db", "--type=merge", "-p", &relaxed]);
    wait_pool_size(&env, "workers", 1, Duration::from_secs(60)).await;
    let db = wait_running(&k, "app=db", 1, Duration::from_secs(60)).await;
    assert_eq!(db[0]["spec"]["nodeName"], n[1].as_str());
}

/// A bare pod (no controller: it blocks scale-down) on each of `nodes`, bound directly.
fn anchor(k: &Kubectl, nodes: &[String]) {
    for (i, node) in nodes.iter().enumerate() {
        let mut anchor = pod(&format!("anchor-{}", i + 1), "100m", json!({}));
        anchor["spec"]["nodeName"] = json!(node);
        apply(k, &anchor);
    }
}

/// Runs a Deployment's pod on `node` whose object a finalizer keeps after
/// eviction, so a drain of the node never finishes; answers its name.
async fn hold(k: &Kubectl, node: &str) -> String {
    place(k, &deployment("held", 1, "100m", json!({})), "app=held", node).await;
    let held = running(k, "app=held")[0]["metadata"]["name"].as_str().unwrap().to_owned();
    k.ok(&["patch", "pod", &held, "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold"]}}"#]);
    held
}

/// Lets pod `held` go (its finalizer removed).
fn release(k: &Kubectl, held: &str) {
    k.ok(&["patch", "pod", held, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
}

/// Waits until `node` is marked for removal and pod `held` is terminating.
async fn wait_draining(k: &Kubectl, node: &str, held: &str) {
    wait_for("the node marked and its pod terminating", Duration::from_secs(60), || {
        let k = k.clone();
        let (name, held) = (node.to_owned(), held.to_owned());
        async move {
            let terminating = !get(&k, &["get", "pod", &held])["metadata"]["deletionTimestamp"].is_null();
            (!in_service(&k, &name) && terminating).then_some(())
        }
    })
    .await;
}

/// Waits until `node` is back in service.
async fn wait_in_service(k: &Kubectl, node: &str, timeout: Duration) {
    wait_for("the node back in service", timeout, || {
        let k = k.clone();
        let name = node.to_owned();
        async move { in_service(&k, &name).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_that_does_not_finish_puts_the_node_back_in_service() {
    let mut args = FAST_SCALE_DOWN.to_vec();
    args.extend(["--max-pod-eviction-time", "3s"]);
    let env = start(seeded(), &args).await;
    let k = env.kubectl();
    let n = worker_nodes(&k);
    anchor(&k, &n[1..]);
    let held = hold(&k, &n[0]).await;

    autoscale(&k, "workers", 1, 5);
    let failed = wait_event(&k, "ScaleDownFailed", "Node", &n[0], Duration::from_secs(60)).await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.starts_with("failed to drain the node, aborting ScaleDown: "), "{message}");
    assert!(message.contains("the node is back in service"), "{message}");
    wait_in_service(&k, &n[0], Duration::from_secs(10)).await;
    assert_eq!(pool_size(&env, "workers").await, 3, "nothing removed");

    // The pod lets go: the node's next removal finishes.
    release(&k, &held);
    wait_pool_size(&env, "workers", 2, Duration::from_secs(60)).await;
    wait_node_gone(&k, &n[0], Duration::from_secs(30)).await;
    assert!(node_exists(&k, &n[1]) && node_exists(&k, &n[2]));
}

/// Pods bound to a node after it was chosen (here bound directly, past the
/// taint, as a pod with `nodeName` is) are drained too: one that may move is
/// evicted, one that must not stops the removal and the node goes back.
#[tokio::test(flavor = "multi_thread")]
async fn pods_that_land_on_a_draining_node_are_evicted_or_keep_it() {
    let mut args = FAST_SCALE_DOWN.to_vec();
    args.extend(["--max-pod-eviction-time", "60s"]);
    let env = start(seeded(), &args).await;
    let k = env.kubectl();
    let n = worker_nodes(&k);
    anchor(&k, &n[1..]);
    let held = hold(&k, &n[0]).await;
    autoscale(&k, "workers", 1, 5);
    wait_draining(&k, &n[0], &held).await;

    let mut late = pod("late", "100m", json!({}));
    late["metadata"]["annotations"] = json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"});
    late["spec"]["nodeName"] = json!(n[0]);
    apply(&k, &late);
    let e = wait_event(&k, "ScaleDown", "Pod", "late", Duration::from_secs(30)).await;
    assert_eq!(e["message"], "deleting pod for node scale down");

    let mut stray = pod("stray", "100m", json!({}));
    stray["spec"]["nodeName"] = json!(n[0]);
    apply(&k, &stray);
    let failed = wait_event(&k, "ScaleDownFailed", "Node", &n[0], Duration::from_secs(30)).await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("pod default/stray landed on node"), "{message}");
    assert!(message.contains("(NotReplicated)"), "{message}");
    wait_in_service(&k, &n[0], Duration::from_secs(10)).await;
    assert!(get(&k, &["get", "pod", "stray"])["metadata"]["deletionTimestamp"].is_null(), "never evicted");
    assert_eq!(pool_size(&env, "workers").await, 3, "nothing removed");
    release(&k, &held);
}

/// Where `kill -9` hits sks-apiserver during a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The node is marked and its pods are being evicted.
    Draining,
    /// The instance's eviction is on its way to the orchestrator.
    EvictingInstance,
    /// The nodepool has shrunk; the Node is still there.
    Evicted,
}

/// The lowest size of nodepool `name` seen while the returned task runs (sampled every 50 ms).
fn sample_min_size(env: &TestEnv, name: &str) -> (Arc<AtomicI64>, tokio::task::JoinHandle<()>) {
    let min = Arc::new(AtomicI64::new(i64::MAX));
    let (client, cluster, name, seen) = (env.client.clone(), env.cluster, name.to_owned(), Arc::clone(&min));
    let task = tokio::spawn(async move {
        loop {
            if let Ok(size) = size_of(&client, cluster, &name).await {
                seen.fetch_min(size, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (min, task)
}

/// Every version of Node `name` the API shows from now on, as (in service, exists).
fn watch_node(client: kube::Client, name: &str) -> (Arc<Mutex<Vec<bool>>>, tokio::task::JoinHandle<()>) {
    use futures::StreamExt as _;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(kube::runtime::watcher(api, config));
        while let Some(event) = events.next().await {
            if let Ok(kube::runtime::watcher::Event::Apply(node) | kube::runtime::watcher::Event::InitApply(node)) =
                event
            {
                let in_service = serving(&serde_json::to_value(&node).unwrap());
                record.lock().unwrap().push(in_service);
            }
        }
    });
    (seen, task)
}

/// Kills sks-apiserver at `step` of a node's removal, restarts it, and checks
/// the removal ends whole: the node back in service or gone, the nodepool never
/// below its minimum, no other node touched.
async fn killed_during_removal(step: Step) {
    let mut args = FAST_SCALE_DOWN.to_vec();
    args.extend([
        "--max-pod-eviction-time",
        "120s",
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "1s",
    ]);
    let mut env = start(seeded(), &args).await;
    let k = env.kubectl();
    let n = worker_nodes(&k);
    // n[1] and n[2] hold bare pods: n[0] is the only candidate, and the minimum allows one removal.
    anchor(&k, &n[1..]);
    let held = if step == Step::Draining { Some(hold(&k, &n[0]).await) } else { None };
    if step == Step::EvictingInstance {
        env.zone
            .set_fault_rules(json!({"rules": [{"operations": ["evict-sks-nodepool-members"], "latency-ms": 3000}]}))
            .await;
    }
    let instances_before: BTreeSet<String> = instances_of(&k, &n);
    let (min_size, sampler) = sample_min_size(&env, "workers");
    let (history, watcher) = watch_node(env.kube().client().await, &n[0]);

    autoscale(&k, "workers", 2, 5);
    match step {
        Step::Draining => wait_draining(&k, &n[0], held.as_deref().unwrap()).await,
        Step::EvictingInstance => {
            wait_for("the instance eviction to be under way", Duration::from_secs(60), || {
                let zone = &env.zone;
                async move { (zone.fault_counts().await["delayed"].as_u64() >= Some(1)).then_some(()) }
            })
            .await;
        }
        Step::Evicted => wait_pool_size(&env, "workers", 2, Duration::from_secs(60)).await,
    }
    let seen_before_kill = history.lock().unwrap().len();
    env.sks_mut().kill();
    env.zone.clear_faults().await;
    env.restart_apiserver();

    match step {
        Step::Draining => {
            // The instance is still in the pool: the new leader puts the node back first.
            wait_for("the node back in service after the restart", Duration::from_secs(30), || {
                let history = Arc::clone(&history);
                async move { history.lock().unwrap()[seen_before_kill..].iter().any(|s| *s).then_some(()) }
            })
            .await;
            assert_eq!(pool_size(&env, "workers").await, 3, "nothing was removed yet");
            // Then, with the pod gone, it is removed for good.
            release(&k, held.as_deref().unwrap());
        }
        Step::EvictingInstance | Step::Evicted => {}
    }
    // Whatever the step: in the end the node is gone, and only it.
    wait_pool_size(&env, "workers", 2, Duration::from_secs(90)).await;
    wait_node_gone(&k, &n[0], Duration::from_secs(60)).await;
    assert!(node_exists(&k, &n[1]) && node_exists(&k, &n[2]), "no other node touched");
    let after = instances_of(&k, &n[1..]);
    assert!(after.is_subset(&instances_before) && after.len() == 2, "{after:?} of {instances_before:?}");
    // A few more rounds: nothing else goes (both nodes left hold a bare pod).
    wait_judged(&env, "unremovable", "BlockedByPod", 6.0).await;
    assert_eq!(pool_size(&env, "workers").await, 2);
    sampler.abort();
    watcher.abort();
    assert_eq!(min_size.load(Ordering::SeqCst), 2, "the nodepool never went below its minimum");
}

/// The instance ids (providerIDs) of Nodes `names` that exist.
fn instances_of(k: &Kubectl, names: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| node_exists(k, n))
        .filter_map(|n| get(k, &["get", "node", n])["spec"]["providerID"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_draining_the_node_is_put_back_then_removed_once() {
    killed_during_removal(Step::Draining).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_the_instance_is_evicted_the_pool_shrinks_once() {
    killed_during_removal(Step::EvictingInstance).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_instance_is_gone_nothing_more_is_removed() {
    killed_during_removal(Step::Evicted).await;
}
