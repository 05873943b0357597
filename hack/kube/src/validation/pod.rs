//! Pods and pod templates: `ValidatePodCreate`, `ValidatePodUpdate` and
//! `ValidatePodTemplateSpec` for the fields the project's tests and the
//! autoscaler use: containers (names, images, resource requests and
//! limits), restart policy, node name, node selector, required node
//! affinity, tolerations, and what a pod update may change. Volumes, ports,
//! probes, security contexts and the other fields are taken as sent.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sks_autoscaler::quantity::parse_milli;
use sks_rest::status::Cause;

use super::names;
use super::{Causes, duplicate, invalid_rendered, items, quoted, required_because, str_at};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
/// Resource names a container may name without a domain.
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
/// Resource names the API knows without a domain (`IsStandardResourceName`).
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "requests.storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];
/// What `ValidatePodUpdate` lets an update change, as its message lists them.
const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// ValidatePodCreate: the spec, then what only a pod (not a template) needs: container images.
pub fn create(pod: &Value) -> Causes {
    let mut out = spec(&pod["spec"], "spec");
    out.extend(images(&pod["spec"], "spec.containers"));
    out
}

/// ValidatePodUpdate: the new spec is valid and differs from the old one
/// only where an update may change a pod.
pub fn update(new: &Value, old: &Value) -> Causes {
    let mut out = spec(&new["spec"], "spec");
    let mut munged = new["spec"].clone();
    for field in ["containers", "initContainers"] {
        let old_list = items(old, &format!("/spec/{field}"));
        for (i, c) in munged.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten().enumerate() {
            if let Some(o) = old_list.get(i) {
                c["image"] = o["image"].clone();
            }
        }
    }
    for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
        keep(&mut munged, &old["spec"], field);
    }
    let old_tolerations = items(old, "/spec/tolerations");
    let added_only = items(new, "/spec/tolerations").starts_with(old_tolerations);
    if added_only {
        keep(&mut munged, &old["spec"], "tolerations");
    }
    if munged != old["spec"] {
        out.push(Cause::forbidden(
            "spec",
            format!("pod updates may not change fields other than {UPDATABLE}\n{}", diff(&old["spec"], &munged)),
        ));
    }
    out
}

/// Sets `field` of `to` as in `from` (absent when absent there).
fn keep(to: &mut Value, from: &Value, field: &str) {
    match (&from[field], to.as_object_mut()) {
        (Value::Null, Some(m)) => {
            m.remove(field);
        }
        (v, _) => to[field] = v.clone(),
    }
}

/// The top-level spec fields that differ, one line each (kube-apiserver prints a cmp.Diff).
fn diff(old: &Value, new: &Value) -> String {
    let keys: BTreeSet<&String> =
        old.as_object().into_iter().flatten().chain(new.as_object().into_iter().flatten()).map(|(k, _)| k).collect();
    let lines: Vec<String> = keys
        .into_iter()
        .filter(|k| old[k.as_str()] != new[k.as_str()])
        .map(|k| format!("  {k}: {} -> {}", old[k.as_str()], new[k.as_str()]))
        .collect();
    lines.join("\n")
}

/// kube-apiserver's quantity format, which a body must follow to be decoded at all.
const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Reads the resource quantities of a pod spec's containers as kube-apiserver
/// decodes them: a number becomes its string (a Quantity is always stored
/// as one), anything unparsable fails the whole decoding (the caller answers
/// 400 `<Kind> in version "v1" cannot be handled as a <Kind>: <this>`).
pub fn decode_quantities(spec: &mut Value) -> Result<(), &'static str> {
    for field in ["containers", "initContainers"] {
        for c in spec.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten() {
            for list in ["limits", "requests"] {
                let quantities = c.pointer_mut(&format!("/resources/{list}")).and_then(Value::as_object_mut);
                for (_, q) in quantities.into_iter().flatten() {
                    if let Value::Number(n) = q {
                        *q = json!(n.to_string());
                    }
                    if q.as_str().is_none_or(|text| parse_milli(text).is_err()) {
                        return Err(QUANTITY_FORMAT);
                    }
                }
            }
        }
    }
    Ok(())
}

