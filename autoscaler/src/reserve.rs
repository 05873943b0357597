//! What a new node of an instance type offers pods: its CPUs and memory minus
//! a system reserve (kubelet, container runtime, OS) and kubelet's memory
//! eviction threshold, and 110 pods (kubelet's default `maxPods`).
//!
//! The reserve follows GKE's documented tiers ("Plan GKE node sizes",
//! cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes, also
//! used by AKS for its pre-1.29 nodes), each tier's share counted on the part
//! of the machine that falls in it, the total rounded up:
//!
//! | resource | tier | reserved |
//! |---|---|---|
//! | CPU | first core | 6 % |
//! | CPU | second core | 1 % |
//! | CPU | cores 3 and 4 | 0.5 % |
//! | CPU | above 4 cores | 0.25 % |
//! | memory | machines under 1 GiB | 255 MiB flat |
//! | memory | first 4 GiB | 25 % |
//! | memory | next 4 GiB (to 8) | 20 % |
//! | memory | next 8 GiB (to 16) | 10 % |
//! | memory | next 112 GiB (to 128) | 6 % |
//! | memory | above 128 GiB | 2 % |
//! | memory | eviction threshold | 100 MiB more |
//!
//! For Exoscale's standard family that gives:
//!
//! | type | CPUs | memory | allocatable CPU | allocatable memory |
//! |---|---|---|---|---|
//! | tiny | 1 | 1 GiB | 940m | 668 MiB |
//! | small | 2 | 2 GiB | 1930m | 1436 MiB |
//! | medium | 2 | 4 GiB | 1930m | 2972 MiB |
//! | large | 4 | 8 GiB | 3920m | 6248.8 MiB |
//! | extra-large | 4 | 16 GiB | 3920m | 13621.6 MiB |
//! | huge | 8 | 32 GiB | 7910m | 29022.6 MiB |
//! | mega | 12 | 64 GiB | 11900m | 59824.5 MiB |
//! | titan | 16 | 128 GiB | 15890m | 121428.3 MiB |
//!
//! Nodes must report the same allocatable for the simulation to hold: a
//! kubelet configured with a smaller reserve only makes the plans cautious
//! (a pod that would just fit a real node is called too large), a larger one
//! makes them optimistic.

use crate::resources::Resources;

/// Pods a node accepts (kubelet's default `maxPods`).
pub const MAX_PODS: i64 = 110;

/// Kubelet's default hard eviction threshold, `memory.available<100Mi`.
pub const EVICTION_THRESHOLD_BYTES: i64 = 100 << 20;

const GIB: i64 = 1 << 30;

/// Shares are in ten-thousandths.
const SHARE: i64 = 10_000;

/// `(tier size in millicores, share)`; the last tier is unbounded.
const CPU_TIERS: [(i64, i64); 4] = [(1000, 600), (1000, 100), (2000, 50), (i64::MAX, 25)];

/// `(tier size in bytes, share)`; the last tier is unbounded.
const MEMORY_TIERS: [(i64, i64); 5] =
    [(4 * GIB, 2500), (4 * GIB, 2000), (8 * GIB, 1000), (112 * GIB, 600), (i64::MAX, 200)];

/// Memory reserved on machines under 1 GiB.
const SMALL_MACHINE_RESERVE: i64 = 255 << 20;

/// The allocatable resources of a node with `cpus` CPUs and `memory_bytes` of memory.
pub fn allocatable(cpus: i64, memory_bytes: i64) -> Resources {
    let cpu_millis = cpus.saturating_mul(1000).max(0);
    let memory_bytes = memory_bytes.max(0);
    let memory_reserve = if memory_bytes < GIB { SMALL_MACHINE_RESERVE } else { tiered(memory_bytes, &MEMORY_TIERS) };
    Resources {
        cpu_millis: cpu_millis - tiered(cpu_millis, &CPU_TIERS),
        memory_bytes: (memory_bytes - memory_reserve - EVICTION_THRESHOLD_BYTES).max(0),
        pods: MAX_PODS,
    }
}

/// The reserve of `amount` over `tiers`, rounded up.
fn tiered(amount: i64, tiers: &[(i64, i64)]) -> i64 {
    let mut left = i128::from(amount);
    let mut reserved: i128 = 0;
    for &(size, share) in tiers {
        let take = left.min(i128::from(size));
        reserved += take * i128::from(share);
        left -= take;
    }
    let share = i128::from(SHARE);
    // Fits: the reserve never exceeds the amount.
    i64::try_from((reserved + share - 1) / share).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1 << 20;

    #[test]
    fn the_reserve_follows_the_documented_tiers() {
        // (cpus, memory, allocatable millicores, allocatable bytes): the table in the module docs.
        let cases: &[(i64, i64, i64, i64)] = &[
            (1, 512 * MIB, 940, 164_626_432),
            (1, GIB, 940, 700_448_768),
            (2, 2 * GIB, 1930, 1_505_755_136),
            (2, 4 * GIB, 1930, 3_116_367_872),
            (4, 8 * GIB, 3920, 6_552_341_708),
            (4, 16 * GIB, 3920, 14_283_282_841),
            (8, 32 * GIB, 7910, 30_432_359_874),
            (12, 64 * GIB, 11900, 62_730_513_940),
            (16, 128 * GIB, 15890, 127_326_822_072),
            (24, 225 * GIB, 23870, 229_396_719_861),
        ];
        for &(cpus, memory, cpu_millis, memory_bytes) in cases {
            assert_eq!(
                allocatable(cpus, memory),
                Resources { cpu_millis, memory_bytes, pods: MAX_PODS },
                "{cpus} CPUs, {} MiB",
                memory / MIB
            );
        }
    }

    #[test]
    fn tiny_or_nonsensical_machines_offer_nothing_negative() {
        assert_eq!(allocatable(0, 0), Resources::new(0, 0, MAX_PODS));
        assert_eq!(allocatable(-1, -5), Resources::new(0, 0, MAX_PODS));
        assert_eq!(allocatable(1, 300 * MIB).memory_bytes, 0);
        assert!(allocatable(i64::MAX, i64::MAX).cpu_millis > 0);
    }
}
