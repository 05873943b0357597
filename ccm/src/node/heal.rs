//! Auto-healing (`node-auto-heal`): a Node NotReady too long while its
//! instance runs gets the instance rebooted; still NotReady later, the
//! instance is replaced by a fresh one (the pool grows by one, then the
//! instance is evicted, so the pool is never smaller than it was; its size is
//! recorded on the Node first, see [`annotation::AUTO_HEAL_REPLACING`]). One
//! node per nodepool at a time, never more than a share of the cluster.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use orchestrator::model::{Instance, InstanceState, SksNodepool};
use serde_json::json;
use sks_keys::{annotation, label};

use super::cached::CachedNode;
use super::ready;
use crate::context::Context;
use crate::reconcile::Error;
use crate::superseded::Writes;
use sks_kubeclient::events::EventType;

/// The Node annotations auto-healing reads (the Node cache keeps these only).
pub const ANNOTATIONS: [&str; 2] = [annotation::AUTO_HEAL_REBOOTED_AT, annotation::AUTO_HEAL_REPLACING];

/// The [`annotation::AUTO_HEAL_REPLACING`] value for a replacement in `nodepool`, restoring `size`.
pub fn replacing(nodepool: uuid::Uuid, size: i64) -> String {
    format!("{nodepool}:{size}")
}

/// The replacement recorded on `node`, if any: its nodepool and the size to restore.
pub fn pending_replacement(node: &Node) -> Option<(uuid::Uuid, i64)> {
    let value = node.metadata.annotations.as_ref()?.get(annotation::AUTO_HEAL_REPLACING)?;
    let (nodepool, size) = value.split_once(':')?;
    Some((nodepool.parse().ok()?, size.parse().ok().filter(|s: &i64| *s > 0)?))
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// NotReady this long: reboot.
    pub reboot_after: Duration,
    /// Still NotReady this long after the reboot: replace.
    pub replace_after: Duration,
    /// Largest share of the cluster's nodes being healed at once (at least one node).
    pub max_share: f64,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heal {
    /// Nothing now.
    Nothing,
    /// Reboot the instance.
    Reboot,
    /// Replace the instance with a fresh one (evict, then restore the pool size).
    Replace,
    /// The node recovered: forget the reboot.
    Clear,
}

/// Nodes being healed now (those carrying the annotation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    /// In this node's nodepool, other than this node.
    pub in_nodepool: usize,
    /// In the cluster, other than this node.
    pub in_cluster: usize,
    /// Nodes of the cluster.
    pub cluster_nodes: usize,
}

/// Decides for one initialized Node at `now`.
pub fn decide(
    node: &Node,
    instance: &Instance,
    nodepool: &SksNodepool,
    now: jiff::Timestamp,
    cfg: &Config,
    budget: Budget,
) -> Heal {
    let opted_out = nodepool.spec.labels.as_ref().and_then(|l| l.get(label::AUTO_HEAL)).is_some_and(|v| v == "false");
    if opted_out {
        return Heal::Nothing;
    }
    let rebooted = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotation::AUTO_HEAL_REBOOTED_AT))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(since) = ready::not_ready_since(node) else {
        return if rebooted.is_some() { Heal::Clear } else { Heal::Nothing };
    };
    if instance.state != InstanceState::Running {
        return Heal::Nothing;
    }
    let elapsed = |t: jiff::Timestamp| now.duration_since(t).unsigned_abs();
    match rebooted {
        Some(at) if elapsed(at) >= cfg.replace_after => Heal::Replace,
        Some(_) => Heal::Nothing,
        None => {
            let long_enough = since.is_some_and(|t| elapsed(t) >= cfg.reboot_after);
            let allowed = ((cfg.max_share * budget.cluster_nodes as f64).floor() as usize).max(1);
            if long_enough && budget.in_nodepool == 0 && budget.in_cluster < allowed {
                Heal::Reboot
            } else {
                Heal::Nothing
            }
        }
    }
}

/// Whether `current`, the instance as the orchestrator shows it now (`None`:
/// gone), is still the member of the pool `seen` was in.
pub fn still_member(seen: &Instance, current: Option<&Instance>) -> bool {
    let pool = |i: &Instance| i.manager.as_ref().map(|m| (m.id, m.kind.clone()));
    current.is_some_and(|c| pool(c).is_some() && pool(c) == pool(seen))
}

/// Whether a Node carries a reboot of auto-healing: it is being healed.
fn rebooted(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().is_some_and(|a| a.contains_key(annotation::AUTO_HEAL_REBOOTED_AT))
}

