//! A simulated kubelet's pods: it watches the pods bound to its node
//! (`fieldSelector=spec.nodeName=<node>`, as a kubelet does), starts each
//! one at once (status `Running`, every condition `True`, a pod IP, its
//! containers running their images), and finishes a pod's termination as
//! soon as it gets a `deletionTimestamp` (deleted with grace period 0, its
//! uid as precondition). No container runs: a pod is as its status says.
//!
//! Pod IPs come from the node's pod range, a /24 of 10.0.0.0/8 derived from
//! its instance's address (the zone's addresses are unique, so are the
//! ranges of up to 65,536 nodes), the lowest address not used by another
//! pod of the node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use super::objects::Machine;

/// Pods a node runs at most (kubelet's `maxPods`), and the addresses of its range.
const RANGE_SIZE: u8 = 254;

/// The first three octets of the pod range of a node whose instance has address `ip` (127.64.0.0/10).
pub fn pod_range(ip: Ipv4Addr) -> [u8; 3] {
    let [_, b, c, host] = ip.octets();
    let block = (u32::from(b.saturating_sub(64)) << 8) | u32::from(c);
    let n = block * 254 + u32::from(host.saturating_sub(1));
    [10, ((n >> 8) & 0xff) as u8, (n & 0xff) as u8]
}

/// The lowest address of `range` not in `used`.
pub fn free_ip(range: [u8; 3], used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    (1..=RANGE_SIZE).map(|h| Ipv4Addr::new(range[0], range[1], range[2], h)).find(|ip| !used.contains(ip))
}

/// Whether the kubelet still has to start `pod`: bound here, not being
/// deleted, not ended, and not yet reported running and ready.
pub fn needs_start(pod: &Value) -> bool {
    let status = &pod["status"];
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let ready =
        status["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
    match status["phase"].as_str().unwrap_or("Pending") {
        "Pending" => true,
        "Running" => !ready || status["podIP"].is_null(),
        _ => false,
    }
}

/// The status a kubelet reports once `pod` runs on a node at `host_ip` with address `pod_ip`, at `now`.
pub fn running_status(pod: &Value, host_ip: Option<Ipv4Addr>, pod_ip: Ipv4Addr, now: &str) -> Value {
    let condition =
        |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or("");
            let name = c["name"].as_str().unwrap_or("");
            let id = format!("{:016x}", digest(&format!("{}/{name}", pod["metadata"]["uid"].as_str().unwrap_or(""))));
            json!({"name": name, "state": {"running": {"startedAt": now}}, "lastState": {}, "ready": true, "restartCount": 0,
                "image": image, "imageID": format!("{image}@sha256:{}", "0".repeat(64)), "containerID": format!("containerd://{id}{id}{id}{id}"),
                "started": true})
        })
        .collect();
    let conditions =
        ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map(condition);
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions,
        "podIP": pod_ip.to_string(),
        "podIPs": [{"ip": pod_ip.to_string()}],
        "startTime": now,
        "containerStatuses": containers,
    });
    if let Some(ip) = host_ip {
        status["hostIP"] = json!(ip.to_string());
        status["hostIPs"] = json!([{"ip": ip.to_string()}]);
    }
    status
}

/// A stable 64-bit digest (fnv-1a) of `s`, for container ids.
pub fn digest(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Runs the pods of node `m` as the node's client `client`. Never returns.
pub async fn run(client: kube::Client, m: Machine) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", m.name));
    let range = m.ipv4.map_or([10, 255, 255], pod_range);
    // The addresses of the node's running pods, by pod uid.
    let mut addresses: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    let mut stream = watcher::watcher(pods.clone(), config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
            Ok(Event::Delete(pod)) => {
                addresses.remove(pod.metadata.uid.as_deref().unwrap_or(""));
                continue;
            }
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::debug!(node = %m.name, error = %e, "watching the node's pods failed; retrying");
                continue;
            }
        };
        let Ok(value) = serde_json::to_value(&pod) else { continue };
        if let Err(e) = sync(&pods, &m, range, &mut addresses, &value).await {
            tracing::debug!(node = %m.name, pod = ?pod.metadata.name, error = %e, "syncing a pod failed; next event");
        }
    }
}

async fn sync(
    pods: &Api<Pod>,
    m: &Machine,
    range: [u8; 3],
    addresses: &mut BTreeMap<String, Ipv4Addr>,
    pod: &Value,
) -> kube::Result<()> {
    let (ns, name, uid) = (
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or(""),
        pod["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
    );
    let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), ns);
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        addresses.remove(&uid);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        return match api.delete(name, &params).await {
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            other => other.map(drop),
        };
    }
    if let Some(ip) = pod["status"]["podIP"].as_str().and_then(|ip| ip.parse().ok()) {
        addresses.insert(uid.clone(), ip);
    }
    if !needs_start(pod) {
        return Ok(());
    }
    let used: Vec<Ipv4Addr> = addresses.iter().filter(|(u, _)| **u != uid).map(|(_, ip)| *ip).collect();
    let ip = match addresses.get(&uid) {
        Some(ip) => *ip,
        None => free_ip(range, &used).unwrap_or(Ipv4Addr::new(range[0], range[1], range[2], 0)),
    };
    addresses.insert(uid, ip);
    let status = running_status(pod, m.ipv4, ip, &now());
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(json!({"status": status}))).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ranges_are_per_node_and_addresses_per_pod() {
        assert_eq!(pod_range(Ipv4Addr::new(127, 64, 0, 1)), [10, 0, 0]);
        assert_eq!(pod_range(Ipv4Addr::new(127, 64, 1, 1)), [10, 0, 254]);
        assert_ne!(pod_range(Ipv4Addr::new(127, 64, 0, 2)), pod_range(Ipv4Addr::new(127, 64, 0, 3)));
        let used = [Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 1, 3)];
        assert_eq!(free_ip([10, 0, 1], &used), Some(Ipv4Addr::new(10, 0, 1, 2)));
    }

    #[test]
    fn a_started_pod_runs_with_its_containers() {
        let pod = json!({"metadata": {"name": "web-1", "uid": "u"}, "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx:1"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}});
        assert!(needs_start(&pod));
        let status = running_status(
            &pod,
            Some(Ipv4Addr::new(127, 64, 0, 7)),
            Ipv4Addr::new(10, 0, 6, 1),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            (status["phase"].as_str(), status["podIP"].as_str(), status["hostIP"].as_str()),
            (Some("Running"), Some("10.0.6.1"), Some("127.64.0.7"))
        );
        let c = &status["containerStatuses"][0];
        assert_eq!(
            (c["ready"].as_bool(), c["started"].as_bool(), c["image"].as_str()),
            (Some(true), Some(true), Some("nginx:1"))
        );
        assert!(c["state"]["running"]["startedAt"].is_string());
        let mut running = pod.clone();
        running["status"] = status;
        assert!(!needs_start(&running));
        let mut ended = pod.clone();
        ended["status"]["phase"] = json!("Succeeded");
        assert!(!needs_start(&ended));
    }
}
