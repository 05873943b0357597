//! Which NLB belongs to which Service. Every NLB this CCM creates carries the
//! cluster id and the Service UID as labels, so it is found again after a lost
//! `id` annotation, and an NLB of another Service or cluster is never taken over
//! (the Exoscale CCM has no cloud-side tag and cannot tell).

use std::collections::{BTreeMap, HashMap};

use orchestrator::model::LoadBalancer;
use uuid::Uuid;

use super::annotations::{LbConfig, PREFIX};

/// Label: the SKS cluster whose CCM owns the NLB.
pub const CLUSTER_ID: &str = "k8s-cluster-id";
/// Label: the UID of the owning Service.
pub const SERVICE_UID: &str = "k8s-service-uid";
/// Label: `namespace/name` of the owning Service, for people.
pub const SERVICE: &str = "k8s-service";

/// The ownership labels of a Service's NLB.
pub fn labels(cluster: Uuid, uid: &str, key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_ID.to_owned(), cluster.to_string()),
        (SERVICE_UID.to_owned(), uid.to_owned()),
        (SERVICE.to_owned(), key.to_owned()),
    ])
}

fn label<'a>(lb: &'a LoadBalancer, key: &str) -> Option<&'a str> {
    lb.spec.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

/// Whether `lb` was created for Service `uid` of `cluster`.
pub fn owned_by(lb: &LoadBalancer, cluster: Uuid, uid: &str) -> bool {
    label(lb, CLUSTER_ID) == Some(cluster.to_string().as_str()) && label(lb, SERVICE_UID) == Some(uid)
}

/// The NLB a Service uses, as far as the known NLBs tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// This one.
    Nlb(Box<LoadBalancer>),
    /// None yet: `Some(id)` when the `id` annotation names one that is not known.
    Missing(Option<Uuid>),
    /// One exists but must not be used; why.
    Refused(String),
}

/// Finds the NLB of Service `uid` among `known`: the `id` annotation, else (for
/// an external NLB) the `name` annotation, else the ownership labels.
pub fn find(known: &HashMap<Uuid, LoadBalancer>, cfg: &LbConfig, cluster: Uuid, uid: &str) -> Found {
    if let Some(id) = cfg.id {
        let Some(lb) = known.get(&id) else { return Found::Missing(Some(id)) };
        return match usable(lb, cfg, cluster, uid) {
            Ok(()) => Found::Nlb(Box::new(lb.clone())),
            Err(why) => Found::Refused(why),
        };
    }
    if cfg.external {
        let name = cfg.name.as_deref().unwrap_or_default();
        let named: Vec<&LoadBalancer> = known.values().filter(|lb| lb.spec.name.as_deref() == Some(name)).collect();
        return match named.as_slice() {
            [lb] => Found::Nlb(Box::new((*lb).clone())),
            [] => Found::Refused(format!("no NLB is named {name:?} ({PREFIX}external is \"true\": it must exist)")),
            several => {
                Found::Refused(format!("{} NLBs are named {name:?}; set {PREFIX}id to the one to use", several.len()))
            }
        };
    }
    match owned(known, cluster, uid) {
        Some(lb) => Found::Nlb(Box::new(lb.clone())),
        None => Found::Missing(None),
    }
}

/// What Service `uid` uses once the NLB its `id` annotation names is confirmed
/// gone: the NLB labelled for it if there is one (a recreate whose new id was
/// never written), so it is neither duplicated nor leaked by a cleanup; else
/// nothing (an owned NLB is then recreated, an external one never).
pub fn after_gone(known: &HashMap<Uuid, LoadBalancer>, cfg: &LbConfig, cluster: Uuid, uid: &str, gone: Uuid) -> Found {
    match owned(known, cluster, uid) {
        Some(lb) if !cfg.external => Found::Nlb(Box::new(lb.clone())),
        _ => Found::Missing(Some(gone)),
    }
}

/// The NLB among `known` that carries Service `uid`'s ownership labels. Several
/// would only come from an earlier failure; the oldest is the one annotated first.
pub fn owned<'a>(known: &'a HashMap<Uuid, LoadBalancer>, cluster: Uuid, uid: &str) -> Option<&'a LoadBalancer> {
    known.values().filter(|lb| owned_by(lb, cluster, uid)).min_by_key(|lb| (lb.created_at, lb.id))
}

