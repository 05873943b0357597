//! PodDisruptionBudgets as scale-down reads them: which pods each covers and
//! how many disruptions it still allows, decreasing as a planning round
//! decides to move the pods it covers.

use serde::Deserialize;

use crate::pod::PodInfo;
use crate::selector::{LabelSelector, pdb_covers};

/// A PodDisruptionBudget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdbInfo {
    /// Namespace (it covers pods of this namespace only).
    pub namespace: Box<str>,
    /// Name.
    pub name: Box<str>,
    /// `spec.selector`; `None` (null) selects no pod, an empty one every pod.
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
}

impl PdbInfo {
    /// Whether it covers `pod`.
    pub fn covers(&self, pod: &PodInfo) -> bool {
        *self.namespace == *pod.namespace && self.selector.as_ref().is_some_and(|s| pdb_covers(s, &pod.labels))
    }
}

impl<'de> Deserialize<'de> for PdbInfo {
    /// From a `policy/v1` PodDisruptionBudget's JSON.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: Meta,
            #[serde(default)]
            spec: Spec,
            #[serde(default)]
            status: Status,
        }
        #[derive(Deserialize, Default)]
        struct Meta {
            #[serde(default)]
            namespace: Option<String>,
            #[serde(default)]
            name: Option<String>,
        }
        #[derive(Deserialize, Default)]
        struct Spec {
            #[serde(default)]
            selector: Option<LabelSelector>,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Status {
            #[serde(default)]
            disruptions_allowed: i32,
        }
        let w = Wire::deserialize(d)?;
        Ok(PdbInfo {
            namespace: w.metadata.namespace.unwrap_or_default().into(),
            name: w.metadata.name.unwrap_or_default().into(),
            selector: w.spec.selector,
            disruptions_allowed: w.status.disruptions_allowed,
        })
    }
}

/// The budgets left in one planning round.
#[derive(Debug, Clone)]
pub struct Budgets<'a> {
    pdbs: &'a [PdbInfo],
    allowed: Vec<i32>,
}

impl<'a> Budgets<'a> {
    /// The budgets of `pdbs`, as allowed now.
    pub fn new(pdbs: &'a [PdbInfo]) -> Self {
        Budgets { pdbs, allowed: pdbs.iter().map(|p| p.disruptions_allowed).collect() }
    }

    /// Whether some budget covers `pod`.
    pub fn covered(&self, pod: &PodInfo) -> bool {
        self.pdbs.iter().any(|p| p.covers(pod))
    }

    /// Whether a budget covering `pod` allows no more disruption.
    pub fn exhausted(&self, pod: &PodInfo) -> bool {
        self.pdbs.iter().zip(&self.allowed).any(|(p, &left)| left < 1 && p.covers(pod))
    }

    /// Counts moving `pod` against every budget covering it.
    pub fn consume(&mut self, pod: &PodInfo) {
        for (p, left) in self.pdbs.iter().zip(&mut self.allowed) {
            if p.covers(pod) {
                *left -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::pod;
    use serde_json::json;

    fn pdb(v: serde_json::Value) -> PdbInfo {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_budget_covers_matching_pods_of_its_namespace() {
        let b = pdb(json!({"metadata": {"namespace": "kube-system", "name": "dns"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}}},
            "status": {"disruptionsAllowed": 1, "currentHealthy": 2}}));
        assert_eq!(b.disruptions_allowed, 1);
        let dns = pod("coredns").namespace("kube-system").label("k8s-app", "kube-dns").build();
        assert!(b.covers(&dns));
        assert!(!b.covers(&pod("coredns").namespace("default").label("k8s-app", "kube-dns").build()));
        assert!(!b.covers(&pod("other").namespace("kube-system").build()));
        let everything = pdb(json!({"metadata": {"namespace": "default"}, "spec": {"selector": {}}}));
        assert!(everything.covers(&pod("any").build()), "an empty selector selects every pod");
        let nothing = pdb(json!({"metadata": {"namespace": "default"}, "spec": {}}));
        assert!(!nothing.covers(&pod("any").build()), "a null selector selects none");
    }

    #[test]
    fn moves_use_up_the_budget() {
        let pdbs =
            [pdb(json!({"metadata": {"namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 1}}))];
        let web = pod("web").label("app", "web").build();
        let mut budgets = Budgets::new(&pdbs);
        assert!(budgets.covered(&web) && !budgets.exhausted(&web));
        budgets.consume(&web);
        assert!(budgets.exhausted(&web));
        assert!(!budgets.exhausted(&pod("db").build()));
    }
}
