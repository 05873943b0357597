//! What clients look up around instances and nodepools: templates, security
//! groups, and the account resources it has none of (anti-affinity groups,
//! private networks, elastic IPs, deploy targets, snapshots, reverse DNS
//! records), all read-only.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::account;
use crate::app::{ApiError, ApiResult, App};
use crate::catalog;
use crate::http::Call;
use crate::upgrades;
use crate::world::World;

/// Every SKS version a template may be wanted for: the catalog's, and those
/// clusters and nodepools of `zone` still run.
fn versions(world: &World, zone: &str) -> Vec<String> {
    let z = world.zone(zone);
    let mut all: BTreeSet<String> = upgrades::versions(world).into_iter().collect();
    all.extend(z.clusters.values().map(|c| c.cluster.version.clone()));
    all.extend(z.nodepools.values().filter_map(|n| n.nodepool.version.clone()));
    all.into_iter().collect()
}

/// Every template `zone` knows: the public ones, then the SKS node templates.
pub fn templates(app: &App, world: &World, zone: &str) -> Vec<Value> {
    let mut all = catalog::public_templates(&app.config.zones);
    all.extend(catalog::nodepool_templates(&versions(world, zone), &app.config.zones));
    all
}

/// The template `id`, if `zone` knows it.
pub fn template(app: &App, world: &World, zone: &str, id: Uuid) -> Option<Value> {
    templates(app, world, zone).into_iter().find(|t| t["id"] == json!(id))
}

/// The public templates (SKS node templates are not listed: nodepools get
/// theirs from SKS), or none for `visibility=private`: the account registered none.
pub fn list_templates(app: &App, call: &Call) -> ApiResult<Value> {
    let public = call.query("visibility").is_none_or(|v| v == "public");
    let family = call.query("family");
    let templates: Vec<Value> = catalog::public_templates(&app.config.zones)
        .into_iter()
        .filter(|t| public && family.is_none_or(|f| t["family"] == f))
        .collect();
    Ok(json!({ "templates": templates }))
}

pub fn get_template(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "template")?;
    app.read(|w| template(app, w, &call.zone, id)).ok_or_else(|| ApiError::not_found("template", id))
}

/// The account's security groups; the public ones Exoscale offers are not served.
pub fn list_security_groups(app: &App, call: &Call) -> ApiResult<Value> {
    let groups = match call.query("visibility") {
        Some("public") => Vec::new(),
        _ => app.read(|w| account::security_groups(w, &call.zone)),
    };
    Ok(json!({ "security-groups": groups }))
}

pub fn get_security_group(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "security group")?;
    app.read(|w| account::security_group(w, &call.zone, id)).ok_or_else(|| ApiError::not_found("security group", id))
}

/// The kinds of which the account has none: (list operation, list key, get operation, name in messages).
pub const ABSENT_KINDS: &[(&str, &str, &str, &str)] = &[
    ("list-anti-affinity-groups", "anti-affinity-groups", "get-anti-affinity-group", "anti-affinity group"),
    ("list-private-networks", "private-networks", "get-private-network", "private network"),
    ("list-elastic-ips", "elastic-ips", "get-elastic-ip", "elastic IP"),
    ("list-deploy-targets", "deploy-targets", "get-deploy-target", "deploy target"),
    ("list-snapshots", "snapshots", "get-snapshot", "snapshot"),
];

/// Answers a list or get of a kind the account has none of, if `operation` is one.
pub fn absent_kind(call: &Call) -> Option<ApiResult<Value>> {
    let op = call.operation.as_str();
    let &(list, key, _, kind) = ABSENT_KINDS.iter().find(|(list, _, get, _)| *list == op || *get == op)?;
    Some(if op == list {
        Ok(Value::Object([(key.to_owned(), json!([]))].into_iter().collect()))
    } else {
        Err(ApiError::not_found(kind, call.param("id")))
    })
}

/// No instance has a reverse DNS record here: 404, as for an instance without one.
pub fn get_reverse_dns(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance")?;
    if !app.read(|w| w.zone(&call.zone).instances.contains_key(&id)) {
        return Err(ApiError::not_found("instance", id));
    }
    Err(ApiError::not_found("reverse DNS record of instance", id))
}
