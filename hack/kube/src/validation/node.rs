//! Nodes: `ValidateNode` and `ValidateNodeUpdate` (also used for status
//! writes): taints, and what may not change once set.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::names;
use super::{Causes, duplicate, invalid_str, items, quoted, str_at};

/// Taint effects, in kube-apiserver's (unsorted) order.
const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// ValidateNode.
pub fn create(node: &Value) -> Causes {
    let mut out = Vec::new();
    out.extend(taints(node));
    out
}

/// ValidateNodeUpdate: providerID and podCIDRs may only be set once, addresses
/// are unique, taints valid.
pub fn update(new: &Value, old: &Value) -> Causes {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, a) in items(new, "/status/addresses").iter().enumerate() {
        let (type_, address) = (str_at(a, "/type"), str_at(a, "/address"));
        if !seen.insert((type_, address)) {
            let rendered = format!(r#"{{"Type":{},"Address":{}}}"#, quoted(type_), quoted(address));
            out.push(duplicate(&format!("status.addresses[{i}]"), &rendered, None));
        }
    }
    let (old_cidrs, new_cidrs) = (items(old, "/spec/podCIDRs"), items(new, "/spec/podCIDRs"));
    if !old_cidrs.is_empty() {
        let forbidden = "node updates may not change podCIDR except from \"\" to valid";
        if old_cidrs.len() != new_cidrs.len() {
            out.push(Cause::forbidden("spec.podCIDRs", forbidden));
        } else {
            for _ in old_cidrs.iter().zip(new_cidrs).filter(|(o, n)| o != n) {
                out.push(Cause::forbidden("spec.podCIDRs", forbidden));
            }
        }
    }
    let old_id = str_at(old, "/spec/providerID");
    if !old_id.is_empty() && old_id != str_at(new, "/spec/providerID") {
        out.push(Cause::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    out.extend(taints(new));
    out
}

/// validateNodeTaints, whose paths start with `metadata.taints` in kube-apiserver.
fn taints(node: &Value) -> Causes {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in items(node, "/spec/taints").iter().enumerate() {
        let path = format!("metadata.taints[{i}]");
        let (key, value, effect) = (str_at(t, "/key"), str_at(t, "/value"), str_at(t, "/effect"));
        out.extend(invalid_str(&format!("{path}.key"), key, names::qualified_name(key)));
        let value_errors = names::label_value(value);
        if !value_errors.is_empty() {
            out.push(Cause::invalid(&format!("{path}.value"), &json!(value), value_errors.join(";")));
        }
        match effect {
            "" => out.push(Cause::required(&format!("{path}.effect"))),
            e if !EFFECTS.contains(&e) => out.push(Cause::not_supported(&format!("{path}.effect"), &json!(e), EFFECTS)),
            _ => {}
        }
        if !seen.insert((effect, key)) {
            let added = match t["timeAdded"].as_str() {
                Some(s) => quoted(s),
                None => "null".to_owned(),
            };
            let rendered = format!(
                r#"{{"Key":{},"Value":{},"Effect":{},"TimeAdded":{added}}}"#,
                quoted(key),
                quoted(value),
                quoted(effect)
            );
            out.push(duplicate(&path, &rendered, Some("taints must be unique by key and effect pair")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn taints_are_checked() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "dedicated", "value": "a", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "b", "effect": "NoSchedule"},
            {"key": "bad key", "value": "ok", "effect": "Sometimes"}]}});
        assert_eq!(
            messages(create(&node)),
            [
                "metadata.taints[1]: Duplicate value: {\"Key\":\"dedicated\",\"Value\":\"b\",\"Effect\":\"NoSchedule\",\"TimeAdded\":null}: taints must be unique by key and effect pair",
                "metadata.taints[2].key: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "metadata.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
    }

    #[test]
    fn provider_id_is_set_once() {
        let old = json!({"metadata": {"name": "n1"}, "spec": {}});
        let set = json!({"metadata": {"name": "n1"}, "spec": {"providerID": "exoscale://a"}});
        assert_eq!(update(&set, &old), []);
        let changed = json!({"metadata": {"name": "n1"}, "spec": {"providerID": "exoscale://b"}});
        assert_eq!(
            messages(update(&changed, &set)),
            ["spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid"]
        );
    }
}
