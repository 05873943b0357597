//! NodePools: the cluster's SKS nodepools as a Kubernetes resource.
//!
//! One refresh loop keeps a cache of every nodepool (`refresh`); reads and
//! watches are served from it; writes are checked by the kind's strategy
//! (`strategy`), go to the orchestrator (`write`, `scale`, `eviction`) and
//! refresh the cache before they answer.

pub mod autoscaling;
pub mod convert;
pub mod def;
mod eviction;
mod refresh;
mod scale;
mod strategy;
pub mod validate;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use orchestrator::model::SksNodepool;
use serde_json::Value;
use uuid::Uuid;

use self::convert::InstanceTypes;
use crate::resources::errors::from_orchestrator;
use crate::resources::metadata::{MetadataStore, ObjectMeta};
use sks_rest::cache::{Key, ObjectCache};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Creater, DeleteOptions, Deleter, Storage, Transform, Updater};
use sks_rest::strategy::Strategy;

/// A Node as rolls see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Name.
    pub name: String,
    /// Ready condition True.
    pub ready: bool,
    /// Initialized by sks-ccm: a providerID and no uninitialized taint.
    pub initialized: bool,
}

/// Ready Nodes per nodepool id, when the cluster's Nodes are visible.
pub trait NodeReadiness: Send + Sync {
    /// Ready Node counts by nodepool id; `None` when not known (yet).
    fn ready_by_nodepool(&self) -> Option<HashMap<String, i64>>;

    /// Every Node of a nodepool; `None` when not known (yet).
    fn node_states(&self) -> Option<Vec<NodeState>> {
        None
    }
}

/// The NodePool storage of one cluster.
pub struct NodePools {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    client: orchestrator::Client,
    cluster: Uuid,
    types: RwLock<InstanceTypes>,
    store: Arc<dyn MetadataStore>,
    metas: Mutex<BTreeMap<String, ObjectMeta>>,
    nodepools: Mutex<BTreeMap<String, SksNodepool>>,
    nodes: Option<Arc<dyn NodeReadiness>>,
    refreshing: tokio::sync::Mutex<()>,
    writing: tokio::sync::Mutex<()>,
    ready: AtomicBool,
}

fn key(name: &str) -> Key {
    (String::new(), name.to_owned())
}

impl NodePools {
    /// A storage of `cluster`'s nodepools; call [`NodePools::run`] to keep it current.
    pub fn new(
        client: orchestrator::Client,
        cluster: Uuid,
        store: Arc<dyn MetadataStore>,
        nodes: Option<Arc<dyn NodeReadiness>>,
    ) -> Self {
        NodePools {
            def: def::definition(),
            cache: Arc::new(ObjectCache::new(ObjectCache::random_epoch(), 10_000)),
            client,
            cluster,
            types: RwLock::new(InstanceTypes::default()),
            store,
            metas: Mutex::new(BTreeMap::new()),
            nodepools: Mutex::new(BTreeMap::new()),
            nodes,
            refreshing: tokio::sync::Mutex::new(()),
            writing: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
        }
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(self.def.kind, self.def.group, self.def.plural, name, causes)
    }

    fn orchestrator_error(&self, e: &orchestrator::Error, name: &str) -> ApiError {
        from_orchestrator(e, self.def.group_resource(), name)
    }

    pub(super) fn current(&self, name: &str) -> ApiResult<(Arc<Value>, SksNodepool)> {
        let obj = self.cache.get(&key(name)).ok_or_else(|| ApiError::not_found(self.def.group_resource(), name))?;
        let np = self
            .nodepools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(self.def.group_resource(), name))?;
        Ok((obj, np))
    }

    pub(super) async fn save_meta(&self, uid: &str, meta: ObjectMeta) -> ApiResult<()> {
        self.store.save(uid, &meta).await.map_err(|e| ApiError::unavailable(format!("storing metadata: {e}")))?;
        self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(uid.to_owned(), meta);
        Ok(())
    }

    pub(super) fn meta(&self, uid: &str) -> ObjectMeta {
        self.metas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(uid).cloned().unwrap_or_default()
    }
}

impl Storage for NodePools {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    fn creater(&self) -> Option<&dyn Creater> {
        Some(self)
    }

    fn updater(&self) -> Option<&dyn Updater> {
        Some(self)
    }

    fn deleter(&self) -> Option<&dyn Deleter> {
        Some(self)
    }

    fn get_subresource<'a>(
        &'a self,
        _ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            let obj = self.current(name)?.0;
            match sub {
                "scale" => Ok(scale::scale_of(&obj)),
                "status" => Ok((*obj).clone()),
                _ => Err(ApiError::no_route()),
            }
        })
    }

    fn create_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            match sub {
                "eviction" => self.evict(ctx, name, obj).await,
                _ => Err(ApiError::method_not_allowed("create", self.def.group_resource())),
            }
        })
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

impl Creater for NodePools {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        Some(self)
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.create_object(ctx, obj))
    }
}

impl Updater for NodePools {
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
                Some("scale") => self.scale(ctx, name, transform).await,
                Some(_) => Err(ApiError::method_not_allowed("update", self.def.group_resource())),
            }
        })
    }
}

impl Deleter for NodePools {
    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.delete_object(ctx, name, opts))
    }
}
