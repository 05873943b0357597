//! Watchers survive an `sks-apiserver` restart with the right final state: a
//! client-go-style reflector resumes, gets 410 for the old server's
//! resourceVersion, relists, and converges.

use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use sks_e2e::env::TestEnv;
use sks_e2e::kubectl::kube_client;
use sks_e2e::wait_for;

fn replicas(store: &reflector::Store<DynamicObject>, name: &str) -> Option<i64> {
    store
        .state()
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some(name))
        .and_then(|o| o.data["spec"]["replicas"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_converge_across_a_restart() {
    let mut env = TestEnv::builder().apiserver(&["--refresh-interval", "300ms"]).start().await;
    let c = env.client.clone();
    let cluster = env.cluster;
    let np = c.get_sks_cluster(cluster).await.unwrap().nodepools[0].id;
    let client = kube_client(&env.sks().kubeconfig).await;
    let ar = ApiResource {
        group: "sks.exoscale.net".into(),
        version: "v1alpha1".into(),
        api_version: "sks.exoscale.net/v1alpha1".into(),
        kind: "NodePool".into(),
        plural: "nodepools".into(),
    };
    let mut stores = Vec::new();
    for _ in 0..10 {
        let writer = reflector::store::Writer::new(ar.clone());
        let reader = writer.as_reader();
        let nodepools: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        // As client-go reflectors do, back off between failed watches instead of retrying hot.
        let stream = reflector(writer, watcher(nodepools, watcher::Config::default()).default_backoff());
        tokio::spawn(stream.for_each(|_| async {}));
        stores.push(reader);
    }
    let converged = |want: i64| {
        let stores = stores.clone();
        async move { stores.iter().all(|s| replicas(s, "workers") == Some(want)).then_some(()) }
    };
    wait_for("every watcher to see 3 replicas", Duration::from_secs(20), || converged(3)).await;

    // Changes while the server is down, and while it comes back.
    env.sks_mut().kill();
    c.scale_sks_nodepool(cluster, np, 6).await.unwrap();
    env.restart_apiserver();
    wait_for("every watcher to see 6 replicas after the restart", Duration::from_secs(60), || converged(6)).await;
    c.scale_sks_nodepool(cluster, np, 2).await.unwrap();
    wait_for("every watcher to see 2 replicas", Duration::from_secs(30), || converged(2)).await;
    assert!(env.sks_mut().stop().is_some_and(|s| s.success()), "SIGTERM stops sks-apiserver promptly, watches open");
}
