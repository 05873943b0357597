//! SKS versions and control-plane upgrades.
//!
//! The versions catalog starts as `catalog::DEFAULT_VERSIONS` and grows when a
//! version is published (`PUT /admin/versions`). A cluster may move to the
//! newest patch of its minor or of the next minor. An upgrade compares, for
//! each control-plane component, the hash of the manifest rendered for the
//! target with the running one, and replaces the differing components one at
//! a time, each taking `--component-upgrade-ms`.
//!
//! The flow rides on the zone's operations: the upgrade's operation carries
//! `Completion::Upgrade` and is due when the component being replaced is done;
//! the tick then finishes that component and starts the next, moving the due
//! time on. Component states, the upgrade record and the operation change in
//! one transaction, so after a `kill -9` the zone resumes where the last commit
//! left it and never replaces a component that already runs the target hash.

use std::cmp::Reverse;

use jiff::Timestamp;
use orchestrator::model::{InstancePool, OperationReason, Ref, SksClusterState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::{ApiError, ApiResult, Config};
use crate::catalog;
use crate::control_plane::{self, ComponentState};
use crate::lifecycle::{self, Outcome};
use crate::world::{ClusterRec, Completion, NodepoolRec, OpRec, Tx, World};

/// How an upgrade was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `PUT /sks-cluster/{id}/upgrade`.
    Manual,
    /// A newer patch of the cluster's minor was published and it has `auto-upgrade`.
    Auto,
}

/// Where an upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeState {
    /// Components are being replaced.
    Running,
    /// Every component runs the target.
    Succeeded,
    /// It stopped at a component; the others keep what they reached.
    Failed,
}

/// One upgrade of a cluster, as stored and as the inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Upgrade {
    /// Its id.
    pub id: Uuid,
    /// The cluster's version when it started.
    pub from: String,
    /// The target version.
    pub to: String,
    /// Who asked for it.
    pub trigger: Trigger,
    /// Where it stands.
    pub state: UpgradeState,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// What it is doing, or how it ended.
    pub message: String,
    /// The operation that is `pending` while it runs (`GET /operation/{id}`).
    pub operation_id: Uuid,
}

/// The test switch of `PUT /admin/sks-cluster/{id}/fail-next-upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailSwitch {
    /// The component whose replacement fails.
    pub component: String,
    /// The failure message (default: "<component> did not become healthy at v<to>").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub use orchestrator::versions::{newest_patch, parse as parse_version, upgrade_targets};

/// The versions catalog, newest first.
pub fn versions(world: &World) -> Vec<String> {
    if world.meta.versions.is_empty() {
        catalog::DEFAULT_VERSIONS.iter().map(std::string::ToString::to_string).collect()
    } else {
        world.meta.versions.clone()
    }
}

/// The version whose nodepool template is `template`, if it is in the catalog.
pub fn template_version(world: &World, template: Uuid) -> Option<String> {
    versions(world)
        .into_iter()
        .find(|v| catalog::NODEPOOL_VARIANTS.iter().any(|variant| catalog::nodepool_template(v, variant) == template))
}

/// A cluster started on an upgrade by a publication.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoUpgrade {
    /// The cluster's zone.
    pub zone: String,
    /// The cluster.
    pub cluster_id: Uuid,
    /// The upgrade started.
    pub upgrade_id: Uuid,
    /// Its target.
    pub to: String,
}

/// Adds `version` to the catalog, then starts an `auto` upgrade for every
/// cluster of its minor that opted in (it is their newest patch).
pub fn publish(tx: &mut Tx<'_>, config: &Config, version: &str) -> ApiResult<(Vec<String>, Vec<AutoUpgrade>)> {
    let Some((major, minor, _)) = parse_version(version) else {
        return Err(ApiError::bad_request(format!(
            "version: {version:?} is not a version: expected MAJOR.MINOR.PATCH, e.g. 1.34.3"
        )));
    };
    let mut all = versions(tx.world());
    if all.iter().any(|v| v == version) {
        return Err(ApiError::conflict(format!("version: {version} is already published")));
    }
    all.push(version.to_owned());
    all.sort_by_key(|v| Reverse(parse_version(v)));
    tx.meta_mut().versions = all.clone();
    tracing::info!(version, "SKS version published");
    let mut started = Vec::new();
    for zone in config.zones.clone() {
        let on_minor: Vec<Uuid> = tx
            .zone(&zone)
            .clusters
            .values()
            .filter(|c| parse_version(&c.cluster.version).is_some_and(|(a, b, _)| (a, b) == (major, minor)))
            .map(|c| c.cluster.id)
            .collect();
        for cluster_id in on_minor {
            if let Some((upgrade_id, to)) = auto_upgrade(tx, config, &zone, cluster_id) {
                started.push(AutoUpgrade { zone: zone.clone(), cluster_id, upgrade_id, to });
            }
        }
    }
    Ok((all, started))
}

