//! kube-scheduler's `FailedScheduling` message, exactly, for the reasons
//! [`crate::predicates`] gives per node. The stand-in scheduler writes it into
//! `PodScheduled=False/Unschedulable` conditions and events, so it must read
//! as kube-scheduler ≥ 1.34 writes it (`pkg/scheduler/framework/types.go`,
//! `FitError.Error`, and the DefaultPreemption PostFilter):
//!
//! ```text
//! 0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.
//! ```
//!
//! Each node adds one count per reason of the first filter that rejected it;
//! the `"<count> <reason>"` strings are sorted as strings (so `"10 …"` sorts
//! before `"2 …"`) and joined with `", "`, the list ends with `"."`, and the
//! PostFilter message follows after a space. With dynamic resource allocation
//! on (the default since 1.34), its PostFilter runs first and its message,
//! [`DRA_POST_FILTER`], is joined to preemption's with `", "`
//! (`0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: …`).
//! cluster-autoscaler counts its per-pool reasons the same way
//! ([`count_reasons`]), without the sort (Go map order); here it is sorted too.

use crate::predicates::Unfit;

/// kube-scheduler's message when the cluster has no nodes at all.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// The DynamicResources PostFilter's message for a pod that has no claims to free.
pub const DRA_POST_FILTER: &str = "no new claims to deallocate";

/// DefaultPreemption's per-node reason when removing pods could make room but
/// none may be removed (no lower-priority pods: this code never preempts).
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// DefaultPreemption's per-node reason when removing pods would not help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// `"<count> <reason>"` for each distinct reason, sorted, joined with `", "`.
pub fn count_reasons<'a>(reasons: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// `FitError.Error()`: why a pod fits none of `num_nodes` nodes, given the
/// first failing filter of each, then the PostFilter message if any.
pub fn fit_error<'a>(
    num_nodes: usize,
    unfits: impl IntoIterator<Item = &'a Unfit>,
    post_filter: Option<&str>,
) -> String {
    if num_nodes == 0 {
        return NO_NODES_AVAILABLE.to_owned();
    }
    let reasons = count_reasons(unfits.into_iter().flat_map(|u| u.reasons()));
    let mut out = format!("0/{num_nodes} nodes are available:");
    if !reasons.is_empty() {
        out.push(' ');
        out.push_str(&reasons);
        out.push('.');
    }
    if let Some(post) = post_filter.filter(|p| !p.is_empty()) {
        out.push(' ');
        out.push_str(post);
    }
    out
}

/// Whether the pod may preempt (`spec.preemptionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptionPolicy {
    /// `PreemptLowerPriority`, the default.
    PreemptLowerPriority,
    /// `Never`.
    Never,
}

/// DefaultPreemption's PostFilter message when no pod can be preempted: each
/// node rejected only for resources could in principle make room (no victims
/// found), the others could not (not helpful).
pub fn preemption<'a>(
    num_nodes: usize,
    unfits: impl IntoIterator<Item = &'a Unfit>,
    policy: PreemptionPolicy,
) -> String {
    if policy == PreemptionPolicy::Never {
        return "preemption: not eligible due to preemptionPolicy=Never.".to_owned();
    }
    let per_node = unfits.into_iter().map(|u| if u.resolvable_by_preemption() { NO_VICTIMS } else { NOT_HELPFUL });
    format!("preemption: 0/{num_nodes} nodes are available: {}.", count_reasons(per_node))
}

/// The whole `PodScheduled` message of kube-scheduler ≥ 1.34 with its default
/// profile, for a pod that fits none of `num_nodes` nodes and cannot preempt:
/// the fit error, then the DynamicResources and preemption PostFilters (pass
/// `dra: false` for a scheduler without DynamicResources).
pub fn failed_scheduling<'a, I>(num_nodes: usize, unfits: I, policy: PreemptionPolicy, dra: bool) -> String
where
    I: IntoIterator<Item = &'a Unfit>,
    I::IntoIter: Clone,
{
    if num_nodes == 0 {
        return NO_NODES_AVAILABLE.to_owned();
    }
    let unfits = unfits.into_iter();
    let preemption = preemption(num_nodes, unfits.clone(), policy);
    let post = if dra { format!("{DRA_POST_FILTER}, {preemption}") } else { preemption };
    fit_error(num_nodes, unfits, Some(&post))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Unfit = Unfit::Resources { pods: false, cpu: true, memory: false };
    const CPU_AND_MEMORY: Unfit = Unfit::Resources { pods: false, cpu: true, memory: true };

    #[test]
    fn fit_errors_read_as_kube_schedulers() {
        // Messages observed on real clusters (kube-scheduler 1.34 to 1.36).
        let cases: &[(usize, &[Unfit], PreemptionPolicy, bool, &str)] = &[
            (
                3,
                &[Unfit::UntoleratedTaint, CPU, CPU],
                PreemptionPolicy::PreemptLowerPriority,
                true,
                "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. no new claims to deallocate, \
                 preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
            ),
            (
                1,
                &[CPU],
                PreemptionPolicy::PreemptLowerPriority,
                true,
                "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, \
                 preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            ),
            (
                3,
                &[Unfit::UntoleratedTaint, Unfit::NodeAffinity, Unfit::NodeAffinity],
                PreemptionPolicy::PreemptLowerPriority,
                false,
                "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. \
                 preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
            (
                1,
                &[CPU],
                PreemptionPolicy::Never,
                true,
                "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, preemption: not eligible due to preemptionPolicy=Never.",
            ),
            (
                4,
                &[CPU_AND_MEMORY, CPU_AND_MEMORY, CPU, Unfit::UntoleratedTaint],
                PreemptionPolicy::PreemptLowerPriority,
                false,
                "0/4 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient memory, 3 Insufficient cpu. \
                 preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.",
            ),
            (0, &[], PreemptionPolicy::PreemptLowerPriority, true, "no nodes available to schedule pods"),
        ];
        for &(n, unfits, policy, dra, expected) in cases {
            assert_eq!(failed_scheduling(n, unfits, policy, dra), expected);
        }
    }

    #[test]
    fn counts_sort_as_strings() {
        let mut reasons = vec!["Insufficient cpu"; 10];
        reasons.extend(["Too many pods"; 2]);
        assert_eq!(count_reasons(reasons), "10 Insufficient cpu, 2 Too many pods");
        assert_eq!(count_reasons([]), "");
    }

    #[test]
    fn a_fit_error_without_post_filter_ends_with_its_list() {
        assert_eq!(
            fit_error(2, &[CPU, Unfit::Unschedulable], None),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
        );
        assert_eq!(fit_error(2, &[], Some("preemption: x")), "0/2 nodes are available: preemption: x");
    }
}
