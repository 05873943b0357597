//! Test fixtures the node steps' unit tests share.

use orchestrator::model::{Ref, SksNodepool, SksNodepoolSpec, SksNodepoolState};
use uuid::Uuid;

/// A running nodepool of 3 with id `id` and `spec`.
pub fn nodepool(id: Uuid, spec: SksNodepoolSpec) -> SksNodepool {
    SksNodepool {
        id,
        state: SksNodepoolState::Running,
        size: 3,
        version: None,
        template: None,
        instance_pool: Some(Ref::from(Uuid::nil())),
        addons: None,
        created_at: None,
        spec,
    }
}