/// Starts an `auto` upgrade of the cluster to the newest patch of its minor
/// when it opted in, runs an older patch and has no upgrade running.
fn auto_upgrade(tx: &mut Tx<'_>, config: &Config, zone: &str, cluster_id: Uuid) -> Option<(Uuid, String)> {
    let rec = tx.get::<ClusterRec>(zone, cluster_id)?;
    let (major, minor, patch) = parse_version(&rec.cluster.version)?;
    let idle = rec.cluster.state != SksClusterState::Deleting
        && !rec.upgrades.iter().any(|u| u.state == UpgradeState::Running);
    if rec.cluster.spec.auto_upgrade != Some(true) || !idle {
        return None;
    }
    let to = newest_patch(&versions(tx.world()), (major, minor))?;
    if parse_version(&to).is_none_or(|(_, _, newest)| newest <= patch) {
        return None;
    }
    match start(tx, config, zone, cluster_id, &to, Trigger::Auto, "upgrade-sks-cluster") {
        Ok((upgrade_id, _)) => {
            tracing::info!(cluster = %cluster_id, to, "auto-upgrade started");
            Some((upgrade_id, to))
        }
        Err(e) => {
            tracing::warn!(cluster = %cluster_id, to, error = %e.message, "auto-upgrade not started");
            None
        }
    }
}

/// Starts an upgrade of the cluster to `to`: validates it (409 while another
/// runs, 400 for a version not allowed), marks the components to replace
/// `pending`, and records the operation, `pending` until the last is replaced.
pub fn start(
    tx: &mut Tx<'_>,
    config: &Config,
    zone: &str,
    cluster_id: Uuid,
    to: &str,
    trigger: Trigger,
    command: &str,
) -> ApiResult<(Uuid, orchestrator::model::Operation)> {
    let mut rec = tx
        .get::<ClusterRec>(zone, cluster_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("SKS cluster", cluster_id))?;
    if rec.cluster.state == SksClusterState::Deleting {
        return Err(ApiError::conflict(format!("SKS cluster {cluster_id} is being deleted")));
    }
    if let Some(running) = rec.upgrades.iter().find(|u| u.state == UpgradeState::Running) {
        return Err(ApiError::conflict(format!(
            "SKS cluster {cluster_id} is already upgrading to {} (upgrade {}, started {})",
            running.to, running.id, running.started_at
        )));
    }
    let allowed = upgrade_targets(&versions(tx.world()), &rec.cluster.version);
    if !allowed.iter().any(|v| v == to) {
        return Err(ApiError::bad_request(format!(
            "version: cannot upgrade from {} to {to:?}; allowed: [{}]",
            rec.cluster.version,
            allowed.join(", ")
        )));
    }
    let upgrade_id = Uuid::new_v4();
    let op = lifecycle::operation(command, Some((cluster_id, format!("/sks-cluster/{cluster_id}"))));
    for c in &mut rec.control_plane {
        if c.manifest_hash != control_plane::hash_at(&c.name, to) {
            c.state = ComponentState::Pending;
        }
    }
    rec.upgrades.insert(
        0,
        Upgrade {
            id: upgrade_id,
            from: rec.cluster.version.clone(),
            to: to.to_owned(),
            trigger,
            state: UpgradeState::Running,
            started_at: lifecycle::now(),
            completed_at: None,
            message: "starting".to_owned(),
            operation_id: op.id,
        },
    );
    rec.cluster.state = SksClusterState::Upgrading;
    tx.put(zone, rec);
    let now = lifecycle::now_ms();
    let mut op = OpRec { op, due_ms: now, completion: Completion::Upgrade(cluster_id, upgrade_id) };
    let outcome = advance(tx, config, zone, cluster_id, upgrade_id, now);
    lifecycle::settle(&mut op, outcome);
    tx.put(zone, op.clone());
    Ok((upgrade_id, op.op))
}

