//! State survives restarts and `kill -9`; concurrent writers lose nothing;
//! pending operations resume after a crash.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orchestrator::model::*;
use sks_e2e::wait_for;
use sks_e2e::zone::{Zone, ZoneOptions, signed_request};
use tokio::sync::Mutex;
use uuid::Uuid;

fn lb(name: &str) -> LoadBalancerSpec {
    LoadBalancerSpec { name: Some(name.to_owned()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_graceful_restart() {
    let mut zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let c = zone.client().await;
    let clusters = c.list_sks_clusters().await.unwrap();
    assert_eq!(clusters.len(), 1, "the seed made one cluster");
    let np = &clusters[0].nodepools[0];
    assert_eq!(
        (clusters[0].spec.name.as_deref(), np.spec.name.as_deref(), np.size),
        (Some("demo"), Some("workers"), 3)
    );
    let instances = c.list_instances(&InstanceFilter::default()).await.unwrap();
    let lb_id = c.create_load_balancer(&lb("keep")).await.unwrap().reference_id().unwrap();
    let ca = c.get_sks_cluster_authority_cert(clusters[0].id, Authority::ControlPlane).await.unwrap();

    assert!(zone.stop().is_some_and(|s| s.success()), "SIGTERM stops the zone cleanly");
    zone.restart();
    let c = zone.client().await;
    let after = c.list_sks_clusters().await.unwrap();
    assert_eq!(after, clusters, "clusters and nodepools unchanged; the seed did not run twice");
    assert_eq!(c.list_instances(&InstanceFilter::default()).await.unwrap(), instances);
    assert_eq!(c.get_load_balancer(lb_id).await.unwrap().spec.name.as_deref(), Some("keep"));
    assert_eq!(c.get_sks_cluster_authority_cert(clusters[0].id, Authority::ControlPlane).await.unwrap(), ca);
    // Address numbers are never reused, even across restarts.
    let new = c.create_load_balancer(&lb("new")).await.unwrap().reference_id().unwrap();
    let ip = c.get_load_balancer(new).await.unwrap().ip.unwrap();
    assert!(instances.iter().all(|i| i.public_ip != Some(ip)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_no_acknowledged_write() {
    let mut zone = Zone::start(ZoneOptions::default());
    let c = zone.client().await;
    let acked = Arc::new(Mutex::new(BTreeSet::<Uuid>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // Once the zone is gone, calls fail: only successes count as acknowledged.
                if let Ok(op) = c.create_load_balancer(&lb(&format!("w{w}-{i}"))).await {
                    acked.lock().await.insert(op.reference_id().unwrap());
                }
            }
        }));
    }
    wait_for("40 acknowledged creates", Duration::from_secs(30), || async {
        (acked.lock().await.len() >= 40).then_some(())
    })
    .await;
    zone.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    zone.restart();
    let c = zone.client().await;
    let stored: BTreeSet<Uuid> = c.list_load_balancers().await.unwrap().iter().map(|l| l.id).collect();
    let acked = acked.lock().await.clone();
    let lost: Vec<&Uuid> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged creates lost after kill -9: {lost:?}", lost.len());
    assert!(acked.len() >= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_objects_and_lose_no_update() {
    let zone = Zone::start(ZoneOptions::default());
    let c = zone.client().await;
    let creates = (0..100).map(|i| {
        let c = c.clone();
        tokio::spawn(
            async move { c.create_load_balancer(&lb(&format!("lb-{i}"))).await.unwrap().reference_id().unwrap() },
        )
    });
    let mut ids = BTreeSet::new();
    for t in creates {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 100, "100 creates, 100 distinct ids");
    let all = c.list_load_balancers().await.unwrap();
    assert_eq!(all.len(), 100);
    let ips: BTreeSet<_> = all.iter().map(|l| l.ip.unwrap()).collect();
    assert_eq!(ips.len(), 100, "every NLB has its own address");

    // 50 concurrent read-modify-writes of one NLB's services: every one lands.
    let target = *ids.first().unwrap();
    let pool = c
        .create_instance_pool(&CreateInstancePool {
            spec: InstancePoolSpec {
                name: Some("p".into()),
                instance_type: Some(Ref::from(c.list_instance_types().await.unwrap()[3].id)),
                template: Some(sks_e2e::zone::known_template(&c).await),
                disk_size: Some(10),
                ..Default::default()
            },
            size: 1,
        })
        .await
        .unwrap()
        .reference_id()
        .unwrap();
    let adds = (0..50).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let svc = LoadBalancerServiceSpec {
                name: Some(format!("svc-{i}")),
                instance_pool: Some(Ref::from(pool)),
                protocol: Some(Protocol::Tcp),
                strategy: Some(Strategy::RoundRobin),
                port: Some(1000 + i),
                target_port: Some(30000 + i),
                healthcheck: Some(Healthcheck {
                    mode: Some(HealthcheckMode::Tcp),
                    port: Some(30000 + i),
                    ..Default::default()
                }),
                description: None,
            };
            c.add_service_to_load_balancer(target, &svc).await.unwrap();
        })
    });
    for t in adds {
        t.await.unwrap();
    }
    assert_eq!(c.get_load_balancer(target).await.unwrap().services.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_operations_complete_and_resume_after_a_crash() {
    let mut zone = Zone::start(ZoneOptions { operation_delay_ms: 1500, ..Default::default() });
    let (status, op) =
        signed_request(&zone.endpoint(), "POST", "/load-balancer", Some(r#"{"name":"slow"}"#), None, 600).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["state"], "pending");
    let op_id = op["id"].as_str().unwrap().to_owned();
    let lb_id = op["reference"]["id"].as_str().unwrap().to_owned();
    let (_, got) = signed_request(&zone.endpoint(), "GET", &format!("/load-balancer/{lb_id}"), None, None, 600).await;
    assert_eq!(got["state"], "creating");

    zone.kill9();
    zone.restart();
    let endpoint = zone.endpoint();
    wait_for("the pending operation to succeed after restart", Duration::from_secs(15), || {
        let (endpoint, op_id) = (endpoint.clone(), op_id.clone());
        async move {
            let (_, op) = signed_request(&endpoint, "GET", &format!("/operation/{op_id}"), None, None, 600).await;
            (op["state"] == "success").then_some(())
        }
    })
    .await;
    let (_, got) = signed_request(&zone.endpoint(), "GET", &format!("/load-balancer/{lb_id}"), None, None, 600).await;
    assert_eq!(got["state"], "running");

    // The client waits on pending operations by polling.
    let c = zone.client().await;
    let op = c.create_load_balancer(&lb("waited")).await.unwrap();
    assert_eq!(op.state, OperationState::Success);
    let got = c.get_load_balancer(op.reference_id().unwrap()).await.unwrap();
    assert_eq!(got.state, Some(LoadBalancerState::Running));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_boot_their_instances_and_replace_deleted_members() {
    let zone = Zone::start(ZoneOptions { boot_delay_ms: 300, seed: true, ..Default::default() });
    let c = zone.client().await;
    let cluster = &c.list_sks_clusters().await.unwrap()[0];
    let pool = cluster.nodepools[0].instance_pool.unwrap().id;
    let filter = InstanceFilter { manager_id: Some(pool), ..Default::default() };
    let states = |list: &[Instance]| list.iter().map(|i| i.state.clone()).collect::<Vec<_>>();
    let all = wait_for("3 running members", Duration::from_secs(10), || async {
        let list = c.list_instances(&filter).await.unwrap();
        (states(&list) == vec![InstanceState::Running; 3]).then_some(list)
    })
    .await;
    c.delete_instance(all[0].id).await.unwrap();
    let replaced = c.list_instances(&filter).await.unwrap();
    assert_eq!(replaced.len(), 3, "the pool replaced the deleted member");
    assert!(!replaced.iter().any(|i| i.id == all[0].id));
    assert!(replaced.iter().any(|i| i.state == InstanceState::Starting), "the replacement boots first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_after_503s_is_made_once() {
    let zone = Zone::start(ZoneOptions::default());
    let proxy = sks_e2e::proxy::Proxy::start(&zone.url).await;
    let config =
        orchestrator::ClientConfig { endpoint: format!("{}/v2", proxy.url), zone: None, ..zone.client_config() };
    let c = sks_e2e::zone::client_for(config).await;
    proxy.fail_next_posts(2);
    let op = c.create_load_balancer(&lb("once")).await.unwrap();
    let all = c.list_load_balancers().await.unwrap();
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), vec![op.reference_id().unwrap()], "exactly one NLB");
    let posts: Vec<u16> = proxy.exchanges().iter().filter(|e| e.method == "POST").map(|e| e.status).collect();
    assert_eq!(posts, vec![503, 503, 200]);
}
