//! An in-memory storage with kube-apiserver's storage semantics, for the
//! Kubernetes API stand-in: one global resourceVersion sequence (a shared
//! cache sequence), 409 on stale writes, AlreadyExists, uid,
//! creationTimestamp and generation, finalizers with deletionTimestamp. What
//! differs between kinds (status subresources, validation) is their strategy;
//! names, preconditions and metadata rules are the write pipeline's.

use std::sync::Arc;

use serde_json::{Value, json};

use super::cache::{Key, ObjectCache, key_of, rv_of};
use super::deletion::{self, Deletion};
use super::resource::ResourceDef;
use super::status::{ApiError, ApiResult, GroupResource};
use super::storage::{BoxFuture, Context, Creater, DeleteOptions, Deleter, Storage, Transform, Updater};
use super::strategy::Strategy;

/// What a kind does when it stores, beyond its strategy: allocations that
/// need the other objects (node ports), signing, recording the requester.
pub trait Hooks: Send + Sync {
    /// Adjusts an object about to be created (after validation).
    fn on_create(&self, ctx: &Context, obj: &mut Value, store: &MemStorage) -> ApiResult<()> {
        let _ = (ctx, obj, store);
        Ok(())
    }
    /// Adjusts an update of `old` into `new` (after validation).
    fn on_update(&self, old: &Value, new: &mut Value, store: &MemStorage) -> ApiResult<()> {
        let _ = (old, new, store);
        Ok(())
    }
    /// Adjusts a write through a subresource (e.g. a CSR approval gets signed).
    fn on_subresource(&self, sub: &str, obj: &mut Value) -> ApiResult<()> {
        let _ = (sub, obj);
        Ok(())
    }
    /// Learns of a stored change (called in resourceVersion order, under the
    /// write lock); `deleted` when the object is gone.
    fn committed(&self, obj: &Value, deleted: bool) {
        let _ = (obj, deleted);
    }
}

/// No store-time behaviour.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// One kind's objects.
pub struct MemStorage {
    def: ResourceDef,
    strategy: Arc<dyn Strategy>,
    cache: Arc<ObjectCache>,
    hooks: Arc<dyn Hooks>,
    namespaces: Option<Arc<ObjectCache>>,
    writing: tokio::sync::Mutex<()>,
}

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now").to_string()
}

impl MemStorage {
    /// A storage of `def` drawing from `cache`, its writes prepared and validated by
    /// `strategy`; `namespaces` (when namespaced) checks that namespaces exist.
    pub fn new(
        def: ResourceDef,
        strategy: Arc<dyn Strategy>,
        cache: Arc<ObjectCache>,
        hooks: Arc<dyn Hooks>,
        namespaces: Option<Arc<ObjectCache>>,
    ) -> Self {
        MemStorage { def, strategy, cache, hooks, namespaces, writing: tokio::sync::Mutex::new(()) }
    }

    fn gr(&self) -> GroupResource<'_> {
        self.def.group_resource()
    }

    fn key(&self, ctx: &Context, name: &str) -> Key {
        (ctx.namespace.clone().unwrap_or_default(), name.to_owned())
    }

    /// Every stored object (for hooks that allocate unique values).
    pub fn all(&self) -> Vec<Arc<Value>> {
        self.cache.snapshot().0
    }

    async fn create_object(&self, ctx: &Context, mut obj: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if let (Some(ns), Some(namespaces)) = (&ctx.namespace, &self.namespaces)
            && namespaces.get(&(String::new(), ns.clone())).is_none()
        {
            return Err(ApiError::not_found(GroupResource { group: "", resource: "namespaces" }, ns));
        }
        let meta = &mut obj["metadata"];
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        self.hooks.on_create(ctx, &mut obj, self)?;
        if ctx.dry_run {
            if self.cache.get(&key_of(&obj)).is_some() {
                return Err(ApiError::already_exists(self.gr(), &name));
            }
            return Ok(obj);
        }
        self.cache
            .upsert_if(obj, None)
            .map(|o| self.announce(o, false))
            .map_err(|_| ApiError::already_exists(self.gr(), &name))
    }

    /// Tells the hooks of a stored change and answers the stored object.
    fn announce(&self, stored: Arc<Value>, deleted: bool) -> Value {
        self.hooks.committed(&stored, deleted);
        (*stored).clone()
    }

    /// Stores `new` in place of `current` (rv-checked), or removes it when its last finalizer is gone.
    fn commit(&self, name: &str, current: &Value, new: Value) -> ApiResult<Value> {
        if deletion::deletes_on_update(current, &new) {
            let removed = self.cache.remove(&key_of(&new)).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
            return Ok(self.announce(removed, true));
        }
        self.cache
            .upsert_if(new, Some(rv_of(current)))
            .map(|o| self.announce(o, false))
            .map_err(|_| ApiError::conflict(self.gr(), name))
    }

    async fn update_object(
        &self,
        ctx: &Context,
        name: &str,
        sub: Option<&str>,
        transform: Transform<'_>,
    ) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let current = self.cache.get(&self.key(ctx, name)).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
        let mut new = transform(&current)?;
        match sub {
            None => self.hooks.on_update(&current, &mut new, self)?,
            Some(sub) => self.hooks.on_subresource(sub, &mut new)?,
        }
        if ctx.dry_run {
            return Ok(new);
        }
        self.commit(name, &current, new)
    }

    async fn delete_object(&self, ctx: &Context, name: &str, opts: DeleteOptions) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let key = self.key(ctx, name);
        let current = self.cache.get(&key).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
        opts.check(&self.def, &current)?;
        let graceful = self.strategy.check_graceful_delete(&current, opts.grace_period_seconds);
        match deletion::plan(&current, &opts, graceful, jiff::Timestamp::now()) {
            Deletion::Pending => Ok((*current).clone()),
            Deletion::Mark(marked) if ctx.dry_run => Ok(marked),
            Deletion::Mark(marked) => self
                .cache
                .upsert_if(marked, Some(rv_of(&current)))
                .map(|o| self.announce(o, false))
                .map_err(|_| ApiError::conflict(self.gr(), name)),
            Deletion::Remove if ctx.dry_run => Ok((*current).clone()),
            Deletion::Remove => self
                .cache
                .remove(&key)
                .map(|o| self.announce(o, true))
                .ok_or_else(|| ApiError::not_found(self.gr(), name)),
        }
    }
}

impl Storage for MemStorage {
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

    fn get_subresource<'a>(&'a self, ctx: &'a Context, name: &'a str, sub: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            if self.def.subresource(sub).is_none() {
                return Err(ApiError::no_route());
            }
            self.cache
                .get(&self.key(ctx, name))
                .map(|o| (*o).clone())
                .ok_or_else(|| ApiError::not_found(self.gr(), name))
        })
    }
}

impl Creater for MemStorage {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        Some(self.strategy.as_ref())
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.create_object(ctx, obj))
    }
}

impl Updater for MemStorage {
    fn update_strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    fn update<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: Option<&'a str>,
        transform: Transform<'a>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.update_object(ctx, name, sub, transform))
    }
}

impl Deleter for MemStorage {
    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.delete_object(ctx, name, opts))
    }
}
