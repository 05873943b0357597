//! Which pool to grow when several could host pending pods: cluster-autoscaler's
//! `priority` expander in front of its `least-waste` one, with deterministic
//! tie-breaks instead of its random fallback. Options are ranked by:
//!
//! 1. priority, higher first: the nodepool's entry in the priorities map
//!    (by name; pools without one have priority 0);
//! 2. waste, lower first: the fraction of the new nodes' allocatable CPU left
//!    unrequested by the pods the option hosts, plus the same fraction of
//!    memory (cluster-autoscaler's `expander/waste`; it divides by capacity,
//!    this by allocatable, what pods can actually use; DaemonSet pods count
//!    as waste in both, being overhead of every node);
//! 3. fewer new nodes;
//! 4. the pool's name.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::resources::Resources;
use crate::template::Template;

/// Growing one pool by some nodes, for some pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// The pool, as an index into the templates.
    pub pool: usize,
    /// New nodes.
    pub nodes: u32,
    /// What the hosted pods request.
    pub requested: Resources,
    /// The hosted pods, as indices into the caller's list.
    pub pods: Vec<usize>,
}

/// cluster-autoscaler's waste score of `requested` on `nodes` nodes offering
/// `allocatable` each: unrequested CPU fraction plus unrequested memory fraction.
pub fn waste(nodes: u32, requested: Resources, allocatable: Resources) -> f64 {
    let unused = |want: i64, per_node: i64| {
        let available = per_node as f64 * f64::from(nodes);
        if available > 0.0 { (available - want as f64) / available } else { 0.0 }
    };
    unused(requested.cpu_millis, allocatable.cpu_millis) + unused(requested.memory_bytes, allocatable.memory_bytes)
}

/// The best of `options` for `templates`, given pool priorities by name.
pub fn best<'o>(
    options: &'o [Expansion],
    templates: &[Template],
    priorities: &BTreeMap<String, i32>,
) -> Option<&'o Expansion> {
    options.iter().min_by(|a, b| {
        let key = |o: &Expansion| {
            let t = &templates[o.pool];
            (Reverse(priorities.get(&t.name).copied().unwrap_or(0)), o.nodes, t.name.as_str())
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then_with(|| {
                let w = |o: &Expansion| waste(o.nodes, o.requested, templates[o.pool].allocatable);
                w(a).total_cmp(&w(b))
            })
            .then_with(|| ka.1.cmp(&kb.1))
            .then_with(|| ka.2.cmp(kb.2))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GI, spec, template};

    fn option(pool: usize, nodes: u32, cpu: i64, memory: i64) -> Expansion {
        Expansion { pool, nodes, requested: Resources::new(cpu, memory, 1), pods: vec![] }
    }

    #[test]
    fn waste_is_unused_cpu_plus_unused_memory() {
        let per_node = Resources::new(1000, 4 * GI, 110);
        assert_eq!(waste(1, Resources::new(1000, 4 * GI, 1), per_node), 0.0);
        assert_eq!(waste(2, Resources::new(1000, 4 * GI, 1), per_node), 1.0);
        assert_eq!(waste(1, Resources::new(500, GI, 1), per_node), 0.5 + 0.75);
        assert_eq!(waste(1, Resources::new(500, GI, 1), Resources::ZERO), 0.0);
    }

    #[test]
    fn the_least_wasteful_pool_wins_unless_a_priority_says_otherwise() {
        let templates = [template(spec("big", 8, 32 * GI)), template(spec("small", 2, 4 * GI))];
        // 1.5 CPUs and 2 GiB: one small node wastes less than one big one.
        let options = [option(0, 1, 1500, 2 * GI), option(1, 1, 1500, 2 * GI)];
        let none = BTreeMap::new();
        assert_eq!(best(&options, &templates, &none).map(|o| o.pool), Some(1));
        let prefer_big = BTreeMap::from([("big".to_owned(), 10)]);
        assert_eq!(best(&options, &templates, &prefer_big).map(|o| o.pool), Some(0));
        let demote_small = BTreeMap::from([("small".to_owned(), -1)]);
        assert_eq!(best(&options, &templates, &demote_small).map(|o| o.pool), Some(0), "unlisted pools are 0");
        assert_eq!(best(&[], &templates, &none), None);
    }

    #[test]
    fn ties_go_to_fewer_nodes_then_the_name() {
        let templates = [template(spec("b", 2, 4 * GI)), template(spec("a", 2, 4 * GI))];
        let none = BTreeMap::new();
        let same = [option(0, 1, 100, GI), option(1, 1, 100, GI)];
        assert_eq!(best(&same, &templates, &none).map(|o| o.pool), Some(1), "a before b");
        // Equal waste (nothing requested, all wasted) but fewer nodes.
        let fewer = [option(1, 2, 0, 0), option(0, 1, 0, 0)];
        assert_eq!(best(&fewer, &templates, &none).map(|o| o.pool), Some(0));
    }
}
