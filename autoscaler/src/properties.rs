//! Property tests of the planners on generated clusters. Cases per property:
//! `PROPTEST_CASES` (default 256), e.g.
//! `PROPTEST_CASES=20000 cargo nextest run -p sks-autoscaler properties` for a long run.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use sks_keys::label;

use crate::drain::{Disposition, disposition};
use crate::fixtures::{GI, MI, node, pod, spec};
use crate::node::NodeInfo;
use crate::pdb::Budgets;
use crate::pod::PodInfo;
use crate::predicates::{NodeView, fits};
use crate::resources::Resources;
use crate::scale_down::{ScaleDown, ScaleDownOptions, plan_scale_down};
use crate::scale_up::{ScaleUp, ScaleUpOptions, plan_scale_up};
use crate::snapshot::ClusterSnapshot;
use crate::taints::{Effect, Taint};
use crate::template::Template;
use crate::unneeded::UnneededTracker;

/// A pending pod: (cpu millis, memory MiB, tolerates `dedicated`, wants tier: 0 none, 1 `a`, 2 `b`).
type PodShape = (i64, i64, bool, u8);

fn pending_pod(i: usize, (cpu, memory_mi, tolerant, tier): PodShape) -> PodInfo {
    let mut p = pod(&format!("p{i:03}")).cpu(cpu).memory(memory_mi * MI);
    if tolerant {
        p = p.toleration("dedicated", "yes");
    }
    if tier > 0 {
        p = p.selector("tier", if tier == 1 { "a" } else { "b" });
    }
    p.build()
}

fn pods_strategy(max: usize) -> impl Strategy<Value = Vec<PodInfo>> {
    prop::collection::vec((0..=4000i64, 0..=8192i64, any::<bool>(), 0..3u8), 0..max)
        .prop_map(|shapes| shapes.into_iter().enumerate().map(|(i, s)| pending_pod(i, s)).collect())
}

/// A pool: (cpus, memory GiB, tainted, tier b, max, target, upcoming, DaemonSet millis).
type PoolShape = (i64, i64, bool, bool, u32, u32, u32, i64);

fn pool(i: usize, (cpus, memory_gi, tainted, tier_b, max, target, upcoming, ds): PoolShape) -> Template {
    let mut s = spec(&format!("pool{i}"), cpus, memory_gi * GI);
    if tainted {
        s.taints = vec![Taint::new("dedicated", "yes", Effect::NoSchedule)];
    }
    s.labels = [("tier", if tier_b { "b" } else { "a" })].into_iter().collect();
    s.max = max;
    s.target_size = target.min(max);
    s.upcoming = upcoming.min(s.target_size);
    let agent = pod(&format!("agent{i}")).owner("DaemonSet").cpu(ds).memory(64 * MI).build();
    Template::new(s, &[agent])
}

fn pools_strategy() -> impl Strategy<Value = Vec<Template>> {
    prop::collection::vec(
        (1..=16i64, 1..=64i64, any::<bool>(), any::<bool>(), 0..=20u32, 0..=20u32, 0..=6u32, 0..=300i64),
        1..=3,
    )
    .prop_map(|shapes| shapes.into_iter().enumerate().map(|(i, s)| pool(i, s)).collect())
}

/// Existing nodes (tier `a`, untainted) and pods bound to them.
fn existing_strategy() -> impl Strategy<Value = (Vec<NodeInfo>, Vec<PodInfo>)> {
    prop::collection::vec((500..=4000i64, prop::collection::vec(0..=1500i64, 0..4)), 0..4).prop_map(|nodes| {
        let mut infos = Vec::new();
        let mut pods = Vec::new();
        for (n, (cpu, bound)) in nodes.into_iter().enumerate() {
            let name = format!("node{n}");
            infos.push(node(&name, cpu, 4 * GI).label("tier", "a").build());
            for (j, c) in bound.into_iter().enumerate() {
                pods.push(pod(&format!("bound{n}-{j}")).cpu(c).memory(256 * MI).on(&name).build());
            }
        }
        (infos, pods)
    })
}

/// The templates after `plan`'s increases, their nodes on their way.
fn with_plan_upcoming(templates: &[Template], plan: &ScaleUp<'_>) -> Vec<Template> {
    templates
        .iter()
        .map(|t| {
            let added = plan.increases.iter().find(|i| i.template.name == t.name).map_or(0, |i| i.to - i.from);
            Template { target_size: t.target_size + added, upcoming: t.upcoming + added, ..t.clone() }
        })
        .collect()
}

