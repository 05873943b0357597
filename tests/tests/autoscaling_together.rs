//! The autoscaler, the upgrade roll and auto-healing on one nodepool at once
//! (issue 17): no pool ever below its minimum, no node removed twice.
//!
//! One autoscaled nodepool (`workers`, 3 standard.medium nodes, min 2, max 6),
//! sks-ccm healing with short delays, sks-apiserver autoscaling with short
//! delays, and, overlapping: a Deployment whose pods need two more nodes while
//! a sick node is healed; an upgrade roll of the grown pool, during which
//! another node falls sick and the Deployment shrinks to one pod; the
//! scale-down that follows the roll, during which a third node falls sick.
//! Throughout, the nodepool is sampled as the orchestrator shows it and Nodes
//! are watched (none deleted twice, none back after its deletion); at the end
//! sks-zone's journal of calls, in commit order, gives the nodepool's exact
//! sizes (never below the minimum, not even between an eviction and a scale),
//! and says that no instance was evicted twice, or asked to be, and that
//! every instance that left the pool was evicted by name (none dropped by a
//! scale). The stack converges: the roll succeeds, the pool is at its minimum
//! (the one pod left needs one node), every Node is Ready and runs the new
//! version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use orchestrator::model::{Instance, InstanceState};
use serde_json::{Value, json};
use sks_e2e::ccm::QUICK_AUTO_HEAL;
use sks_e2e::env::{TestEnv, ready_initialized};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;
use sks_e2e::zone::ZoneOptions;
use uuid::Uuid;

const MIN: i64 = 2;
const MAX: i64 = 6;
/// The seeded nodepool's size.
const SEEDED: i64 = 3;
/// How long any one step may take on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(90);

/// The stack: instances boot in a second (so scale-ups have nodes on their
/// way), kubelets heartbeat every second, control-plane components upgrade in
/// 200 ms; sks-ccm reboots a node NotReady for 2 s and replaces it 3 s later;
/// sks-apiserver removes a node unneeded for 3 s, 3 s after a scale-up.
async fn start() -> TestEnv {
    let extra = ["--kubelet-lease-interval-seconds", "1", "--component-upgrade-ms", "200"];
    let zone =
        ZoneOptions { seed: true, boot_delay_ms: 1000, extra: extra.map(String::from).to_vec(), ..Default::default() };
    let autoscale = [
        "--refresh-interval",
        "1s",
        "--scale-down-unneeded-time",
        "3s",
        "--scale-down-delay-after-add",
        "3s",
        "--upgrade-replacement-timeout",
        "60s",
    ];
    TestEnv::builder()
        .zone(zone)
        .kubelets()
        .ccm(&QUICK_AUTO_HEAL)
        .apiserver(&autoscale)
        .ready_nodes(SEEDED as usize)
        .start()
        .await
}

/// A task stopped when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The nodepool's instance pool as the orchestrator showed it, every 50 ms.
#[derive(Debug, Default)]
struct Pool {
    samples: u64,
    /// The smallest size seen, with the members then.
    lowest: Option<(i64, Vec<Uuid>)>,
    size: i64,
    members: BTreeSet<Uuid>,
    /// Every instance ever seen as a member.
    seen: BTreeSet<Uuid>,
}

fn sample_pool(client: orchestrator::Client, pool: Uuid) -> (Arc<Mutex<Pool>>, Task) {
    let state = Arc::new(Mutex::new(Pool::default()));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(p) = client.get_instance_pool(pool).await {
                let members: Vec<Uuid> = p.instances.iter().map(|r| r.id).collect();
                let mut s = shared.lock().unwrap();
                s.samples += 1;
                if s.lowest.as_ref().is_none_or(|(low, _)| p.size < *low) {
                    s.lowest = Some((p.size, members.clone()));
                }
                s.size = p.size;
                s.seen.extend(members.iter().copied());
                s.members = members.into_iter().collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (state, Task(task))
}

/// Node deletions as a watch saw them.
#[derive(Debug, Default)]
struct NodeHistory {
    deleted: BTreeMap<String, u32>,
    /// Nodes seen again after their deletion.
    back: BTreeSet<String>,
}

fn watch_nodes(nodes: Api<Node>) -> (Arc<Mutex<NodeHistory>>, Task) {
    let state = Arc::new(Mutex::new(NodeHistory::default()));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(nodes, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let mut h = shared.lock().unwrap();
            match event {
                Ok(Event::Delete(n)) => *h.deleted.entry(n.metadata.name.unwrap_or_default()).or_insert(0) += 1,
                Ok(Event::Apply(n) | Event::InitApply(n)) => {
                    let name = n.metadata.name.unwrap_or_default();
                    if h.deleted.contains_key(&name) {
                        h.back.insert(name);
                    }
                }
                _ => {}
            }
        }
    });
    (state, Task(task))
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).unwrap()
}

