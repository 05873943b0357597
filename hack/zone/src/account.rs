//! The account's security groups: its `default` one, and the one each SKS
//! cluster created with `create-default-security-group` gets. Clients cannot
//! create security groups here (nor anti-affinity groups, private networks,
//! elastic IPs, deploy targets or snapshots, of which the account has none);
//! these are what requests may reference and what `exo` looks up.
//!
//! Groups are answered without their `rules`: the spec marks them write-only
//! (although `exo compute security-group show` reads them), and answers must
//! conform to the spec.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::world::{ClusterRec, World};

/// Namespace of security group ids, so they are the same after a restart.
const NAMESPACE: Uuid = Uuid::from_u128(0x2f1e_8c3a_54d7_4b19_a6e0_9b7c_1d2e_3f40);

/// The id of the account's `default` security group, the same in every zone.
pub fn default_security_group_id() -> Uuid {
    Uuid::new_v5(&NAMESPACE, b"security-group/default")
}

fn default_security_group() -> Value {
    json!({"id": default_security_group_id(), "name": "default", "description": "Default Security Group"})
}

fn cluster_security_group(rec: &ClusterRec) -> Option<Value> {
    let id = rec.cluster.default_security_group_id?;
    let cluster = rec.cluster.spec.name.clone().unwrap_or_else(|| rec.cluster.id.to_string());
    Some(json!({"id": id, "name": format!("sks-{cluster}"), "description": format!("Nodes of SKS cluster {cluster}")}))
}

/// Every security group of the account, as seen from `zone`.
pub fn security_groups(world: &World, zone: &str) -> Vec<Value> {
    let mut groups = vec![default_security_group()];
    groups.extend(world.zone(zone).clusters.values().filter_map(cluster_security_group));
    groups
}

/// The security group `id`, if the account has it.
pub fn security_group(world: &World, zone: &str, id: Uuid) -> Option<Value> {
    security_groups(world, zone).into_iter().find(|g| g["id"] == json!(id))
}
