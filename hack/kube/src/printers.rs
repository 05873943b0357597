//! `kubectl get` columns of Pods, Deployments, ReplicaSets, DaemonSets and
//! PodDisruptionBudgets, as kubernetes' `pkg/printers/internalversion`
//! renders them (`printPod`, `printDeployment`, ...): the same headers, in
//! the same places (AGE among them), the wide ones at priority 1.

use serde_json::{Value, json};
use sks_rest::resource::Column;

use crate::selector;

fn col(
    name: &'static str,
    type_: &'static str,
    priority: i32,
    description: &'static str,
    cell: fn(&Value) -> Value,
) -> Column {
    Column { name, type_, format: "", priority, description, cell }
}

fn int(o: &Value, pointer: &str) -> Value {
    json!(o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0))
}

fn or_none(s: Option<&str>) -> Value {
    json!(s.filter(|s| !s.is_empty()).unwrap_or("<none>"))
}

fn containers(o: &Value, pointer: &str, field: &str) -> Value {
    let list: Vec<&str> =
        o.pointer(pointer).and_then(Value::as_array).into_iter().flatten().filter_map(|c| c[field].as_str()).collect();
    json!(list.join(","))
}

fn template_containers(o: &Value) -> Value {
    containers(o, "/spec/template/spec/containers", "name")
}

fn template_images(o: &Value) -> Value {
    containers(o, "/spec/template/spec/containers", "image")
}

fn spec_selector(o: &Value) -> Value {
    or_none(Some(&selector::format(&o["spec"]["selector"])))
}

/// The STATUS kubectl prints for a pod (printPod's reason).
pub fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason =
        status["reason"].as_str().filter(|r| !r.is_empty()).or(status["phase"].as_str()).unwrap_or("").to_owned();
    let conditions = status["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if conditions.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated") {
        reason = "SchedulingGated".to_owned();
    }
    let mut has_running = false;
    for c in status["containerStatuses"].as_array().into_iter().flatten().rev() {
        let state = &c["state"];
        if let Some(r) = state["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = r.to_owned();
        } else if let Some(r) = state["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = r.to_owned();
        } else if state["terminated"].is_object() {
            reason = match state["terminated"]["signal"].as_i64().filter(|s| *s != 0) {
                Some(signal) => format!("Signal:{signal}"),
                None => format!("ExitCode:{}", state["terminated"]["exitCode"].as_i64().unwrap_or(0)),
            };
        } else if c["ready"] == true && state["running"].is_object() {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        let ready = conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        reason = if ready { "Running" } else { "NotReady" }.to_owned();
    }
    let terminal = matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        if status["reason"] == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if !terminal {
            reason = "Terminating".to_owned();
        }
    }
    reason
}

fn pod_ready(pod: &Value) -> Value {
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == true && c["state"]["running"].is_object())
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(pod: &Value) -> Value {
    let restarts: i64 = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    json!(restarts.to_string())
}

