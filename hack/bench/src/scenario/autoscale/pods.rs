//! A watch of the benchmark's pods that records, per pod, when the bench saw
//! it turn Unschedulable (the scheduler's `PodScheduled=False`, reason
//! `Unschedulable`), bound to a node, Running, and deleted. Times are taken
//! when a chunk of the watch arrives, before it is parsed: the condition's
//! own `lastTransitionTime` has whole seconds only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::Value;

use super::workload::{APP, NAMESPACE};
use crate::scenario::lbs::kube::Kube;

/// What the watch saw of one pod.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// First seen `PodScheduled=False/Unschedulable`.
    pub unschedulable: Option<Instant>,
    /// First seen with `spec.nodeName`.
    pub bound: Option<Instant>,
    /// First seen `Running`.
    pub running: Option<Instant>,
    /// Seen DELETED.
    pub deleted: Option<Instant>,
    /// Its node.
    pub node: Option<String>,
}

/// Everything seen, by pod name.
#[derive(Default)]
pub struct Board {
    seen: Mutex<HashMap<String, Seen>>,
}

fn unschedulable(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable")
    })
}

impl Board {
    fn record(&self, kind: &str, pod: &Value, at: Instant) {
        let Some(name) = pod["metadata"]["name"].as_str() else { return };
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = seen.entry(name.to_owned()).or_default();
        if kind == "DELETED" {
            s.deleted.get_or_insert(at);
            return;
        }
        if unschedulable(pod) {
            s.unschedulable.get_or_insert(at);
        }
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            s.bound.get_or_insert(at);
            s.node.get_or_insert_with(|| node.to_owned());
        }
        if pod["status"]["phase"] == "Running" {
            s.running.get_or_insert(at);
        }
    }

    /// What was seen of `names`, in their order.
    pub fn of(&self, names: &[String]) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        names.iter().map(|n| seen.get(n).cloned().unwrap_or_default()).collect()
    }

    /// Forgets `names` (a pod of the same name later starts afresh).
    pub fn forget(&self, names: &[String]) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for n in names {
            seen.remove(n);
        }
    }

    /// Waits until `done` holds for every pod of `names`, at most `timeout`;
    /// how many it held for at the end.
    pub async fn wait(&self, names: &[String], timeout: Duration, done: impl Fn(&Seen) -> bool) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.of(names).iter().filter(|s| done(s)).count();
            if n == names.len() || Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The path of the benchmark pods' collection, with `query`.
fn path(query: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{APP}{query}")
}

/// Follows the benchmark's pods from now until `stop`, recording into
/// `board`; `ready` is told once the watch is open. A watch the server ends
/// is reopened where it stopped.
pub async fn follow(
    kube: Kube,
    board: std::sync::Arc<Board>,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let list = kube.get(&path("&limit=1")).await?;
    let mut rv = list["metadata"]["resourceVersion"].as_str().context("the pods LIST's resourceVersion")?.to_owned();
    let mut ready = Some(ready);
    loop {
        let resp = kube.open(&path(&format!("&watch=1&resourceVersion={rv}&allowWatchBookmarks=true"))).await?;
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = stop.changed() => return Ok(()),
            };
            let at = Instant::now();
            match chunk {
                Some(Ok(data)) => buf.extend_from_slice(&data),
                Some(Err(e)) => bail!("the pods watch failed: {e}"),
                None => break,
            }
            let mut start = 0;
            while let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
                let event: Value = serde_json::from_slice(&buf[start..start + end]).context("a watch event")?;
                start += end + 1;
                let kind = event["type"].as_str().unwrap_or_default();
                if kind == "ERROR" {
                    bail!("the pods watch ended with {}", event["object"]);
                }
                if let Some(v) = event["object"]["metadata"]["resourceVersion"].as_str() {
                    v.clone_into(&mut rv);
                }
                if kind != "BOOKMARK" {
                    board.record(kind, &event["object"], at);
                }
            }
            buf.drain(..start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_is_recorded_once_per_state() {
        let board = Board::default();
        let (t0, t1) = (Instant::now(), Instant::now() + Duration::from_secs(1));
        let pending = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        board.record("ADDED", &json!({"metadata": {"name": "p"}}), t0);
        board.record("MODIFIED", &pending, t0);
        board.record("MODIFIED", &pending, t1);
        let running = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "conditions": []}});
        board.record("MODIFIED", &running, t1);
        let seen = &board.of(&["p".to_owned()])[0];
        assert_eq!((seen.unschedulable, seen.bound, seen.running, seen.deleted), (Some(t0), Some(t1), Some(t1), None));
        assert_eq!(seen.node.as_deref(), Some("n1"));
        board.record("DELETED", &running, t1);
        assert_eq!(board.of(&["p".to_owned()])[0].deleted, Some(t1));
        board.forget(&["p".to_owned()]);
        assert!(board.of(&["p".to_owned()])[0].unschedulable.is_none());
    }
}
