//! The template node of each autoscaled nodepool, from what sks-apiserver
//! knows of the nodepool (size, bounds, instance type, labels, taints) and
//! what the Nodes say (how many of its instances are Ready nodes yet).

use jiff::Timestamp;
use sks_autoscaler::taints::{Effect, Taint};
use sks_autoscaler::{NodeInfo, TemplateSpec};
use sks_keys::label;

use crate::resources::nodepool::autoscaling::Autoscaled;

/// Instances of `pool` that are not Ready nodes yet: capacity on its way
/// (booting, registering, being initialized, or replacing a node auto-heal
/// or the upgrade roll took out). A Node created before `started_by` and
/// still not Ready is not on its way but broken (cluster-autoscaler's
/// unready node past its startup time): it is not counted as coming, or a
/// sick node would hold back scale-ups for as long as it stays sick.
pub fn upcoming(pool: &Autoscaled, nodes: &[&NodeInfo], started_by: Timestamp) -> u32 {
    let id = pool.id.to_string();
    let of_pool = || nodes.iter().filter(|n| n.nodepool_id() == Some(id.as_str()));
    let ready = of_pool().filter(|n| n.ready).count();
    let broken = of_pool().filter(|n| !n.ready && n.created.is_some_and(|c| c < started_by)).count();
    let counted = u32::try_from(ready + broken).unwrap_or(u32::MAX);
    u32::try_from(pool.size).unwrap_or(0).saturating_sub(counted)
}

/// The template spec of `pool` in `zone`.
pub fn spec(pool: &Autoscaled, zone: &str, nodes: &[&NodeInfo], started_by: Timestamp) -> TemplateSpec {
    let id = pool.id.to_string();
    let node_labels = sks_keys::node_labels(&pool.labels, &id, &pool.instance_type, zone);
    let instance_type = node_labels.get(label::INSTANCE_TYPE).cloned().unwrap_or_default();
    TemplateSpec {
        nodepool_id: id,
        name: pool.name.clone(),
        instance_type,
        cpus: pool.cpus,
        memory_bytes: pool.memory_bytes,
        zone: zone.to_owned(),
        labels: node_labels.iter().collect(),
        taints: pool.taints.iter().map(|(k, v, e)| Taint::new(k, v, Effect::from(e.as_str()))).collect(),
        min: u32::try_from(pool.bounds.min_replicas).unwrap_or(0),
        max: u32::try_from(pool.bounds.max_replicas).unwrap_or(0),
        target_size: u32::try_from(pool.size).unwrap_or(0),
        upcoming: upcoming(pool, nodes, started_by),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::nodepool::convert::Autoscaling;
    use serde_json::json;

    fn pool(size: i64) -> Autoscaled {
        Autoscaled {
            id: uuid::Uuid::nil(),
            name: "workers".into(),
            size,
            bounds: Autoscaling { min_replicas: 1, max_replicas: 10 },
            instance_type: "standard.medium".into(),
            cpus: 2,
            memory_bytes: 4 << 30,
            labels: [("team".to_owned(), "shop".to_owned()), ("kubernetes.io/os".to_owned(), "x".to_owned())].into(),
            taints: vec![("dedicated".into(), "shop".into(), "NoSchedule".into())],
        }
    }

    fn node(name: &str, pool: &str, ready: bool) -> NodeInfo {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {label::NODEPOOL_ID: pool}, "creationTimestamp": "2026-12-01T10:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn instances_without_a_ready_node_are_on_their_way() {
        let id = uuid::Uuid::nil().to_string();
        let nodes = [node("a", &id, true), node("b", &id, false), node("c", "other", true)];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let before: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        assert_eq!(upcoming(&pool(4), &refs, before), 3, "one Ready node of four instances");
        assert_eq!(upcoming(&pool(1), &refs, before), 0);
        assert_eq!(upcoming(&pool(0), &refs, before), 0, "never negative");
        // b has been NotReady since before the startup time: broken, not coming.
        let after: Timestamp = "2026-12-01T11:00:00Z".parse().unwrap();
        assert_eq!(upcoming(&pool(4), &refs, after), 2, "two instances without a Node");
    }

    #[test]
    fn the_template_has_the_labels_and_taints_sks_ccm_gives_nodes() {
        let s = spec(&pool(2), "ch-gva-2", &[], Timestamp::UNIX_EPOCH);
        assert_eq!(s.labels.get("team"), Some("shop"));
        assert_eq!(s.labels.get("kubernetes.io/os"), None, "Kubernetes' own labels are not taken from the nodepool");
        assert_eq!(s.labels.get(label::INSTANCE_TYPE), Some("standard.medium"));
        assert_eq!(s.instance_type, "standard.medium");
        assert_eq!((s.min, s.max, s.target_size, s.upcoming), (1, 10, 2, 2));
        assert_eq!(s.taints, [Taint::new("dedicated", "shop", Effect::NoSchedule)]);
    }
}
