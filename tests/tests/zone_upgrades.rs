//! SKS upgrades in the local zone: a published version is listed, upgrades are
//! validated, control-plane components are replaced one at a time (and not
//! again after a `kill -9`), auto-upgrades follow a published patch, nodepools
//! follow the control plane, and the test switches make components unhealthy
//! or an upgrade fail.

use std::time::{Duration, Instant};

use orchestrator::Client;
use orchestrator::model::*;
use serde_json::{Value, json};
use sks_e2e::zone::{Zone, ZoneOptions, signed_request};
use uuid::Uuid;

const APISERVER: &str = "kube-apiserver";
const SCHEDULER: &str = "kube-scheduler";
const CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// The order in which an upgrade replaces the components.
const ORDER: [&str; 3] = [APISERVER, SCHEDULER, CONTROLLER_MANAGER];

/// A zone whose upgrades take `step_ms` per component.
fn zone(step_ms: u64) -> Zone {
    Zone::start(ZoneOptions { extra: vec!["--component-upgrade-ms".into(), step_ms.to_string()], ..Default::default() })
}

async fn create_cluster(c: &Client, name: &str, version: &str, auto_upgrade: bool) -> Uuid {
    let op = c
        .create_sks_cluster(&CreateSksCluster {
            spec: SksClusterSpec {
                name: Some(name.into()),
                auto_upgrade: auto_upgrade.then_some(true),
                ..Default::default()
            },
            level: SksClusterLevel::Pro,
            version: version.into(),
            cni: None,
            create_default_security_group: None,
        })
        .await
        .unwrap();
    op.reference_id().expect("cluster id")
}

async fn inspection(c: &Client, cluster: Uuid) -> Value {
    c.get_sks_cluster_inspection(cluster).await.unwrap()
}

/// One component of an inspection, by name.
fn component<'i>(inspection: &'i Value, name: &str) -> &'i Value {
    inspection["control-plane"]["components"]
        .as_array()
        .expect("control-plane.components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {inspection}"))
}

/// (name, state, version) of every component, in inspection order.
fn states(inspection: &Value) -> Vec<(String, String, String)> {
    inspection["control-plane"]["components"]
        .as_array()
        .expect("control-plane.components")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("state"), s("version"))
        })
        .collect()
}

/// Asks for an upgrade without waiting for it: status and the operation (or error) body.
async fn request_upgrade(zone: &Zone, cluster: Uuid, version: &str) -> (u16, Value) {
    let body = json!({ "version": version }).to_string();
    signed_request(&zone.endpoint(), "PUT", &format!("/sks-cluster/{cluster}/upgrade"), Some(&body), None, 600).await
}

