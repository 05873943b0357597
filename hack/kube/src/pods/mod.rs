//! Pods: stored like any kind (their strategy defaults, validates and
//! deletes them gracefully), plus the two subresources only Pods have:
//! `binding` (how the scheduler assigns a node) and `eviction` (a delete
//! that honours PodDisruptionBudgets).

pub mod binding;
pub mod eviction;

use std::sync::Arc;

use serde_json::Value;
use sks_rest::cache::ObjectCache;
use sks_rest::memory::MemStorage;
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult};
use sks_rest::storage::{BoxFuture, Context, Creater, Deleter, Storage, Updater};

/// The Pods resource: the pods' store and the budgets evictions read and spend.
pub struct Pods {
    store: Arc<MemStorage>,
    budgets: Arc<MemStorage>,
}

impl Pods {
    /// Pods kept in `store`, evicted against the PodDisruptionBudgets in `budgets`.
    pub fn new(store: Arc<MemStorage>, budgets: Arc<MemStorage>) -> Self {
        Pods { store, budgets }
    }
}

impl Storage for Pods {
    fn def(&self) -> &ResourceDef {
        self.store.def()
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        self.store.cache()
    }

    fn creater(&self) -> Option<&dyn Creater> {
        self.store.creater()
    }

    fn updater(&self) -> Option<&dyn Updater> {
        self.store.updater()
    }

    fn deleter(&self) -> Option<&dyn Deleter> {
        self.store.deleter()
    }

    fn get_subresource<'a>(&'a self, ctx: &'a Context, name: &'a str, sub: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        self.store.get_subresource(ctx, name, sub)
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
                "binding" => binding::create(&self.store, ctx, name, &obj).await,
                "eviction" => eviction::evict(&self.store, &self.budgets, ctx, name, &obj).await,
                _ => Err(ApiError::method_not_allowed("create", self.def().group_resource())),
            }
        })
    }
}
