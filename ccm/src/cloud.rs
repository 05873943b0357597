//! What the orchestrator knows of this cluster, cached: its nodepools, their
//! instances and the instance type names. Refreshes are coalesced, so a burst
//! of N joining nodes costs a few list calls, not N lookups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use orchestrator::model::{Instance, InstanceFilter, ManagerType, SksNodepool};
use uuid::Uuid;

use crate::fresh::Fresh;

/// How old the snapshot may be when a lookup in it misses: what is missing
/// may be newer, but a burst of misses shares one refresh.
pub const MISS_REFRESH: Duration = Duration::from_millis(500);
/// The longest wait between two refreshes of [`Cloud::keep_fresh`].
const REFRESH_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// How old a snapshot may be (at most `cap`) to judge something that happened
/// at `since`: one taken before may not show it. An object created at `since`
/// may have an instance younger than the snapshot (a kubelet registers seconds
/// after its instance is created, or sooner in tests); a Node that turned
/// NotReady at `since` may have lost its instance just before. Kubernetes
/// times are whole seconds, so the event may be up to a second later.
pub fn fresh_since(since: Option<&Time>, cap: Duration, now: jiff::Timestamp) -> Duration {
    let age = since.map(|t| now.duration_since(t.0) - jiff::SignedDuration::from_secs(1));
    age.and_then(|a| Duration::try_from(a).ok()).unwrap_or(Duration::ZERO).min(cap)
}

/// One view of the cluster's instances.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Instances of this cluster's nodepools, by id (boxed: the table keeps
    /// spare slots, and an inline Instance is 440 bytes).
    pub instances: HashMap<Uuid, Box<Instance>>,
    /// Ids by lower-case name.
    pub by_name: HashMap<String, Uuid>,
    /// Nodepools by the id of their instance pool.
    pub nodepools: HashMap<Uuid, SksNodepool>,
    /// The cluster's name.
    pub cluster_name: String,
}

impl Snapshot {
    /// The nodepool an instance belongs to.
    pub fn nodepool_of(&self, instance: &Instance) -> Option<&SksNodepool> {
        instance.manager.as_ref().and_then(|m| self.nodepools.get(&m.id))
    }

    /// An instance by name, case-insensitively.
    pub fn by_name(&self, name: &str) -> Option<&Instance> {
        self.by_name.get(&name.to_lowercase()).and_then(|id| self.by_id(id))
    }

    /// An instance by id.
    pub fn by_id(&self, id: &Uuid) -> Option<&Instance> {
        self.instances.get(id).map(|i| &**i)
    }

    /// Leaves instance `id` out: it is gone (this replica evicted it).
    pub fn forget(&mut self, id: Uuid) {
        if let Some(i) = self.instances.remove(&id) {
            let name = i.name.to_lowercase();
            if self.by_name.get(&name) == Some(&id) {
                self.by_name.remove(&name);
            }
        }
    }
}

/// The cache.
pub struct Cloud {
    client: orchestrator::Client,
    cluster: Uuid,
    /// The zone's name (labels `topology.kubernetes.io/region` and `zone`).
    pub zone: String,
    snapshot: Fresh<Snapshot>,
    types: RwLock<HashMap<Uuid, String>>,
}

impl Cloud {
    /// A cache of `cluster` in `zone`.
    pub fn new(client: orchestrator::Client, cluster: Uuid, zone: String) -> Self {
        Cloud { client, cluster, zone, snapshot: Fresh::default(), types: RwLock::new(HashMap::new()) }
    }

    /// The cluster's id.
    pub fn cluster(&self) -> Uuid {
        self.cluster
    }

    /// The orchestrator client.
    pub fn client(&self) -> &orchestrator::Client {
        &self.client
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.get()
    }

    /// Refreshes unless a snapshot younger than `max_age` exists; concurrent
    /// callers wait for one refresh instead of making their own.
    pub async fn ensure_fresh(&self, max_age: Duration) -> Result<(), orchestrator::Error> {
        self.snapshot.ensure_fresh(max_age, || self.load()).await
    }

