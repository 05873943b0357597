//! core/v1 and events.k8s.io/v1 Events are one resource seen through two
//! APIs, as in kube-apiserver: what is written through one is read, listed,
//! described and watched through the other, with the same name, uid and
//! resourceVersion. Runs against real binaries too (KUBE_ASSETS).

use std::io::BufRead as _;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use sks_e2e::kubeapi::{KubeApi, KubeOptions};
use sks_e2e::kubectl::Kubectl;

fn create(k: &Kubectl, doc: &Value) -> Value {
    let out = k.with_stdin(&["create", "-o", "json", "-f", "-"], &doc.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).unwrap()
}

/// The item of a list named `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

/// The lines a watch of `path` prints, as they come.
fn watch(k: &Kubectl, path: &str) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = k
        .command()
        .args(["get", "--raw", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The first object the watch reports named `name` (waiting at most 20 s).
fn watched(rx: &mpsc::Receiver<String>, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("the watch did not report {name}"));
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["object"]["metadata"]["name"] == name {
            return event["object"].clone();
        }
    }
}

fn identity(e: &Value) -> (Value, Value, Value) {
    (e["metadata"]["name"].clone(), e["metadata"]["uid"].clone(), e["metadata"]["resourceVersion"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_and_events_k8s_io_events_are_one_resource() {
    let api = KubeApi::start(KubeOptions::default()).await;
    let k = api.kubectl();
    let svc = create(
        &k,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
    );
    let regarding = json!({"apiVersion": "v1", "kind": "Service", "name": "web", "namespace": "default", "uid": svc["metadata"]["uid"]});

    // Watches of both APIs, from now.
    let rv = |path: &str| {
        let list: Value = serde_json::from_str(&k.ok(&["get", "--raw", path])).unwrap();
        list["metadata"]["resourceVersion"].as_str().unwrap().to_owned()
    };
    let core_rv = rv("/api/v1/namespaces/default/events");
    let v1_rv = rv("/apis/events.k8s.io/v1/namespaces/default/events");
    let (mut core_watch, core_rx) =
        watch(&k, &format!("/api/v1/namespaces/default/events?watch=1&resourceVersion={core_rv}"));
    let (mut v1_watch, v1_rx) =
        watch(&k, &format!("/apis/events.k8s.io/v1/namespaces/default/events?watch=1&resourceVersion={v1_rv}"));

    // Written as sks-ccm writes them: events.k8s.io/v1.
    let ensuring = create(
        &k,
        &json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.ensuring", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "sks-ccm", "reportingInstance": "sks-ccm-1",
            "action": "EnsuringLoadBalancer", "reason": "EnsuringLoadBalancer", "regarding": regarding,
            "note": "Ensuring load balancer", "type": "Normal"}),
    );
    let core = named(&get(&k, &["get", "events", "-n", "default"]), "web.ensuring").clone();
    assert_eq!(identity(&core), identity(&ensuring), "one object: same name, uid and resourceVersion");
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"], regarding);
    assert_eq!(
        (core["message"].as_str(), core["reportingComponent"].as_str(), core["eventTime"].as_str()),
        (Some("Ensuring load balancer"), Some("sks-ccm"), Some("2026-01-01T00:00:00.000000Z"))
    );
    assert_eq!(identity(&watched(&core_rx, "web.ensuring")), identity(&ensuring), "the core/v1 watch saw it");
    let described = k.ok(&["describe", "svc", "web", "-n", "default"]);
    assert!(
        described.contains("EnsuringLoadBalancer") && described.contains("Ensuring load balancer"),
        "kubectl describe shows the event: {described}"
    );

    // Written as kubelets and older clients write them: core/v1.
    let synced = create(
        &k,
        &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.synced", "namespace": "default"},
            "involvedObject": regarding, "reason": "Synced", "message": "Synced the service", "type": "Normal",
            "source": {"component": "tests"}, "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:05:00Z"}),
    );
    assert_eq!(synced["reportingComponent"], "", "kube-apiserver writes the empty reporting fields");
    let v1 = named(&get(&k, &["get", "events.v1.events.k8s.io", "-n", "default"]), "web.synced").clone();
    assert_eq!(identity(&v1), identity(&synced));
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v1["regarding"], regarding);
    assert_eq!(
        (v1["note"].as_str(), v1["deprecatedSource"]["component"].as_str(), v1["deprecatedCount"].as_i64()),
        (Some("Synced the service"), Some("tests"), Some(3))
    );
    assert_eq!(v1["deprecatedLastTimestamp"], "2026-01-01T00:05:00Z");
    assert_eq!(identity(&watched(&v1_rx, "web.synced")), identity(&synced), "the events.k8s.io watch saw it");
    assert!(k.ok(&["describe", "svc", "web", "-n", "default"]).contains("Synced the service"));
    let table = k.ok(&["get", "events", "-n", "default"]);
    assert!(table.contains("EnsuringLoadBalancer") && table.contains("Synced"), "{table}");

    // A change through one API is a change of the other's object; so is a delete.
    let patched = get(
        &k,
        &[
            "patch",
            "events.v1.events.k8s.io",
            "web.ensuring",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"series":{"count":2,"lastObservedTime":"2026-01-01T00:01:00.000000Z"}}"#,
        ],
    );
    let core = get(&k, &["get", "events", "web.ensuring", "-n", "default"]);
    assert_eq!(identity(&core), identity(&patched));
    assert_eq!(core["series"]["count"], 2);
    k.ok(&["delete", "events", "web.synced", "-n", "default"]);
    let left = get(&k, &["get", "events.v1.events.k8s.io", "-n", "default"]);
    assert!(left["items"].as_array().unwrap().iter().all(|e| e["metadata"]["name"] != "web.synced"), "{left}");

    for w in [&mut core_watch, &mut v1_watch] {
        let _ = w.kill();
        let _ = w.wait();
    }
}
