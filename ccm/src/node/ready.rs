//! A Node's Ready condition, as the kubelet reports it: the one place the
//! node steps read it.

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition's type.
pub const READY: &str = "Ready";

/// The Node's Ready condition, if it reports one.
fn condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == READY)
}

/// Whether the Node reports Ready=True.
pub fn is_ready(node: &Node) -> bool {
    condition(node).is_some_and(|c| c.status == "True")
}

/// When the Node's Ready condition last changed, if it reports one.
pub fn changed_at(node: &Node) -> Option<&Time> {
    condition(node)?.last_transition_time.as_ref()
}

/// `None` when the Node is Ready; otherwise since when it is not, if known (a
/// Node that never reported Ready counts from its creation).
pub fn not_ready_since(node: &Node) -> Option<Option<jiff::Timestamp>> {
    match condition(node) {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(c.last_transition_time.as_ref().map(|t| t.0)),
        None => Some(node.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(conditions: &[(&str, &str, Option<&str>)]) -> Node {
        let conditions = conditions
            .iter()
            .map(|(type_, status, at)| NodeCondition {
                type_: (*type_).into(),
                status: (*status).into(),
                last_transition_time: at.map(|t| Time(t.parse().unwrap())),
                ..Default::default()
            })
            .collect();
        Node {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
                ..Default::default()
            },
            status: Some(NodeStatus { conditions: Some(conditions), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_ready_condition_counts() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let ready = node(&[("MemoryPressure", "False", None), ("Ready", "True", Some("2026-01-01T00:01:00Z"))]);
        assert!(is_ready(&ready));
        assert_eq!(changed_at(&ready).map(|x| x.0), Some(t("2026-01-01T00:01:00Z")));
        assert_eq!(not_ready_since(&ready), None);

        let down = node(&[("Ready", "Unknown", Some("2026-01-01T00:02:00Z")), ("NetworkUnavailable", "True", None)]);
        assert!(!is_ready(&down));
        assert_eq!(not_ready_since(&down), Some(Some(t("2026-01-01T00:02:00Z"))));

        let other_true = node(&[("DiskPressure", "True", Some("2026-01-01T00:03:00Z"))]);
        assert!(!is_ready(&other_true), "another condition's True is not Ready");
        assert_eq!(changed_at(&other_true), None);
        assert_eq!(not_ready_since(&other_true), Some(Some(t("2026-01-01T00:00:00Z"))), "never Ready: since creation");

        assert!(!is_ready(&Node::default()));
        assert_eq!(not_ready_since(&Node::default()), Some(None));
    }
}