/// ValidatePodTemplateSpec's spec part (containers need no image in a template).
pub fn template_spec(spec_of: &Value, path: &str) -> Causes {
    spec(spec_of, path)
}

/// ValidatePodSpec, in kube-apiserver's order, for the fields modelled.
fn spec(s: &Value, path: &str) -> Causes {
    let mut out = Vec::new();
    out.extend(containers(s, &format!("{path}.containers")));
    let restart = str_at(s, "/restartPolicy");
    if restart.is_empty() {
        out.push(Cause::required(&format!("{path}.restartPolicy")));
    } else if !RESTART_POLICIES.contains(&restart) {
        out.push(Cause::not_supported(&format!("{path}.restartPolicy"), &json!(restart), RESTART_POLICIES));
    }
    out.extend(super::meta::labels(&s["nodeSelector"], &format!("{path}.nodeSelector")));
    if let Some(required) = s.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        && !required.is_null()
    {
        let p = format!("{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution");
        out.extend(node_selector(required, &p));
    }
    let node = str_at(s, "/nodeName");
    if !node.is_empty() {
        out.extend(super::invalid_str(&format!("{path}.nodeName"), node, names::dns1123_subdomain(node)));
    }
    out.extend(tolerations(items(s, "/tolerations"), &format!("{path}.tolerations")));
    out
}

fn containers(s: &Value, path: &str) -> Causes {
    let list = items(s, "/containers");
    if list.is_empty() {
        return vec![Cause::required(path)];
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = str_at(c, "/name");
        if name.is_empty() {
            out.push(Cause::required(&format!("{at}.name")));
        } else {
            out.extend(super::invalid_str(&format!("{at}.name"), name, names::dns1123_label(name)));
            if !seen.insert(name) {
                out.push(duplicate(&format!("{at}.name"), &quoted(name), None));
            }
        }
        out.extend(resources(&c["resources"], &format!("{at}.resources")));
    }
    out
}

/// `validateContainersOnlyForPod`: a pod's containers name an image.
fn images(s: &Value, path: &str) -> Causes {
    let mut out = Vec::new();
    for (i, c) in items(s, "/containers").iter().enumerate() {
        let image = str_at(c, "/image");
        if image.is_empty() {
            out.push(Cause::required(&format!("{path}[{i}].image")));
        } else if image.trim() != image {
            out.push(Cause::invalid(
                &format!("{path}[{i}].image"),
                &json!(image),
                "must not have leading or trailing whitespace",
            ));
        }
    }
    out
}

