//! The subset of kube-scheduler the stand-in runs: pods naming the default
//! scheduler (or none) that are not bound are placed one at a time, in
//! priority then creation order, by kube-scheduler's filters (from
//! `sks_autoscaler`, the one copy of them) and the least-allocated score
//! (`decide`); a placed pod is bound through `pods/binding`'s store write
//! (`PodScheduled=True`), one that fits nowhere gets
//! `PodScheduled=False/Unschedulable` with kube-scheduler's message and a
//! `FailedScheduling` Warning event from `default-scheduler` (one per
//! distinct message), and is tried again as `queue` says. Nodes are
//! candidates whatever their Ready condition, as in kube-scheduler, which
//! only sees the taints; the stand-in does not taint NotReady Nodes
//! (TaintNodesByCondition is not modelled), so a NotReady Node is a
//! candidate here where a real cluster would have tainted it.

pub mod decide;
pub mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Deserialize as _;
use serde_json::{Value, json};
use sks_autoscaler::PodInfo;
use sks_rest::authn::UserInfo;
use sks_rest::cache::{EventType, ObjectCache};
use sks_rest::memory::MemStorage;
use sks_rest::storage::{Context, Storage as _};
use sks_rest::write;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use self::decide::Outcome;
use self::queue::Failure;
use crate::conditions;
use crate::pods::binding;

/// The stores the scheduler reads and writes.
#[derive(Clone)]
pub struct Stores {
    /// Pods.
    pub pods: Arc<MemStorage>,
    /// Nodes.
    pub nodes: Arc<MemStorage>,
    /// core/v1 Events.
    pub events: Arc<MemStorage>,
}

fn context(namespace: &str) -> Context {
    Context {
        user: UserInfo {
            name: "system:kube-scheduler".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
        namespace: Some(namespace.to_owned()),
        dry_run: false,
    }
}

/// Counts the changes that may make room for a pod that did not fit (a
/// Node added or changed, a pod deleted or ended) and wakes the scheduler on any change.
fn watch(
    cache: &Arc<ObjectCache>,
    moves: fn(&sks_rest::cache::Event) -> bool,
    changes: Arc<AtomicU64>,
    notify: Arc<Notify>,
) {
    let (_, _, mut rx) = cache.subscribe_now();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if moves(&event) {
                        changes.fetch_add(1, Ordering::SeqCst);
                    }
                    notify.notify_one();
                }
                Err(RecvError::Lagged(_)) => {
                    changes.fetch_add(1, Ordering::SeqCst);
                    notify.notify_one();
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

fn pod_moves(event: &sks_rest::cache::Event) -> bool {
    match event.kind {
        EventType::Deleted => true,
        EventType::Modified => {
            conditions::is_terminal(&event.object)
                && event.previous.as_deref().is_some_and(|p| !conditions::is_terminal(p))
        }
        EventType::Added => false,
    }
}

/// Runs the scheduler. Never returns.
pub async fn run(stores: Stores) {
    let changes = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    watch(stores.nodes.cache(), |_| true, changes.clone(), notify.clone());
    watch(stores.pods.cache(), pod_moves, changes.clone(), notify.clone());
    let instance = format!("{}-{}", decide::DEFAULT_SCHEDULER, hostname());
    let mut failures: HashMap<String, Failure> = HashMap::new();
    let mut decoded = Decoded::default();
    loop {
        pass(&stores, &instance, changes.load(Ordering::SeqCst), &mut failures, &mut decoded).await;
        let flush = failures.values().map(queue::next_flush).min().unwrap_or_else(|| Instant::now() + queue::FLUSH);
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep_until(flush.into()) => {}
        }
    }
}

/// The slim form of every pod, decoded once per version (the scheduler reads all of them each pass).
#[derive(Default)]
struct Decoded {
    pods: HashMap<String, (String, Arc<PodInfo>)>,
}

impl Decoded {
    /// The slim form of `pod`, decoding it only when its version is new.
    fn get(&mut self, pod: &Value) -> Option<Arc<PodInfo>> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        let version = pod["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if let Some((seen, info)) = self.pods.get(uid)
            && seen == version
        {
            return Some(info.clone());
        }
        let info = Arc::new(PodInfo::deserialize(pod).ok()?);
        self.pods.insert(uid.to_owned(), (version.to_owned(), info.clone()));
        Some(info)
    }

    /// Forgets the pods not in `pods`.
    fn keep_only(&mut self, pods: &[Arc<Value>]) {
        let live: std::collections::HashSet<&str> = pods.iter().filter_map(|p| p["metadata"]["uid"].as_str()).collect();
        self.pods.retain(|uid, _| live.contains(uid.as_str()));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned())
}

async fn pass(
    stores: &Stores,
    instance: &str,
    cluster: u64,
    failures: &mut HashMap<String, Failure>,
    decoded: &mut Decoded,
) {
    let pods = stores.pods.all();
    decoded.keep_only(&pods);
    let waiting = decide::queue(&pods);
    if waiting.is_empty() {
        failures.clear();
        return;
    }
    let waiting_uids: std::collections::HashSet<&str> =
        waiting.iter().filter_map(|p| p["metadata"]["uid"].as_str()).collect();
    failures.retain(|uid, _| waiting_uids.contains(uid.as_str()));
    let mut candidates = decide::candidates(&stores.nodes.all(), &pods, |p| decoded.get(p));
    let now = Instant::now();
    for pod in waiting {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let version = pod["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if failures.get(&uid).is_some_and(|f| !queue::due(f, now, cluster, version)) {
            continue;
        }
        let Some(info) = decoded.get(&pod) else { continue };
        let (ns, name) = (info.namespace.to_string(), info.name.to_string());
        match decide::schedule(&info, &pod, &candidates) {
            Outcome::Bind(i, node) => {
                match binding::bind(&stores.pods, &context(&ns), &name, &node, Default::default()).await {
                    Ok(_) => {
                        candidates[i].add(&info);
                        failures.remove(&uid);
                        tracing::debug!(pod = %format!("{ns}/{name}"), %node, "bound");
                    }
                    Err(e) => tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "binding failed; next pass"),
                }
            }
            Outcome::Unschedulable(message) => {
                let previous = failures.remove(&uid);
                let (count, noted) = previous.map_or((0, String::new()), |f| (f.count, f.message));
                let recorded = record_unschedulable(stores, &pod, &message).await;
                if noted != message {
                    report(stores, &pod, &message, instance).await;
                }
                let pod_version = recorded.unwrap_or_else(|| version.to_owned());
                failures.insert(uid, Failure { count: count + 1, at: now, cluster, pod_version, message });
            }
        }
    }
}