/// Whether the NLB named by the `id` annotation may be used by Service `uid`.
/// An unlabelled NLB (made by the Exoscale CCM, or by hand) is adopted as the
/// annotation asks; one labelled for another Service or cluster is refused
/// unless the Service declares it external (shared).
pub fn usable(lb: &LoadBalancer, cfg: &LbConfig, cluster: Uuid, uid: &str) -> Result<(), String> {
    let (owner_cluster, owner_uid) = (label(lb, CLUSTER_ID), label(lb, SERVICE_UID));
    if cfg.external || owner_uid.is_none() || owned_by(lb, cluster, uid) {
        return Ok(());
    }
    let whose = label(lb, SERVICE).unwrap_or(owner_uid.unwrap_or_default());
    let other = if owner_cluster == Some(cluster.to_string().as_str()) {
        format!("Service {whose} of this cluster")
    } else {
        format!("Service {whose} of cluster {}", owner_cluster.unwrap_or("?"))
    };
    Err(format!(
        "NLB {} ({}) belongs to {other}; it is left alone. Set {PREFIX}external: \"true\" to share it, or remove {PREFIX}id",
        lb.id,
        lb.spec.name.as_deref().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::annotations::parse;

    fn lb(name: &str, labels: Option<BTreeMap<String, String>>) -> LoadBalancer {
        LoadBalancer {
            id: Uuid::new_v4(),
            state: None,
            ip: None,
            services: vec![],
            created_at: None,
            spec: orchestrator::model::LoadBalancerSpec { name: Some(name.into()), description: None, labels },
        }
    }

    fn cfg(pairs: &[(&str, String)]) -> LbConfig {
        parse(&pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.clone())).collect()).unwrap()
    }

    #[test]
    fn finds_by_id_then_by_labels_and_never_by_name_alone() {
        let cluster = Uuid::new_v4();
        let mine = lb("web", Some(labels(cluster, "u1", "default/web")));
        let theirs = lb("web", Some(labels(Uuid::new_v4(), "u9", "default/web")));
        let known: HashMap<_, _> = [(mine.id, mine.clone()), (theirs.id, theirs.clone())].into();
        assert_eq!(find(&known, &cfg(&[]), cluster, "u1"), Found::Nlb(Box::new(mine.clone())));
        assert_eq!(find(&known, &cfg(&[("name", "web".into())]), cluster, "u2"), Found::Missing(None));
        assert_eq!(find(&known, &cfg(&[("id", mine.id.to_string())]), cluster, "u1"), Found::Nlb(Box::new(mine)));
        let gone = Uuid::new_v4();
        assert_eq!(find(&known, &cfg(&[("id", gone.to_string())]), cluster, "u1"), Found::Missing(Some(gone)));
    }

    #[test]
    fn a_gone_id_falls_back_to_the_labelled_nlb_unless_external() {
        let cluster = Uuid::new_v4();
        let mine = lb("k8s-u1", Some(labels(cluster, "u1", "default/web")));
        let theirs = lb("k8s-u2", Some(labels(cluster, "u2", "default/other")));
        let known: HashMap<_, _> = [(mine.id, mine.clone()), (theirs.id, theirs)].into();
        let gone = Uuid::new_v4();
        let by_id = cfg(&[("id", gone.to_string())]);
        assert_eq!(after_gone(&known, &by_id, cluster, "u1", gone), Found::Nlb(Box::new(mine)));
        assert_eq!(after_gone(&known, &by_id, cluster, "u3", gone), Found::Missing(Some(gone)), "never another's");
        let external = cfg(&[("id", gone.to_string()), ("external", "true".into())]);
        assert_eq!(after_gone(&known, &external, cluster, "u1", gone), Found::Missing(Some(gone)));
    }

    #[test]
    fn another_owner_is_refused_unless_external() {
        let cluster = Uuid::new_v4();
        let theirs = lb("web", Some(labels(Uuid::new_v4(), "u9", "prod/web")));
        let known: HashMap<_, _> = [(theirs.id, theirs.clone())].into();
        let Found::Refused(why) = find(&known, &cfg(&[("id", theirs.id.to_string())]), cluster, "u1") else {
            panic!("taken over")
        };
        assert!(why.contains("belongs to Service prod/web of cluster") && why.contains("external"), "{why}");
        let ext = cfg(&[("id", theirs.id.to_string()), ("external", "true".into())]);
        assert!(matches!(find(&known, &ext, cluster, "u1"), Found::Nlb(_)));
        let unlabelled = lb("k8s-u1", None);
        let known: HashMap<_, _> = [(unlabelled.id, unlabelled.clone())].into();
        assert!(matches!(find(&known, &cfg(&[("id", unlabelled.id.to_string())]), cluster, "u1"), Found::Nlb(_)));
    }

    #[test]
    fn external_by_name_must_be_unambiguous() {
        let a = lb("shared", None);
        let b = lb("shared", None);
        let ext = cfg(&[("name", "shared".into()), ("external", "true".into())]);
        let one: HashMap<_, _> = [(a.id, a.clone())].into();
        assert_eq!(find(&one, &ext, Uuid::nil(), "u1"), Found::Nlb(Box::new(a.clone())));
        let two: HashMap<_, _> = [(a.id, a), (b.id, b)].into();
        assert!(matches!(find(&two, &ext, Uuid::nil(), "u1"), Found::Refused(w) if w.contains("2 NLBs")));
        assert!(
            matches!(find(&HashMap::new(), &ext, Uuid::nil(), "u1"), Found::Refused(w) if w.contains("must exist"))
        );
    }
}
