//! Selectors over labels: a pod's required node affinity (node selector terms,
//! with kube-scheduler's `In`/`NotIn`/`Exists`/`DoesNotExist`/`Gt`/`Lt` and
//! `matchFields` on `metadata.name`) and PodDisruptionBudget label selectors
//! (`matchLabels` plus `matchExpressions`). Matching follows
//! `k8s.io/apimachinery/pkg/labels` and `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`:
//! an invalid requirement (wrong number of values, a non-integer for `Gt`/`Lt`)
//! makes its term or selector match nothing.

use serde::Deserialize;

use crate::labels::Labels;
use crate::wire::null_as_empty;

/// The only field `matchFields` may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// The value is one of the values.
    In,
    /// The key is absent or its value is none of the values.
    NotIn,
    /// The key is present.
    Exists,
    /// The key is absent.
    DoesNotExist,
    /// The value, an integer, is greater than the single value.
    Gt,
    /// The value, an integer, is less than the single value.
    Lt,
    /// Anything else: matches nothing.
    Unknown,
}

impl From<&str> for Operator {
    fn from(s: &str) -> Self {
        match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => Operator::Unknown,
        }
    }
}

/// One requirement on a key: `key operator values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "RequirementWire")]
pub struct Requirement {
    /// The label key (or field name, in `matchFields`).
    pub key: Box<str>,
    /// The operator.
    pub operator: Operator,
    /// The values it compares with.
    pub values: Box<[Box<str>]>,
}

#[derive(Deserialize)]
struct RequirementWire {
    key: String,
    operator: String,
    #[serde(default)]
    values: Option<Vec<String>>,
}

impl From<RequirementWire> for Requirement {
    fn from(w: RequirementWire) -> Self {
        Requirement {
            key: w.key.into(),
            operator: Operator::from(w.operator.as_str()),
            values: w.values.unwrap_or_default().into_iter().map(Box::from).collect(),
        }
    }
}

impl Requirement {
    /// A requirement.
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> Self {
        Requirement { key: key.into(), operator, values: values.iter().map(|v| Box::from(*v)).collect() }
    }

    /// Whether the requirement holds for a key whose value is `value` (`None`: absent).
    pub fn matches(&self, value: Option<&str>) -> bool {
        let values = &self.values;
        match self.operator {
            Operator::In => !values.is_empty() && value.is_some_and(|v| values.iter().any(|x| **x == *v)),
            Operator::NotIn => !values.is_empty() && value.is_none_or(|v| values.iter().all(|x| **x != *v)),
            Operator::Exists => values.is_empty() && value.is_some(),
            Operator::DoesNotExist => values.is_empty() && value.is_none(),
            Operator::Gt | Operator::Lt => {
                let [bound] = &values[..] else { return false };
                let (Ok(bound), Some(Ok(v))) = (bound.parse::<i64>(), value.map(str::parse::<i64>)) else {
                    return false;
                };
                if self.operator == Operator::Gt { v > bound } else { v < bound }
            }
            Operator::Unknown => false,
        }
    }
}

/// One term of a node selector: all its label expressions and all its field
/// expressions hold. A term with neither matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// Requirements on the node's labels.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_expressions: Box<[Requirement]>,
    /// Requirements on the node's fields (only `metadata.name` exists).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_fields: Box<[Requirement]>,
}

impl NodeSelectorTerm {
    /// Whether a node with these labels and this name matches.
    pub fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(labels.get(&r.key)))
            && self.match_fields.iter().all(|r| &*r.key == NODE_NAME_FIELD && r.matches(Some(node_name)))
    }

    /// Whether the term pins nodes by name (`metadata.name In`), and if so
    /// whether `node_name` is among them (in every such requirement).
    fn pins(&self, node_name: &str) -> Option<bool> {
        let mut pins = None;
        for r in self.match_fields.iter().filter(|r| &*r.key == NODE_NAME_FIELD && r.operator == Operator::In) {
            let listed = r.values.iter().any(|v| **v == *node_name);
            pins = Some(pins.unwrap_or(true) && listed);
        }
        pins
    }
}

/// A pod's required node affinity: its terms are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// The terms; none matches no node.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub node_selector_terms: Box<[NodeSelectorTerm]>,
}

impl NodeSelector {
    /// Whether a node with these labels and this name matches a term.
    pub fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        self.node_selector_terms.iter().any(|t| t.matches(labels, node_name))
    }

    /// Whether kube-scheduler's NodeAffinity PreFilter keeps `node_name`, when
    /// it restricts the pod to named nodes at all: that is when every term
    /// names nodes with `metadata.name In`, and the nodes kept are their union
    /// (`None`: no restriction).
    pub fn pinned_to(&self, node_name: &str) -> Option<bool> {
        let mut kept = false;
        for term in &self.node_selector_terms {
            kept |= term.pins(node_name)?;
        }
        (!self.node_selector_terms.is_empty()).then_some(kept)
    }
}

/// A label selector (`matchLabels` and `matchExpressions`, ANDed), as a
/// PodDisruptionBudget's `spec.selector`. An empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(default)]
    pub match_labels: Labels,
    /// Requirements that must all hold; `Gt` and `Lt` are not label selector
    /// operators and match nothing.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub match_expressions: Box<[Requirement]>,
}