/// Sets `PodScheduled=False/Unschedulable` with `message`; the pod's resourceVersion after it.
async fn record_unschedulable(stores: &Stores, pod: &Value, message: &str) -> Option<String> {
    let (ns, name) =
        (pod["metadata"]["namespace"].as_str().unwrap_or(""), pod["metadata"]["name"].as_str().unwrap_or(""));
    let uid = pod["metadata"]["uid"].clone();
    let message = message.to_owned();
    let written =
        write::update(stores.pods.def(), stores.pods.as_ref(), &context(ns), name, Some("status"), move |current| {
            let mut next = current.clone();
            if current["metadata"]["uid"] == uid {
                conditions::set(&mut next, "PodScheduled", "False", "Unschedulable", &message);
            }
            Ok(next)
        })
        .await;
    match written {
        Ok(p) => p["metadata"]["resourceVersion"].as_str().map(str::to_owned),
        Err(e) => {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "recording Unschedulable failed; next pass");
            None
        }
    }
}

/// The `FailedScheduling` event kube-scheduler writes (through events.k8s.io/v1; stored as core/v1).
pub fn failed_scheduling_event(pod: &Value, message: &str, instance: &str, now: jiff::Timestamp) -> Value {
    let meta = &pod["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
    let micro = jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": meta["namespace"]},
        "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": name, "uid": meta["uid"],
            "apiVersion": "v1", "resourceVersion": meta["resourceVersion"]},
        "reason": "FailedScheduling",
        "message": message,
        "type": "Warning",
        "eventTime": micro.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "action": "Scheduling",
        "reportingComponent": decide::DEFAULT_SCHEDULER,
        "reportingInstance": instance,
    })
}

async fn report(stores: &Stores, pod: &Value, message: &str, instance: &str) {
    let event = failed_scheduling_event(pod, message, instance, jiff::Timestamp::now());
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    if let Err(e) = write::create(stores.events.def(), stores.events.as_ref(), &context(ns), event).await {
        tracing::warn!(error = %e, "writing a FailedScheduling event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_scheduling_events_are_kube_schedulers() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "default", "uid": "u", "resourceVersion": "7"}});
        let now: jiff::Timestamp = "2026-01-01T00:00:00.123456789Z".parse().unwrap();
        let e =
            failed_scheduling_event(&pod, "0/1 nodes are available: 1 Insufficient cpu.", "default-scheduler-h", now);
        assert_eq!(e["metadata"]["name"], format!("web-1.{:x}", now.as_nanosecond()));
        assert_eq!(e["eventTime"], "2026-01-01T00:00:00.123456Z");
        assert_eq!(
            (e["type"].as_str(), e["reason"].as_str(), e["action"].as_str()),
            (Some("Warning"), Some("FailedScheduling"), Some("Scheduling"))
        );
        assert_eq!(e["involvedObject"]["uid"], "u");
        assert!(crate::validation::event::legacy(&crate::events::core_form(&e, false)).is_empty());
    }
}