fn names(pods: &[&PodInfo]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p.name.to_string()).collect();
    n.sort();
    n
}

/// Independent first-fit-decreasing of `pods` on nodes with `free` each.
fn oracle_ffd(pods: &[PodInfo], free: Resources) -> usize {
    let share = |p: &PodInfo| {
        (p.requests.cpu_millis as f64 / free.cpu_millis as f64)
            .max(p.requests.memory_bytes as f64 / free.memory_bytes as f64)
    };
    let mut order: Vec<&PodInfo> = pods.iter().collect();
    order.sort_by(|a, b| share(b).total_cmp(&share(a)).then_with(|| a.name.cmp(&b.name)));
    let mut bins: Vec<Resources> = Vec::new();
    for p in order {
        match bins.iter_mut().find(|used| (**used + p.requests).fits_in(free)) {
            Some(used) => *used += p.requests,
            None => bins.push(p.requests),
        }
    }
    bins.len()
}

proptest! {
    #[test]
    fn a_pod_placed_on_a_template_node_always_fits_it(
        pending in pods_strategy(60),
        templates in pools_strategy(),
        (nodes, bound) in existing_strategy(),
    ) {
        let cluster = ClusterSnapshot::new(&nodes, &bound);
        let plan = plan_scale_up(&pending, &cluster, &templates, &ScaleUpOptions::default());
        for n in &plan.template_nodes {
            let mut requested = n.template.daemonset_requests;
            for p in &n.pods {
                let view = NodeView { requested, ..n.template.view() };
                prop_assert_eq!(fits(p, &view), Ok(()), "{} on {}#{}", p.name, n.template.name, n.index);
                requested += p.requests;
            }
        }
        for inc in &plan.increases {
            prop_assert!(inc.to <= inc.template.max, "{} grows to {} above its max {}", inc.template.name, inc.to, inc.template.max);
            prop_assert!(inc.to > inc.from);
        }
    }

    #[test]
    fn nodes_requested_never_exceed_pending_pods(
        pending in pods_strategy(60),
        templates in pools_strategy(),
        (nodes, bound) in existing_strategy(),
    ) {
        let cluster = ClusterSnapshot::new(&nodes, &bound);
        let plan = plan_scale_up(&pending, &cluster, &templates, &ScaleUpOptions::default());
        let requested: u32 = plan.increases.iter().map(|i| i.to - i.from).sum();
        let helped: usize = plan.increases.iter().map(|i| i.pods.len()).sum();
        prop_assert!(requested as usize <= helped && helped <= pending.len());
        let accounted = plan.fits_existing.len() + plan.awaiting_upcoming.len() + helped + plan.unhelped.len() + plan.ignored.len();
        prop_assert_eq!(accounted, pending.len(), "every pending pod is in exactly one list");
    }

    #[test]
    fn one_pool_needs_between_the_lower_bound_and_first_fit_decreasing(
        cpus in 1..=16i64,
        memory_gi in 1..=64i64,
        shapes in prop::collection::vec((0.0..=1.0f64, 0.0..=1.0f64), 1..120),
    ) {
        let templates = [Template::new(crate::template::TemplateSpec { max: 1000, ..spec("only", cpus, memory_gi * GI) }, &[])];
        let free = templates[0].allocatable;
        let pending: Vec<PodInfo> = shapes
            .iter()
            .enumerate()
            .map(|(i, (c, m))| {
                pod(&format!("p{i:03}")).cpu((c * free.cpu_millis as f64) as i64).memory((m * free.memory_bytes as f64) as i64).build()
            })
            .collect();
        let plan = plan_scale_up(&pending, &ClusterSnapshot::default(), &templates, &ScaleUpOptions::default());
        let n = plan.increases.first().map_or(0, |i| (i.to - i.from) as usize);
        prop_assert!(plan.unhelped.is_empty());
        let total: Resources = pending.iter().map(|p| p.requests).sum();
        let shares = [
            total.cpu_millis as f64 / free.cpu_millis as f64,
            total.memory_bytes as f64 / free.memory_bytes as f64,
            total.pods as f64 / free.pods as f64,
        ];
        let lower = shares.iter().map(|s| s.ceil() as usize).max().unwrap_or(0);
        // Any first-fit: two nodes never both fit in one, so pairs of nodes exceed one node's worth.
        let upper = (2.0 * shares.iter().sum::<f64>()).floor() as usize + 1;
        prop_assert!(lower <= n && n <= upper, "{} nodes, bounds {}..={}", n, lower, upper);
        prop_assert!(n <= oracle_ffd(&pending, free), "{} nodes, first-fit-decreasing needs {}", n, oracle_ffd(&pending, free));
    }

    #[test]
    fn planning_again_with_the_plan_on_its_way_asks_nothing_more(
        pending in pods_strategy(80),
        templates in pools_strategy(),
        (nodes, bound) in existing_strategy(),
    ) {
        let cluster = ClusterSnapshot::new(&nodes, &bound);
        let first = plan_scale_up(&pending, &cluster, &templates, &ScaleUpOptions::default());
        let after = with_plan_upcoming(&templates, &first);
        let second = plan_scale_up(&pending, &cluster, &after, &ScaleUpOptions::default());
        prop_assert!(second.increases.is_empty(), "asked again: {:?}", second.increases.iter().map(|i| (&i.template.name, i.from, i.to)).collect::<Vec<_>>());
        let mut waiting = first.awaiting_upcoming.clone();
        waiting.extend(first.increases.iter().flat_map(|i| i.pods.iter().copied()));
        prop_assert_eq!(names(&second.awaiting_upcoming), names(&waiting));
        let unhelped = |p: &ScaleUp<'_>| names(&p.unhelped.iter().map(|u| u.pod).collect::<Vec<_>>());
        prop_assert_eq!(unhelped(&second), unhelped(&first));
    }

    #[test]
    fn plans_do_not_depend_on_the_order_pods_come_in(
        (pending, shuffled) in pods_strategy(40).prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        templates in pools_strategy(),
    ) {
        let a = plan_scale_up(&pending, &ClusterSnapshot::default(), &templates, &ScaleUpOptions::default());
        let b = plan_scale_up(&shuffled, &ClusterSnapshot::default(), &templates, &ScaleUpOptions::default());
        prop_assert_eq!(a, b);
    }
}

