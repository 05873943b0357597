//! `kubectl` (the real one) against `sks-apiserver` against `sks-zone`: nodepools
//! must behave like a built-in resource.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use orchestrator::model::*;
use sks_e2e::env::TestEnv;
use sks_e2e::kubectl::Kubectl;
use sks_e2e::pki::TestPki;
use sks_e2e::wait_for;

/// A seeded zone and sks-apiserver served directly (no aggregator), with kubectl as its admin.
struct Setup {
    env: TestEnv,
    k: Kubectl,
}

impl std::ops::Deref for Setup {
    type Target = TestEnv;
    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

async fn setup() -> Setup {
    let env = TestEnv::builder().apiserver(&["--refresh-interval", "500ms", "--bookmark-interval", "1s"]).start().await;
    let k = env.kubectl();
    Setup { env, k }
}

async fn nodepool(s: &Setup, name: &str) -> Option<SksNodepool> {
    s.client
        .get_sks_cluster(s.cluster)
        .await
        .unwrap()
        .nodepools
        .into_iter()
        .find(|n| n.spec.name.as_deref() == Some(name))
}

fn write(s: &Setup, file: &str, yaml: &str) -> String {
    let path = s.sks().dir().join(file);
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

const DATA_POOL: &str = r#"
apiVersion: sks.exoscale.net/v1alpha1
kind: NodePool
metadata:
  name: data
  labels:
    team: data
  annotations:
    owner: "platform team"
spec:
  replicas: 2
  instanceType: standard.large
  diskSize: 50
  taints:
  - key: dedicated
    value: data
    effect: NoSchedule
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_nodepools_like_a_builtin_resource() {
    let s = setup().await;
    let out = s.k.ok(&["get", "np"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "INSTANCE-TYPE", "VERSION", "PHASE", "AGE"]
    );
    assert_eq!(
        lines[1].split_whitespace().take(8).collect::<Vec<_>>(),
        ["workers", "3", "3", "3", "3", "standard.medium", "1.34.2", "Running"]
    );
    let wide = s.k.ok(&["get", "nodepools", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("INSTANCE-POOL"), "{wide}");

    s.k.ok(&["create", "-f", &write(&s, "data.yaml", DATA_POOL)]);
    let labels = s.k.ok(&["get", "np", "--show-labels"]);
    assert!(labels.lines().any(|l| l.starts_with("data") && l.ends_with("team=data")), "{labels}");
    assert_eq!(s.k.ok(&["get", "np", "-l", "team=data", "-o", "name"]).trim(), "nodepool.sks.exoscale.net/data");
    assert_eq!(s.k.ok(&["get", "np", "-l", "team!=data", "-o", "name"]).trim(), "nodepool.sks.exoscale.net/workers");
    assert_eq!(
        s.k.ok(&["get", "np", "--field-selector", "metadata.name=workers", "-o", "name"]).trim(),
        "nodepool.sks.exoscale.net/workers"
    );
    let err = s.k.fails(&["get", "np", "--field-selector", "spec.foo=bar"]);
    assert!(err.contains("field label not supported: spec.foo"), "{err}");

    let explain = s.k.ok(&["explain", "nodepool.spec.taints"]);
    for needle in ["KIND:       NodePool", "effect\t<string> -required-", "Taints put on the nodes"] {
        assert!(explain.contains(needle), "explain lacks {needle:?}:\n{explain}");
    }
    let resources = s.k.ok(&["api-resources", "--api-group", "sks.exoscale.net"]);
    let row = |name: &str| -> Vec<String> {
        let line = resources.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default();
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("nodepools"), ["nodepools", "np", "sks.exoscale.net/v1alpha1", "false", "NodePool"], "{resources}");
    for kind in ["clusters", "upgrades", "kubeconfigrequests"] {
        assert!(!row(kind).is_empty(), "{kind} missing:\n{resources}");
    }
    let json: serde_json::Value = serde_json::from_str(&s.k.ok(&["get", "np", "data", "-o", "json"])).unwrap();
    assert_eq!(json["metadata"]["annotations"]["owner"], "platform team");
    assert_eq!(json["spec"]["taints"][0]["effect"], "NoSchedule");
    assert_eq!(
        json["status"]["selector"],
        format!("node.exoscale.net/nodepool-id={}", json["metadata"]["uid"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_writes_nodepools() {
    let s = setup().await;
    let file = write(&s, "data.yaml", DATA_POOL);
    // Server-side dry run changes nothing in the zone.
    s.k.ok(&["create", "-f", &file, "--dry-run=server"]);
    assert!(nodepool(&s, "data").await.is_none(), "a dry run created a nodepool");

    // apply twice: created, then unchanged.
    assert!(s.k.ok(&["apply", "-f", &file]).contains("nodepool.sks.exoscale.net/data created"));
    assert!(s.k.ok(&["apply", "-f", &file]).contains("nodepool.sks.exoscale.net/data unchanged"));
    let np = nodepool(&s, "data").await.expect("created in the zone");
    assert_eq!((np.size, np.spec.labels.clone().unwrap()["team"].as_str()), (2, "data"));
    // apply with a change is a real update.
    s.k.ok(&["apply", "-f", &write(&s, "data2.yaml", &DATA_POOL.replace("diskSize: 50", "diskSize: 80"))]);
    assert_eq!(nodepool(&s, "data").await.unwrap().spec.disk_size, Some(80));

    // edit with a scripted editor.
    let out =
        s.k.command()
            .args(["edit", "np", "data"])
            .env("KUBE_EDITOR", "sed -i -e s/diskSize:\\ 80/diskSize:\\ 90/")
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(nodepool(&s, "data").await.unwrap().spec.disk_size, Some(90));

    // merge and JSON patches; strategic merge is refused as for CRDs.
    s.k.ok(&["patch", "np", "data", "--type=merge", "-p", r#"{"spec":{"description":"analytics"}}"#]);
    assert_eq!(nodepool(&s, "data").await.unwrap().spec.description.as_deref(), Some("analytics"));
    s.k.ok(&["patch", "np", "data", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/taints/0"}]"#]);
    assert!(nodepool(&s, "data").await.unwrap().spec.taints.unwrap_or_default().is_empty());
    let err = s.k.fails(&["patch", "np", "data", "-p", r#"{"spec":{"replicas":1}}"#]);
    assert!(err.contains("the body of the request was in an unknown format - accepted media types include"), "{err}");

    // scale.
    s.k.ok(&["scale", "np/data", "--replicas=4"]);
    assert_eq!(nodepool(&s, "data").await.unwrap().size, 4);
    s.k.ok(&["scale", "np/data", "--replicas=1", "--dry-run=server"]);
    assert_eq!(nodepool(&s, "data").await.unwrap().size, 4, "a dry-run scale changed the zone");
    s.k.ok(&["wait", "--for=condition=Ready", "np/data", "--timeout=30s"]);

    // Invalid specs print every cause.
    let bad = write(
        &s,
        "bad.yaml",
        &DATA_POOL
            .replace("name: data", "name: bad")
            .replace("replicas: 2", "replicas: -1")
            .replace("effect: NoSchedule", "effect: Sometimes")
            .replace("diskSize: 50", "diskSize: 5"),
    );
    let err = s.k.fails(&["create", "-f", &bad]);
    for needle in [
        "is invalid",
        "spec.replicas: Invalid value: -1",
        "spec.diskSize: Invalid value: 5",
        "spec.taints[0].effect: Unsupported value: \"Sometimes\"",
    ] {
        assert!(err.contains(needle), "error lacks {needle:?}:\n{err}");
    }
    assert!(nodepool(&s, "bad").await.is_none());
    let err =
        s.k.fails(&["patch", "np/data", "--subresource=scale", "--type=merge", "-p", r#"{"spec":{"replicas":-3}}"#]);
    assert!(err.contains("spec.replicas: Invalid value: -3"), "{err}");

    // Unknown fields: strict validation refuses them.
    let typo = write(&s, "typo.yaml", &DATA_POOL.replace("diskSize: 50", "diskSize: 50\n  dsikSize: 60"));
    let err = s.k.fails(&["apply", "-f", &typo]);
    assert!(err.contains("unknown field \"spec.dsikSize\""), "{err}");

    // delete waits until the nodepool is gone, in the zone too.
    let out = s.k.ok(&["delete", "np", "data", "--timeout=30s"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(nodepool(&s, "data").await.is_none());
    let err = s.k.fails(&["get", "np", "data"]);
    assert!(err.contains("nodepools.sks.exoscale.net \"data\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_until_removed() {
    let s = setup().await;
    s.k.ok(&[
        "create",
        "-f",
        &write(&s, "data.yaml", &DATA_POOL.replace("  labels:", "  finalizers: [example.com/hold]\n  labels:")),
    ]);
    s.k.ok(&["delete", "np", "data", "--wait=false"]);
    let obj: serde_json::Value = serde_json::from_str(&s.k.ok(&["get", "np", "data", "-o", "json"])).unwrap();
    assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj}");
    assert!(nodepool(&s, "data").await.is_some(), "the finalizer holds the nodepool");
    s.k.ok(&["patch", "np", "data", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    wait_for("the nodepool to be gone", Duration::from_secs(10), || async {
        nodepool(&s, "data").await.is_none().then_some(())
    })
    .await;
    s.k.fails(&["get", "np", "data"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_sees_changes() {
    let s = setup().await;
    let mut child =
        s.k.command()
            .args(["get", "np", "workers", "-w", "-o", "jsonpath={.spec.replicas}{\"\\n\"}"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "3");
    // A change made in the zone, behind the API server's back, reaches the watcher.
    let np = nodepool(&s, "workers").await.unwrap();
    s.client.scale_sks_nodepool(s.cluster, np.id, 5).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the watch saw no change");
        if line == "5" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn client_with(pki: &TestPki, identity: Option<&sks_pki::IssuedCert>) -> reqwest::Client {
    orchestrator::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.serving_ca.cert_pem.as_bytes()).unwrap()]);
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_front_proxy_headers_are_refused() {
    let s = setup().await;
    let url = format!("{}/apis/sks.exoscale.net/v1alpha1/nodepools", s.sks().url);
    let forge =
        |c: reqwest::Client| c.get(&url).header("X-Remote-User", "admin").header("X-Remote-Group", "system:masters");
    let pki = &s.sks().pki;
    let stranger = sks_pki::CertificateAuthority::generate("stranger").unwrap();
    let cases = [
        ("no certificate", None),
        ("a front-proxy CN from another CA", Some(TestPki::client(&stranger, "front-proxy-client", &[]))),
        ("a CN not allowed", Some(TestPki::client(&pki.proxy_ca, "someone-else", &[]))),
    ];
    for (what, identity) in cases {
        let resp = forge(client_with(pki, identity.as_ref())).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("Unauthorized")),
            "{what}"
        );
    }
    // The real front proxy is trusted, and users without system:masters are denied (no authorizer here).
    let proxy = TestPki::client(&pki.proxy_ca, "front-proxy-client", &[]);
    let resp = forge(client_with(pki, Some(&proxy))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client_with(pki, Some(&proxy))
        .get(&url)
        .header("X-Remote-User", "dev")
        .header("X-Remote-Group", "devs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert!(
        status["message"].as_str().unwrap().contains("User \"dev\" cannot list resource \"nodepools\""),
        "{status}"
    );
    // Health needs no credentials; everything else does.
    assert_eq!(client_with(pki, None).get(format!("{}/readyz", s.sks().url)).send().await.unwrap().status(), 200);
    assert_eq!(client_with(pki, None).get(format!("{}/apis", s.sks().url)).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_details() {
    let s = setup().await;
    let raw = |path: &str| serde_json::from_str::<serde_json::Value>(&s.k.ok(&["get", "--raw", path])).unwrap();
    let v3 = raw("/openapi/v3");
    let url = v3["paths"]["apis/sks.exoscale.net/v1alpha1"]["serverRelativeURL"].as_str().unwrap().to_owned();
    assert!(url.contains("?hash="), "{url}");
    let doc = raw(&url);
    let patch = &doc["paths"]["/apis/sks.exoscale.net/v1alpha1/nodepools/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "NodePool");
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    let v2 = raw("/openapi/v2");
    assert!(v2["definitions"]["net.exoscale.sks.v1alpha1.NodePool"].is_object());
    let discovery = raw("/apis/sks.exoscale.net/v1alpha1");
    let scale =
        discovery["resources"].as_array().unwrap().iter().find(|r| r["name"] == "nodepools/scale").unwrap().clone();
    assert_eq!(
        (scale["group"].as_str(), scale["version"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("v1"), Some("Scale"))
    );

    // Watch from a resourceVersion of another server (or before a restart): 410 as an ERROR event.
    let out = s.k.ok(&[
        "get",
        "--raw",
        "/apis/sks.exoscale.net/v1alpha1/nodepools?watch=1&resourceVersion=12345&timeoutSeconds=5",
    ]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((first["type"].as_str(), first["object"]["code"].as_u64()), (Some("ERROR"), Some(410)), "{out}");
    // sendInitialEvents is refused with 422 so client-go falls back to list+watch.
    let err = s.k.fails(&["get", "--raw", "/apis/sks.exoscale.net/v1alpha1/nodepools?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"]);
    assert!(err.contains("sendInitialEvents is forbidden"), "{err}");
    // A watch ends at timeoutSeconds, with bookmarks when asked.
    let started = std::time::Instant::now();
    let out = s.k.ok(&[
        "get",
        "--raw",
        "/apis/sks.exoscale.net/v1alpha1/nodepools?watch=1&allowWatchBookmarks=true&timeoutSeconds=3",
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let types: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types[0], "ADDED");
    s.k.ok(&["get", "np"]);
    let metrics = s.k.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains("apiserver_request_total{code=\"200\",group=\"sks.exoscale.net\",resource=\"nodepools\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1alpha1\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_total{code=\"200\",group=\"sks.exoscale.net\",resource=\"nodepools\",scope=\"cluster\",subresource=\"\",verb=\"WATCH\",version=\"v1alpha1\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("orchestrator_requests_total"), "orchestrator metrics are served too");
}

/// What kube-apiserver answers for a label value that is not one.
const BAD_LABEL: &str = "metadata.labels: Invalid value: \"not ok!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_checked_alike_on_every_kind() {
    let s = setup().await;
    let bad_labels = r#"{"metadata":{"labels":{"team":"not ok!","Bad Key":"x"}}}"#;
    let cluster = s.k.ok(&["get", "clusters", "-o", "jsonpath={.items[0].metadata.name}"]);
    for target in ["np/workers".to_owned(), format!("clusters/{cluster}")] {
        let err = s.k.fails(&["patch", &target, "--type=merge", "-p", bad_labels]);
        assert!(err.contains("is invalid") && err.contains(BAD_LABEL), "{target}: {err}");
        assert!(err.contains("metadata.labels: Invalid value: \"Bad Key\": name part must consist of"), "{err}");
    }
    let upgrade = write(
        &s,
        "upgrade.yaml",
        "apiVersion: sks.exoscale.net/v1alpha1\nkind: Upgrade\nmetadata:\n  generateName: up-\n  labels:\n    team: \"not ok!\"\nspec:\n  version: 1.99.0\n",
    );
    let err = s.k.fails(&["create", "-f", &upgrade]);
    assert!(err.contains(BAD_LABEL), "an Upgrade's labels are checked before anything else: {err}");
    assert_eq!(s.k.ok(&["get", "upgrades", "-o", "name"]).trim(), "", "nothing was created");
    let labels = nodepool(&s, "workers").await.unwrap().spec.labels.unwrap_or_default();
    assert!(!labels.contains_key("team"), "a refused patch changed nothing: {labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_bounds_are_checked_shown_and_kept() {
    let mut s = setup().await;
    // Refused with every cause and its field path.
    let err = s.k.fails(&[
        "patch",
        "np/workers",
        "--type=merge",
        "-p",
        r#"{"spec":{"autoscaling":{"minReplicas":-1,"maxReplicas":0}}}"#,
    ]);
    assert!(err.contains("spec.autoscaling.minReplicas: Invalid value: -1"), "{err}");
    assert!(err.contains("spec.autoscaling.maxReplicas: Invalid value: 0"), "{err}");
    let err = s.k.fails(&[
        "patch",
        "np/workers",
        "--type=merge",
        "-p",
        r#"{"spec":{"autoscaling":{"minReplicas":5,"maxReplicas":2}}}"#,
    ]);
    assert!(err.contains("must be greater than or equal to spec.autoscaling.minReplicas (5)"), "{err}");
    let aag = write(
        &s,
        "aag.yaml",
        &DATA_POOL.replace("replicas: 2", "replicas: 2\n  antiAffinityGroups: [\"8a3c5f8e-7d0e-4f3f-9d8a-2c1b7e6f5a4d\"]\n  autoscaling: {minReplicas: 1, maxReplicas: 9}"),
    );
    let err = s.k.fails(&["create", "-f", &aag]);
    assert!(err.contains("spec.autoscaling.maxReplicas: Invalid value: 9: must be at most 8"), "{err}");
    let outside = write(
        &s,
        "outside.yaml",
        &DATA_POOL.replace("replicas: 2", "replicas: 2\n  autoscaling: {minReplicas: 3, maxReplicas: 5}"),
    );
    let err = s.k.fails(&["create", "-f", &outside]);
    assert!(err.contains("spec.replicas: Invalid value: 2: must be within spec.autoscaling [3, 5]"), "{err}");
    assert!(nodepool(&s, "data").await.is_none(), "nothing was created");

    // Accepted, shown, and a manual scale inside the bounds is respected; outside refused.
    s.k.ok(&[
        "patch",
        "np/workers",
        "--type=merge",
        "-p",
        r#"{"spec":{"autoscaling":{"minReplicas":1,"maxReplicas":10}}}"#,
    ]);
    let wide = s.k.ok(&["get", "np", "workers", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    assert_eq!((row[at("MIN")], row[at("MAX")]), ("1", "10"), "{wide}");
    s.k.ok(&["scale", "np/workers", "--replicas=4"]);
    assert_eq!(nodepool(&s, "workers").await.unwrap().size, 4);
    let err = s.k.fails(&["scale", "np/workers", "--replicas=11"]);
    assert!(err.contains("must be within spec.autoscaling [1, 10]"), "{err}");
    assert_eq!(nodepool(&s, "workers").await.unwrap().size, 4, "a refused scale changed nothing");
    let explained = s.k.ok(&["explain", "nodepool.spec.autoscaling"]);
    assert!(explained.contains("minReplicas") && explained.contains("maxReplicas"), "{explained}");

    // Kept across a restart (it lives in sks-apiserver's store, not the orchestrator).
    let bounds = || {
        let k = s.k.clone();
        async move {
            let out = k.run(&[
                "get",
                "np",
                "workers",
                "-o",
                "jsonpath={.spec.autoscaling.minReplicas}-{.spec.autoscaling.maxReplicas}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !text.is_empty()).then_some(text)
        }
    };
    s.env.restart_apiserver();
    let after = wait_for("sks-apiserver back after a restart", Duration::from_secs(30), bounds).await;
    assert_eq!(after, "1-10");
}
