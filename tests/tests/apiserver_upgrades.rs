//! The cluster, its upgrades and kubeconfig requests through the aggregator,
//! with kubectl: sks-zone (versions published at run time, per-component
//! upgrades, simulated kubelets), the Kubernetes API, sks-ccm initializing
//! replacement nodes, and sks-apiserver behind an APIService.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::{Value, json};
use sks_e2e::env::{ApiServerOptions, TestEnv, ready_initialized};
use sks_e2e::kubeapi::{KubeOptions, policy};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;
use sks_e2e::zone::ZoneOptions;

/// Tokens: alice may create kubeconfig requests, bob may only read clusters.
const TOKENS: &str = "alice-token,alice,10,\"admins\"\nbob-token,bob,11,\"devs\"\n";

fn rules() -> Vec<Value> {
    let mut rules = Vec::new();
    rules.push(json!({"users": ["alice"], "verbs": ["create"], "apiGroups": ["sks.exoscale.net"], "resources": ["kubeconfigrequests"]}));
    rules.push(json!({"users": ["bob"], "verbs": ["get", "list"], "apiGroups": ["sks.exoscale.net"], "resources": ["clusters"]}));
    // What the issued kubeconfig's identity may do: carol by name, devs by group.
    rules.push(json!({"users": ["carol"], "verbs": ["get", "list"], "apiGroups": [""], "resources": ["namespaces"]}));
    rules
        .push(json!({"groups": ["testers"], "verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}));
    rules
}

/// The stack; each control-plane component takes `component_ms` to replace.
async fn start(apiserver_args: &[&str], component_ms: u64) -> TestEnv {
    let ms = component_ms.to_string();
    let zone = ZoneOptions { seed: true, extra: vec!["--component-upgrade-ms".into(), ms], ..Default::default() };
    let kube = KubeOptions { policy: Some(policy(rules())), tokens: Some(TOKENS.into()), ..Default::default() };
    let mut args = vec!["--refresh-interval", "1s"];
    args.extend_from_slice(apiserver_args);
    TestEnv::builder()
        .zone(zone)
        .kube(kube)
        .kubelets()
        .ccm(&["--node-sync-period-seconds", "2"])
        .apiserver(&args)
        .ready_nodes(3)
        .start()
        .await
}

/// kubectl as a user of the static token file.
fn kubectl_as(s: &TestEnv, token: &str) -> Kubectl {
    let kube = s.kube();
    let path = kube.dir().join(format!("{token}.kubeconfig"));
    let admin = std::fs::read_to_string(&kube.kubeconfig).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    doc["users"][0]["user"] = serde_yaml::to_value(json!({ "token": token })).unwrap();
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    Kubectl::new(path, kube.dir().join(format!("cache-{token}")))
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).unwrap()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

async fn wait_phase(k: &Kubectl, upgrade: &str, phase: &str, timeout: Duration) -> Value {
    wait_for(&format!("upgrade {upgrade} to be {phase}"), timeout, || {
        let k = k.clone();
        async move {
            let out = k.run(&["get", "upgrade", upgrade, "-o", "json"]);
            let u: Value = serde_json::from_slice(&out.stdout).ok()?;
            (u["status"]["phase"] == phase).then_some(u)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_upgrade_with_kubectl() {
    // Slow enough (3 x 2 s) that the conflicting requests below surely meet the first upgrade running.
    let s = start(&[], 2000).await;
    let k = s.kubectl();

    // 1. The cluster, its version, phase and components.
    let table = k.ok(&["get", "clusters"]);
    let row = table.lines().find(|l| l.starts_with("demo ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("1.34.2") && row.contains("Running") && row.contains("3/3 healthy"), "{table}");
    let wide = k.ok(&["get", "clusters", "-o", "wide"]);
    assert!(wide.contains("apiserver=1.34.2,scheduler=1.34.2,controller-manager=1.34.2"), "{wide}");
    let explain = k.ok(&["explain", "cluster.spec.version"]);
    assert!(explain.contains("starts an Upgrade"), "{explain}");
    // kubectl wraps descriptions: compare with single spaces.
    let explain = |field: &str| k.ok(&["explain", field]).split_whitespace().collect::<Vec<_>>().join(" ");
    let roll = explain("upgrade.spec.rollNodepools");
    assert!(
        roll.contains("rollNodepools <boolean>") && roll.contains("evict one, wait until its replacement"),
        "{roll}"
    );
    let expiration = explain("kubeconfigrequest.spec.expirationSeconds");
    assert!(
        expiration.contains("expirationSeconds <integer>") && expiration.contains("at most 30 days (2592000)"),
        "{expiration}"
    );

    // 2. Published versions become available; others are refused with the list.
    for v in ["1.34.3", "1.35.0"] {
        assert_eq!(s.zone.publish_version(v).await.0, 200);
    }
    wait_for("the new versions to be available", Duration::from_secs(20), || {
        let k = k.clone();
        async move {
            let c = get(&k, &["get", "cluster", "demo"]);
            (c["status"]["availableVersions"] == json!(["1.34.3", "1.35.0"])).then_some(())
        }
    })
    .await;
    let err = k.fails(&["patch", "cluster/demo", "--type=merge", "-p", r#"{"spec":{"version":"1.33.6"}}"#]);
    assert!(err.contains("is invalid") && err.contains("spec.version"), "422 Invalid: {err}");
    assert!(err.contains("\"1.34.3\", \"1.35.0\""), "{err}");

    // 3. Patching the version is an Upgrade; a second one meanwhile is a conflict.
    k.ok(&["patch", "cluster/demo", "--type=merge", "-p", r#"{"spec":{"version":"1.34.3"}}"#]);
    let upgrade = get(&k, &["get", "upgrade", "1.34.3"]);
    assert_eq!(
        (upgrade["status"]["from"].as_str(), upgrade["status"]["trigger"].as_str()),
        (Some("1.34.2"), Some("Manual"))
    );
    // A refused upgrade leaves the other fields of the same change alone.
    let both = r#"{"spec":{"version":"1.35.0","description":"not applied"}}"#;
    let err = k.fails(&["patch", "cluster/demo", "--type=merge", "-p", both]);
    assert!(err.contains("Error from server (Conflict)"), "409 Conflict: {err}");
    assert!(err.contains("in progress") || err.contains("being upgraded"), "{err}");
    let described = s.zone.client().await.get_sks_cluster(s.cluster).await.unwrap().spec.description;
    assert_ne!(described.as_deref(), Some("not applied"), "the description changed with a refused upgrade");
    let second = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "too-soon"}, "spec": {"version": "1.35.0"}});
    let out = k.with_stdin(&["create", "-f", "-"], &second.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Error from server (Conflict)"), "409 Conflict: {stderr}");
    assert!(stderr.contains("in progress"), "{stderr}");
    k.ok(&["wait", "--for=condition=Complete", "upgrade/1.34.3", "--timeout=60s"]);
    let c = wait_for("the cluster to report 1.34.3", Duration::from_secs(20), || {
        let k = k.clone();
        async move {
            let c = get(&k, &["get", "cluster", "demo"]);
            (c["status"]["version"] == "1.34.3").then_some(c)
        }
    })
    .await;
    let versions: Vec<&str> =
        c["status"]["controlPlane"].as_array().unwrap().iter().map(|x| x["version"].as_str().unwrap()).collect();
    assert_eq!(versions, vec!["1.34.3"; 3]);
    assert_eq!(condition(&c, "Progressing").unwrap()["status"], "False");

    // 4. Auto-upgrade: publishing a patch is an Upgrade with trigger Auto.
    k.ok(&["patch", "cluster/demo", "--type=merge", "-p", r#"{"spec":{"autoUpgrade":true}}"#]);
    wait_for("autoUpgrade to reach the orchestrator", Duration::from_secs(20), || async {
        let c = s.zone.client().await.get_sks_cluster(s.cluster).await.ok()?;
        (c.spec.auto_upgrade == Some(true)).then_some(())
    })
    .await;
    assert_eq!(s.zone.publish_version("1.34.4").await.0, 200);
    let auto = wait_for("an automatic Upgrade", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let out = k.run(&["get", "upgrade", "1.34.4", "-o", "json"]);
            serde_json::from_slice::<Value>(&out.stdout).ok()
        }
    })
    .await;
    assert_eq!(auto["status"]["trigger"], "Auto");
    k.ok(&["wait", "--for=condition=Complete", "upgrade/1.34.4", "--timeout=60s"]);
    let table = k.ok(&["get", "upgrades"]);
    assert!(table.contains("Auto") && table.contains("Manual") && table.contains("Succeeded"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrades_replace_nodes_one_at_a_time_and_stop_on_a_stuck_replacement() {
    let mut s = start(&["--upgrade-replacement-timeout", "12s"], 150).await;
    let k = s.kubectl();
    assert_eq!(s.zone.publish_version("1.35.0").await.0, 200);
    let nodes: Api<Node> = Api::all(s.kube().client().await);
    // Sample Ready nodes for the whole roll.
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (nodes, lowest) = (nodes.clone(), lowest.clone());
        tokio::spawn(async move {
            loop {
                lowest.fetch_min(ready_initialized(&nodes).await, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let roll = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "to-1-35"}, "spec": {"version": "1.35.0", "rollNodepools": true}});
    let out = k.with_stdin(&["create", "-f", "-"], &roll.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = wait_phase(&k, "to-1-35", "Succeeded", Duration::from_secs(150)).await;
    sampler.abort();
    assert!(
        lowest.load(Ordering::SeqCst) >= 2,
        "fewer than 2 Ready nodes during the roll: {}",
        lowest.load(Ordering::SeqCst)
    );
    let progress = &done["status"]["nodepools"][0];
    assert_eq!(
        (progress["name"].as_str(), progress["replaced"].as_i64(), progress["total"].as_i64()),
        (Some("workers"), Some(3), Some(3)),
        "{done}"
    );
    assert_eq!(condition(&done, "Complete").unwrap()["status"], "True");
    // Every instance runs the nodepool's new template.
    let client = s.zone.client().await;
    let np = client.get_sks_cluster(s.cluster).await.unwrap().nodepools.remove(0);
    let members = client.get_instance_pool(np.instance_pool.unwrap().id).await.unwrap().instances;
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(client.get_instance(m.id).await.unwrap().template, np.template, "instance {} not rolled", m.id);
    }
    wait_for("3 Ready nodes after the roll", Duration::from_secs(30), || async {
        (ready_initialized(&nodes).await == 3).then_some(())
    })
    .await;
    // The history, with this Upgrade's own name and roll progress, survives a restart.
    s.restart_apiserver();
    let again = wait_for("the upgrade after a restart", Duration::from_secs(30), || {
        let k = k.clone();
        async move { serde_json::from_slice::<Value>(&k.run(&["get", "upgrade", "to-1-35", "-o", "json"]).stdout).ok() }
    })
    .await;
    assert_eq!(again["status"], done["status"]);

    // Without sks-ccm no replacement gets initialized: the roll stops as Failed, evicting nothing more.
    if let Some(mut ccm) = s.ccm.take() {
        ccm.kill();
    }
    assert_eq!(s.zone.publish_version("1.35.1").await.0, 200);
    let stuck = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "stuck"}, "spec": {"version": "1.35.1", "rollNodepools": true}});
    let out = k.with_stdin(&["create", "-f", "-"], &stuck.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let failed = wait_phase(&k, "stuck", "Failed", Duration::from_secs(90)).await;
    let message = failed["status"]["message"].as_str().unwrap();
    assert!(message.contains("did not join, get initialized and become Ready within 12s"), "{message}");
    assert_eq!(condition(&failed, "Failed").unwrap()["status"], "True");
    assert_eq!(failed["status"]["nodepools"][0]["replaced"], 0);
    let np = client.get_sks_cluster(s.cluster).await.unwrap().nodepools.remove(0);
    let members = client.get_instance_pool(np.instance_pool.unwrap().id).await.unwrap().instances;
    let mut old = 0;
    for m in &members {
        if client.get_instance(m.id).await.unwrap().template != np.template {
            old += 1;
        }
    }
    assert_eq!((members.len(), old), (3, 2), "one node evicted and replaced, the others left alone");
}

/// A child process (kubectl --watch) killed when the test ends, even by a panic.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        sks_e2e::kill_child(&mut self.0);
    }
}

/// The Upgrades a replica lists.
fn upgrades(k: &Kubectl) -> Vec<Value> {
    let out = k.run(&["get", "upgrades", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// name → uid of the Upgrades to `version`.
fn upgrades_to(k: &Kubectl, version: &str) -> Vec<(String, String)> {
    upgrades(k)
        .iter()
        .filter(|u| u["spec"]["version"] == version)
        .map(|u| {
            (u["metadata"]["name"].as_str().unwrap().to_owned(), u["metadata"]["uid"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_record_and_roll_each_upgrade_once() {
    // Replica A behind the aggregator, replica B reached directly; both share the ConfigMap store.
    let s = start(&["--upgrade-replacement-timeout", "60s"], 150).await;
    let b = s
        .start_apiserver(&ApiServerOptions { direct: true, ..ApiServerOptions::args(&["--refresh-interval", "1s"]) })
        .await;
    let (ka, kb) = (s.kubectl(), b.kubectl());
    let lease = wait_for("a holder of the upgrades Lease", Duration::from_secs(30), || {
        let k = s.kubectl();
        async move {
            let out = k.run(&["get", "lease", "-n", "kube-system", "sks-apiserver-upgrades", "-o", "json"]);
            let l: Value = serde_json::from_slice(&out.stdout).ok()?;
            l["spec"]["holderIdentity"].as_str().map(str::to_owned)
        }
    })
    .await;
    assert!(!lease.is_empty());

    // An automatic upgrade is one Upgrade, the same object on both replicas.
    ka.ok(&["patch", "cluster/demo", "--type=merge", "-p", r#"{"spec":{"autoUpgrade":true}}"#]);
    wait_for("autoUpgrade to reach the orchestrator", Duration::from_secs(20), || async {
        let c = s.zone.client().await.get_sks_cluster(s.cluster).await.ok()?;
        (c.spec.auto_upgrade == Some(true)).then_some(())
    })
    .await;
    assert_eq!(s.zone.publish_version("1.34.3").await.0, 200);
    let (on_a, on_b) = wait_for("the automatic Upgrade, complete, on both replicas", Duration::from_secs(60), || {
        let (ka, kb) = (ka.clone(), kb.clone());
        async move {
            let done = |k: &Kubectl| {
                upgrades(k).iter().any(|u| u["spec"]["version"] == "1.34.3" && u["status"]["phase"] == "Succeeded")
            };
            (done(&ka) && done(&kb)).then(|| (upgrades_to(&ka, "1.34.3"), upgrades_to(&kb, "1.34.3")))
        }
    })
    .await;
    assert_eq!(on_a.len(), 1, "one Upgrade for one automatic upgrade: {on_a:?}");
    assert_eq!(on_a, on_b, "the same Upgrade (name and uid) on both replicas");
    let auto = get(&kb, &["get", "upgrade", &on_a[0].0]);
    assert_eq!(auto["status"]["trigger"], "Auto", "{auto}");
    let stored = s.kubectl().ok(&[
        "get",
        "cm",
        "-n",
        "kube-system",
        "-l",
        "sks.exoscale.net/metadata-of=upgrades",
        "-o",
        "name",
    ]);
    assert_eq!(stored.lines().count(), 1, "one stored Upgrade: {stored}");

    // A rolling upgrade created through B is listed by A within seconds, and A refuses another meanwhile.
    kb.ok(&["patch", "cluster/demo", "--type=merge", "-p", r#"{"spec":{"autoUpgrade":false}}"#]);
    assert_eq!(s.zone.publish_version("1.35.0").await.0, 200);
    let nodes: Api<Node> = Api::all(s.kube().client().await);
    let client = s.zone.client().await;
    let np = client.get_sks_cluster(s.cluster).await.unwrap().nodepools.remove(0);
    let pool = np.instance_pool.unwrap().id;
    // Sample Ready nodes and every instance id the pool ever had, for the whole roll.
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let sampler = {
        let (nodes, lowest, seen, client) = (nodes.clone(), lowest.clone(), seen.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                lowest.fetch_min(ready_initialized(&nodes).await, Ordering::SeqCst);
                if let Ok(p) = client.get_instance_pool(pool).await {
                    seen.lock().unwrap().extend(p.instances.iter().map(|i| i.id));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_for("the sampler's first look", Duration::from_secs(10), || async {
        (seen.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    // A watch on A, open before B creates the Upgrade, gets it as an event.
    let mut watch = ka
        .command()
        .args(["get", "upgrades", "--watch", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get --watch");
    let stdout = watch.stdout.take().unwrap();
    let watch = KillOnDrop(Some(watch));
    let (tx, events) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let events = std::sync::Mutex::new(events);
    let watched = |name: String| {
        let got = events.lock().unwrap().try_iter().any(|l| l.ends_with(&format!("/{name}")));
        async move { got.then_some(()) }
    };
    // Its list is printed (the automatic Upgrade): what comes after is a watch event.
    wait_for("the watch on A to list", Duration::from_secs(10), || watched(on_a[0].0.clone())).await;
    let roll = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "via-b"}, "spec": {"version": "1.35.0", "rollNodepools": true}});
    let out = kb.with_stdin(&["create", "-f", "-", "-o", "json"], &roll.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = wait_for("replica A to list B's Upgrade", Duration::from_secs(5), || {
        let ka = ka.clone();
        async move { upgrades(&ka).into_iter().find(|u| u["metadata"]["name"] == "via-b") }
    })
    .await;
    assert_eq!(listed["metadata"]["uid"], created["metadata"]["uid"]);
    wait_for("A's watch to show B's Upgrade", Duration::from_secs(10), || watched("via-b".to_owned())).await;
    drop(watch);
    // A version the cluster may move to, before or after the control plane's part: only "busy" refuses it.
    assert_eq!(s.zone.publish_version("1.35.1").await.0, 200);
    let other = json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "Upgrade", "metadata": {"name": "via-a"}, "spec": {"version": "1.35.1"}});
    let out = ka.with_stdin(&["create", "-f", "-"], &other.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Error from server (Conflict)"), "409 Conflict: {stderr}");

    // Only the leader rolls: each old node evicted once, one replacement each, never two nodes down.
    let done = wait_phase(&ka, "via-b", "Succeeded", Duration::from_secs(150)).await;
    wait_for("3 Ready nodes after the roll", Duration::from_secs(30), || async {
        (ready_initialized(&nodes).await == 3).then_some(())
    })
    .await;
    sampler.abort();
    let progress = &done["status"]["nodepools"][0];
    assert_eq!((progress["replaced"].as_i64(), progress["total"].as_i64()), (Some(3), Some(3)), "{done}");
    assert!(progress.get("pendingReplacement").is_none(), "{done}");
    let ever = seen.lock().unwrap().len();
    assert_eq!(ever, 6, "3 old instances and exactly 3 replacements, none evicted twice or extra");
    assert!(lowest.load(Ordering::SeqCst) >= 2, "two nodes down at once: {}", lowest.load(Ordering::SeqCst));
    let members = client.get_instance_pool(pool).await.unwrap().instances;
    assert_eq!(members.len(), 3);
    assert_eq!(upgrades_to(&ka, "1.35.0"), upgrades_to(&kb, "1.35.0"));
    assert_eq!(upgrades_to(&kb, "1.35.0").len(), 1, "no duplicate of B's Upgrade");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_requests_issue_working_credentials_to_those_allowed() {
    let mut s = start(&[], 150).await;
    let alice = kubectl_as(&s, "alice-token");
    let request = |name: &str, seconds: i64| {
        json!({"apiVersion": "sks.exoscale.net/v1alpha1", "kind": "KubeconfigRequest", "metadata": {"name": name},
            "spec": {"user": "carol", "groups": ["testers"], "expirationSeconds": seconds}})
        .to_string()
    };
    let out = alice.with_stdin(&["create", "-f", "-", "-o", "json"], &request("carol", 3600));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kubeconfig = issued["status"]["kubeconfig"].as_str().expect("a kubeconfig");
    let expires: jiff::Timestamp = issued["status"]["expirationTimestamp"].as_str().unwrap().parse().unwrap();
    let lifetime = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3500..=3600).contains(&lifetime), "{lifetime}");
    // Pointed at this cluster's API, it authenticates as carol in group testers.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig).unwrap();
    doc["clusters"][0]["cluster"]["server"] = serde_yaml::Value::String(s.kube().url.clone());
    let path = s.kube().dir().join("carol.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let carol = Kubectl::new(path, s.kube().dir().join("cache-carol"));
    carol.ok(&["get", "namespaces"]);
    carol.ok(&["get", "configmaps", "-A"]);
    let denied = carol.fails(&["get", "secrets", "-A"]);
    assert!(denied.contains("User \"carol\""), "{denied}");
    // Not stored: nothing to get back.
    let err = s.kubectl().fails(&["get", "kubeconfigrequest", "carol"]);
    assert!(err.contains("MethodNotAllowed") && err.contains("not supported"), "{err}");

    // Over 30 days: 422 naming the field.
    let out = alice.with_stdin(&["create", "-f", "-"], &request("long", 31 * 86_400));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is invalid"), "422 Invalid: {stderr}");
    assert!(stderr.contains("spec.expirationSeconds") && stderr.contains("30 days"), "{stderr}");
    // Without the right: 403.
    let bob = kubectl_as(&s, "bob-token");
    let out = bob.with_stdin(&["create", "-f", "-"], &request("mine", 3600));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("forbidden") && stderr.contains("User \"bob\""), "{stderr}");
    bob.ok(&["get", "clusters"]);

    // The cluster's API and sks-apiserver stopped together, as `hack/local-up` stops them: it exits.
    s.kube_mut().kill();
    assert!(s.sks_mut().stop().is_some_and(|st| st.success()), "SIGTERM stops sks-apiserver with its API gone");
}