fn readiness_gates(pod: &Value) -> Value {
    let gates = pod["spec"]["readinessGates"].as_array().map(Vec::as_slice).unwrap_or_default();
    if gates.is_empty() {
        return json!("<none>");
    }
    let conditions = pod["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let met = gates
        .iter()
        .filter(|g| conditions.iter().any(|c| c["type"] == g["conditionType"] && c["status"] == "True"))
        .count();
    json!(format!("{met}/{}", gates.len()))
}

/// NAME READY STATUS RESTARTS AGE, and IP NODE NOMINATED NODE READINESS GATES wide.
pub fn pods() -> Vec<Column> {
    vec![
        col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic.", pod_ready),
        col("Status", "string", 0, "The aggregate status of the containers in this pod.", |o| json!(pod_status(o))),
        col(
            "Restarts",
            "string",
            0,
            "The number of times the containers in this pod have been restarted.",
            pod_restarts,
        ),
        Column::age(),
        col("IP", "string", 1, "IP address allocated to the pod.", |o| or_none(o["status"]["podIP"].as_str())),
        col("Node", "string", 1, "Name of the Node this pod runs on.", |o| or_none(o["spec"]["nodeName"].as_str())),
        col("Nominated Node", "string", 1, "Name of the node nominated by the scheduler.", |o| {
            or_none(o["status"]["nominatedNodeName"].as_str())
        }),
        col("Readiness Gates", "string", 1, "Pod readiness gates.", readiness_gates),
    ]
}

fn wide_template() -> [Column; 3] {
    [
        col("Containers", "string", 1, "Names of each container in the template.", template_containers),
        col("Images", "string", 1, "Images referenced by each container in the template.", template_images),
        col("Selector", "string", 1, "Label selector for pods.", spec_selector),
    ]
}

/// NAME READY UP-TO-DATE AVAILABLE AGE, and CONTAINERS IMAGES SELECTOR wide.
pub fn deployments() -> Vec<Column> {
    let mut out = vec![
        col("Ready", "string", 0, "Number of the pod with ready state", |o| {
            json!(format!("{}/{}", int(o, "/status/readyReplicas"), int(o, "/spec/replicas")))
        }),
        col(
            "Up-to-date",
            "integer",
            0,
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            |o| int(o, "/status/updatedReplicas"),
        ),
        col(
            "Available",
            "integer",
            0,
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            |o| int(o, "/status/availableReplicas"),
        ),
        Column::age(),
    ];
    out.extend(wide_template());
    out
}

/// NAME DESIRED CURRENT READY AGE, and CONTAINERS IMAGES SELECTOR wide.
pub fn replicasets() -> Vec<Column> {
    let mut out = vec![
        col("Desired", "integer", 0, "Number of desired pods.", |o| int(o, "/spec/replicas")),
        col("Current", "integer", 0, "Number of actual pods.", |o| int(o, "/status/replicas")),
        col("Ready", "integer", 0, "Number of pods ready.", |o| int(o, "/status/readyReplicas")),
        Column::age(),
    ];
    out.extend(wide_template());
    out
}

/// NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE, and CONTAINERS IMAGES SELECTOR wide.
pub fn daemonsets() -> Vec<Column> {
    let mut out = vec![
        col("Desired", "integer", 0, "The desired number of pods.", |o| int(o, "/status/desiredNumberScheduled")),
        col("Current", "integer", 0, "The current number of pods.", |o| int(o, "/status/currentNumberScheduled")),
        col("Ready", "integer", 0, "The number of pods ready.", |o| int(o, "/status/numberReady")),
        col("Up-to-date", "integer", 0, "The number of pods updated.", |o| int(o, "/status/updatedNumberScheduled")),
        col("Available", "integer", 0, "The number of pods available.", |o| int(o, "/status/numberAvailable")),
        col("Node Selector", "string", 0, "The node selector of the pods.", |o| {
            or_none(Some(&selector::format_labels(&o["spec"]["template"]["spec"]["nodeSelector"])))
        }),
        Column::age(),
    ];
    out.extend(wide_template());
    out
}

fn int_or_string(v: &Value) -> Value {
    match v {
        Value::Null => json!("N/A"),
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

/// NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE.
pub fn pod_disruption_budgets() -> Vec<Column> {
    vec![
        col("Min Available", "string", 0, "The minimum number of pods that must be available.", |o| {
            int_or_string(&o["spec"]["minAvailable"])
        }),
        col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable.", |o| {
            int_or_string(&o["spec"]["maxUnavailable"])
        }),
        col(
            "Allowed Disruptions",
            "integer",
            0,
            "Calculated number of pods that may be disrupted at this time.",
            |o| int(o, "/status/disruptionsAllowed"),
        ),
        Column::age(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(columns: &[Column], o: &Value) -> Vec<Value> {
        columns.iter().filter(|c| !c.is_age()).map(|c| (c.cell)(o)).collect()
    }

    #[test]
    fn pods_print_as_kubectl_prints_them() {
        let pending = json!({"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        assert_eq!(
            cells(&pods(), &pending),
            [
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let running = json!({"metadata": {"name": "web-1"}, "spec": {"nodeName": "n1", "containers": [{"name": "web"}, {"name": "side"}]},
            "status": {"phase": "Running", "podIP": "10.0.1.2", "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 1, "state": {"running": {}}},
                {"name": "side", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            cells(&pods(), &running)[..5],
            [json!("1/2"), json!("CrashLoopBackOff"), json!("3"), json!("10.0.1.2"), json!("n1")]
        );
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        deleting["status"]["containerStatuses"][1]["state"] = json!({"running": {}});
        assert_eq!(pod_status(&deleting), "Terminating");
        let names: Vec<&str> = pods().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]);
    }

    #[test]
    fn workloads_print_their_counts() {
        let d = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells(&deployments(), &d),
            [json!("2/3"), json!(3), json!(2), json!("web"), json!("nginx:1"), json!("app=web")]
        );
        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(cells(&pod_disruption_budgets(), &pdb), [json!("50%"), json!("N/A"), json!(1)]);
    }
}