/// A node of pool `np-pool<i>` in a scale-down case: (pool, cordoned, pods: (cpu, owner 0 RS 1 bare 2 DS, local storage)).
type NodeShape = (usize, bool, Vec<(i64, u8, bool)>);

fn scale_down_case() -> impl Strategy<Value = (Vec<NodeInfo>, Vec<PodInfo>, Vec<Template>)> {
    let nodes = prop::collection::vec(
        (
            0..2usize,
            prop::bool::weighted(0.1),
            prop::collection::vec(
                (0..=1500i64, prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]), prop::bool::weighted(0.1)),
                0..4,
            ),
        ),
        1..8,
    );
    (nodes, 0..=3u32, 0..=3u32, 0..=2u32).prop_map(|(shapes, min0, min1, extra): (Vec<NodeShape>, u32, u32, u32)| {
        let mut infos = Vec::new();
        let mut pods = Vec::new();
        for (n, (pool, cordoned, bound)) in shapes.iter().enumerate() {
            let name = format!("node{n}");
            let mut f = node(&name, 2000, 4 * GI).label(label::NODEPOOL_ID, &format!("np-pool{pool}"));
            if *cordoned {
                f = f.cordoned();
            }
            infos.push(f.build());
            for (j, &(cpu, owner, local)) in bound.iter().enumerate() {
                let mut p = pod(&format!("pod{n}-{j}")).cpu(cpu).memory(128 * MI).on(&name);
                p = match owner {
                    1 => p.bare(),
                    2 => p.owner("DaemonSet"),
                    _ => p,
                };
                if local {
                    p = p.local_storage();
                }
                pods.push(p.build());
            }
        }
        let templates = [min0, min1]
            .iter()
            .enumerate()
            .map(|(i, &min)| {
                let members = shapes.iter().filter(|s| s.0 == i).count() as u32;
                let mut s = spec(&format!("pool{i}"), 2, 4 * GI);
                (s.target_size, s.max) = (members + extra, 20);
                s.min = min.min(s.target_size);
                Template::new(s, &[])
            })
            .collect();
        (infos, pods, templates)
    })
}

