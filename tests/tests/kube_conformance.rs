//! The stand-in behaves like kube-apiserver for what it serves. Every case
//! also runs against real etcd + kube-apiserver when KUBE_ASSETS is set.

use std::time::Duration;

use serde_json::{Value, json};
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::kubectl::Kubectl;
use sks_e2e::wait_for;

fn obj(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).unwrap()
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

fn apply(k: &Kubectl, doc: Value) -> std::process::Output {
    k.with_stdin(&["apply", "-f", "-"], &doc.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_versions_conflicts_and_already_exists() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let a = obj(&k, &["create", "configmap", "a", "-n", "default", "--dry-run=client"]);
    assert!(apply(&k, a).status.success());
    let a = obj(&k, &["get", "cm", "a", "-n", "default"]);
    assert!(
        apply(&k, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}}))
            .status
            .success()
    );
    let s = obj(&k, &["get", "secret", "s", "-n", "default"]);
    assert!(rv(&s) > rv(&a), "one resourceVersion sequence across kinds");

    // An update with a stale resourceVersion is a 409 Conflict.
    let mut stale = a.clone();
    stale["data"] = json!({"x": "1"});
    let out = k.with_stdin(&["replace", "-f", "-"], &stale.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stale["data"] = json!({"x": "2"});
    let out = k.with_stdin(&["replace", "-f", "-"], &stale.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the object has been modified"), "{err}");

    let out = k.with_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
            .to_string(),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AlreadyExists")
            || String::from_utf8_lossy(&out.stderr).contains("already exists")
    );
    let generated = k.with_stdin(
        &["create", "-o", "json", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-", "namespace": "default"}})
            .to_string(),
    );
    let made: Value = serde_json::from_slice(&generated.stdout).unwrap();
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(made["metadata"]["uid"].is_string() && made["metadata"]["creationTimestamp"].is_string());
    let out = k.with_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "no-such-namespace"}})
            .to_string(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Sets ConfigMap `w`'s `v` to `i` with a merge patch.
fn set_w(k: &Kubectl, i: u32) {
    k.ok(&[
        "patch",
        "cm",
        "w",
        "-n",
        "default",
        "--type=merge",
        "-p",
        &json!({"data": {"v": i.to_string()}}).to_string(),
    ]);
}

/// The ConfigMap events after `rv`, one JSON line each, for a second.
fn watch_from(k: &Kubectl, rv: u64) -> String {
    k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_from_a_resource_version_and_expire_after_compaction() {
    let api = KubeApi::start(KubeOptions { watch_history: Some(5), ..Default::default() }).await;
    let k = api.kubectl();
    assert!(apply(&k, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "default"}, "data": {"v": "0"}})).status.success());
    let start = rv(&obj(&k, &["get", "cm", "w", "-n", "default"]));
    for i in 1..=3 {
        set_w(&k, i);
    }
    let out = watch_from(&k, start);
    let seen: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["object"]["data"]["v"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(seen, ["1", "2", "3"], "exactly the changes after the resourceVersion");
    if !api.real {
        // The stand-in keeps 5 events per kind: older resourceVersions are compacted.
        for i in 4..=12 {
            set_w(&k, i);
        }
        let out = watch_from(&k, start);
        let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!((first["type"].as_str(), first["object"]["code"].as_u64()), (Some("ERROR"), Some(410)), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_block_deletion() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    assert!(apply(&k, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "namespace": "default", "finalizers": ["example.com/hold"]}})).status.success());
    k.ok(&["delete", "cm", "f", "-n", "default", "--wait=false"]);
    let held = obj(&k, &["get", "cm", "f", "-n", "default"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let err = k.fails(&[
        "patch",
        "cm",
        "f",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
    ]);
    assert!(
        err.contains("no new finalizers can be added if the object is being deleted") || err.contains("Forbidden"),
        "{err}"
    );
    k.ok(&[
        "patch",
        "cm",
        "f",
        "-n",
        "default",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    k.fails(&["get", "cm", "f", "-n", "default"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}});
    assert!(apply(&k, svc.clone()).status.success());
    let before = obj(&k, &["get", "svc", "p", "-n", "default"]);
    // A second apply is a strategic merge patch; the nodePorts the server chose survive it.
    let mut changed = svc.clone();
    changed["metadata"]["labels"] = json!({"app": "p"});
    let out = apply(&k, changed);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = obj(&k, &["get", "svc", "p", "-n", "default"]);
    assert_eq!(after["spec"]["ports"], before["spec"]["ports"]);
    assert_eq!(after["metadata"]["labels"]["app"], "p");
    k.ok(&["patch", "svc", "p", "-n", "default", "--type=merge", "-p", r#"{"metadata":{"annotations":{"a":"1"}}}"#]);
    k.ok(&[
        "patch",
        "svc",
        "p",
        "-n",
        "default",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/annotations/b","value":"2"}]"#,
    ]);
    let a = obj(&k, &["get", "svc", "p", "-n", "default"]);
    assert_eq!(
        (a["metadata"]["annotations"]["a"].as_str(), a["metadata"]["annotations"]["b"].as_str()),
        (Some("1"), Some("2"))
    );
    k.ok(&["patch", "svc", "p", "-n", "default", "-p", r#"{"spec":{"ports":[{"port":443,"$patch":"delete"}]}}"#]);
    assert_eq!(obj(&k, &["get", "svc", "p", "-n", "default"])["spec"]["ports"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_approval_subresources_touch_only_their_part() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}});
    assert!(apply(&k, node).status.success());
    // Through the main resource, status is ignored.
    k.ok(&[
        "patch",
        "node",
        "n1",
        "--type=merge",
        "-p",
        r#"{"spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ]);
    let n = obj(&k, &["get", "node", "n1"]);
    assert_eq!(
        (n["spec"]["unschedulable"].as_bool(), n["status"]["conditions"][0]["status"].as_str()),
        (Some(true), Some("True"))
    );
    // Through /status, only status changes.
    k.ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"unschedulable":false},"status":{"addresses":[{"type":"InternalIP","address":"127.64.0.9"}]}}"#,
    ]);
    let n = obj(&k, &["get", "node", "n1"]);
    assert_eq!(
        (n["spec"]["unschedulable"].as_bool(), n["status"]["addresses"][0]["address"].as_str()),
        (Some(true), Some("127.64.0.9"))
    );

    let request = csr_pem("system:node:n1");
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "c1"},
        "spec": {"signerName": "kubernetes.io/kubelet-serving", "request": request, "usages": ["digital signature", "key encipherment", "server auth"], "username": "forged"}});
    assert!(apply(&k, csr).status.success());
    let c = obj(&k, &["get", "csr", "c1"]);
    assert_ne!(c["spec"]["username"], "forged", "the requester is who the server authenticated");
    k.ok(&["certificate", "approve", "c1"]);
    let c = wait_for("the approved CSR to be issued", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let c = obj(&k, &["get", "csr", "c1"]);
            c["status"]["certificate"].is_string().then_some(c)
        }
    })
    .await;
    assert_eq!(c["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(c["spec"]["request"], json!(request), "approval does not touch the spec");
}

/// The value of the `apiserver_request_total` sample carrying every label of `labels`.
fn served(metrics: &str, labels: &[&str]) -> u64 {
    let matching = metrics.lines().filter(|l| {
        l.starts_with("apiserver_request_total{")
            && labels.iter().all(|kv| l.contains(&format!("{kv},")) || l.contains(&format!("{kv}}}")))
    });
    matching.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
}

/// Requests are counted as kube-apiserver counts them, by verb, resource,
/// subresource and code (what `sks-bench` cross-checks clients' counts with),
/// and a JSON patch whose `test` fails is kube-apiserver's bare 422, which
/// sks-ccm takes for a lost race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_subresource_and_a_failed_test_is_a_bare_422() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let node =
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
    assert!(apply(&k, node).status.success());
    let status = r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.64.0.9"}]}}"#;
    k.ok(&["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", status]);
    let failed = k.run(&["patch", "node", "n1", "--type=json", "-p", r#"[{"op":"test","path":"/spec/podCIDR","value":"10.9.0.0/24"},{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]"#]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success() && stderr.contains("the server rejected our request due to an error in our request"),
        "{stderr}"
    );
    assert_eq!(obj(&k, &["get", "node", "n1"])["metadata"]["labels"]["x"], Value::Null, "nothing applied");

    let metrics = k.ok(&["get", "--raw", "/metrics"]);
    let node = ["resource=\"nodes\"", "verb=\"PATCH\""];
    // (kube-controller-manager patches Nodes too when the API is the real one: at least ours.)
    assert!(served(&metrics, &[&node[..], &["subresource=\"status\"", "code=\"200\""]].concat()) >= 1, "{metrics}");
    assert_eq!(served(&metrics, &[&node[..], &["subresource=\"\"", "code=\"422\""]].concat()), 1);
}

fn csr_pem(cn: &str) -> String {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["n1".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_without_duplicates() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("lb-{i}"), "namespace": "default"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": if i % 2 == 0 { "Local" } else { "Cluster" }, "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}))
        .collect();
    let out = apply(&k, json!({"apiVersion": "v1", "kind": "List", "items": items}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = obj(&k, &["get", "svc", "-n", "default"]);
    let mut ports = Vec::new();
    for s in list["items"].as_array().unwrap() {
        for p in s["spec"]["ports"].as_array().unwrap() {
            ports.push(p["nodePort"].as_i64().unwrap());
        }
        if s["spec"]["externalTrafficPolicy"] == "Local" {
            ports.push(
                s["spec"]["healthCheckNodePort"].as_i64().expect("Local LoadBalancers get a healthCheckNodePort"),
            );
        }
        assert!(s["spec"]["clusterIP"].is_string());
    }
    let n = ports.len();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), n, "a nodePort was handed out twice");
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_reviews_allow_and_deny() {
    let policy = json!({"rules": [{"users": ["alice"], "verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]}).to_string();
    let api = KubeApi::start(KubeOptions {
        policy: Some(policy),
        tokens: Some("alice-token,alice,1,\"devs\"\n".into()),
        ..Default::default()
    })
    .await;
    let k = api.kubectl();
    let review = |user: &str, verb: &str| {
        let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": {"verb": verb, "resource": "configmaps", "namespace": "default"}}});
        let out = k.with_stdin(&["create", "-o", "json", "-f", "-"], &sar.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"]["allowed"].as_bool().unwrap_or(false)
    };
    assert!(review("alice", "list"));
    assert!(!review("alice", "delete"));
    assert!(!review("bob", "list"));
    // The same policy guards requests: alice (by token, then by certificate) may list, bob may not.
    let alice = Kubectl::new(api.user_kubeconfig("alice", &["devs"]), api.dir().join("cache-alice"));
    alice.ok(&["get", "cm", "-n", "default"]);
    let err = alice.fails(&["delete", "cm", "x", "-n", "default"]);
    assert!(err.contains("forbidden"), "{err}");
    let bob = Kubectl::new(api.user_kubeconfig("bob", &[]), api.dir().join("cache-bob"));
    assert!(bob.fails(&["get", "cm", "-n", "default"]).contains("forbidden"));
    let by_token = k.run(&["--token", "alice-token", "--user", "", "get", "cm", "-n", "default"]);
    assert!(by_token.status.success() || api.real, "{}", String::from_utf8_lossy(&by_token.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_get_and_delete() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let mut child = k
        .command()
        .args(["get", "cm", "-n", "default", "-w", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert!(
        apply(
            &k,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched", "namespace": "default"}})
        )
        .status
        .success()
    );
    let line = rx.recv_timeout(Duration::from_secs(15)).expect("the watch saw the create");
    assert_eq!(line, "configmap/watched");
    k.ok(&["delete", "cm", "watched", "-n", "default"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(k.ok(&["get", "cm", "-n", "default", "-o", "name"]).trim().is_empty());
}
