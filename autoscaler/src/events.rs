//! The events cluster-autoscaler writes, with its reasons and message formats,
//! so dashboards and habits carry over (sources: `processors/status/
//! eventing_scale_up_processor.go`, `processors/nodegroupset` `ScaleUpInfo.String`,
//! `core/scaleup/orchestrator/executor.go`, `core/scaledown/actuation`).
//! The group is named by its nodepool's name (cluster-autoscaler's Exoscale
//! provider shows the instance pool id, which users of the product never see).

use std::fmt;

use crate::messages::count_reasons;

/// Reason of the event on each pod a scale-up is for.
pub const TRIGGERED_SCALE_UP: &str = "TriggeredScaleUp";
/// Reason of the event on each pod no scale-up can help.
pub const NOT_TRIGGER_SCALE_UP: &str = "NotTriggerScaleUp";
/// Reason of the event on the group (here the NodePool) a scale-up grows.
pub const SCALED_UP_GROUP: &str = "ScaledUpGroup";
/// Reason of the events on a node being removed, and on its evicted pods.
pub const SCALE_DOWN: &str = "ScaleDown";
/// Reason of the event on the group when an empty node is removed.
pub const SCALE_DOWN_EMPTY: &str = "ScaleDownEmpty";
/// Reason of the event on a node whose removal failed.
pub const SCALE_DOWN_FAILED: &str = "ScaleDownFailed";

/// `ScaleDown` on the node once tainted and cordoned.
pub const MARKED_FOR_DELETION: &str = "marked the node as toBeDeleted/unschedulable";
/// `ScaleDown` on each pod evicted for it.
pub const DELETING_POD: &str = "deleting pod for node scale down";
/// `ScaleDown` on the node once its instance is gone.
pub const NODE_REMOVED: &str = "nodes removed by cluster autoscaler";
/// `ScaleDownFailed` on a node whose drain did not finish.
pub const DRAIN_FAILED: &str = "failed to drain the node, aborting ScaleDown";

/// One group's growth, as cluster-autoscaler prints it: `{workers 1->3 (max: 10)}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleUpInfo<'a> {
    /// The group (nodepool) name.
    pub group: &'a str,
    /// Its size before.
    pub current: u32,
    /// Its size after.
    pub new: u32,
    /// Its maximum.
    pub max: u32,
}

impl fmt::Display for ScaleUpInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {}->{} (max: {})}}", self.group, self.current, self.new, self.max)
    }
}

/// `TriggeredScaleUp`: `pod triggered scale-up: [{workers 1->3 (max: 10)}]`.
pub fn triggered_scale_up(infos: &[ScaleUpInfo<'_>]) -> String {
    let list: Vec<String> = infos.iter().map(ToString::to_string).collect();
    format!("pod triggered scale-up: [{}]", list.join(" "))
}

/// `NotTriggerScaleUp`: each reason counted over the pools that gave it,
/// `pod didn't trigger scale-up: 1 max node group size reached, 2 Insufficient cpu`.
pub fn not_triggered_scale_up<'a>(reasons: impl IntoIterator<Item = &'a str>) -> String {
    format!("pod didn't trigger scale-up: {}", count_reasons(reasons))
}

/// `ScaledUpGroup`: `Scale-up: setting group workers size to 3 instead of 1 (max: 10)`.
pub fn scaled_up_group(info: &ScaleUpInfo<'_>) -> String {
    format!(
        "Scale-up: setting group {} size to {} instead of {} (max: {})",
        info.group, info.new, info.current, info.max
    )
}

/// `ScaleDownEmpty`: `Scale-down: removing empty node "pool-a-1"`.
pub fn removing_empty_node(node: &str) -> String {
    format!("Scale-down: removing empty node {}", go_quote(node))
}

/// Go's `%q` for a node name (a DNS subdomain: nothing to escape but quotes and backslashes).
fn go_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_up_messages_read_as_cluster_autoscalers() {
        let workers = ScaleUpInfo { group: "workers", current: 1, new: 3, max: 10 };
        let gpu = ScaleUpInfo { group: "gpu", current: 0, new: 1, max: 2 };
        assert_eq!(triggered_scale_up(&[workers]), "pod triggered scale-up: [{workers 1->3 (max: 10)}]");
        assert_eq!(
            triggered_scale_up(&[workers, gpu]),
            "pod triggered scale-up: [{workers 1->3 (max: 10)} {gpu 0->1 (max: 2)}]"
        );
        assert_eq!(scaled_up_group(&workers), "Scale-up: setting group workers size to 3 instead of 1 (max: 10)");
        assert_eq!(
            not_triggered_scale_up([
                "node(s) didn't match Pod's node affinity/selector",
                "max node group size reached",
                "node(s) didn't match Pod's node affinity/selector",
            ]),
            "pod didn't trigger scale-up: 1 max node group size reached, 2 node(s) didn't match Pod's node affinity/selector"
        );
    }

    #[test]
    fn scale_down_messages_read_as_cluster_autoscalers() {
        assert_eq!(removing_empty_node("pool-a-1"), "Scale-down: removing empty node \"pool-a-1\"");
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