fn apply(k: &Kubectl, doc: &Value) {
    let out = k.with_stdin(&["apply", "-f", "-"], &doc.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `replicas` pods of 1 CPU each: one fits a node (1930m allocatable), two do not.
fn load(replicas: u32) -> Value {
    let labels = json!({"app": "load"});
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "load",
                "image": "registry.example/load:1", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}]}}}})
}

/// The instances of `ids` that still exist (one may be evicted meanwhile), sorted by name.
async fn instances(client: &orchestrator::Client, ids: BTreeSet<Uuid>) -> Vec<Instance> {
    let mut out = Vec::new();
    for id in ids {
        match client.get_instance(id).await {
            Ok(i) => out.push(i),
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("reading instance {id}: {e}"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// How many successful calls evicted each instance.
fn evictions_per_instance(calls: &[Value]) -> BTreeMap<Uuid, u32> {
    let mut out = BTreeMap::new();
    let evictions = calls.iter().filter(|c| c["operation"] == "evict-sks-nodepool-members" && c["status"] == 200);
    for id in evictions.flat_map(|c| c["body"]["instances"].as_array().cloned().unwrap_or_default()) {
        *out.entry(id.as_str().unwrap().parse().unwrap()).or_insert(0) += 1;
    }
    out
}

/// The nodepool's sizes, from `start`, after each of its successful evictions and scales, in order.
fn sizes(start: i64, calls: &[Value]) -> Vec<i64> {
    let mut size = start;
    let mut out = vec![size];
    for c in calls.iter().filter(|c| c["status"] == 200) {
        size = match c["operation"].as_str() {
            Some("scale-sks-nodepool") => c["body"]["size"].as_i64().unwrap(),
            _ => size - c["body"]["instances"].as_array().map_or(0, Vec::len) as i64,
        };
        out.push(size);
    }
    out
}

/// The nodes the load pods are bound to.
fn load_nodes(k: &Kubectl) -> BTreeSet<String> {
    let pods = get(k, &["get", "pods", "-l", "app=load"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned)).collect()
}

/// The Upgrade's phase.
fn phase(k: &Kubectl, upgrade: &str) -> Option<String> {
    let out = k.run(&["get", "upgrade", upgrade, "-o", "json"]);
    let u: Value = serde_json::from_slice(&out.stdout).ok()?;
    u["status"]["phase"].as_str().map(str::to_owned)
}

/// The Nodes `reason` events of sks-ccm were about.
fn evented(k: &Kubectl, reason: &str) -> BTreeSet<String> {
    let events = get(k, &["get", "events.events.k8s.io", "-A"]);
    let items = events["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| e["regarding"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_the_upgrade_roll_and_auto_heal_at_once() {
    let env = start().await;
    let k = env.kubectl();
    let client = env.client.clone();
    let nodepool = client.get_sks_cluster(env.cluster).await.unwrap().nodepools.remove(0);
    let pool = nodepool.instance_pool.unwrap().id;
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}});
    apply(&k, &account);
    let bounds = json!({"spec": {"autoscaling": {"minReplicas": MIN, "maxReplicas": MAX}}}).to_string();
    k.ok(&["patch", "np", "workers", "--type=merge", "-p", &bounds]);
    let nodes: Api<Node> = Api::all(env.kube().client().await);
    let (observed, _sampler) = sample_pool(env.zone.client().await, pool);
    let (history, _watch) = watch_nodes(nodes.clone());
    assert_eq!(env.zone.publish_version("1.35.0").await.0, 200);
    let started = std::time::Instant::now();
    let size = || observed.lock().unwrap().size;
    let members = || observed.lock().unwrap().members.clone();

    // 1. Pods that need two more nodes; while they boot a node falls sick and
    // the roll starts: auto-heal reboots, then replaces, the sick node while
    // the roll replaces the others one by one.
    apply(&k, &load(5));
    wait_for("the scale-up to 5 nodes", STEP, || async { (size() >= 5).then_some(()) }).await;
    // A running node, the last by name: the roll, which goes by name, reaches it last.
    let mut running = instances(&client, members()).await.into_iter().filter(|i| i.state == InstanceState::Running);
    let sick1 = running.next_back().expect("a running node").id;
    env.zone.set_kubelet_ready(sick1, false).await;
    let upgrade = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "roll"},
        "spec": {"version": "1.35.0", "rollNodepools": true}});
    wait_for("the Upgrade to be accepted", STEP, || async {
        k.with_stdin(&["create", "-f", "-"], &upgrade.to_string()).status.success().then_some(())
    })
    .await;

    // 2. During the roll a second old node falls sick and the Deployment
    // shrinks to one pod (the autoscaler leaves the pool to the roll meanwhile).
    wait_for("the roll to start", STEP, || async {
        matches!(phase(&k, "roll").as_deref(), Some("Nodepools" | "Succeeded")).then_some(())
    })
    .await;
    let template = client.get_sks_nodepool(env.cluster, nodepool.id).await.unwrap().template;
    let mut old = instances(&client, members()).await.into_iter().filter(|i| i.template != template && i.id != sick1);
    let sick2 = old.next_back().expect("an old node left to roll").id;
    env.zone.set_kubelet_ready(sick2, false).await;
    k.ok(&["scale", "deployment", "load", "--replicas=1"]);
    wait_for("the roll to succeed", STEP, || async {
        (phase(&k, "roll").as_deref() == Some("Succeeded")).then_some(())
    })
    .await;

    // 3. The scale-down the roll held back, while a third node falls sick.
    // A node the remaining pod does not run on, so healing it moves no pod.
    let busy = load_nodes(&k);
    let idle = instances(&client, members()).await.into_iter().find(|i| !busy.contains(&i.name));
    let (sick3_name, sick3) = idle.map(|i| (i.name, i.id)).expect("a node without the load pod");
    env.zone.set_kubelet_ready(sick3, false).await;
    let sick = [sick1, sick2, sick3];
    wait_for("the pool to converge at its minimum with every Node Ready", STEP, || async {
        let now = members();
        let converged = size() == MIN
            && now.len() == MIN as usize
            && sick.iter().all(|s| !now.contains(s))
            && nodes.list(&Default::default()).await.ok()?.items.len() == MIN as usize
            && ready_initialized(&nodes).await == MIN as usize;
        converged.then_some(())
    })
    .await;
    let took = started.elapsed();

    // What happened, as the orchestrator's journal tells it (in commit order).
    let journal = env.zone.requests(&[]).await;
    assert_eq!(journal.first().map(|c| &c["seq"]), Some(&json!(1)), "the journal dropped calls: sizes would be wrong");
    let calls = env.zone.requests(&["evict-sks-nodepool-members", "scale-sks-nodepool"]).await;
    let refused: Vec<&Value> = calls.iter().filter(|c| c["status"] != 200).collect();
    assert!(
        refused.is_empty(),
        "refused resizes (an eviction of an instance gone already: two removers?): {refused:#?}"
    );
    let evicted = evictions_per_instance(&calls);
    let twice: Vec<&Uuid> = evicted.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(twice.is_empty(), "instances evicted more than once: {twice:?}\n{calls:#?}");
    let (seen, now) = {
        let o = observed.lock().unwrap();
        (o.seen.clone(), o.members.clone())
    };
    let dropped: Vec<&Uuid> = seen.difference(&now).filter(|id| !evicted.contains_key(id)).collect();
    assert!(
        dropped.is_empty(),
        "instances that left the pool without being evicted (a scale shrank it): {dropped:?}\n{calls:#?}"
    );
    let sizes = sizes(SEEDED, &calls);
    let (lowest, highest) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    assert!(lowest >= MIN, "the pool went below its minimum: sizes {sizes:?}\n{calls:#?}");
    let (samples, sampled) = {
        let o = observed.lock().unwrap();
        (o.samples, o.lowest.clone().unwrap())
    };
    assert!(sampled.0 >= MIN, "the pool went below its minimum: {sampled:?} ({samples} samples)");
    let (deleted, back) = {
        let h = history.lock().unwrap();
        (h.deleted.clone(), h.back.clone())
    };
    let deleted_twice: Vec<_> = deleted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(deleted_twice.is_empty() && back.is_empty(), "Nodes deleted twice {deleted_twice:?} or back {back:?}");

    // Every sick node was replaced, the last by auto-heal; the rest of the old ones by the roll.
    for s in sick {
        assert_eq!(evicted.get(&s), Some(&1), "sick instance {s} was not evicted once");
    }
    let healed = evented(&k, "AutoHealReplace");
    assert!(healed.contains(&sick3_name), "auto-heal did not replace {sick3_name}: {healed:?}");
    for id in &now {
        let i = client.get_instance(*id).await.unwrap();
        assert_eq!(i.template, template, "{} still runs the old version", i.name);
    }
    eprintln!(
        "converged in {took:?}: {} calls, {} evictions and scales, sizes {sizes:?} (lowest {lowest}, highest \
         {highest}), {samples} samples, healed {healed:?}",
        journal.len(),
        calls.len()
    );
}
