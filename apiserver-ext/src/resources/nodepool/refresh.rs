//! Keeping the NodePool cache current: one cluster GET and one instance list
//! per refresh, however many clients and watches there are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use orchestrator::model::{Instance, InstanceFilter, ManagerType};
use uuid::Uuid;

use super::convert::{self, InstanceTypes, Observed};
use super::{NodePools, key};
use crate::resources::timestamp_now as now;

impl NodePools {
    /// Refreshes the cache every `period` until the process ends.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut failures = 0u32;
        loop {
            match self.refresh().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "refreshing nodepools failed; serving the last known state");
                }
            }
            // Back off while the orchestrator fails, but never wait longer than the period.
            let wait = if failures == 0 {
                period
            } else {
                (Duration::from_millis(500) * 2u32.pow(failures.min(6))).min(period)
            };
            tokio::time::sleep(wait).await;
        }
    }

    pub(super) async fn load_types(&self) -> Result<(), orchestrator::Error> {
        let types = self.client.list_instance_types().await?;
        *self.types.write().unwrap_or_else(std::sync::PoisonError::into_inner) = InstanceTypes::new(types);
        Ok(())
    }

    pub(super) fn types(&self) -> InstanceTypes {
        self.types.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the cluster's nodepools and their instances once and updates the cache.
    pub async fn refresh(&self) -> Result<(), orchestrator::Error> {
        let _one = self.refreshing.lock().await;
        if self.types().is_empty() {
            self.load_types().await?;
        }
        let cluster = self.client.get_sks_cluster(self.cluster).await?;
        let filter = InstanceFilter { manager_type: Some(ManagerType::InstancePool), ..Default::default() };
        let instances = self.client.list_instances(&filter).await?;
        let mut by_pool: HashMap<Uuid, Vec<Instance>> = HashMap::new();
        for i in instances {
            if let Some(m) = &i.manager {
                by_pool.entry(m.id).or_default().push(i);
            }
        }
        match self.store.load().await {
            Ok(stored) => *self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stored,
            Err(e) => tracing::warn!(error = %e, "reading the metadata store failed; using the last known metadata"),
        }
        let types = self.types();
        let ready_nodes = self.nodes.as_ref().and_then(|n| n.ready_by_nodepool());
        let stamp = now();
        let mut seen = BTreeSet::new();
        let mut current = BTreeMap::new();
        let mut changed = Vec::new();
        for np in cluster.nodepools {
            let name = np.spec.name.clone().unwrap_or_default();
            let uid = np.id.to_string();
            let meta = {
                let mut metas = self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let meta = metas.entry(uid.clone()).or_default();
                let hash = convert::spec_hash(&convert::full_spec(&np, meta, &types));
                if meta.spec_hash != hash {
                    // Changed behind our back (or first seen): a new generation.
                    meta.generation =
                        if meta.spec_hash.is_empty() { meta.generation.max(1) } else { meta.generation + 1 };
                    meta.spec_hash = hash;
                    Some(meta.clone())
                } else {
                    None
                }
            };
            if let Some(meta) = meta {
                changed.push((uid.clone(), meta));
            }
            let meta = self
                .metas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&uid)
                .cloned()
                .unwrap_or_default();
            let members = np.instance_pool.and_then(|p| by_pool.get(&p.id)).map_or(&[][..], Vec::as_slice);
            let previous = self.cache.get(&key(&name));
            let seen_now = Observed {
                members,
                ready_nodes: ready_nodes.as_ref().map(|r| r.get(&uid).copied().unwrap_or(0)),
                previous: previous.as_deref(),
                now: &stamp,
            };
            self.cache.upsert(convert::to_object(&np, &meta, &types, &seen_now));
            seen.insert(name.clone());
            current.insert(name, np);
        }
        // One store write for every generation bump of this refresh (1,000 on a first start).
        if !changed.is_empty()
            && let Err(e) = self.store.save_many(&changed).await
        {
            tracing::warn!(error = %e, nodepools = changed.len(), "saving nodepool metadata failed");
        }
        let (objects, _) = self.cache.snapshot();
        for obj in objects {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if !seen.contains(&name) {
                self.cache.remove(&key(&name));
                if let Some(uid) = obj["metadata"]["uid"].as_str() {
                    self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
                    let _ = self.store.remove(uid).await;
                }
            }
        }
        *self.nodepools.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = current;
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    pub(super) async fn refresh_after_write(&self, name: &str) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, nodepool = name, "refresh after a write failed");
        }
    }
}
