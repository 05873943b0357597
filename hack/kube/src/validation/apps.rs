//! apps/v1 Deployments, ReplicaSets and DaemonSets: `ValidateDeployment`,
//! `ValidateReplicaSet`, `ValidateDaemonSet` and their updates, for the
//! selector, the replica count and the pod template (its labels must match
//! the selector, its pods restart `Always`, its spec as a pod template's).
//! Strategies, revision history and progress deadlines are taken as sent.

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::{Causes, invalid_rendered, items};
use crate::selector;

/// Which workload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// The create validation of `obj`.
pub fn create(kind: Workload, obj: &Value) -> Causes {
    spec(kind, &obj["spec"])
}

/// The update validation of `new`: its spec, and the selector fixed once set (apps/v1).
pub fn update(kind: Workload, new: &Value, old: &Value) -> Causes {
    let mut out = spec(kind, &new["spec"]);
    if new["spec"]["selector"] != old["spec"]["selector"] {
        out.push(Cause::invalid("spec.selector", &new["spec"]["selector"], "field is immutable"));
    }
    out
}

/// The status validation of `new` (ValidateDeploymentStatus and siblings): counts are not negative.
pub fn status(kind: Workload, new: &Value) -> Causes {
    let fields: &[&str] = match kind {
        Workload::Deployment => {
            &["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"]
        }
        Workload::ReplicaSet => &["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas"],
        Workload::DaemonSet => &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
        ],
    };
    fields.iter().flat_map(|f| nonnegative(&new["status"][f], &format!("status.{f}"))).collect()
}

fn nonnegative(v: &Value, path: &str) -> Causes {
    match v.as_i64() {
        Some(n) if n < 0 => vec![Cause::invalid(path, &json!(n), "must be greater than or equal to 0")],
        _ => Vec::new(),
    }
}

fn spec(kind: Workload, s: &Value) -> Causes {
    let mut out = Vec::new();
    if kind != Workload::DaemonSet {
        out.extend(nonnegative(&s["replicas"], "spec.replicas"));
    }
    let sel = &s["selector"];
    if sel.is_null() {
        out.push(Cause::required("spec.selector"));
    } else {
        out.extend(label_selector(sel, "spec.selector"));
        let empty = sel["matchLabels"].as_object().is_none_or(serde_json::Map::is_empty)
            && items(sel, "/matchExpressions").is_empty();
        if empty {
            let detail = match kind {
                Workload::DaemonSet => "empty selector is invalid for daemonset",
                // kube-apiserver says "deployment" for ReplicaSets too.
                _ => "empty selector is invalid for deployment",
            };
            out.push(Cause::invalid("spec.selector", sel, detail));
        }
    }
    out.extend(template(s, sel));
    out.extend(nonnegative(&s["minReadySeconds"], "spec.minReadySeconds"));
    out
}

/// ValidatePodTemplateSpecForReplicaSet (and the DaemonSet's equivalent).
fn template(s: &Value, sel: &Value) -> Causes {
    let mut out = Vec::new();
    let template = &s["template"];
    let labels = &template["metadata"]["labels"];
    let selects_something =
        selector::parse(sel).is_some_and(|p| !p.match_labels.is_empty() || !p.match_expressions.is_empty());
    if selects_something && !selector::matches(sel, labels) {
        let rendered = if labels.is_null() { "null".to_owned() } else { labels.to_string() };
        out.push(invalid_rendered(
            "spec.template.metadata.labels",
            &rendered,
            "`selector` does not match template `labels`",
        ));
    }
    out.extend(super::meta::labels(labels, "spec.template.metadata.labels"));
    out.extend(super::pod::template_spec(&template["spec"], "spec.template.spec"));
    let restart = template["spec"]["restartPolicy"].as_str().unwrap_or("");
    if restart != "Always" {
        out.push(Cause::not_supported("spec.template.spec.restartPolicy", &json!(restart), &["Always"]));
    }
    if !template["spec"]["activeDeadlineSeconds"].is_null() {
        out.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    out
}

/// ValidateLabelSelector: matchLabels as labels, each expression's operator, key and values.
pub fn label_selector(sel: &Value, path: &str) -> Causes {
    let mut out = Vec::new();
    for (i, r) in items(sel, "/matchExpressions").iter().enumerate() {
        out.extend(super::pod::requirement(r, &format!("{path}.matchExpressions[{i}]"), false));
    }
    out.extend(super::meta::labels(&sel["matchLabels"], &format!("{path}.matchLabels")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn deployment(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"restartPolicy": "Always", "containers": [{"name": "web", "image": "x"}]}})
    }

    #[test]
    fn selectors_must_exist_and_match_the_template() {
        let ok = deployment(
            json!({"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
        );
        assert_eq!(create(Workload::Deployment, &ok), []);
        let bad = deployment(
            json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "db"}))}),
        );
        assert_eq!(
            messages(create(Workload::Deployment, &bad)),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`",
            ]
        );
        let none = deployment(json!({"template": template(json!({"app": "web"}))}));
        assert_eq!(messages(create(Workload::ReplicaSet, &none)), ["spec.selector: Required value"]);
        let empty = deployment(json!({"selector": {}, "template": template(json!({"app": "web"}))}));
        assert_eq!(
            messages(create(Workload::DaemonSet, &empty)),
            ["spec.selector: Invalid value: {}: empty selector is invalid for daemonset"]
        );
        let mut changed = ok.clone();
        changed["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        changed["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        assert_eq!(
            messages(update(Workload::Deployment, &changed, &ok)),
            ["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"]
        );
    }
}
