//! What removing a node means for each of its pods, by cluster-autoscaler's
//! drainability rules (`simulator/drainability/rules`), in its order; the
//! first rule that decides wins:
//!
//! 1. a mirror (static) pod stays: it goes with the node;
//! 2. a DaemonSet pod stays;
//! 3. `safe-to-evict: "true"` moves, whatever follows;
//! 4. a pod that has ended stays;
//! 5. a pod without a replicating controller (ReplicaSet, StatefulSet, Job,
//!    ReplicationController) blocks: `NotReplicated`;
//! 6. a `kube-system` pod no PodDisruptionBudget covers blocks: `UnmovableKubeSystemPod`;
//! 7. `safe-to-evict: "false"` blocks: `NotSafeToEvictAnnotation`;
//! 8. local storage blocks: `LocalStorageRequested`;
//! 9. a budget covering it that allows no disruption blocks: `NotEnoughPdb`;
//! 10. anything else moves.

use std::fmt;

use crate::pdb::Budgets;
use crate::pod::PodInfo;

/// Controllers whose pods are recreated elsewhere when evicted.
const REPLICATING: [&str; 4] = ["ReplicaSet", "StatefulSet", "Job", "ReplicationController"];

/// Why a pod keeps its node (cluster-autoscaler's `BlockingPodReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockingReason {
    /// No replicating controller.
    NotReplicated,
    /// A kube-system pod without a PodDisruptionBudget.
    UnmovableKubeSystemPod,
    /// Annotated `safe-to-evict: "false"`.
    NotSafeToEvictAnnotation,
    /// Uses local storage.
    LocalStorageRequested,
    /// Its budget allows no disruption.
    NotEnoughPdb,
}

impl BlockingReason {
    /// cluster-autoscaler's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockingReason::NotReplicated => "NotReplicated",
            BlockingReason::UnmovableKubeSystemPod => "UnmovableKubeSystemPod",
            BlockingReason::NotSafeToEvictAnnotation => "NotSafeToEvictAnnotation",
            BlockingReason::LocalStorageRequested => "LocalStorageRequested",
            BlockingReason::NotEnoughPdb => "NotEnoughPdb",
        }
    }
}

impl fmt::Display for BlockingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What removing its node does to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing to move: it goes with the node (or has ended).
    Stays,
    /// It must be rescheduled elsewhere.
    Moves,
    /// It keeps the node.
    Blocks(BlockingReason),
}

/// The disposition of `pod` given the budgets left.
pub fn disposition(pod: &PodInfo, budgets: &Budgets<'_>) -> Disposition {
    if pod.mirror || pod.daemonset {
        return Disposition::Stays;
    }
    if pod.safe_to_evict == Some(true) {
        return Disposition::Moves;
    }
    if pod.phase.is_terminal() {
        return Disposition::Stays;
    }
    let blocked = if !pod.owner.as_ref().is_some_and(|o| REPLICATING.contains(&&*o.kind)) {
        Some(BlockingReason::NotReplicated)
    } else if &*pod.namespace == "kube-system" && !budgets.covered(pod) {
        Some(BlockingReason::UnmovableKubeSystemPod)
    } else if pod.safe_to_evict == Some(false) {
        Some(BlockingReason::NotSafeToEvictAnnotation)
    } else if pod.local_storage {
        Some(BlockingReason::LocalStorageRequested)
    } else if budgets.exhausted(pod) {
        Some(BlockingReason::NotEnoughPdb)
    } else {
        None
    };
    blocked.map_or(Disposition::Moves, Disposition::Blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::pod;
    use crate::pdb::PdbInfo;
    use crate::pod::Phase;
    use crate::selector::LabelSelector;
    use BlockingReason::*;
    use Disposition::*;

    #[test]
    fn each_rule_decides_in_cluster_autoscalers_order() {
        let exhausted = PdbInfo {
            namespace: "default".into(),
            name: "web".into(),
            selector: Some(LabelSelector::default()),
            disruptions_allowed: 0,
        };
        let system = PdbInfo { namespace: "kube-system".into(), disruptions_allowed: 1, ..exhausted.clone() };
        let pdbs = [exhausted, system];
        let budgets = Budgets::new(&pdbs);
        let no_budgets = Budgets::new(&[]);
        let cases = [
            ("mirror", pod("m").mirror().build(), &no_budgets, Stays),
            ("daemonset", pod("d").owner("DaemonSet").local_storage().build(), &no_budgets, Stays),
            ("replicated", pod("r").build(), &no_budgets, Moves),
            ("statefulset", pod("s").owner("StatefulSet").build(), &no_budgets, Moves),
            ("job", pod("j").owner("Job").build(), &no_budgets, Moves),
            ("bare", pod("b").bare().build(), &no_budgets, Blocks(NotReplicated)),
            ("custom controller", pod("c").owner("Rollout").build(), &no_budgets, Blocks(NotReplicated)),
            ("bare but safe", pod("b").bare().safe_to_evict(true).build(), &no_budgets, Moves),
            ("bare and ended", pod("b").bare().phase(Phase::Succeeded).build(), &no_budgets, Stays),
            ("kube-system", pod("k").namespace("kube-system").build(), &no_budgets, Blocks(UnmovableKubeSystemPod)),
            ("kube-system with a budget", pod("k").namespace("kube-system").build(), &budgets, Moves),
            ("kube-system but safe", pod("k").namespace("kube-system").safe_to_evict(true).build(), &no_budgets, Moves),
            ("not safe", pod("n").safe_to_evict(false).build(), &no_budgets, Blocks(NotSafeToEvictAnnotation)),
            ("bare and not safe", pod("n").bare().safe_to_evict(false).build(), &no_budgets, Blocks(NotReplicated)),
            ("local storage", pod("l").local_storage().build(), &no_budgets, Blocks(LocalStorageRequested)),
            ("local storage but safe", pod("l").local_storage().safe_to_evict(true).build(), &no_budgets, Moves),
            ("budget exhausted", pod("w").build(), &budgets, Blocks(NotEnoughPdb)),
            ("budget exhausted but safe", pod("w").safe_to_evict(true).build(), &budgets, Moves),
        ];
        for (what, p, b, expected) in cases {
            assert_eq!(disposition(&p, b), expected, "{what}");
        }
    }

    #[test]
    fn reasons_have_cluster_autoscalers_names() {
        let all =
            [NotReplicated, UnmovableKubeSystemPod, NotSafeToEvictAnnotation, LocalStorageRequested, NotEnoughPdb];
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "NotReplicated",
                "UnmovableKubeSystemPod",
                "NotSafeToEvictAnnotation",
                "LocalStorageRequested",
                "NotEnoughPdb"
            ]
        );
    }
}
