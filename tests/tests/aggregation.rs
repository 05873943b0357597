//! sks-apiserver behind the cluster's API through an APIService, as in a real
//! cluster: kubectl reaches nodepools through the aggregator, identity passes
//! as front-proxy headers, forged headers do not, and an unavailable
//! APIService fails only its own group.

use serde_json::{Value, json};
use sks_e2e::apiserver::ApiServer;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::zone::{Zone, ZoneOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepools_through_the_aggregator() {
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let cluster = zone.client().await.list_sks_clusters().await.unwrap()[0].id.to_string();
    let policy = json!({"rules": [{"users": ["bob"], "verbs": ["get", "list"], "apiGroups": ["sks.exoscale.net"], "resources": ["nodepools"]}]}).to_string();
    let kube = KubeApi::start(KubeOptions {
        policy: Some(policy),
        tokens: Some("bob-token,bob,2,\"devs\"\n".into()),
        zone_cluster: Some((zone.endpoint(), cluster.clone())),
        ..Default::default()
    })
    .await;
    let mut sks = ApiServer::start_behind(&zone, &cluster, &["--refresh-interval", "1s"], &kube.cert_dir);
    sks.register(&kube.kubectl()).await;
    let k = kube.kubectl();

    // kubectl against the cluster API sees nodepools as if they were built in.
    let out = k.ok(&["get", "np"]);
    assert!(out.lines().any(|l| l.starts_with("workers ")), "{out}");
    let explain = k.ok(&["explain", "nodepool.spec.replicas"]);
    assert!(explain.contains("Number of nodes"), "{explain}");
    k.ok(&["scale", "np/workers", "--replicas=2"]);
    assert_eq!(zone.client().await.list_sks_clusters().await.unwrap()[0].nodepools[0].size, 2);

    // A user forging front-proxy headers reaches sks-apiserver as themself.
    let url = format!("{}/apis/sks.exoscale.net/v1alpha1/nodepools", kube.url);
    orchestrator::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(kube.cert_dir.join("ca.crt")).unwrap()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let resp = http
        .get(&url)
        .bearer_auth("bob-token")
        .header("X-Remote-User", "admin")
        .header("X-Remote-Group", "system:masters")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    // sks-apiserver (no authorizer here) lets only system:masters list: bob is refused by name.
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("User \"bob\""), "{body}");

    // With its server gone, the group answers 503 and the rest of the API is unaffected.
    sks.kill();
    let resp = http.get(&url).bearer_auth("bob-token").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    k.ok(&["get", "ns"]);
}
