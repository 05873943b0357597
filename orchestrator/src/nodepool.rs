//! Nodepool workflows: sequences of calls that the callers (sks-ccm's
//! auto-healing, sks-apiserver's upgrade roll) share, kept apart from the
//! client's one-method-per-endpoint surface.

use uuid::Uuid;

use crate::client::Client;
use crate::error::Result;
use crate::model::Operation;

/// Replaces `instances` of a nodepool with fresh ones: evicts them (which
/// shrinks the nodepool), then scales it to `size`. The size to restore is
/// decided (and recorded) by the caller beforehand, so a retry after a failed
/// scale restores that size, not the shrunken one.
pub async fn evict_then_scale(
    client: &Client,
    cluster: Uuid,
    nodepool: Uuid,
    instances: Vec<Uuid>,
    size: i64,
) -> Result<Operation> {
    client.evict_sks_nodepool_members(cluster, nodepool, instances).await?;
    client.scale_sks_nodepool(cluster, nodepool, size).await
}
