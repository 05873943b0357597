//! Which instance pool a Service's NLB targets: the `service-instancepool-id`
//! annotation, else the nodepool named by `service-sks-nodepool-name`, else the
//! one nodepool the cluster's Nodes belong to. Several candidates are an error
//! that says how to choose, never a guess, unless the NLB already targets one of
//! them: a nodepool added later must not strand the Services that inferred theirs.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::annotations::LbConfig;
use crate::cloud::Snapshot;
use sks_keys::annotation::LB_PREFIX as PREFIX;
use sks_keys::label::NODEPOOL_ID as NODEPOOL_ID_LABEL;

/// The target instance pool, or why there is none. `current` is the pool the
/// Service's NLB services target now, if they agree on one.
pub fn resolve<'n>(
    cfg: &LbConfig,
    cloud: &Snapshot,
    cluster: Uuid,
    node_nodepools: impl Iterator<Item = &'n str>,
    current: Option<Uuid>,
) -> Result<Uuid, String> {
    if let Some(pool) = cfg.instance_pool {
        return Ok(pool);
    }
    if let Some(name) = &cfg.nodepool_name {
        let cluster_name = cfg.cluster_name.as_deref().unwrap_or_default();
        if cluster_name != cloud.cluster_name && cluster_name != cluster.to_string() {
            return Err(format!(
                "annotation {PREFIX}sks-cluster-name has value {cluster_name:?}; expected this cluster ({:?} or {cluster}): an NLB of this cluster targets only its own nodepools",
                cloud.cluster_name
            ));
        }
        let mut found = cloud
            .nodepools
            .iter()
            .filter(|(_, np)| np.spec.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        return match (found.next(), found.next()) {
            (Some((pool, _)), None) => Ok(*pool),
            (None, _) => Err(format!(
                "annotation {PREFIX}service-sks-nodepool-name has value {name:?}; expected the name of a nodepool of this cluster (known: {})",
                names(cloud)
            )),
            (Some(_), Some(_)) => {
                Err(format!("several nodepools are named {name:?}; set {PREFIX}service-instancepool-id"))
            }
        };
    }
    let ids: BTreeSet<&str> = node_nodepools.collect();
    let candidates: Vec<(Uuid, String)> = cloud
        .nodepools
        .iter()
        .filter(|(_, np)| ids.contains(np.id.to_string().as_str()))
        .map(|(pool, np)| (*pool, np.spec.name.clone().unwrap_or_else(|| np.id.to_string())))
        .collect();
    if let Some(kept) = current.filter(|c| cloud.nodepools.contains_key(c))
        && candidates.len() != 1
        && (candidates.is_empty() || candidates.iter().any(|(pool, _)| *pool == kept))
    {
        return Ok(kept);
    }
    match candidates.as_slice() {
        [(pool, _)] => Ok(*pool),
        [] => Err(format!(
            "no Node carries a {NODEPOOL_ID_LABEL} label of a nodepool of this cluster yet; set {PREFIX}service-sks-nodepool-name or {PREFIX}service-instancepool-id to choose the target"
        )),
        several => {
            let mut list: Vec<&str> = several.iter().map(|(_, n)| n.as_str()).collect();
            list.sort();
            Err(format!(
                "the cluster's Nodes belong to {} nodepools ({}); set {PREFIX}service-sks-nodepool-name (with {PREFIX}sks-cluster-name) to choose the one this Service targets",
                several.len(),
                list.join(", ")
            ))
        }
    }
}

fn names(cloud: &Snapshot) -> String {
    let mut names: Vec<&str> = cloud.nodepools.values().filter_map(|np| np.spec.name.as_deref()).collect();
    names.sort();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use orchestrator::model::{SksNodepool, SksNodepoolSpec};

    use super::*;
    use crate::lb::annotations::parse;

    fn nodepool(name: &str) -> (Uuid, SksNodepool) {
        let np: SksNodepool = serde_json::from_value(
            serde_json::json!({"id": Uuid::new_v4(), "state": "running", "size": 1, "name": name}),
        )
        .unwrap();
        assert_eq!(np.spec, SksNodepoolSpec { name: Some(name.into()), ..Default::default() });
        (Uuid::new_v4(), np)
    }

    fn cloud(nps: &[(Uuid, SksNodepool)]) -> Snapshot {
        Snapshot { nodepools: nps.iter().cloned().collect(), cluster_name: "demo".into(), ..Default::default() }
    }

    fn cfg(pairs: &[(&str, &str)]) -> LbConfig {
        parse(&pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()).unwrap()
    }

    #[test]
    fn annotation_then_nodepool_name_then_inference() {
        let (a, b) = (nodepool("workers"), nodepool("gpu"));
        let c = cloud(&[a.clone(), b.clone()]);
        let explicit = Uuid::new_v4();
        let pool_cfg = cfg(&[("service-instancepool-id", &explicit.to_string())]);
        assert_eq!(resolve(&pool_cfg, &c, Uuid::nil(), std::iter::empty(), Some(a.0)), Ok(explicit));
        let named = cfg(&[("service-sks-nodepool-name", "GPU"), ("sks-cluster-name", "demo")]);
        assert_eq!(resolve(&named, &c, Uuid::nil(), std::iter::empty(), Some(a.0)), Ok(b.0));
        let a_id = a.1.id.to_string();
        assert_eq!(resolve(&cfg(&[]), &c, Uuid::nil(), [a_id.as_str(), a_id.as_str()].into_iter(), None), Ok(a.0));
    }

    #[test]
    fn ambiguity_and_unknown_names_are_explained() {
        let (a, b) = (nodepool("workers"), nodepool("gpu"));
        let c = cloud(&[a.clone(), b.clone()]);
        let ids = [a.1.id.to_string(), b.1.id.to_string()];
        let e = resolve(&cfg(&[]), &c, Uuid::nil(), ids.iter().map(String::as_str), None).unwrap_err();
        assert!(e.contains("2 nodepools (gpu, workers)") && e.contains("service-sks-nodepool-name"), "{e}");
        let e = resolve(&cfg(&[]), &c, Uuid::nil(), std::iter::empty(), None).unwrap_err();
        assert!(e.contains("no Node carries"), "{e}");
        let named = cfg(&[("service-sks-nodepool-name", "cpu"), ("sks-cluster-name", "demo")]);
        let e = resolve(&named, &c, Uuid::nil(), std::iter::empty(), None).unwrap_err();
        assert!(e.contains("has value \"cpu\"") && e.contains("known: gpu, workers"), "{e}");
        let other = cfg(&[("service-sks-nodepool-name", "gpu"), ("sks-cluster-name", "prod")]);
        assert!(resolve(&other, &c, Uuid::nil(), std::iter::empty(), None).unwrap_err().contains("\"prod\""));
    }

    #[test]
    fn an_nlb_keeps_its_inferred_pool_when_another_nodepool_appears() {
        let (a, b) = (nodepool("workers"), nodepool("gpu"));
        let c = cloud(&[a.clone(), b.clone()]);
        let ids = [a.1.id.to_string(), b.1.id.to_string()];
        assert_eq!(resolve(&cfg(&[]), &c, Uuid::nil(), ids.iter().map(String::as_str), Some(b.0)), Ok(b.0));
        assert_eq!(resolve(&cfg(&[]), &c, Uuid::nil(), std::iter::empty(), Some(b.0)), Ok(b.0), "no Nodes for a while");
        let elsewhere = Uuid::new_v4();
        let e = resolve(&cfg(&[]), &c, Uuid::nil(), ids.iter().map(String::as_str), Some(elsewhere)).unwrap_err();
        assert!(e.contains("2 nodepools"), "a pool that is no candidate is not kept: {e}");
    }
}
