//! With the cluster's API, sks-apiserver keeps annotations and finalizers in
//! ConfigMaps shared by every replica, and counts ready replicas from Nodes.

use std::time::Duration;

use serde_json::{Value, json};
use sks_e2e::env::{ApiServerOptions, TestEnv};
use sks_e2e::kubeapi::KubeOptions;
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;

fn np(k: &Kubectl) -> Value {
    serde_json::from_str(&k.ok(&["get", "np", "workers", "-o", "json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_metadata_and_count_ready_nodes() {
    let replica = ApiServerOptions { direct: true, ..ApiServerOptions::args(&["--refresh-interval", "300ms"]) };
    let env = TestEnv::builder()
        .kube(KubeOptions::default())
        .apiserver_with(replica.clone())
        .apiserver_with(replica)
        .start()
        .await;
    let (ka, kb) = (env.apiservers[0].kubectl(), env.apiservers[1].kubectl());

    // An annotation and a finalizer written through one replica are seen by the other.
    ka.ok(&["annotate", "np", "workers", "team=platform"]);
    ka.ok(&["patch", "np", "workers", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/keep"]}}"#]);
    wait_for("replica B to see A's metadata", Duration::from_secs(15), || {
        let kb = kb.clone();
        async move {
            let o = np(&kb);
            (o["metadata"]["annotations"]["team"] == "platform"
                && o["metadata"]["finalizers"] == json!(["example.com/keep"]))
            .then_some(())
        }
    })
    .await;
    let stored = env.kubectl().ok(&[
        "get",
        "cm",
        "-n",
        "kube-system",
        "-l",
        "sks.exoscale.net/metadata-of=nodepools",
        "-o",
        "name",
    ]);
    assert_eq!(stored.lines().count(), 1, "one ConfigMap per nodepool: {stored}");

    // readyReplicas comes from the Nodes labelled with the nodepool's id.
    let uid = np(&ka)["metadata"]["uid"].as_str().unwrap().to_owned();
    for (i, ready) in ["True", "True", "False"].iter().enumerate() {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}"), "labels": {"node.exoscale.net/nodepool-id": uid}},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Test", "message": ""}]}});
        let out = env.kubectl().with_stdin(&["apply", "-f", "-"], &node.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let o = wait_for("readyReplicas to follow the Nodes", Duration::from_secs(15), || {
        let ka = ka.clone();
        async move {
            let o = np(&ka);
            (o["status"]["readyReplicas"] == 2).then_some(o)
        }
    })
    .await;
    let ready = o["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!((ready["status"].as_str(), ready["message"].as_str()), (Some("False"), Some("2 of 3 nodes are ready")));
}
