//! kube-apiserver's defaults for Pods, pod templates, apps/v1 workloads, and
//! what its default admission plugins add to a new pod (`Priority`,
//! `DefaultTolerationSeconds`, `ServiceAccount`'s account name; not its token
//! volume), plus the status a new pod starts with (`Pending`, its QoS class).
//! Sources: kubernetes' `pkg/apis/core/v1/defaults.go`,
//! `pkg/apis/apps/v1/defaults.go`, `plugin/pkg/admission/{priority,defaulttolerationseconds}`.

use serde_json::{Value, json};
use sks_autoscaler::quantity::parse_milli;
use sks_rest::status::{ApiError, ApiResult, Details};

/// The priority classes every cluster has, with their values.
const BUILT_IN_CLASSES: &[(&str, i64)] =
    &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// Seconds a pod tolerates a not-ready or unreachable node (DefaultTolerationSeconds' default).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Sets `obj[key]` to `value` when absent (or, as Go's zero value, an empty string).
fn or_set(obj: &mut Value, key: &str, value: Value) {
    if obj[key].is_null() || obj[key] == "" {
        obj[key] = value;
    }
}

/// `imagePullPolicy`'s default: `Always` for `:latest` or an untagged image, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// SetDefaults_PodSpec and SetDefaults_Container: what every pod spec (a pod's or a template's) gets.
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    or_set(spec, "dnsPolicy", json!("ClusterFirst"));
    or_set(spec, "restartPolicy", json!("Always"));
    or_set(spec, "terminationGracePeriodSeconds", json!(30));
    or_set(spec, "securityContext", json!({}));
    or_set(spec, "schedulerName", json!("default-scheduler"));
    or_set(spec, "enableServiceLinks", json!(true));
    for field in ["containers", "initContainers"] {
        for c in spec.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten() {
            or_set(c, "terminationMessagePath", json!("/dev/termination-log"));
            or_set(c, "terminationMessagePolicy", json!("File"));
            let policy = pull_policy(c["image"].as_str().unwrap_or(""));
            if c["image"].is_string() {
                or_set(c, "imagePullPolicy", json!(policy));
            }
            or_set(c, "resources", json!({}));
            for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                or_set(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// SetDefaults_Pod: a pod's spec defaults, and requests taken from limits
/// where a container sets only a limit.
pub fn pod(pod: &mut Value) {
    pod_spec(&mut pod["spec"]);
    for field in ["containers", "initContainers"] {
        for c in pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut).into_iter().flatten() {
            let limits = c["resources"]["limits"].as_object().cloned().unwrap_or_default();
            for (name, limit) in limits {
                if c["resources"]["requests"][&name].is_null() {
                    c["resources"]["requests"][&name] = limit;
                }
            }
        }
    }
}

/// The defaults of an apps/v1 workload (`kind` Deployment, ReplicaSet or DaemonSet) and its template.
pub fn workload(kind: &str, obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    match kind {
        "Deployment" => {
            or_set(spec, "replicas", json!(1));
            or_set(spec, "strategy", json!({}));
            or_set(&mut spec["strategy"], "type", json!("RollingUpdate"));
            if spec["strategy"]["type"] == "RollingUpdate" {
                or_set(&mut spec["strategy"], "rollingUpdate", json!({}));
                or_set(&mut spec["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
                or_set(&mut spec["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
            }
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(spec, "progressDeadlineSeconds", json!(600));
        }
        "ReplicaSet" => or_set(spec, "replicas", json!(1)),
        "DaemonSet" => {
            or_set(spec, "updateStrategy", json!({}));
            or_set(&mut spec["updateStrategy"], "type", json!("RollingUpdate"));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                or_set(&mut spec["updateStrategy"], "rollingUpdate", json!({}));
                or_set(&mut spec["updateStrategy"]["rollingUpdate"], "maxUnavailable", json!(1));
                or_set(&mut spec["updateStrategy"]["rollingUpdate"], "maxSurge", json!(0));
            }
            or_set(spec, "revisionHistoryLimit", json!(10));
        }
        _ => {}
    }
    pod_spec(&mut spec["template"]["spec"]);
}

/// The QoS class of a pod (`qos.GetPodQOS`): from its containers' CPU and memory requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> =
        ["containers", "initContainers"].iter().flat_map(|f| pod["spec"][f].as_array().into_iter().flatten()).collect();
    let amount =
        |c: &Value, list: &str, name: &str| c["resources"][list][name].as_str().and_then(|q| parse_milli(q).ok());
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        for name in ["cpu", "memory"] {
            let (request, limit) = (amount(c, "requests", name), amount(c, "limits", name));
            any |= request.is_some_and(|r| r != 0) || limit.is_some_and(|l| l != 0);
            guaranteed &= limit.is_some_and(|l| l != 0) && request.is_none_or(|r| Some(r) == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn forbidden(name: &str, reason: String) -> ApiError {
    let mut e = ApiError::new(403, "Forbidden", format!("pods \"{name}\" is forbidden: {reason}"));
    e.details =
        Some(Box::new(Details { name: Some(name.to_owned()), kind: Some("pods".to_owned()), ..Details::default() }));
    e
}

/// What kube-apiserver's admission adds to a new pod: its priority from its
/// class (`Priority`; 403 for an unknown class or a priority the class does
/// not give), the tolerations of not-ready and unreachable nodes for 300 s
/// (`DefaultTolerationSeconds`), and the `default` service account.
pub fn admit_pod(pod: &mut Value) -> ApiResult<()> {
    let meta = &pod["metadata"];
    // Admission runs before a generated name is drawn: its errors name "".
    let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(n), Some(prefix)) if !prefix.is_empty() && n.starts_with(prefix) => "",
        (n, _) => n.unwrap_or(""),
    }
    .to_owned();
    let spec = &mut pod["spec"];
    let class = spec["priorityClassName"].as_str().unwrap_or("");
    let computed = if class.is_empty() {
        0
    } else {
        match BUILT_IN_CLASSES.iter().find(|(c, _)| *c == class) {
            Some((_, value)) => *value,
            None => return Err(forbidden(&name, format!("no PriorityClass with name {class} was found"))),
        }
    };
    if let Some(given) = spec["priority"].as_i64().filter(|p| *p != computed) {
        return Err(forbidden(
            &name,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
            ),
        ));
    }
    spec["priority"] = json!(computed);
    or_set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let e = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut added = tolerations.clone();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerates(key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if added.len() != tolerations.len() {
        spec["tolerations"] = json!(added);
    }
    if spec["serviceAccountName"].as_str().unwrap_or("").is_empty() {
        spec["serviceAccountName"] = json!("default");
    }
    let account = spec["serviceAccountName"].clone();
    or_set(spec, "serviceAccount", account);
    Ok(())
}

/// The status a new pod starts with, whatever was sent.
pub fn initial_status(pod: &mut Value) {
    pod["status"] = json!({"phase": "Pending", "qosClass": qos_class(pod)});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_kube_apiservers_defaults_and_admission() {
        let mut p = json!({"metadata": {"name": "web"}, "spec": {"containers": [
            {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, "ports": [{"containerPort": 80}]}]}});
        pod(&mut p);
        admit_pod(&mut p).unwrap();
        initial_status(&mut p);
        let s = &p["spec"];
        assert_eq!(
            (s["restartPolicy"].as_str(), s["schedulerName"].as_str()),
            (Some("Always"), Some("default-scheduler"))
        );
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            s["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"}),
            "requests from limits"
        );
        assert_eq!((s["priority"].as_i64(), s["preemptionPolicy"].as_str()), (Some(0), Some("PreemptLowerPriority")));
        let keys: Vec<&str> = s["tolerations"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]);
        assert_eq!(p["status"], json!({"phase": "Pending", "qosClass": "Guaranteed"}));
        assert_eq!(s["serviceAccountName"], "default");
    }

    #[test]
    fn priority_comes_from_the_class_only() {
        let mut critical = json!({"metadata": {"name": "dns"}, "spec": {"priorityClassName": "system-cluster-critical", "tolerations": [{"operator": "Exists"}]}});
        admit_pod(&mut critical).unwrap();
        assert_eq!(critical["spec"]["priority"], 2_000_000_000);
        assert_eq!(critical["spec"]["tolerations"].as_array().unwrap().len(), 1, "already tolerates everything");
        let e = admit_pod(&mut json!({"metadata": {"name": "p"}, "spec": {"priority": 1000}})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                403,
                "pods \"p\" is forbidden: the integer value of priority (1000) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
            )
        );
        let e = admit_pod(&mut json!({"metadata": {"name": "web-x2k4q", "generateName": "web-"}, "spec": {"priorityClassName": "gold"}})).unwrap_err();
        assert_eq!(e.message, "pods \"\" is forbidden: no PriorityClass with name gold was found");
    }

    #[test]
    fn qos_classes() {
        let c = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(qos_class(&c(json!({"requests": {"cpu": "100m"}}))), "Burstable");
        assert_eq!(
            qos_class(&c(json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
    }

    #[test]
    fn workloads_get_their_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        workload("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        let mut empty = json!({"spec": {"strategy": {}}});
        workload("Deployment", &mut empty);
        assert_eq!(
            empty["spec"]["strategy"]["type"], "RollingUpdate",
            "kubectl create deployment sends an empty strategy"
        );
        let mut ds = json!({"spec": {}});
        workload("DaemonSet", &mut ds);
        assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"], json!({"maxUnavailable": 1, "maxSurge": 0}));
    }
}
