//! How used a node is, as scale-down judges it: the larger of its CPU and
//! memory requested shares, counting neither DaemonSet nor mirror pods, which
//! go with the node, nor pods that have ended. As cluster-autoscaler with
//! `--ignore-daemonsets-utilization` and `--ignore-mirror-pods-utilization`,
//! what those pods request is taken off the allocatable too, so a node whose
//! only other pod is small counts as nearly empty however heavy its agents.

use crate::pod::PodInfo;
use crate::resources::Resources;

/// The larger of the CPU and memory shares `pods` request of `allocatable`.
pub fn utilization<'a>(allocatable: Resources, pods: impl IntoIterator<Item = &'a PodInfo>) -> f64 {
    let (mut own, mut overhead) = (Resources::ZERO, Resources::ZERO);
    for pod in pods {
        if pod.phase.is_terminal() {
            continue;
        }
        if pod.daemonset || pod.mirror {
            overhead += pod.requests;
        } else {
            own += pod.requests;
        }
    }
    let share = |want: i64, of: i64| match of {
        _ if want <= 0 => 0.0,
        of if of <= 0 => 1.0,
        of => want as f64 / of as f64,
    };
    let available = allocatable - overhead;
    share(own.cpu_millis, available.cpu_millis).max(share(own.memory_bytes, available.memory_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, pod};
    use crate::pod::Phase;

    #[test]
    fn utilization_is_the_larger_share_without_daemonsets_and_mirrors() {
        let allocatable = Resources::new(2000, 4 * GI, 110);
        let web = pod("web").cpu(500).memory(GI).build();
        let ds = pod("ds").owner("DaemonSet").cpu(1000).memory(GI).build();
        let mirror = pod("etcd").mirror().cpu(1000).build();
        let done = pod("job").cpu(2000).phase(Phase::Succeeded).build();
        let cases: Vec<(&str, Vec<&PodInfo>, f64)> = vec![
            ("empty", vec![], 0.0),
            ("cpu 25%, memory 25%", vec![&web], 0.25),
            ("daemonset taken off allocatable: cpu 50%, memory 33%", vec![&web, &ds], 0.5),
            ("mirror taken off allocatable", vec![&web, &mirror], 0.5),
            ("only overhead", vec![&ds, &mirror], 0.0),
            ("ended pods do not count", vec![&done], 0.0),
        ];
        for (what, pods, expected) in cases {
            assert!((utilization(allocatable, pods) - expected).abs() < 1e-9, "{what}");
        }
        let swamped = pod("ds").owner("DaemonSet").cpu(3000).build();
        assert_eq!(utilization(allocatable, [&swamped, &web]), 1.0, "no room left means fully used");
    }
}
