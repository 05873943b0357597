//! sks-apiserver restarted under many open watches, while sks-zone fails 20%
//! of its reads (503), throttles 10% (429) and delays them 200 ms: every
//! watcher (a client-go-style reflector: list, watch, relist on 410) ends with
//! exactly the nodepools the orchestrator has, with their sizes, after changes
//! made while the server was down (`kill -9`), while it came back, and after a
//! graceful (SIGTERM) restart. apiserver_restart.rs is the small version.
//!
//! Sizes: 100 watches either way (they are cheap); by default the quick run
//! makes 6 changes, `SKS_CHAOS_FULL=1` 24 (more nodepools created, scaled and
//! deleted around each restart).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use orchestrator::model::{CreateSksNodepool, Ref, SksNodepoolSpec};
use serde_json::json;
use sks_e2e::env::{ApiServerOptions, TestEnv};
use sks_e2e::kubectl::kube_client;
use uuid::Uuid;

const WATCHES: usize = 100;

/// (name -> replicas) as a watcher's store holds it.
fn seen(store: &reflector::Store<DynamicObject>) -> BTreeMap<String, i64> {
    store
        .state()
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), o.data["spec"]["replicas"].as_i64().unwrap_or(-1)))
        .collect()
}

/// The orchestrator's truth: (name -> size) of the cluster's nodepools.
async fn truth(c: &orchestrator::Client, cluster: Uuid) -> BTreeMap<String, i64> {
    let cluster = c.get_sks_cluster(cluster).await.unwrap();
    cluster.nodepools.iter().map(|n| (n.spec.name.clone().unwrap_or_default(), n.size)).collect()
}

/// Waits until every store holds `want`; fails naming how many do not and one of them.
async fn converged(stores: &[reflector::Store<DynamicObject>], want: &BTreeMap<String, i64>, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let wrong: Vec<BTreeMap<String, i64>> = stores.iter().map(seen).filter(|s| s != want).collect();
        if wrong.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: {} of {} watchers still wrong after 120 s, e.g. {:?}, want {want:?}",
            wrong.len(),
            stores.len(),
            wrong[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Changes {
    c: orchestrator::Client,
    cluster: Uuid,
    instance_type: Uuid,
    created: Vec<(String, Uuid)>,
}

impl Changes {
    async fn create(&mut self, name: &str, size: i64) {
        let spec = SksNodepoolSpec {
            name: Some(name.to_owned()),
            instance_type: Some(Ref::from(self.instance_type)),
            disk_size: Some(20),
            ..Default::default()
        };
        let op =
            self.c.create_sks_nodepool(self.cluster, &CreateSksNodepool { spec, size, addons: None }).await.unwrap();
        self.created.push((name.to_owned(), op.reference_id().unwrap()));
    }

    async fn scale(&self, name: &str, size: i64) {
        let id = self.id(name).await;
        self.c.scale_sks_nodepool(self.cluster, id, size).await.unwrap();
    }

    async fn delete(&mut self, name: &str) {
        let id = self.id(name).await;
        self.c.delete_sks_nodepool(self.cluster, id).await.unwrap();
        self.created.retain(|(n, _)| n != name);
    }

    async fn id(&self, name: &str) -> Uuid {
        let cluster = self.c.get_sks_cluster(self.cluster).await.unwrap();
        cluster.nodepools.iter().find(|n| n.spec.name.as_deref() == Some(name)).unwrap().id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_watchers_end_with_the_final_state_across_restarts() {
    let full = std::env::var("SKS_CHAOS_FULL").is_ok_and(|v| v == "1");
    let rounds = if full { 4 } else { 1 };
    let env = TestEnv::builder().start().await;
    // The test's own reads meet the injected faults too: retried until they pass (30% fail,
    // so 3 retries alone left about one call in 120 failing the test).
    let mut config = env.zone.client_config();
    config.retry.max_retries = 30;
    let c = sks_e2e::zone::client_for(config).await;
    let cluster = env.cluster;
    let medium = c.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium").unwrap();
    let mut changes = Changes { c: c.clone(), cluster, instance_type: medium.id, created: Vec::new() };
    changes.create("extra", 1).await;

    // Started once the cluster has a second nodepool.
    let mut api = env.start_apiserver(&ApiServerOptions::args(&["--refresh-interval", "300ms"])).await;
    let client = kube_client(&api.kubeconfig).await;
    let ar = ApiResource {
        group: "sks.exoscale.net".into(),
        version: "v1alpha1".into(),
        api_version: "sks.exoscale.net/v1alpha1".into(),
        kind: "NodePool".into(),
        plural: "nodepools".into(),
    };
    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..WATCHES {
        let writer = reflector::store::Writer::new(ar.clone());
        stores.push(writer.as_reader());
        let nodepools: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        // As client-go reflectors do, back off between failed watches instead of retrying hot.
        let stream = reflector(writer, watcher(nodepools, watcher::Config::default()).default_backoff());
        tasks.push(tokio::spawn(stream.for_each(|_| async {})));
    }
    let initial = converged(&stores, &truth(&c, cluster).await, "the initial state").await;

    // Only the server's reads fail: the test's own writes are not the point.
    let reads = ["get-sks-cluster", "list-sks-clusters", "list-instances", "get-instance"];
    env.zone
        .set_fault_rules(json!({"rules": [
            {"operations": reads, "ratio": 0.2, "status": 503},
            {"operations": reads, "ratio": 0.1, "status": 429, "retry-after": 1},
            {"operations": reads, "latency-ms": 200}
        ]}))
        .await;
    let mut figures = Vec::new();
    let mut n = 0;
    for round in 0..rounds {
        // Changes while the server is down (kill -9), then while it comes back.
        api.kill();
        changes.scale("workers", 4 + round).await;
        changes.create(&format!("new-{round}"), 1).await;
        if let Some((name, _)) = changes.created.first().cloned() {
            changes.delete(&name).await;
        }
        api.restart(&env.zone);
        changes.scale(&format!("new-{round}"), 2).await;
        n += 4;
        let want = truth(&c, cluster).await;
        figures.push(("kill -9", converged(&stores, &want, "after a kill -9 and restart").await));
        // A graceful restart with every watch open, then one more change.
        assert!(api.stop().is_some_and(|s| s.success()), "SIGTERM stops sks-apiserver promptly, watches open");
        api.restart(&env.zone);
        changes.scale("workers", 2 + round).await;
        changes.create(&format!("late-{round}"), 1).await;
        n += 2;
        let want = truth(&c, cluster).await;
        figures.push(("SIGTERM", converged(&stores, &want, "after a graceful restart").await));
    }
    let counts = env.zone.fault_counts().await;
    env.zone.clear_faults().await;
    // The end state, once more against the server's own list.
    let listed: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list: BTreeMap<String, i64> = listed
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap(), o.data["spec"]["replicas"].as_i64().unwrap()))
        .collect();
    let want = truth(&c, cluster).await;
    assert_eq!(list, want, "the server lists what the orchestrator has");
    assert!(stores.iter().all(|s| seen(s) == want), "every watcher ends with the final state");
    println!(
        "chaos figures: {WATCHES} watches, {rounds} round(s), {n} changes: initial sync {initial:.1?}, converged after \
         each restart {figures:.1?}; final {want:?}; zone faults {counts}"
    );
    for t in tasks {
        t.abort();
    }
    assert!(api.stop().is_some_and(|s| s.success()));
}
