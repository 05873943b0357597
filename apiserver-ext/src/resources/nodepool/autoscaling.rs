//! What the autoscaler reads of the nodepools it scales (from the cache, no
//! orchestrator call) and writes back (`status.autoscaling`, in the metadata
//! store shared by replicas).

use std::collections::BTreeMap;

use sks_rest::status::{ApiError, ApiResult};
use uuid::Uuid;

use super::convert::{self, Autoscaling};
use super::{NodePools, key};
use crate::resources::metadata::AutoscalingStatus;
use crate::resources::timestamp_now as now;

/// An autoscaled nodepool as the autoscaler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscaled {
    /// The nodepool's id (also the NodePool's uid).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its instance pool's target size.
    pub size: i64,
    /// `spec.autoscaling`.
    pub bounds: Autoscaling,
    /// Its instance type, `<family>.<size>`.
    pub instance_type: String,
    /// The instance type's CPUs.
    pub cpus: i64,
    /// The instance type's memory, in bytes.
    pub memory_bytes: i64,
    /// The nodepool's labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints: key, value, effect.
    pub taints: Vec<(String, String, String)>,
}

impl NodePools {
    /// Every nodepool with `spec.autoscaling`, as last refreshed.
    pub fn autoscaled(&self) -> Vec<Autoscaled> {
        let types = self.types();
        let metas = self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let nodepools = self.nodepools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodepools
            .values()
            .filter_map(|np| {
                let bounds = metas.get(&np.id.to_string())?.autoscaling?;
                let type_id = np.spec.instance_type?.id;
                let instance_type = types.name_of(type_id);
                let it = types.by_name(&instance_type)?;
                Some(Autoscaled {
                    id: np.id,
                    name: np.spec.name.clone().unwrap_or_default(),
                    size: np.size,
                    bounds,
                    cpus: it.cpus,
                    memory_bytes: it.memory,
                    instance_type,
                    labels: np.spec.labels.clone().unwrap_or_default(),
                    taints: np
                        .spec
                        .taints
                        .iter()
                        .flatten()
                        .map(|(k, t)| (k.clone(), t.value.clone(), t.effect.to_string()))
                        .collect(),
                })
            })
            .collect()
    }

    /// Changes what `status.autoscaling` of nodepool `id` says, keeps it in the
    /// metadata store and shows it at once (no orchestrator call).
    pub async fn record_autoscaling(&self, id: Uuid, change: impl FnOnce(&mut AutoscalingStatus)) -> ApiResult<()> {
        let _w = self.writing.lock().await;
        let uid = id.to_string();
        let mut meta = self.meta(&uid);
        let mut status = meta.autoscaling_status.clone().unwrap_or_default();
        change(&mut status);
        if meta.autoscaling_status.as_ref() == Some(&status) {
            return Ok(());
        }
        meta.autoscaling_status = Some(status);
        self.save_meta(&uid, meta.clone()).await?;
        let name = self
            .nodepools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|np| np.id == id)
            .and_then(|np| np.spec.name.clone())
            .ok_or_else(|| ApiError::not_found(self.def.group_resource(), &uid))?;
        if let Some(current) = self.cache.get(&key(&name)) {
            let mut obj = (*current).clone();
            convert::set_autoscaling_status(&mut obj, &meta, Some(&current), &now());
            self.cache.upsert(obj);
        }
        Ok(())
    }
}
