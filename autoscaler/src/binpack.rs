//! First-fit-decreasing bin packing of pods onto nodes of one shape (a
//! template): the order pods are placed in, and bins that take a pod in the
//! first one with room, opening another only while a limit allows.
//!
//! "Decreasing" is by dominant share: a pod's largest fraction of a reference
//! node's CPU or memory, so a pod that is big in either resource goes first.
//! Ties go by namespace, name and uid, so plans never depend on input order.

use crate::pod::PodInfo;
use crate::predicates::resources;
use crate::resources::Resources;

/// A pod's largest fraction of `reference`'s CPU or memory.
pub fn dominant_share(requests: Resources, reference: Resources) -> f64 {
    let share = |want: i64, of: i64| if of > 0 { want as f64 / of as f64 } else { 0.0 };
    share(requests.cpu_millis, reference.cpu_millis).max(share(requests.memory_bytes, reference.memory_bytes))
}

/// Sorts `pods` largest dominant share first, then by namespace, name and uid.
pub fn sort_decreasing(pods: &mut [&PodInfo], reference: Resources) {
    pods.sort_by(|a, b| {
        dominant_share(b.requests, reference)
            .total_cmp(&dominant_share(a.requests, reference))
            .then_with(|| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)))
    });
}

/// Nodes of one shape and what is placed on each.
#[derive(Debug, Clone)]
pub struct Bins {
    allocatable: Resources,
    empty: Resources,
    requested: Vec<Resources>,
    limit: usize,
}

impl Bins {
    /// `open` nodes offering `allocatable`, each starting with `empty` on it
    /// (its DaemonSet pods); at most `limit` nodes in all.
    pub fn new(allocatable: Resources, empty: Resources, open: usize, limit: usize) -> Self {
        Bins { allocatable, empty, requested: vec![empty; open], limit: limit.max(open) }
    }

    /// Places `requests` on the first node with room, opening one if none has
    /// room and the limit allows; the node's index, or `None`.
    pub fn first_fit(&mut self, requests: Resources) -> Option<usize> {
        let fits = |on: Resources| resources(requests, self.allocatable - on).is_ok();
        let i = match self.requested.iter().position(|&on| fits(on)) {
            Some(i) => i,
            None if self.requested.len() < self.limit && fits(self.empty) => {
                self.requested.push(self.empty);
                self.requested.len() - 1
            }
            None => return None,
        };
        self.requested[i] += requests;
        Some(i)
    }

    /// Nodes in use or open.
    pub fn len(&self) -> usize {
        self.requested.len()
    }

    /// Whether no node is open.
    pub fn is_empty(&self) -> bool {
        self.requested.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, pod};

    #[test]
    fn pods_go_largest_dominant_share_first_then_by_name() {
        let reference = Resources::new(4000, 8 * GI, 110);
        let pods = [
            pod("small").cpu(100).memory(GI / 8).build(),
            pod("memory-heavy").cpu(100).memory(4 * GI).build(),
            pod("cpu-heavy").cpu(3000).memory(GI).build(),
            pod("b-twin").cpu(100).memory(GI / 8).build(),
            pod("a-twin").cpu(100).memory(GI / 8).build(),
        ];
        let mut order: Vec<&PodInfo> = pods.iter().collect();
        sort_decreasing(&mut order, reference);
        let names: Vec<&str> = order.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["cpu-heavy", "memory-heavy", "a-twin", "b-twin", "small"]);
        assert_eq!(dominant_share(Resources::new(2000, GI, 1), Resources::ZERO), 0.0);
    }

    #[test]
    fn first_fit_fills_then_opens_up_to_the_limit() {
        let mut bins = Bins::new(Resources::new(1000, GI, 110), Resources::new(100, 0, 1), 0, 2);
        assert!(bins.is_empty());
        assert_eq!(bins.first_fit(Resources::new(600, 0, 1)), Some(0));
        assert_eq!(bins.first_fit(Resources::new(600, 0, 1)), Some(1));
        assert_eq!(bins.first_fit(Resources::new(300, 0, 1)), Some(0), "room left on the first");
        assert_eq!(bins.first_fit(Resources::new(300, 0, 1)), Some(1));
        assert_eq!(bins.first_fit(Resources::new(300, 0, 1)), None, "the limit is reached");
        assert_eq!(bins.first_fit(Resources::new(0, 0, 1)), Some(0), "a pod without requests still takes a pod slot");
        assert_eq!(bins.len(), 2);
    }

    #[test]
    fn pre_opened_bins_are_used_without_opening_more() {
        let mut bins = Bins::new(Resources::new(1000, GI, 110), Resources::ZERO, 1, 1);
        assert_eq!(bins.first_fit(Resources::new(1000, 0, 1)), Some(0));
        assert_eq!(bins.first_fit(Resources::new(1, 0, 1)), None);
        let mut none = Bins::new(Resources::new(1000, GI, 110), Resources::new(2000, 0, 1), 0, 5);
        assert_eq!(none.first_fit(Resources::new(1, 0, 1)), None, "a pod that fits no empty node opens none");
        assert!(none.is_empty());
    }
}
