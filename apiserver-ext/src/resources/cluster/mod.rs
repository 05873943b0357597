//! The Cluster: the SKS cluster itself as one object. Its refresh reads the
//! cluster, its inspection (control plane, upgrade history) and the versions
//! catalog — three calls per period — and hands the upgrade history to the
//! Upgrades. Changing `spec.version` requests an Upgrade.

pub mod convert;
pub mod def;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::model::{SksCluster, UpdateSksCluster};
use serde_json::Value;
use uuid::Uuid;

use self::convert::ClusterSpec;
use super::upgrade::progress::UpgradeSpec;
use super::upgrade::{Refusal, Upgrades};
use crate::resources::errors::from_orchestrator;
use crate::resources::inspection::Inspection;
use crate::resources::metadata::{MetadataStore, ObjectMeta};
use crate::resources::timestamp_now;
use sks_rest::cache::{Key, ObjectCache};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Storage, Transform, Updater};
use sks_rest::strategy::Strategy;

/// The Cluster storage of one cluster.
pub struct Clusters {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    client: orchestrator::Client,
    cluster: Uuid,
    store: Arc<dyn MetadataStore>,
    upgrades: Arc<Upgrades>,
    meta: Mutex<ObjectMeta>,
    current: Mutex<Option<(SksCluster, Inspection)>>,
    refreshing: tokio::sync::Mutex<()>,
    writing: tokio::sync::Mutex<()>,
    ready: AtomicBool,
}

fn key(name: &str) -> Key {
    (String::new(), name.to_owned())
}

impl Clusters {
    /// The Cluster storage of `cluster`; metadata lives in `store`.
    pub fn new(
        client: orchestrator::Client,
        cluster: Uuid,
        store: Arc<dyn MetadataStore>,
        upgrades: Arc<Upgrades>,
    ) -> Self {
        Clusters {
            def: def::definition(),
            cache: Arc::new(ObjectCache::new(ObjectCache::random_epoch(), 1_000)),
            client,
            cluster,
            store,
            upgrades,
            meta: Mutex::new(ObjectMeta::default()),
            current: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            writing: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
        }
    }

