//! Auto-healing: a Node NotReady too long while its instance runs gets the
//! instance rebooted; still NotReady later, the instance is replaced by a
//! fresh one (evicted, then the pool size restored; the size is recorded on the
//! Node first, see [`annotation::AUTO_HEAL_REPLACING`]). One node per nodepool at a time, never more
//! than a share of the cluster.

use sks_keys::{annotation, label};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use orchestrator::model::{Instance, InstanceState, SksNodepool};

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
    /// Whether auto-healing runs at all.
    pub enabled: bool,
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

fn not_ready_since(node: &Node) -> Option<Option<jiff::Timestamp>> {
    let ready =
        node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(c.last_transition_time.as_ref().map(|t| t.0)),
        None => Some(node.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    }
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
    if !cfg.enabled || opted_out {
        return Heal::Nothing;
    }
    let rebooted = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotation::AUTO_HEAL_REBOOTED_AT))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(since) = not_ready_since(node) else {
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
    use orchestrator::model::{Ref, SksNodepoolSpec, SksNodepoolState};
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
        SksNodepool {
            id: Uuid::nil(),
            state: SksNodepoolState::Running,
            size: 3,
            version: None,
            template: None,
            instance_pool: Some(Ref::from(Uuid::nil())),
            addons: None,
            created_at: None,
            spec: SksNodepoolSpec { labels, ..Default::default() },
        }
    }

    const CFG: Config = Config {
        enabled: true,
        reboot_after: Duration::from_secs(900),
        replace_after: Duration::from_secs(900),
        max_share: 0.1,
    };

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
        assert_eq!(decide(&sick, &run, &pool(false), now, &Config { enabled: false, ..CFG }, free), Heal::Nothing);
    }
}