/// The nodes being healed besides `name`, in `nodepool` and in the cluster,
/// among the cluster's Nodes of our nodepools (as the node controller caches
/// them: a LIST per NotReady Node would cost kube-apiserver more than the
/// heal it guards).
fn budget<'a>(name: &str, nodepool: uuid::Uuid, cluster: impl Iterator<Item = &'a ObjectMeta>) -> Budget {
    let pool_id = nodepool.to_string();
    let ours: Vec<&ObjectMeta> =
        cluster.filter(|m| m.labels.as_ref().is_some_and(|l| l.contains_key(label::NODEPOOL_ID))).collect();
    let others = ours.iter().filter(|m| m.name.as_deref() != Some(name) && rebooted(m));
    let in_pool = |m: &&&ObjectMeta| m.labels.as_ref().and_then(|l| l.get(label::NODEPOOL_ID)) == Some(&pool_id);
    Budget {
        in_nodepool: others.clone().filter(in_pool).count(),
        in_cluster: others.count(),
        cluster_nodes: ours.len(),
    }
}

/// Reboots, then replaces, the instance of an initialized Node that stays
/// NotReady, and forgets the reboot once it is Ready again.
pub async fn heal(
    ctx: &Context,
    cfg: &Config,
    node: &Node,
    instance: &Instance,
    nodepool: &SksNodepool,
    cluster: &[Arc<CachedNode>],
    writes: &Writes,
) -> Result<(), Error> {
    if ready::is_ready(node) && !rebooted(&node.metadata) {
        return Ok(());
    }
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let budget = budget(&name, nodepool.id, cluster.iter().map(|n| &n.metadata));
    match decide(node, instance, nodepool, jiff::Timestamp::now(), cfg, budget) {
        Heal::Nothing => {}
        Heal::Reboot => {
            ctx.cloud.client().reboot_instance(instance.id).await?;
            let patch = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REBOOTED_AT: jiff::Timestamp::now().to_string()}}});
            writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
            let note = format!(
                "node {name} has been NotReady for over {:?} while instance {} runs: rebooted it",
                cfg.reboot_after, instance.id
            );
            tracing::warn!(node = %name, "{note}");
            ctx.events.about(node, EventType::Warning, "AutoHealReboot", note).await;
        }
        Heal::Replace => {
            let client = ctx.cloud.client();
            // The decision rests on a snapshot that may predate the instance
            // leaving its pool (this very replacement, seconds ago): evict only
            // what the orchestrator still shows as a member.
            let current = match client.get_instance(instance.id).await {
                Ok(i) => Some(i),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            if !still_member(instance, current.as_ref()) {
                if current.is_none() {
                    ctx.cloud.forget_instance(instance.id);
                }
                return Ok(());
            }
            // Write-ahead: the size is on the Node before the pool grows and the
            // instance is evicted, so a retry finishes this replacement (it grows
            // nothing twice) and the Node goes only once the pool is back to it.
            let size = match pending_replacement(node) {
                Some((recorded, size)) if recorded == nodepool.id => size,
                _ => {
                    let size = client.get_sks_nodepool(ctx.cloud.cluster(), nodepool.id).await?.size;
                    let record = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REPLACING: replacing(nodepool.id, size)}}});
                    writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(record)).await?);
                    size
                }
            };
            orchestrator::nodepool::grow_then_evict(client, ctx.cloud.cluster(), nodepool.id, vec![instance.id], size)
                .await?;
            ctx.cloud.forget_instance(instance.id);
            let done = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REPLACING: null}}});
            writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(done)).await?);
            let note = format!(
                "node {name} stayed NotReady {:?} after a reboot: replaced instance {} with a fresh one in nodepool {}",
                cfg.replace_after, instance.id, nodepool.id
            );
            tracing::warn!(node = %name, "{note}");
            ctx.events.about(node, EventType::Warning, "AutoHealReplace", note).await;
        }
        Heal::Clear => {
            let patch = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REBOOTED_AT: null}}});
            writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
            let note = format!("node {name} is Ready again");
            ctx.events.about(node, EventType::Normal, "AutoHealRecovered", note).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_replacement_reads_back_and_nothing_else_does() {
        let np = uuid::Uuid::new_v4();
        let with = |v: &str| Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                annotations: Some([(annotation::AUTO_HEAL_REPLACING.to_owned(), v.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(pending_replacement(&with(&replacing(np, 3))), Some((np, 3)));
        for bad in ["", "3", "x:3", &format!("{np}:"), &format!("{np}:0"), &format!("{np}:-1")] {
            assert_eq!(pending_replacement(&with(bad)), None, "{bad:?}");
        }
        assert_eq!(pending_replacement(&Node::default()), None);
    }
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use orchestrator::model::SksNodepoolSpec;
    use uuid::Uuid;

    fn node(ready: &str, since_secs: i64, rebooted_secs_ago: Option<i64>) -> Node {
        let now = jiff::Timestamp::now();
        let mut n = Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_transition_time: Some(Time(now - jiff::SignedDuration::from_secs(since_secs))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(ago) = rebooted_secs_ago {
            let at = (now - jiff::SignedDuration::from_secs(ago)).to_string();
            n.metadata.annotations = Some([(annotation::AUTO_HEAL_REBOOTED_AT.to_string(), at)].into());
        }
        n
    }

    fn instance(state: InstanceState) -> Instance {
        serde_json::from_value(serde_json::json!({"id": Uuid::nil(), "name": "n", "state": state.as_str(), "instance-type": {"id": Uuid::nil()}})).unwrap()
    }

    fn pool(opt_out: bool) -> SksNodepool {
        let labels = opt_out.then(|| [(label::AUTO_HEAL.to_string(), "false".to_string())].into());
        crate::node::fixtures::nodepool(Uuid::nil(), SksNodepoolSpec { labels, ..Default::default() })
    }

    const CFG: Config =
        Config { reboot_after: Duration::from_secs(900), replace_after: Duration::from_secs(900), max_share: 0.1 };

    #[test]
    fn reboots_then_replaces_then_forgets() {
        let now = jiff::Timestamp::now();
        let run = instance(InstanceState::Running);
        let budget = Budget { cluster_nodes: 10, ..Default::default() };
        assert_eq!(
            decide(&node("False", 60, None), &run, &pool(false), now, &CFG, budget),
            Heal::Nothing,
            "not long enough"
        );
        assert_eq!(decide(&node("False", 1000, None), &run, &pool(false), now, &CFG, budget), Heal::Reboot);
        assert_eq!(
            decide(&node("Unknown", 2000, Some(60)), &run, &pool(false), now, &CFG, budget),
            Heal::Nothing,
            "waits after a reboot"
        );
        assert_eq!(decide(&node("Unknown", 2000, Some(1000)), &run, &pool(false), now, &CFG, budget), Heal::Replace);
        assert_eq!(decide(&node("True", 10, Some(1000)), &run, &pool(false), now, &CFG, budget), Heal::Clear);
    }

    #[test]
    fn respects_opt_out_state_and_budgets() {
        let now = jiff::Timestamp::now();
        let sick = node("False", 1000, None);
        let run = instance(InstanceState::Running);
        let free = Budget { cluster_nodes: 10, ..Default::default() };
        assert_eq!(decide(&sick, &run, &pool(true), now, &CFG, free), Heal::Nothing, "opted out");
        assert_eq!(
            decide(&sick, &instance(InstanceState::Stopped), &pool(false), now, &CFG, free),
            Heal::Nothing,
            "stopped is not sick"
        );
        assert_eq!(
            decide(&sick, &run, &pool(false), now, &CFG, Budget { in_nodepool: 1, ..free }),
            Heal::Nothing,
            "one per nodepool"
        );
        assert_eq!(
            decide(&sick, &run, &pool(false), now, &CFG, Budget { in_cluster: 1, cluster_nodes: 10, in_nodepool: 0 }),
            Heal::Nothing,
            "10% of 10 is 1"
        );
        assert_eq!(
            decide(&sick, &run, &pool(false), now, &CFG, Budget { in_cluster: 1, cluster_nodes: 30, in_nodepool: 0 }),
            Heal::Reboot,
            "10% of 30 is 3"
        );
    }

    #[test]
    fn only_an_instance_still_in_its_pool_is_replaced() {
        let member = |pool: Option<Uuid>| -> Instance {
            let manager = pool.map(|p| serde_json::json!({"id": p, "type": "instance-pool"}));
            serde_json::from_value(serde_json::json!({"id": Uuid::nil(), "name": "n", "state": "running",
                "instance-type": {"id": Uuid::nil()}, "manager": manager}))
            .unwrap()
        };
        let (p, q) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let seen = member(Some(p));
        assert!(still_member(&seen, Some(&member(Some(p)))));
        assert!(!still_member(&seen, None), "gone: evicted already");
        assert!(!still_member(&seen, Some(&member(None))), "detached from its pool");
        assert!(!still_member(&seen, Some(&member(Some(q)))), "in another pool");
        assert!(!still_member(&member(None), Some(&member(None))), "never a member");
    }

    #[test]
    fn the_budget_counts_others_being_healed_among_our_nodes() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let meta = |name: &str, pool: Option<Uuid>, healing: bool| ObjectMeta {
            name: Some(name.into()),
            labels: pool.map(|p| [(label::NODEPOOL_ID.to_owned(), p.to_string())].into()),
            annotations: healing.then(|| [(annotation::AUTO_HEAL_REBOOTED_AT.to_owned(), "t".to_owned())].into()),
            ..Default::default()
        };
        let cluster = [
            meta("me", Some(a), true),
            meta("a2", Some(a), true),
            meta("a3", Some(a), false),
            meta("b1", Some(b), true),
            meta("foreign", None, true),
        ];
        let got = budget("me", a, cluster.iter());
        assert_eq!((got.in_nodepool, got.in_cluster, got.cluster_nodes), (1, 2, 4), "not me, not a foreign Node");
    }
}