    /// Refreshes every `period` until the process ends.
    pub async fn run(self: Arc<Self>, period: Duration) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "refreshing the cluster failed; serving the last known state");
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Reads the cluster once and updates the cache and the upgrade history.
    pub async fn refresh(&self) -> Result<(), orchestrator::Error> {
        let _one = self.refreshing.lock().await;
        let cluster = self.client.get_sks_cluster(self.cluster).await?;
        let inspection = Inspection::parse(&self.client.get_sks_cluster_inspection(self.cluster).await?);
        let available = self.upgrades.allowed(&cluster).await?;
        let uid = cluster.id.to_string();
        match self.store.load().await {
            Ok(mut all) => *self.lock_meta() = all.remove(&uid).unwrap_or_default(),
            Err(e) => tracing::warn!(error = %e, "reading the metadata store failed; using the last known metadata"),
        }
        let hash = convert::spec_hash(&convert::spec_of(&cluster, &inspection));
        let changed = {
            let mut meta = self.lock_meta();
            if meta.spec_hash != hash {
                meta.generation = if meta.spec_hash.is_empty() { meta.generation.max(1) } else { meta.generation + 1 };
                meta.spec_hash = hash;
                Some(meta.clone())
            } else {
                None
            }
        };
        if let Some(meta) = changed
            && let Err(e) = self.store.save(&uid, &meta).await
        {
            tracing::warn!(error = %e, "saving cluster metadata failed");
        }
        let name = cluster.spec.name.clone().unwrap_or_default();
        let previous = self.cache.get(&key(&name));
        let meta = self.lock_meta().clone();
        let obj = convert::to_object(&cluster, &inspection, &available, &meta, previous.as_deref(), &timestamp_now());
        self.cache.upsert(obj);
        self.upgrades.observe(&inspection).await;
        *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((cluster, inspection));
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn lock_meta(&self) -> std::sync::MutexGuard<'_, ObjectMeta> {
        self.meta.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(self.def.kind, self.def.group, self.def.plural, name, causes)
    }

    async fn update_object(&self, ctx: &Context, name: &str, transform: Transform<'_>) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let gr = self.def.group_resource();
        let current_obj = self.cache.get(&key(name)).ok_or_else(|| ApiError::not_found(gr, name))?;
        let Some((cluster, inspection)) =
            self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        else {
            return Err(ApiError::not_found(gr, name));
        };
        let obj = transform(&current_obj)?;
        let spec = spec_of(&obj)?;
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default();
        let annotations = serde_json::from_value(obj["metadata"]["annotations"].clone()).unwrap_or_default();
        let was = convert::spec_of(&cluster, &inspection);
        let mut causes = Vec::new();
        // Admission, after validation: whether the orchestrator takes the version now.
        let new_version = !spec.version.is_empty() && spec.version != was.version;
        if new_version {
            let admitted = self
                .upgrades
                .admit(&cluster, &spec.version, "spec.version")
                .await
                .map_err(|e| from_orchestrator(&e, gr, name))?;
            match admitted {
                Ok(()) => {}
                Err(Refusal::Invalid(cause)) => causes.push(cause),
                Err(Refusal::Busy(why)) => return Err(ApiError::conflict_message(gr, name, &why)),
            }
        }
        if !causes.is_empty() {
            return Err(self.invalid(name, causes));
        }
        if ctx.dry_run {
            let mut preview = (*current_obj).clone();
            preview["spec"] = serde_json::to_value(&spec).unwrap_or_default();
            return Ok(preview);
        }
        // The upgrade first: it is the part that can still be refused (409 while
        // another runs, on the current stored upgrades), and a refusal must leave
        // the other fields as they were.
        if new_version {
            let upgrade = UpgradeSpec { version: spec.version.clone(), roll_nodepools: false };
            self.upgrades.request(ctx, None, Default::default(), upgrade, "spec.version").await?;
        }
        let old_labels = cluster.spec.labels.clone().unwrap_or_default();
        let change = UpdateSksCluster {
            auto_upgrade: (spec.auto_upgrade != was.auto_upgrade).then_some(spec.auto_upgrade),
            description: (spec.description != was.description).then(|| spec.description.clone().unwrap_or_default()),
            labels: (labels != old_labels).then(|| labels.clone()),
            ..Default::default()
        };
        if change != UpdateSksCluster::default() {
            self.client.update_sks_cluster(self.cluster, &change).await.map_err(|e| from_orchestrator(&e, gr, name))?;
        }
        let uid = cluster.id.to_string();
        let meta = {
            let mut meta = self.lock_meta();
            meta.annotations = annotations;
            meta.clone()
        };
        self.store.save(&uid, &meta).await.map_err(|e| ApiError::unavailable(format!("storing metadata: {e}")))?;
        drop(_w);
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "refresh after a cluster change failed");
        }
        Ok(self.cache.get(&key(name)).map_or_else(|| (*current_obj).clone(), |o| (*o).clone()))
    }
}

impl Storage for Clusters {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    fn updater(&self) -> Option<&dyn Updater> {
        Some(self)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The spec of `obj`; a field of the wrong type is a 400, as decoding is in kube-apiserver.
fn spec_of(obj: &Value) -> ApiResult<ClusterSpec> {
    match &obj["spec"] {
        Value::Null => Ok(ClusterSpec::default()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("spec: {e}"))),
    }
}

impl Strategy for Clusters {
    fn prepare_for_update(&self, _ctx: &Context, _sub: Option<&str>, new: &mut Value, _old: &Value) -> ApiResult<()> {
        spec_of(new).map(|_| ())
    }

    fn validate_update(&self, _ctx: &Context, _sub: Option<&str>, new: &Value, _old: &Value) -> Vec<Cause> {
        let description = &new["spec"]["description"];
        if description.as_str().is_some_and(|d| d.chars().count() > 255) {
            return vec![Cause::invalid("spec.description", description, "must be at most 255 characters")];
        }
        Vec::new()
    }
}

impl Updater for Clusters {
    fn update_strategy(&self) -> &dyn Strategy {
        self
    }

    fn update<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: Option<&'a str>,
        transform: Transform<'a>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            match sub {
                None => self.update_object(ctx, name, transform).await,
                Some(_) => Err(ApiError::method_not_allowed("update", self.def.group_resource())),
            }
        })
    }
}
