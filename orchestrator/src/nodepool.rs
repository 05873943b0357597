//! Nodepool workflows: sequences of calls that the callers (sks-ccm's
//! auto-healing, sks-apiserver's upgrade roll) share, kept apart from the
//! client's one-method-per-endpoint surface.

use uuid::Uuid;

use crate::client::Client;
use crate::error::Result;
use crate::model::Operation;

/// Replaces `instances` of a nodepool with fresh ones without its size ever
/// going below `size`, the size the caller decided on and recorded beforehand
/// (so a retry finishes the same replacement): grows the nodepool to `size`
/// plus one per instance, then evicts them, which shrinks it by their number.
/// Growing first keeps a nodepool at its autoscaling minimum from dipping
/// below it. A nodepool already that large (another writer grew it since, or
/// an earlier attempt did) is not scaled: a smaller size would drop nodes
/// nobody chose.
pub async fn grow_then_evict(
    client: &Client,
    cluster: Uuid,
    nodepool: Uuid,
    instances: Vec<Uuid>,
    size: i64,
) -> Result<Operation> {
    let current = client.get_sks_nodepool(cluster, nodepool).await?.size;
    if let Some(to) = surge(current, size, instances.len()) {
        client.scale_sks_nodepool(cluster, nodepool, to).await?;
    }
    client.evict_sks_nodepool_members(cluster, nodepool, instances).await
}

/// The size to grow a nodepool of `current` nodes to before evicting
/// `evicting` of them so that `size` remain; `None`: it is that large already.
pub fn surge(current: i64, size: i64, evicting: usize) -> Option<i64> {
    let to = size + i64::try_from(evicting).unwrap_or(i64::MAX);
    (current < to).then_some(to)
}

#[cfg(test)]
mod tests {
    use super::surge;

    #[test]
    fn grows_by_the_evicted_nodes_and_never_shrinks() {
        assert_eq!(surge(3, 3, 1), Some(4), "a replacement: one more first");
        assert_eq!(surge(2, 2, 2), Some(4), "two at once");
        assert_eq!(surge(4, 3, 1), None, "grown already (a retry after the scale)");
        assert_eq!(surge(6, 3, 1), None, "grown by another writer: not brought back to 4");
        assert_eq!(surge(2, 3, 1), Some(4), "shrunk meanwhile: back to one above the recorded size");
    }
}