/// Moves an upgrade on, when the component being replaced is due: finishes
/// it, then starts the next one, or completes the upgrade.
pub fn advance(tx: &mut Tx<'_>, config: &Config, zone: &str, cluster_id: Uuid, upgrade_id: Uuid, now: i64) -> Outcome {
    let Some(mut rec) = tx.get::<ClusterRec>(zone, cluster_id).cloned() else {
        let message = format!("SKS cluster {cluster_id} was deleted during the upgrade");
        return Outcome::Failed(OperationReason::Interrupted, message);
    };
    let Some(i) = rec.upgrades.iter().position(|u| u.id == upgrade_id) else {
        let message = format!("upgrade {upgrade_id} of SKS cluster {cluster_id} is unknown");
        return Outcome::Failed(OperationReason::UnknownReason, message);
    };
    match rec.upgrades[i].state {
        UpgradeState::Succeeded => return Outcome::Done,
        UpgradeState::Failed => return Outcome::Failed(OperationReason::Fault, rec.upgrades[i].message.clone()),
        UpgradeState::Running => {}
    }
    let to = rec.upgrades[i].to.clone();
    let step = config.component_upgrade.as_millis() as i64;
    loop {
        if let Some(c) = rec.control_plane.iter_mut().find(|c| c.state == ComponentState::Upgrading) {
            c.state = ComponentState::Running;
            if let Some(switch) = rec.fail_next_upgrade.take_if(|s| s.component == c.name) {
                let message =
                    switch.message.unwrap_or_else(|| format!("{} did not become healthy at v{to}", switch.component));
                tracing::warn!(cluster = %cluster_id, component = switch.component, "upgrade failed (test switch)");
                for other in &mut rec.control_plane {
                    other.state = ComponentState::Running;
                }
                finish(&mut rec, i, UpgradeState::Failed, message.clone());
                tx.put(zone, rec);
                return Outcome::Failed(OperationReason::Fault, message);
            }
            c.version = to.clone();
            c.manifest_hash = control_plane::hash_at(&c.name, &to);
        }
        if let Some(c) = rec.control_plane.iter_mut().find(|c| c.state == ComponentState::Pending) {
            c.state = ComponentState::Upgrading;
            rec.upgrades[i].message = format!("replacing {} with its v{to} manifest", c.name);
            if step > 0 {
                tx.put(zone, rec);
                return Outcome::Until(now + step);
            }
            continue;
        }
        rec.cluster.version = to.clone();
        finish(&mut rec, i, UpgradeState::Succeeded, format!("the control plane runs {to}"));
        tx.put(zone, rec);
        nodepools_follow(tx, zone, cluster_id, &to);
        // A patch published while this one ran was skipped for it: catch up.
        auto_upgrade(tx, config, zone, cluster_id);
        return Outcome::Done;
    }
}

fn finish(rec: &mut ClusterRec, i: usize, state: UpgradeState, message: String) {
    let upgrade = &mut rec.upgrades[i];
    upgrade.state = state;
    upgrade.completed_at = Some(lifecycle::now());
    upgrade.message = message;
    if rec.cluster.state == SksClusterState::Upgrading {
        rec.cluster.state = SksClusterState::Running;
    }
}

/// Every nodepool of the cluster moves to `version` and its template: the
/// members created from now on run it; existing members keep theirs.
fn nodepools_follow(tx: &mut Tx<'_>, zone: &str, cluster_id: Uuid, version: &str) {
    let template = Ref { id: catalog::nodepool_template(version, "standard") };
    let nodepools: Vec<(Uuid, Option<Uuid>)> = tx
        .zone(zone)
        .nodepools
        .values()
        .filter(|n| n.cluster_id == cluster_id)
        .map(|n| (n.nodepool.id, n.nodepool.instance_pool.map(|p| p.id)))
        .collect();
    for (id, pool) in nodepools {
        tx.update::<NodepoolRec>(zone, id, |n| {
            n.nodepool.version = Some(version.to_owned());
            n.nodepool.template = Some(template);
        });
        if let Some(pool) = pool {
            tx.update::<InstancePool>(zone, pool, |p| p.spec.template = Some(template));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(list: &[&str]) -> Vec<String> {
        list.iter().map(std::string::ToString::to_string).collect()
    }

    #[test]
    fn a_published_version_sorts_newest_first() {
        let mut all = catalog(&["1.34.2", "1.33.6", "1.34.10", "1.4.0"]);
        all.sort_by_key(|v| Reverse(parse_version(v)));
        assert_eq!(all, catalog(&["1.34.10", "1.34.2", "1.33.6", "1.4.0"]));
    }

    #[test]
    fn templates_map_back_to_their_version() {
        let world = World::default();
        let template = catalog::nodepool_template("1.33.5", "standard");
        assert_eq!(template_version(&world, template).as_deref(), Some("1.33.5"));
        assert_eq!(template_version(&world, Uuid::new_v4()), None);
    }
}
