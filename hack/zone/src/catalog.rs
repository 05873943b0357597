//! Fixed catalogs: instance types, SKS versions, templates.

use orchestrator::model::{InstanceType, InstanceTypeFamily, InstanceTypeSize};
use uuid::Uuid;

const GIB: i64 = 1 << 30;

/// Namespace of the zone's deterministic ids, so catalog ids are stable across restarts and machines.
const NAMESPACE: Uuid = Uuid::from_u128(0x5c5a_2b1e_0f4d_4e8b_9a71_3d3c_7a10_2b6e);

/// Versions a fresh zone offers, newest first.
pub const DEFAULT_VERSIONS: &[&str] = &["1.34.2", "1.34.1", "1.33.6", "1.33.5", "1.32.10"];

/// (family, size, cpus, memory GiB)
const TYPES: &[(&str, &str, i64, i64)] = &[
    ("standard", "micro", 1, 0),
    ("standard", "tiny", 1, 1),
    ("standard", "small", 2, 2),
    ("standard", "medium", 2, 4),
    ("standard", "large", 4, 8),
    ("standard", "extra-large", 4, 16),
    ("standard", "huge", 8, 32),
    ("standard", "mega", 12, 64),
    ("standard", "titan", 16, 128),
    ("standard", "jumbo", 24, 225),
    ("cpu", "extra-large", 8, 16),
    ("cpu", "huge", 16, 32),
    ("memory", "extra-large", 2, 32),
    ("memory", "huge", 4, 64),
    ("gpu3", "small", 12, 56),
];

/// The id of the instance type `<family>.<size>`.
pub fn instance_type_id(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("instance-type/{name}").as_bytes())
}

/// Every instance type, offered in `zones`.
pub fn instance_types(zones: &[String]) -> Vec<InstanceType> {
    TYPES
        .iter()
        .map(|&(family, size, cpus, gib)| {
            let memory = if gib == 0 { 512 << 20 } else { gib * GIB };
            InstanceType {
                id: instance_type_id(&format!("{family}.{size}")),
                family: family.parse().unwrap_or_else(|never| match never {}),
                size: size.parse().unwrap_or_else(|never| match never {}),
                cpus,
                gpus: family.starts_with("gpu").then_some(1),
                memory,
                authorized: Some(true),
                zones: Some(zones.to_vec()),
            }
        })
        .collect()
}

/// The instance type with this id.
pub fn instance_type(id: Uuid, zones: &[String]) -> Option<InstanceType> {
    instance_types(zones).into_iter().find(|t| t.id == id)
}

/// The template new nodes of `version` get, per variant (`standard`, `nvidia`).
pub fn nodepool_template(version: &str, variant: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("sks-template/{version}/{variant}").as_bytes())
}

/// A default family/size pair for docs and the seed.
pub fn default_instance_type() -> (InstanceTypeFamily, InstanceTypeSize) {
    (InstanceTypeFamily::Standard, InstanceTypeSize::Medium)
}
