//! sks-apiserver behind the cluster's API through an APIService, as in a real
//! cluster: kubectl reaches nodepools through the aggregator, identity passes
//! as front-proxy headers, forged headers do not, and an unavailable
//! APIService fails only its own group.

use serde_json::{Value, json};
use sks_e2e::env::{ApiAccess, ApiServerOptions, TestEnv};
use sks_e2e::kubeapi::KubeOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepools_through_the_aggregator() {
    let policy = json!({"rules": [{"users": ["bob"], "verbs": ["get", "list"], "apiGroups": ["sks.exoscale.net"], "resources": ["nodepools"]}]}).to_string();
    let kube =
        KubeOptions { policy: Some(policy), tokens: Some("bob-token,bob,2,\"devs\"\n".into()), ..Default::default() };
    // No kubeconfig: sks-apiserver reviews no access, so only system:masters may use it.
    let sks =
        ApiServerOptions { kubeconfig: ApiAccess::Without, ..ApiServerOptions::args(&["--refresh-interval", "1s"]) };
    let mut env = TestEnv::builder().kube(kube).apiserver_with(sks).start().await;
    let k = env.kubectl();

    // kubectl against the cluster API sees nodepools as if they were built in.
    let out = k.ok(&["get", "np"]);
    assert!(out.lines().any(|l| l.starts_with("workers ")), "{out}");
    let explain = k.ok(&["explain", "nodepool.spec.replicas"]);
    assert!(explain.contains("Number of nodes"), "{explain}");
    k.ok(&["scale", "np/workers", "--replicas=2"]);
    assert_eq!(env.client.list_sks_clusters().await.unwrap()[0].nodepools[0].size, 2);

    // A user forging front-proxy headers reaches sks-apiserver as themself.
    let url = format!("{}/apis/sks.exoscale.net/v1alpha1/nodepools", env.kube().url);
    orchestrator::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(env.kube().cert_dir.join("ca.crt")).unwrap()).unwrap();
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
    env.sks_mut().kill();
    let resp = http.get(&url).bearer_auth("bob-token").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    k.ok(&["get", "ns"]);
}
