//! sks-apiserver behind the cluster's API through an APIService, as in a real
//! cluster: kubectl reaches nodepools through the aggregator, identity passes
//! as front-proxy headers, forged headers do not, and an unavailable
//! APIService fails only its own group.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sks_e2e::apiserver::ApiServer;
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::wait_for;
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
    let port = sks.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&sks.pki.serving_ca.cert_pem);
    let k = kube.kubectl();
    let registration = [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sks-apiserver", "namespace": "kube-system"}, "spec": {"type": "ExternalName", "externalName": "localhost"}}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1alpha1.sks.exoscale.net"},
            "spec": {"group": "sks.exoscale.net", "version": "v1alpha1", "groupPriorityMinimum": 2000, "versionPriority": 10, "caBundle": ca_bundle,
                "service": {"namespace": "kube-system", "name": "sks-apiserver", "port": port}}}),
    ];
    for doc in registration {
        let out = k.with_stdin(&["apply", "-f", "-"], &doc.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for("the APIService to become available", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let a: Value =
                serde_json::from_str(&k.ok(&["get", "apiservice", "v1alpha1.sks.exoscale.net", "-o", "json"])).ok()?;
            a["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
                .then_some(())
        }
    })
    .await;

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