/// ValidateContainerResourceRequirements: names, non-negative amounts, requests within limits.
fn resources(r: &Value, path: &str) -> Causes {
    let mut out = Vec::new();
    for list in ["limits", "requests"] {
        for (name, quantity) in r[list].as_object().into_iter().flatten() {
            let at = format!("{path}.{list}[{name}]");
            out.extend(resource_name(name, &at));
            let text = quantity.as_str().unwrap_or("");
            if parse_milli(text).is_ok_and(|q| q < 0) {
                out.push(Cause::invalid(&at, &json!(text), "must be greater than or equal to 0"));
            }
            if list == "requests"
                && let (Ok(request), Some(limit)) = (parse_milli(text), r["limits"][name].as_str())
                && parse_milli(limit).is_ok_and(|l| request > l)
            {
                out.push(Cause::invalid(
                    &format!("{path}.requests"),
                    &json!(text),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
        }
    }
    out
}

/// validateContainerResourceName.
fn resource_name(name: &str, path: &str) -> Causes {
    let mut out = super::invalid_str(path, name, names::qualified_name(name));
    if !out.is_empty() || name.contains('/') {
        return out;
    }
    let hugepages = name.starts_with("hugepages-");
    if !STANDARD_RESOURCES.contains(&name) && !hugepages {
        out.push(Cause::invalid(path, &json!(name), "must be a standard resource type or fully qualified"));
    }
    if !CONTAINER_RESOURCES.contains(&name) && !hugepages {
        out.push(Cause::invalid(path, &json!(name), "must be a standard resource for containers"));
    }
    out
}

/// ValidateNodeSelector (a required node affinity).
fn node_selector(selector: &Value, path: &str) -> Causes {
    let terms_path = format!("{path}.nodeSelectorTerms");
    let terms = items(selector, "/nodeSelectorTerms");
    if terms.is_empty() {
        return vec![required_because(&terms_path, "must have at least one node selector term")];
    }
    let mut out = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        for (j, r) in items(term, "/matchExpressions").iter().enumerate() {
            out.extend(requirement(r, &format!("{terms_path}[{i}].matchExpressions[{j}]"), true));
        }
        for (j, r) in items(term, "/matchFields").iter().enumerate() {
            out.extend(field_requirement(r, &format!("{terms_path}[{i}].matchFields[{j}]")));
        }
    }
    out
}

/// A label requirement of a node selector (`gt_lt`) or a label selector
/// (ValidateNodeSelectorRequirement, ValidateLabelSelectorRequirement).
pub fn requirement(r: &Value, path: &str, gt_lt: bool) -> Causes {
    let mut out = Vec::new();
    let values = items(r, "/values");
    let operator = str_at(r, "/operator");
    match operator {
        "In" | "NotIn" if values.is_empty() => {
            out.push(required_because(
                &format!("{path}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ));
        }
        "In" | "NotIn" => {}
        "Exists" | "DoesNotExist" if !values.is_empty() => out.push(Cause::forbidden(
            &format!("{path}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Exists" | "DoesNotExist" => {}
        "Gt" | "Lt" if gt_lt && values.len() != 1 => out.push(required_because(
            &format!("{path}.values"),
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "Gt" | "Lt" if gt_lt => {}
        other => out.push(Cause::invalid(&format!("{path}.operator"), &json!(other), "not a valid selector operator")),
    }
    let key = str_at(r, "/key");
    out.extend(super::invalid_str(&format!("{path}.key"), key, names::qualified_name(key)));
    for (i, v) in values.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        out.extend(super::invalid_str(&format!("{path}.values[{i}]"), v, names::label_value(v)));
    }
    out
}

/// ValidateNodeFieldSelectorRequirement: only `metadata.name In|NotIn <one name>`.
fn field_requirement(r: &Value, path: &str) -> Causes {
    let mut out = Vec::new();
    let operator = str_at(r, "/operator");
    match operator {
        "In" | "NotIn" if items(r, "/values").len() != 1 => out.push(required_because(
            &format!("{path}.values"),
            "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
        )),
        "In" | "NotIn" => {}
        other => out.push(Cause::not_supported(&format!("{path}.operator"), &json!(other), &["In", "NotIn"])),
    }
    let key = str_at(r, "/key");
    if key != "metadata.name" {
        out.push(Cause::invalid(&format!("{path}.key"), &json!(key), "not a valid field selector key"));
    }
    out
}

/// ValidateTolerations.
fn tolerations(list: &[Value], path: &str) -> Causes {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let (key, operator, value, effect) =
            (str_at(t, "/key"), str_at(t, "/operator"), str_at(t, "/value"), str_at(t, "/effect"));
        if !key.is_empty() {
            out.extend(super::invalid_str(&format!("{at}.key"), key, names::qualified_name(key)));
        }
        if key.is_empty() && operator != "Exists" {
            out.push(Cause::invalid(
                &format!("{at}.operator"),
                &json!(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if !t["tolerationSeconds"].is_null() && effect != "NoExecute" {
            out.push(Cause::invalid(
                &format!("{at}.effect"),
                &json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let errs = names::label_value(value);
                if !errs.is_empty() {
                    out.push(Cause::invalid(&format!("{at}.operator"), &json!(value), errs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                let rendered = format!(
                    r#"{{"Key":{},"Operator":"Exists","Value":{},"Effect":{},"TolerationSeconds":{}}}"#,
                    quoted(key),
                    quoted(value),
                    quoted(effect),
                    t["tolerationSeconds"]
                );
                out.push(invalid_rendered(
                    &format!("{at}.operator"),
                    &rendered,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            "Exists" => {}
            other => out.push(Cause::not_supported(&format!("{at}.operator"), &json!(other), TOLERATION_OPERATORS)),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            out.push(Cause::not_supported(&format!("{at}.effect"), &json!(effect), TAINT_EFFECTS));
        }
    }
    out
}

/// ValidatePodBinding: the target is a Node, by name.
pub fn binding(b: &Value) -> Causes {
    let mut out = Vec::new();
    let kind = str_at(b, "/target/kind");
    if !kind.is_empty() && kind != "Node" {
        out.push(Cause::not_supported("target.kind", &json!(kind), &["Node", "<empty>"]));
    }
    if str_at(b, "/target/name").is_empty() {
        out.push(Cause::required("target.name"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn containers_need_names_and_images() {
        assert_eq!(messages(create(&pod(json!({"restartPolicy": "Always"})))), ["spec.containers: Required value"]);
        let bad = pod(
            json!({"restartPolicy": "Always", "containers": [{"name": "web", "image": "x"}, {"name": "web"}, {"image": "y"}]}),
        );
        assert_eq!(
            messages(create(&bad)),
            [
                "spec.containers[1].name: Duplicate value: \"web\"",
                "spec.containers[2].name: Required value",
                "spec.containers[1].image: Required value",
            ]
        );
        let template = json!({"restartPolicy": "Always", "containers": [{"name": "web"}]});
        assert_eq!(template_spec(&template, "spec.template.spec"), [], "a template needs no image");
    }

    #[test]
    fn resources_tolerations_and_affinity() {
        let bad = pod(json!({"restartPolicy": "Always",
            "containers": [{"name": "web", "image": "x", "resources": {"requests": {"cpu": "-1", "foo": "1"}}}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In"}, {"key": "gpu", "operator": "Near", "values": ["a"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "value": "gpu"}, {"key": "t", "effect": "Sometimes", "value": "v"}]}));
        assert_eq!(
            messages(create(&bad)),
            [
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.containers[0].resources.requests[foo]: Invalid value: \"foo\": must be a standard resource type or fully qualified",
                "spec.containers[0].resources.requests[foo]: Invalid value: \"foo\": must be a standard resource for containers",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].operator: Invalid value: \"Near\": not a valid selector operator",
                "spec.tolerations[0].operator: Invalid value: {\"Key\":\"dedicated\",\"Operator\":\"Exists\",\"Value\":\"gpu\",\"Effect\":\"\",\"TolerationSeconds\":null}: value must be empty when `operator` is 'Exists'",
                "spec.tolerations[1].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
    }

    #[test]
    fn updates_change_only_what_a_pod_update_may() {
        let old =
            pod(json!({"restartPolicy": "Always", "nodeName": "n1", "containers": [{"name": "web", "image": "a"}],
            "tolerations": [{"key": "a", "operator": "Exists"}]}));
        let mut ok = old.clone();
        ok["spec"]["containers"][0]["image"] = json!("b");
        ok["spec"]["tolerations"] = json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        assert_eq!(update(&ok, &old), []);
        let mut moved = old.clone();
        moved["spec"]["nodeName"] = json!("n2");
        let causes = update(&moved, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
            "{}",
            causes[0].message
        );
        assert!(causes[0].message.ends_with("nodeName: \"n1\" -> \"n2\""), "{}", causes[0].message);
    }

    #[test]
    fn quantities_are_decoded_as_strings() {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": 1, "memory": "1Gi"}}}]});
        assert_eq!(decode_quantities(&mut spec), Ok(()));
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "1");
        let mut bad = json!({"containers": [{"name": "c", "resources": {"limits": {"memory": "1Gb"}}}]});
        assert_eq!(decode_quantities(&mut bad), Err(QUANTITY_FORMAT));
    }

    #[test]
    fn bindings_target_nodes() {
        assert_eq!(binding(&json!({"target": {"kind": "Node", "name": "n1"}})), []);
        assert_eq!(
            messages(binding(&json!({"target": {"kind": "Pod"}}))),
            [
                "target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\"",
                "target.name: Required value"
            ]
        );
    }
}
