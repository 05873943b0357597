//! The two controllers tests rely on: Node heartbeats (a Node whose Lease is
//! not renewed within the grace period becomes `Ready=Unknown`, as
//! kube-controller-manager's node lifecycle controller does) and APIService
//! availability (as the aggregator's availability controller does).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sks_rest::authn::UserInfo;
use sks_rest::cache::ObjectCache;
use sks_rest::storage::{Context, Storage};

use crate::aggregator::Aggregator;
use sks_rest::memory::MemStorage;
use sks_rest::write;

fn system() -> Context {
    Context {
        user: UserInfo {
            name: "system:kube-controller-manager".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
        namespace: None,
        dry_run: false,
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now")
}

/// A condition list with `type` set to `status`/`reason`/`message`, or `None` when already so.
fn with_condition(conditions: &Value, type_: &str, status: &str, reason: &str, message: &str) -> Option<Value> {
    let mut list = conditions.as_array().cloned().unwrap_or_default();
    let stamp = now().to_string();
    match list.iter_mut().find(|c| c["type"] == type_) {
        Some(c) if c["status"] == status && c["reason"] == reason => return None,
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(stamp);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(
            json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": stamp}),
        ),
    }
    Some(Value::Array(list))
}

/// Writes `updated`'s status through the write pipeline, unless the object changed since it was read.
async fn update_status(storage: &MemStorage, name: &str, updated: Value) -> sks_rest::status::ApiResult<Value> {
    let ctx = system();
    write::update(storage.def(), storage, &ctx, name, Some("status"), move |_| Ok(updated)).await
}

/// Marks Nodes whose Lease went stale `Ready=Unknown`. Never returns.
pub async fn node_heartbeats(nodes: Arc<MemStorage>, leases: Arc<ObjectCache>, grace: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(grace / 4).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        for node in nodes.cache().snapshot().0 {
            let name = node["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let renewed = leases
                .get(&("kube-node-lease".to_owned(), name.clone()))
                .and_then(|l| l["spec"]["renewTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()))
                .or_else(|| node["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse().ok()));
            let Some(renewed) = renewed else { continue };
            let stale = now.duration_since(renewed).unsigned_abs() > grace;
            let ready =
                node["status"]["conditions"].as_array().and_then(|a| a.iter().find(|c| c["type"] == "Ready")).cloned();
            if !stale || ready.as_ref().is_some_and(|c| c["status"] == "Unknown") {
                continue;
            }
            let Some(conditions) = with_condition(
                &node["status"]["conditions"],
                "Ready",
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            ) else {
                continue;
            };
            let mut updated = (*node).clone();
            updated["status"]["conditions"] = conditions;
            if let Err(e) = update_status(&nodes, &name, updated).await {
                tracing::debug!(node = %name, error = %e, "marking a node Ready=Unknown failed; retrying");
            }
        }
    }
}

/// Keeps every remote APIService's `Available` condition current. Never returns.
pub async fn apiservice_availability(apiservices: Arc<MemStorage>, aggregator: Arc<Aggregator>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        for a in apiservices.cache().snapshot().0 {
            let (status, reason, message) = if a["spec"]["service"].is_object() {
                match aggregator.check(&a).await {
                    Ok(()) => ("True", "Passed".to_owned(), "all checks passed".to_owned()),
                    Err((reason, message)) => ("False", reason, message),
                }
            } else {
                ("True", "Local".to_owned(), "Local APIServices are always available".to_owned())
            };
            let Some(conditions) = with_condition(&a["status"]["conditions"], "Available", status, &reason, &message)
            else {
                continue;
            };
            let name = a["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let mut updated = (*a).clone();
            updated["status"]["conditions"] = conditions;
            if let Err(e) = update_status(&apiservices, &name, updated).await {
                tracing::debug!(apiservice = %name, error = %e, "updating availability failed; retrying");
            }
        }
    }
}