/// Polls the inspection every few milliseconds until `done` holds, keeping
/// every inspection seen (the last one satisfies `done`); at most 30 s.
async fn observe(c: &Client, cluster: Uuid, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let now = inspection(c, cluster).await;
        let finished = done(&now);
        seen.push(now);
        if finished {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out; last inspection: {}", seen.last().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn upgrade_ended(inspection: &Value) -> bool {
    inspection["upgrades"][0]["state"].as_str().is_some_and(|s| s != "running")
}

/// Checks the one-at-a-time invariant on every inspection seen: at most one
/// component is `upgrading`, those before it run `to`, those after it wait.
fn assert_one_at_a_time(seen: &[Value], from: &str, to: &str) {
    for inspection in seen {
        let states = states(inspection);
        let upgrading: Vec<usize> = (0..states.len()).filter(|&i| states[i].1 == "upgrading").collect();
        assert!(upgrading.len() <= 1, "two components upgrading at once: {states:?}");
        if let Some(&i) = upgrading.first() {
            for (j, (name, state, version)) in states.iter().enumerate() {
                let expected = if j < i {
                    ("running", to)
                } else if j == i {
                    ("upgrading", from)
                } else {
                    ("pending", from)
                };
                assert_eq!((state.as_str(), version.as_str()), expected, "{name} while {} upgrades", states[i].0);
            }
        }
    }
}

/// The components in the order they were seen `upgrading`.
fn replacement_order(seen: &[Value]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for inspection in seen {
        for (name, state, _) in states(inspection) {
            if state == "upgrading" && order.last() != Some(&name) {
                order.push(name);
            }
        }
    }
    order
}

fn timestamp(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}")).parse().unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_versions_are_listed_newest_first_and_persist() {
    let mut zone = zone(100);
    let c = zone.client().await;
    let (status, body) = zone.publish_version("1.34.3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sks-cluster-versions"][0], "1.34.3", "{body}");
    assert_eq!(body["auto-upgrades"], json!([]), "no cluster to upgrade");
    assert_eq!(c.list_sks_cluster_versions().await.unwrap()[0], "1.34.3");

    let (status, body) = zone.publish_version("1.34.3").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("1.34.3 is already published"), "{body}");
    for bad in ["1.35", "v1.35.0", "1.35.x", "1.35.0.1", "1.035.0", ""] {
        let (status, body) = zone.publish_version(bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("expected MAJOR.MINOR.PATCH"), "{bad:?}: {body}");
    }
    let (status, body) = zone.admin("PUT", "/admin/versions", Some(&json!({"v": "1.35.0"}))).await;
    assert_eq!(status, 400, "a body without a version: {body}");

    // An older patch sorts into its place, not first.
    assert_eq!(zone.publish_version("1.33.7").await.0, 200);
    let expected = ["1.34.3", "1.34.2", "1.34.1", "1.33.7", "1.33.6", "1.33.5", "1.32.10"];
    assert_eq!(c.list_sks_cluster_versions().await.unwrap(), expected);
    zone.kill9();
    zone.restart();
    let c = zone.client().await;
    assert_eq!(c.list_sks_cluster_versions().await.unwrap(), expected, "the catalog survives a kill -9");
    // A cluster may be created at a published version.
    create_cluster(&c, "new", "1.34.3", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_validated_and_one_runs_at_a_time() {
    let zone = zone(300);
    let c = zone.client().await;
    let id = create_cluster(&c, "validated", "1.33.5", false).await;

    let (status, body) = request_upgrade(&zone, id, "1.34.1").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("allowed: [1.33.6, 1.34.2]"), "{body}");
    let (status, body) = request_upgrade(&zone, id, "1.33.5").await;
    assert_eq!(status, 400, "the current version is no target: {body}");

    let (status, op) = request_upgrade(&zone, id, "1.34.2").await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "pending", "{op}");
    for version in ["1.33.6", "1.34.2"] {
        let (status, body) = request_upgrade(&zone, id, version).await;
        assert_eq!(status, 409, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("already upgrading to 1.34.2"), "{message}");
    }
    let op: Operation = serde_json::from_value(op).unwrap();
    assert_eq!(c.wait(op).await.unwrap().state, OperationState::Success);
    assert_eq!(c.get_sks_cluster(id).await.unwrap().version, "1.34.2");
    let (status, body) = request_upgrade(&zone, id, "1.34.2").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("allowed: []"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_are_replaced_one_at_a_time() {
    let zone = zone(300);
    let c = zone.client().await;
    let id = create_cluster(&c, "rolling", "1.33.5", false).await;
    let before = inspection(&c, id).await;
    assert_eq!(before["upgrades"], json!([]));
    let old_hashes: Vec<Value> = ORDER.iter().map(|n| component(&before, n)["manifest-hash"].clone()).collect();
    for name in ORDER {
        let comp = component(&before, name);
        assert_eq!((comp["state"].as_str(), comp["version"].as_str()), (Some("running"), Some("1.33.5")));
        assert_eq!(comp["healthy"], true);
        assert!(comp["manifest-hash"].as_str().unwrap().starts_with("sha256:"), "{comp}");
    }

    let (status, op) = request_upgrade(&zone, id, "1.34.2").await;
    assert_eq!(status, 200, "{op}");
    let cluster = c.get_sks_cluster(id).await.unwrap();
    assert_eq!((cluster.state, cluster.version.as_str()), (SksClusterState::Upgrading, "1.33.5"));
    let seen = observe(&c, id, upgrade_ended).await;

    assert_one_at_a_time(&seen, "1.33.5", "1.34.2");
    assert!(
        seen.iter().any(|i| states(i).iter().filter(|(_, s, _)| s == "upgrading").count() == 1),
        "no inspection showed a component upgrading"
    );
    assert_eq!(replacement_order(&seen), ORDER, "each component replaced once, in order");
    for i in &seen[..seen.len() - 1] {
        assert_eq!(i["version"], "1.33.5", "the cluster's version moves only when every component runs the target");
    }

    let op: Operation = serde_json::from_value(op).unwrap();
    let op_id = op.id;
    assert_eq!(c.wait(op).await.unwrap().state, OperationState::Success);
    let after = inspection(&c, id).await;
    for (name, old) in ORDER.iter().zip(&old_hashes) {
        let comp = component(&after, name);
        assert_eq!((comp["state"].as_str(), comp["version"].as_str()), (Some("running"), Some("1.34.2")), "{name}");
        assert_ne!(&comp["manifest-hash"], old, "{name}'s manifest changed");
    }
    let cluster = c.get_sks_cluster(id).await.unwrap();
    assert_eq!((cluster.state, cluster.version.as_str()), (SksClusterState::Running, "1.34.2"));
    let upgrades = after["upgrades"].as_array().unwrap();
    assert_eq!(upgrades.len(), 1);
    let u = &upgrades[0];
    assert_eq!(
        (u["from"].as_str(), u["to"].as_str(), u["trigger"].as_str(), u["state"].as_str()),
        (Some("1.33.5"), Some("1.34.2"), Some("manual"), Some("succeeded")),
        "{u}"
    );
    assert!(timestamp(&u["started-at"]) <= timestamp(&u["completed-at"]), "{u}");
    assert!(Uuid::parse_str(u["id"].as_str().unwrap()).is_ok(), "{u}");
    assert_eq!(u["operation-id"], op_id.to_string());
    assert!(!u["message"].as_str().unwrap().is_empty(), "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_resumes_after_kill_9_without_replacing_finished_components() {
    let mut zone = zone(800);
    let c = zone.client().await;
    let id = create_cluster(&c, "crashy", "1.33.5", false).await;
    let (status, op) = request_upgrade(&zone, id, "1.34.2").await;
    assert_eq!(status, 200, "{op}");
    let mut seen = observe(&c, id, |i| {
        component(i, APISERVER)["version"] == "1.34.2" && component(i, SCHEDULER)["state"] == "upgrading"
    })
    .await;
    let apiserver_hash = component(seen.last().unwrap(), APISERVER)["manifest-hash"].clone();

    zone.kill9();
    zone.restart();
    let c = zone.client().await;
    let resumed = observe(&c, id, upgrade_ended).await;
    for i in &resumed {
        let api = component(i, APISERVER);
        assert_eq!(
            (api["state"].as_str(), api["version"].as_str(), &api["manifest-hash"]),
            (Some("running"), Some("1.34.2"), &apiserver_hash),
            "the replaced kube-apiserver is not replaced again: {i}"
        );
    }
    seen.extend(resumed);
    assert_one_at_a_time(&seen, "1.33.5", "1.34.2");
    assert_eq!(replacement_order(&seen), ORDER);

    let last = seen.last().unwrap();
    assert_eq!(last["upgrades"].as_array().unwrap().len(), 1, "{last}");
    assert_eq!(last["upgrades"][0]["state"], "succeeded");
    assert!(states(last).iter().all(|(_, s, v)| s == "running" && v == "1.34.2"), "{last}");
    let op = c.get_operation(op["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
    assert_eq!(op.state, OperationState::Success, "the operation resumed and ended with the upgrade");
    assert_eq!(c.get_sks_cluster(id).await.unwrap().version, "1.34.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_a_patch_auto_upgrades_the_clusters_that_opted_in() {
    let zone = zone(100);
    let c = zone.client().await;
    let auto = create_cluster(&c, "auto", "1.34.2", true).await;
    let manual = create_cluster(&c, "manual", "1.34.2", false).await;
    let other_minor = create_cluster(&c, "other-minor", "1.33.6", true).await;

    let (status, body) = zone.publish_version("1.34.3").await;
    assert_eq!(status, 200, "{body}");
    let started = body["auto-upgrades"].as_array().unwrap();
    assert_eq!(started.len(), 1, "{body}");
    assert_eq!(
        (started[0]["cluster-id"].as_str(), started[0]["to"].as_str()),
        (Some(&*auto.to_string()), Some("1.34.3"))
    );

    let seen = observe(&c, auto, upgrade_ended).await;
    assert_one_at_a_time(&seen, "1.34.2", "1.34.3");
    let last = seen.last().unwrap();
    let u = &last["upgrades"][0];
    assert_eq!(
        (u["from"].as_str(), u["to"].as_str(), u["trigger"].as_str(), u["state"].as_str()),
        (Some("1.34.2"), Some("1.34.3"), Some("auto"), Some("succeeded")),
        "{u}"
    );
    assert_eq!(u["id"], started[0]["upgrade-id"]);
    let op = c.get_operation(u["operation-id"].as_str().unwrap().parse().unwrap()).await.unwrap();
    assert_eq!(op.state, OperationState::Success);
    assert_eq!(c.get_sks_cluster(auto).await.unwrap().version, "1.34.3");

    for (id, version) in [(manual, "1.34.2"), (other_minor, "1.33.6")] {
        let i = inspection(&c, id).await;
        assert_eq!(i["upgrades"], json!([]), "{i}");
        assert_eq!(c.get_sks_cluster(id).await.unwrap().version, version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepools_follow_the_control_plane_and_new_instances_get_the_new_template() {
    let zone = zone(50);
    let c = zone.client().await;
    let id = create_cluster(&c, "pools", "1.33.5", false).await;
    let medium = c.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium").unwrap();
    let op = c
        .create_sks_nodepool(
            id,
            &CreateSksNodepool {
                spec: SksNodepoolSpec {
                    name: Some("workers".into()),
                    instance_type: Some(Ref::from(medium.id)),
                    disk_size: Some(20),
                    ..Default::default()
                },
                size: 2,
                addons: None,
            },
        )
        .await
        .unwrap();
    let np_id = op.reference_id().unwrap();
    let template = |v: &'static str| {
        let c = c.clone();
        async move { Ref::from(c.get_active_nodepool_template(v, "standard").await.unwrap().active_template.unwrap()) }
    };
    let (old, new) = (template("1.33.5").await, template("1.34.2").await);
    let np = c.get_sks_nodepool(id, np_id).await.unwrap();
    assert_eq!((np.version.as_deref(), np.template), (Some("1.33.5"), Some(old)));
    let pool = np.instance_pool.unwrap().id;
    let members = |c: Client| async move {
        let filter = InstanceFilter { manager_id: Some(pool), ..Default::default() };
        c.list_instances(&filter).await.unwrap()
    };
    let before = members(c.clone()).await;
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|i| i.template == Some(old)));

    c.upgrade_sks_cluster(id, "1.34.2").await.unwrap();
    let np = c.get_sks_nodepool(id, np_id).await.unwrap();
    assert_eq!((np.version.as_deref(), np.template), (Some("1.34.2"), Some(new)), "the nodepool follows");
    assert_eq!(c.get_instance_pool(pool).await.unwrap().spec.template, Some(new));
    let kept = members(c.clone()).await;
    assert_eq!(kept, before, "existing members keep their template until they are replaced");

    c.scale_sks_nodepool(id, np_id, 3).await.unwrap();
    let scaled = members(c.clone()).await;
    let added: Vec<&Instance> = scaled.iter().filter(|i| !before.iter().any(|b| b.id == i.id)).collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].template, Some(new), "a scale-up runs the new template");
    assert_eq!(c.get_instance(added[0].id).await.unwrap().template, Some(new));

    c.delete_instance(before[0].id).await.unwrap();
    let replaced = members(c.clone()).await;
    assert_eq!(replaced.len(), 3);
    let replacement = replaced.iter().find(|i| !scaled.iter().any(|s| s.id == i.id)).expect("a replacement");
    assert_eq!(replacement.template, Some(new), "the replacement of a deleted old member runs the new template");
    assert_eq!(replaced.iter().filter(|i| i.template == Some(old)).count(), 1, "one old member is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switches_mark_components_unhealthy_and_fail_an_upgrade() {
    let zone = zone(100);
    let c = zone.client().await;
    let id = create_cluster(&c, "flaky", "1.33.5", false).await;

    // Health switch.
    let path = format!("/admin/sks-cluster/{id}/components/{SCHEDULER}");
    let (status, body) = zone.admin("PUT", &path, Some(&json!({"healthy": false}))).await;
    assert_eq!((status, &body["healthy"]), (200, &json!(false)), "{body}");
    let i = inspection(&c, id).await;
    let health: Vec<&Value> = ORDER.iter().map(|n| &component(&i, n)["healthy"]).collect();
    assert_eq!(health, [&json!(true), &json!(false), &json!(true)]);
    assert_eq!(zone.admin("PUT", &path, Some(&json!({"healthy": true}))).await.0, 200);
    assert_eq!(component(&inspection(&c, id).await, SCHEDULER)["healthy"], true);
    let (status, _) =
        zone.admin("PUT", &format!("/admin/sks-cluster/{id}/components/etcd"), Some(&json!({"healthy": false}))).await;
    assert_eq!(status, 404);
    let (status, _) = zone
        .admin(
            "PUT",
            &format!("/admin/sks-cluster/{}/components/{SCHEDULER}", Uuid::new_v4()),
            Some(&json!({"healthy": false})),
        )
        .await;
    assert_eq!(status, 404);

    // Failure switch.
    let fail = format!("/admin/sks-cluster/{id}/fail-next-upgrade");
    let (status, body) = zone.admin("PUT", &fail, Some(&json!({"component": "etcd"}))).await;
    assert_eq!(status, 400, "{body}");
    let message = "kube-scheduler v1.34.2 crash-looped (injected)";
    let (status, body) = zone.admin("PUT", &fail, Some(&json!({"component": SCHEDULER, "message": message}))).await;
    assert_eq!(status, 200, "{body}");
    let err = c.upgrade_sks_cluster(id, "1.34.2").await.unwrap_err();
    match &err {
        orchestrator::Error::OperationFailed { state, message: m, .. } => {
            assert_eq!((state, m.as_str()), (&OperationState::Failure, message));
        }
        other => panic!("expected a failed operation, got {other}"),
    }
    let i = inspection(&c, id).await;
    let u = &i["upgrades"][0];
    assert_eq!((u["state"].as_str(), u["message"].as_str()), (Some("failed"), Some(message)), "{u}");
    assert!(u["completed-at"].is_string(), "{u}");
    let expected = [
        (APISERVER.to_owned(), "running".to_owned(), "1.34.2".to_owned()),
        (SCHEDULER.to_owned(), "running".to_owned(), "1.33.5".to_owned()),
        (CONTROLLER_MANAGER.to_owned(), "running".to_owned(), "1.33.5".to_owned()),
    ];
    assert_eq!(states(&i), expected, "components keep what they reached");
    let cluster = c.get_sks_cluster(id).await.unwrap();
    assert_eq!((cluster.state, cluster.version.as_str()), (SksClusterState::Running, "1.33.5"));

    // The switch fired once: a retry replaces only what does not run the target yet.
    let (status, op) = request_upgrade(&zone, id, "1.34.2").await;
    assert_eq!(status, 200, "{op}");
    let seen = observe(&c, id, upgrade_ended).await;
    assert_eq!(replacement_order(&seen), [SCHEDULER, CONTROLLER_MANAGER]);
    let last = seen.last().unwrap();
    let states_of: Vec<&str> =
        last["upgrades"].as_array().unwrap().iter().map(|u| u["state"].as_str().unwrap()).collect();
    assert_eq!(states_of, ["succeeded", "failed"], "newest first, the whole history");
    assert_eq!(c.get_sks_cluster(id).await.unwrap().version, "1.34.2");

    // A disarmed switch fails nothing.
    assert_eq!(zone.publish_version("1.34.3").await.0, 200);
    assert_eq!(zone.admin("PUT", &fail, Some(&json!({"component": APISERVER}))).await.0, 200);
    assert_eq!(zone.admin("DELETE", &fail, None).await.0, 200);
    c.upgrade_sks_cluster(id, "1.34.3").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_of_new_instances_report_the_new_version() {
    use k8s_openapi::api::core::v1::Node;
    use sks_e2e::env::TestEnv;

    let zone = ZoneOptions {
        seed: true,
        extra: ["--component-upgrade-ms", "50", "--kubelet-lease-interval-seconds", "1"].map(String::from).to_vec(),
        ..Default::default()
    };
    let env = TestEnv::builder().zone(zone).kubelets().start().await;
    let (zone, c) = (&env.zone, &env.client);
    let cluster = c.get_sks_cluster(env.cluster).await.unwrap();
    let np = cluster.nodepools[0].clone();
    let nodes: kube::Api<Node> = kube::Api::all(env.kube().client().await);
    let versions = || async {
        let list = nodes.list(&Default::default()).await.unwrap().items;
        list.into_iter()
            .filter_map(|n| Some((n.metadata.name?, n.status?.node_info?.kubelet_version)))
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let old = sks_e2e::wait_for("3 nodes registered", Duration::from_secs(30), || async {
        let v = versions().await;
        (v.len() == 3).then_some(v)
    })
    .await;
    assert!(old.values().all(|v| v == "v1.34.2"), "{old:?}");

    assert_eq!(zone.publish_version("1.34.3").await.0, 200);
    c.upgrade_sks_cluster(cluster.id, "1.34.3").await.unwrap();
    c.scale_sks_nodepool(cluster.id, np.id, 4).await.unwrap();
    let now = sks_e2e::wait_for("the new node registered", Duration::from_secs(30), || async {
        let v = versions().await;
        (v.len() == 4).then_some(v)
    })
    .await;
    for (name, version) in &now {
        let expected = if old.contains_key(name) { "v1.34.2" } else { "v1.34.3" };
        assert_eq!(version, expected, "{name}: old nodes keep their kubelet until replaced, new ones run the new one");
    }
}