/// Whether a PodDisruptionBudget selector covers a pod with these labels
/// (the namespace is the caller's to compare).
pub fn pdb_covers(selector: &LabelSelector, labels: &Labels) -> bool {
    selector.match_labels.is_subset_of(labels)
        && selector
            .match_expressions
            .iter()
            .all(|r| !matches!(r.operator, Operator::Gt | Operator::Lt) && r.matches(labels.get(&r.key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operator::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn requirements_follow_kubernetes_label_semantics() {
        // (operator, values, label value, matches)
        let cases: &[(Operator, &[&str], Option<&str>, bool)] = &[
            (In, &["a", "b"], Some("b"), true),
            (In, &["a", "b"], Some("c"), false),
            (In, &["a"], None, false),
            (In, &[], Some("a"), false),
            (NotIn, &["a"], Some("b"), true),
            (NotIn, &["a"], None, true),
            (NotIn, &["a"], Some("a"), false),
            (NotIn, &[], Some("a"), false),
            (Exists, &[], Some(""), true),
            (Exists, &[], None, false),
            (Exists, &["a"], Some("a"), false),
            (DoesNotExist, &[], None, true),
            (DoesNotExist, &[], Some("a"), false),
            (Gt, &["3"], Some("4"), true),
            (Gt, &["3"], Some("3"), false),
            (Gt, &["3"], Some("-4"), false),
            (Gt, &["3"], Some("four"), false),
            (Gt, &["3"], None, false),
            (Gt, &["x"], Some("4"), false),
            (Gt, &["1", "2"], Some("4"), false),
            (Lt, &["3"], Some("2"), true),
            (Lt, &["3"], Some("3"), false),
            (Unknown, &[], Some("a"), false),
        ];
        for &(op, values, value, expected) in cases {
            assert_eq!(Requirement::new("k", op, values).matches(value), expected, "{op:?} {values:?} on {value:?}");
        }
    }

    #[test]
    fn node_selector_terms_are_ored_and_their_requirements_anded() {
        let selector: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                  {"key": "gpu", "operator": "DoesNotExist"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}
        ]}))
        .unwrap();
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool);
        let cases: &[Case] = &[
            (&[("zone", "a")], "n1", true),
            (&[("zone", "a"), ("gpu", "yes")], "n1", false),
            (&[("zone", "c")], "n1", false),
            (&[("zone", "c")], "special", true),
            (&[], "n1", false),
        ];
        for &(node_labels, name, expected) in cases {
            assert_eq!(selector.matches(&labels(node_labels), name), expected, "{node_labels:?} {name}");
        }
    }

    #[test]
    fn empty_terms_and_unknown_fields_match_nothing() {
        let empty_term: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [{}]})).unwrap();
        assert!(!empty_term.matches(&labels(&[("a", "b")]), "n"));
        let no_terms: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": null})).unwrap();
        assert!(!no_terms.matches(&labels(&[]), "n"));
        let other_field: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n"]}]}]}))
        .unwrap();
        assert!(!other_field.matches(&labels(&[]), "n"));
    }

    #[test]
    fn nodes_are_pinned_when_every_term_names_them() {
        let pinned = |terms: serde_json::Value, node: &str| -> Option<bool> {
            let s: NodeSelector = serde_json::from_value(json!({ "nodeSelectorTerms": terms })).unwrap();
            s.pinned_to(node)
        };
        let name_in = |names: &[&str]| json!({"key": "metadata.name", "operator": "In", "values": names});
        assert_eq!(pinned(json!([{"matchFields": [name_in(&["a"])]}]), "a"), Some(true));
        assert_eq!(pinned(json!([{"matchFields": [name_in(&["a"])]}]), "b"), Some(false));
        let two_terms =
            json!([{"matchFields": [name_in(&["a", "b"]), name_in(&["b", "c"])]}, {"matchFields": [name_in(&["d"])]}]);
        for (node, kept) in [("a", false), ("b", true), ("c", false), ("d", true)] {
            assert_eq!(
                pinned(two_terms.clone(), node),
                Some(kept),
                "{node}: intersection within a term, union across terms"
            );
        }
        assert_eq!(
            pinned(
                json!([{"matchFields": [name_in(&["a"])]}, {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]),
                "b"
            ),
            None,
            "a term without names leaves every node eligible"
        );
        assert_eq!(
            pinned(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}]), "b"),
            None
        );
        assert_eq!(pinned(json!([]), "a"), None);
    }

    #[test]
    fn pdb_selectors_cover_matching_labels() {
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        let pod = labels(&[("app", "dns"), ("tier", "system")]);
        assert!(pdb_covers(&sel(json!({})), &pod), "an empty selector selects every pod");
        assert!(pdb_covers(&sel(json!({"matchLabels": {"app": "dns"}})), &pod));
        assert!(!pdb_covers(&sel(json!({"matchLabels": {"app": "web"}})), &pod));
        assert!(pdb_covers(
            &sel(json!({"matchLabels": {"app": "dns"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["system", "infra"]},
                {"key": "canary", "operator": "DoesNotExist"}]})),
            &pod
        ));
        assert!(!pdb_covers(
            &sel(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["system"]}]})),
            &pod
        ));
        assert!(
            !pdb_covers(&sel(json!({"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["1"]}]})), &pod),
            "Gt is not a label selector operator"
        );
    }
}
