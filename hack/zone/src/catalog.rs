//! Fixed catalogs: instance types, SKS versions, templates.

use orchestrator::model::{InstanceType, InstanceTypeFamily, InstanceTypeSize};
use serde_json::{Value, json};
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

/// The variants of SKS node templates.
pub const NODEPOOL_VARIANTS: &[&str] = &["standard", "nvidia"];

/// Public templates every zone offers: (name, family, version, default user, boot mode, build).
const TEMPLATES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("Linux Ubuntu 24.04 LTS 64-bit", "ubuntu", "24.04", "ubuntu", "uefi", "2025-06-03"),
    ("Linux Ubuntu 22.04 LTS 64-bit", "ubuntu", "22.04", "ubuntu", "legacy", "2025-06-03"),
    ("Linux Debian 12 (Bookworm) 64-bit", "debian", "12", "debian", "legacy", "2025-05-20"),
    ("Linux Rocky 9 64-bit", "rocky", "9", "rocky", "legacy", "2025-05-20"),
];

/// When SKS node templates were built: the zone has no image history.
const SKS_TEMPLATE_BUILD: &str = "2025-06-01";

/// A template as the API shows it. The zone boots no image, so `size`,
/// `checksum` and `url` only look like a real template's.
fn template_value(
    id: Uuid,
    name: &str,
    (family, version, user, boot, build): (&str, &str, &str, &str, &str),
    zones: &[String],
) -> Value {
    let slug: String =
        name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    json!({
        "id": id,
        "name": name,
        "family": family,
        "version": version,
        "build": build,
        "size": 10 * GIB,
        "created-at": format!("{build}T00:00:00Z"),
        "visibility": "public",
        "zones": zones,
        "maintainer": "Exoscale",
        "default-user": user,
        "boot-mode": boot,
        "ssh-key-enabled": true,
        "password-enabled": false,
        "application-consistent-snapshot-enabled": false,
        "checksum": Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple().to_string(),
        "url": format!("https://sos-ch-dk-2.exo.io/exoscale-templates/{slug}-{build}.qcow2"),
    })
}

/// The public OS templates, offered in `zones`.
pub fn public_templates(zones: &[String]) -> Vec<Value> {
    TEMPLATES
        .iter()
        .map(|&(name, family, version, user, boot, build)| {
            let id = Uuid::new_v5(&NAMESPACE, format!("template/{name}").as_bytes());
            template_value(id, name, (family, version, user, boot, build), zones)
        })
        .collect()
}

/// The SKS node templates of `versions` (both variants), offered in `zones`.
pub fn nodepool_templates(versions: &[String], zones: &[String]) -> Vec<Value> {
    versions
        .iter()
        .flat_map(|version| NODEPOOL_VARIANTS.iter().map(move |variant| (version, *variant)))
        .map(|(version, variant)| {
            let name = match variant {
                "standard" => format!("SKS Node {version}"),
                other => format!("SKS Node {version} ({other})"),
            };
            let id = nodepool_template(version, variant);
            template_value(id, &name, ("sks", version, "ubuntu", "uefi", SKS_TEMPLATE_BUILD), zones)
        })
        .collect()
}

/// A default family/size pair for docs and the seed.
pub fn default_instance_type() -> (InstanceTypeFamily, InstanceTypeSize) {
    (InstanceTypeFamily::Standard, InstanceTypeSize::Medium)
}
