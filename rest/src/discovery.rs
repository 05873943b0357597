//! Discovery documents: `/api`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`.
//! Built from the resource definitions alone, so they never wait on a backend.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resource::ResourceDef;

/// The groups and their versions, in serving order.
pub fn groups(defs: &[&ResourceDef]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in defs {
        let versions = out.entry(d.group.to_owned()).or_default();
        if !versions.iter().any(|v| v == d.version) {
            versions.push(d.version.to_owned());
        }
    }
    out
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis`: every named group.
pub fn group_list(defs: &[&ResourceDef]) -> Value {
    let groups: Vec<Value> =
        groups(defs).iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<g>`.
pub fn group(defs: &[&ResourceDef], name: &str) -> Option<Value> {
    let groups = groups(defs);
    let versions = groups.get(name).filter(|_| !name.is_empty())?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `GET /api`: the core versions (none unless core resources are served).
pub fn core_versions(defs: &[&ResourceDef], server_address: &str) -> Value {
    let versions: Vec<&str> = if defs.iter().any(|d| d.group.is_empty()) { vec!["v1"] } else { Vec::new() };
    json!({
        "kind": "APIVersions",
        "versions": versions,
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `GET /apis/<g>/<v>` (or `/api/v1`): the resources and their subresources.
pub fn resource_list(defs: &[&ResourceDef], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&&ResourceDef> = defs.iter().filter(|d| d.group == group && d.version == version).collect();
    if mine.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in mine {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": d.verbs,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        for s in &d.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", d.plural, s.name),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != d.group || s.version != d.version {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    let gv = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