    /// Records that instance `id` is gone (this replica evicted it), in the
    /// snapshot and in the result of a refresh already under way, so no decision
    /// before the next refresh acts on it again.
    pub fn forget_instance(&self, id: Uuid) {
        self.snapshot.update(move |s| s.forget(id));
    }

    async fn load(&self) -> Result<Snapshot, orchestrator::Error> {
        if self.types.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() {
            let types = self.client.list_instance_types().await?;
            *self.types.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                types.into_iter().map(|t| (t.id, t.name())).collect();
        }
        let cluster = self.client.get_sks_cluster(self.cluster).await?;
        let filter = InstanceFilter { manager_type: Some(ManagerType::InstancePool), ..Default::default() };
        let instances = self.client.list_instances(&filter).await?;
        let nodepools: HashMap<Uuid, SksNodepool> =
            cluster.nodepools.into_iter().filter_map(|np| np.instance_pool.map(|p| (p.id, np))).collect();
        let mine: HashMap<Uuid, Box<Instance>> = instances
            .into_iter()
            .filter(|i| i.manager.as_ref().is_some_and(|m| nodepools.contains_key(&m.id)))
            .map(|i| (i.id, Box::new(i)))
            .collect();
        let by_name = mine.values().map(|i| (i.name.to_lowercase(), i.id)).collect();
        Ok(Snapshot { instances: mine, by_name, nodepools, cluster_name: cluster.spec.name.unwrap_or_default() })
    }

    /// The `<family>.<size>` name of an instance type.
    pub fn type_name(&self, id: Uuid) -> Option<String> {
        self.types.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned()
    }

    /// Keeps the snapshot at most `max_age` old, forever, whether or not this
    /// replica leads (a new leader acts on a filled cache); `ready` turns true
    /// once a refresh succeeded.
    pub async fn keep_fresh(self: Arc<Self>, max_age: Duration, ready: Arc<AtomicBool>) {
        loop {
            match self.ensure_fresh(max_age).await {
                Ok(()) => ready.store(true, Ordering::SeqCst),
                Err(e) => tracing::warn!(error = %e, "refreshing the cloud cache failed"),
            }
            tokio::time::sleep(max_age.min(REFRESH_AT_LEAST_EVERY)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_must_be_younger_than_what_it_judges() {
        let now: jiff::Timestamp = "2026-11-22T00:01:00Z".parse().unwrap();
        let at = |s: &str| Time(s.parse().unwrap());
        let cap = Duration::from_secs(5);
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:01:00Z")), cap, now), Duration::ZERO, "just now: a new look");
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:00:58Z")), cap, now), Duration::from_secs(1), "1 s margin");
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:00:00Z")), cap, now), cap, "long ago: the cap");
        assert_eq!(fresh_since(None, cap, now), Duration::ZERO, "unknown: a new look");
    }

    #[test]
    fn a_forgotten_instance_is_found_neither_by_id_nor_by_name() {
        let instance = |id: Uuid, name: &str| -> Box<Instance> {
            Box::new(
                serde_json::from_value(
                    serde_json::json!({"id": id, "name": name, "state": "running", "instance-type": {"id": Uuid::nil()}}),
                )
                .unwrap(),
            )
        };
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut s = Snapshot {
            instances: [(a, instance(a, "Pool-A")), (b, instance(b, "pool-b"))].into(),
            by_name: [("pool-a".to_owned(), a), ("pool-b".to_owned(), b)].into(),
            ..Default::default()
        };
        s.forget(a);
        assert!(s.by_id(&a).is_none() && s.by_name("pool-a").is_none());
        assert_eq!(s.by_name("POOL-B").map(|i| i.id), Some(b), "the others stay");
        s.forget(a);
        assert_eq!(s.instances.len(), 1, "forgetting twice changes nothing");
    }
}