fn two_rounds<'a>(
    cluster: &ClusterSnapshot<'a>,
    templates: &'a [Template],
    options: &ScaleDownOptions,
) -> ScaleDown<'a> {
    let (t0, t11): (Timestamp, Timestamp) =
        ("2026-11-21T10:00:00Z".parse().unwrap(), "2026-11-21T10:11:00Z".parse().unwrap());
    let mut tracker = UnneededTracker::new();
    plan_scale_down(cluster, templates, &[], &mut tracker, t0, options);
    plan_scale_down(cluster, templates, &[], &mut tracker, t11, options)
}

proptest! {
    #[test]
    fn scale_down_keeps_pools_at_their_minimum_and_pods_somewhere(
        (nodes, pods, templates) in scale_down_case(),
        max_removals in 1..5usize,
        max_drains in 0..3usize,
    ) {
        let cluster = ClusterSnapshot::new(&nodes, &pods);
        let options = ScaleDownOptions { max_removals, max_drains, ..ScaleDownOptions::default() };
        let plan = two_rounds(&cluster, &templates, &options);
        prop_assert!(plan.removals.len() <= max_removals);
        prop_assert!(plan.removals.iter().filter(|r| !r.is_empty()).count() <= max_drains);
        for t in &templates {
            let removed = plan.removals.iter().filter(|r| std::ptr::eq(r.template, t)).count() as u32;
            prop_assert!(t.target_size - removed >= t.min, "{} from {} by {} below {}", t.name, t.target_size, removed, t.min);
        }
        let removed = |n: &str| plan.removals.iter().any(|r| &*r.node.name == n);
        let budgets = Budgets::new(&[]);
        let mut landed: BTreeMap<&str, Resources> = BTreeMap::new();
        for r in &plan.removals {
            for p in &cluster.node(&r.node.name).unwrap().pods {
                let moved = r.moves.iter().any(|(m, _)| std::ptr::eq(*m, *p));
                match disposition(p, &budgets) {
                    Disposition::Stays => prop_assert!(!moved),
                    Disposition::Moves => prop_assert!(moved, "{} left behind on {}", p.name, r.node.name),
                    Disposition::Blocks(reason) => prop_assert!(false, "{} on removed {} blocks: {}", p.name, r.node.name, reason),
                }
            }
            for (p, to) in &r.moves {
                prop_assert!(!removed(&to.name) && to.in_service(), "{} moves to {}, which is not staying", p.name, to.name);
                let dest = cluster.node(&to.name).unwrap();
                let extra = landed.entry(&to.name).or_default();
                prop_assert_eq!(fits(p, &dest.view_with(dest.requested + *extra)), Ok(()), "{} on {}", p.name, to.name);
                *extra += p.requests;
            }
        }
    }
}

#[test]
fn five_hundred_pods_over_two_pools_plan_quickly() {
    let templates = [
        crate::fixtures::template(crate::template::TemplateSpec { max: 200, ..spec("small", 2, 4 * GI) }),
        crate::fixtures::template(crate::template::TemplateSpec { max: 200, ..spec("large", 8, 32 * GI) }),
    ];
    let pending: Vec<PodInfo> = (0..500)
        .map(|i| pod(&format!("web-{i:03}")).cpu(100 + (i % 7) * 150).memory((128 + (i % 5) * 384) * MI).build())
        .collect();
    let nodes: Vec<NodeInfo> = (0..20).map(|i| node(&format!("n{i:02}"), 1930, 3 * GI).build()).collect();
    let bound: Vec<PodInfo> =
        (0..20).map(|i| pod(&format!("running-{i:02}")).cpu(1800).on(&format!("n{i:02}")).build()).collect();
    let cluster = ClusterSnapshot::new(&nodes, &bound);
    let started = std::time::Instant::now();
    let plan = plan_scale_up(&pending, &cluster, &templates, &ScaleUpOptions::default());
    let took = started.elapsed();
    let added: u32 = plan.increases.iter().map(|i| i.to - i.from).sum();
    println!("500 pods over 2 pools: {added} nodes planned in {took:?}");
    assert!(plan.unhelped.is_empty());
    // Generous against CI noise; the benchmark harness measures it properly.
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}
