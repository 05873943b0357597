//! Pod conditions and the states read off them, as kubernetes'
//! `pkg/api/v1/pod` helpers: `UpdatePodCondition`, `IsPodReady`, and
//! whether a pod is active (not ended, not being deleted) or available.

use serde_json::{Value, json};

/// Now, to the second, as kube-apiserver's `metav1.Time` serialises it.
pub fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// `UpdatePodCondition`: sets the condition `type_` of `pod` to `status`
/// (with `reason` and `message`, empty ones left out), keeping its
/// transition time unless the status changes. Whether anything changed.
pub fn set(pod: &mut Value, type_: &str, status: &str, reason: &str, message: &str) -> bool {
    let mut condition = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(list) = pod["status"]["conditions"].as_array_mut() else { return false };
    match list.iter_mut().find(|c| c["type"] == type_) {
        None => {
            list.push(condition);
            true
        }
        Some(old) => {
            if old["status"] == status {
                condition["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            let same = ["status", "reason", "message", "lastProbeTime", "lastTransitionTime"]
                .iter()
                .all(|f| old[f] == condition[f]);
            *old = condition;
            !same
        }
    }
}

/// The condition `type_` of a pod, if it has one.
pub fn get<'a>(pod: &'a Value, type_: &str) -> Option<&'a Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// `IsPodReady`: its `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    get(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Whether the pod has ended (`Succeeded` or `Failed`).
pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// `IsPodActive`: not ended and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !is_terminal(pod) && pod["metadata"]["deletionTimestamp"].is_null()
}

/// When the pod last became Ready, if it is.
pub fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    get(pod, "Ready").filter(|c| c["status"] == "True").and_then(|c| c["lastTransitionTime"].as_str()?.parse().ok())
}

/// `IsPodAvailable`: Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    min_ready_seconds <= 0 || ready_since(pod).is_some_and(|t| now.as_second() - t.as_second() >= min_ready_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_while_their_status_holds() {
        let mut pod = json!({"status": {}});
        assert!(set(&mut pod, "PodScheduled", "False", "Unschedulable", "0/1 nodes are available"));
        let since = get(&pod, "PodScheduled").unwrap()["lastTransitionTime"].clone();
        assert!(!set(&mut pod, "PodScheduled", "False", "Unschedulable", "0/1 nodes are available"));
        assert!(set(&mut pod, "PodScheduled", "False", "Unschedulable", "0/2 nodes are available"));
        assert_eq!(get(&pod, "PodScheduled").unwrap()["lastTransitionTime"], since);
        assert!(set(&mut pod, "PodScheduled", "True", "", ""));
        let c = get(&pod, "PodScheduled").unwrap();
        assert!(c.get("reason").is_none() && c.get("message").is_none(), "{c}");
        assert!(!is_ready(&pod) && is_active(&pod));
    }
}
