//! An in-memory storage with kube-apiserver's semantics for what the stand-in
//! serves: one global resourceVersion sequence, 409 on stale writes,
//! AlreadyExists, generateName, uid and creationTimestamp, generation,
//! finalizers with deletionTimestamp, and status subresources that only change
//! their part.

use std::sync::Arc;

use rand::Rng as _;
use serde_json::{Value, json};
use sks_rest::cache::{Key, ObjectCache, key_of, rv_of};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, DeleteOptions, Storage};

use crate::kinds::KindOptions;

/// Kind-specific behaviour on writes (allocations, signing).
pub trait Hooks: Send + Sync {
    /// Adjusts an object about to be created.
    fn prepare_create(&self, ctx: &Context, obj: &mut Value, store: &MemStorage) -> ApiResult<()> {
        let _ = (ctx, obj, store);
        Ok(())
    }
    /// Adjusts an update of `old` into `new`.
    fn prepare_update(&self, old: &Value, new: &mut Value, store: &MemStorage) -> ApiResult<()> {
        let _ = (old, new, store);
        Ok(())
    }
    /// Adjusts a write through a subresource (e.g. a CSR approval gets signed).
    fn after_subresource(&self, sub: &str, obj: &mut Value) -> ApiResult<()> {
        let _ = (sub, obj);
        Ok(())
    }
}

/// No special behaviour.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// One kind's objects.
pub struct MemStorage {
    def: ResourceDef,
    opts: KindOptions,
    cache: Arc<ObjectCache>,
    hooks: Arc<dyn Hooks>,
    namespaces: Option<Arc<ObjectCache>>,
    writing: tokio::sync::Mutex<()>,
}

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now").to_string()
}

/// Everything of an object but metadata and status: what bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

fn finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Names tried for a `generateName` before answering AlreadyExists, as kube-apiserver
/// does since RetryGenerateName (GA in 1.32): with 5 random characters, thousands
/// of CSRs (`csr-`) would otherwise collide more often than not.
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// `prefix` and 5 random characters, drawn again while `taken` says the name exists
/// (at most [`GENERATE_NAME_ATTEMPTS`] names; the last is returned even if taken).
fn generate_name(prefix: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut rng = rand::rng();
    let mut name = String::new();
    for _ in 0..GENERATE_NAME_ATTEMPTS {
        let suffix: String = (0..5).map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char).collect();
        name = format!("{prefix}{suffix}");
        if !taken(&name) {
            break;
        }
    }
    name
}

impl MemStorage {
    /// A storage of `def` drawing from `cache`; `namespaces` (when namespaced) checks that namespaces exist.
    pub fn new(
        def: ResourceDef,
        opts: KindOptions,
        cache: Arc<ObjectCache>,
        hooks: Arc<dyn Hooks>,
        namespaces: Option<Arc<ObjectCache>>,
    ) -> Self {
        MemStorage { def, opts, cache, hooks, namespaces, writing: tokio::sync::Mutex::new(()) }
    }

    fn gr(&self) -> sks_rest::status::GroupResource<'_> {
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
        let meta = &mut obj["metadata"];
        let mut name = meta["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty() {
            let Some(prefix) = meta["generateName"].as_str() else {
                return Err(ApiError::invalid(
                    self.def.kind,
                    self.def.group,
                    self.def.plural,
                    "",
                    vec![Cause::required("metadata.name")],
                ));
            };
            // Checked under the write lock, so a name found free stays free until stored.
            name = generate_name(prefix, |n| self.cache.get(&self.key(ctx, n)).is_some());
            meta["name"] = json!(name);
        }
        if let (Some(ns), Some(namespaces)) = (&ctx.namespace, &self.namespaces)
            && namespaces.get(&(String::new(), ns.clone())).is_none()
        {
            return Err(ApiError::not_found(sks_rest::status::GroupResource { group: "", resource: "namespaces" }, ns));
        }
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if self.opts.status_subresource
            && !self.opts.keep_status_on_create
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.hooks.prepare_create(ctx, &mut obj, self)?;
        if ctx.dry_run {
            if self.cache.get(&key_of(&obj)).is_some() {
                return Err(ApiError::already_exists(self.gr(), &name));
            }
            return Ok(obj);
        }
        self.cache.upsert_if(obj, None).map(|o| (*o).clone()).map_err(|_| ApiError::already_exists(self.gr(), &name))
    }

    /// The update of `current` into `new`, with the immutable parts kept.
    fn merge_update(&self, current: &Value, mut new: Value, keep_status: bool) -> Value {
        for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match &current["metadata"][field] {
                Value::Null => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
                v => new["metadata"][field] = v.clone(),
            }
        }
        if keep_status {
            match &current["status"] {
                Value::Null => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
                s => new["status"] = s.clone(),
            }
        }
        if spec_part(current) != spec_part(&new) {
            new["metadata"]["generation"] = json!(current["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        }
        new
    }

    /// Stores `new` in place of `current` (rv-checked), or removes it when its finalizers are gone.
    fn commit(&self, name: &str, current: &Value, new: Value) -> ApiResult<Value> {
        if !new["metadata"]["deletionTimestamp"].is_null() && !finalizers(&new) {
            let removed = self.cache.remove(&key_of(&new)).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
            return Ok((*removed).clone());
        }
        self.cache
            .upsert_if(new, Some(rv_of(current)))
            .map(|o| (*o).clone())
            .map_err(|_| ApiError::conflict(self.gr(), name))
    }

    fn check_rv(&self, name: &str, current: &Value, new: &Value) -> ApiResult<()> {
        match new["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && rv != current["metadata"]["resourceVersion"].as_str().unwrap_or("") => {
                Err(ApiError::conflict(self.gr(), name))
            }
            _ => Ok(()),
        }
    }

    fn check_finalizers(&self, name: &str, current: &Value, new: &Value) -> ApiResult<()> {
        if current["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        let old: Vec<&Value> =
            current["metadata"]["finalizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let added = new["metadata"]["finalizers"].as_array().is_some_and(|a| a.iter().any(|f| !old.contains(&f)));
        if added {
            return Err(ApiError::invalid(
                self.def.kind,
                self.def.group,
                self.def.plural,
                name,
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
        Ok(())
    }

    async fn update_object(&self, ctx: &Context, name: &str, new: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let current = self.cache.get(&self.key(ctx, name)).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
        self.check_rv(name, &current, &new)?;
        self.check_finalizers(name, &current, &new)?;
        let mut merged = self.merge_update(&current, new, self.opts.status_subresource);
        self.hooks.prepare_update(&current, &mut merged, self)?;
        if ctx.dry_run {
            return Ok(merged);
        }
        self.commit(name, &current, merged)
    }

    async fn update_status(&self, ctx: &Context, name: &str, sub: &str, new: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let current = self.cache.get(&self.key(ctx, name)).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
        self.check_rv(name, &current, &new)?;
        let mut merged = (*current).clone();
        match sub {
            "status" => merged["status"] = new["status"].clone(),
            // An approval changes the conditions, and nothing else.
            "approval" => merged["status"]["conditions"] = new["status"]["conditions"].clone(),
            _ => return Err(ApiError::no_route()),
        }
        self.hooks.after_subresource(sub, &mut merged)?;
        if ctx.dry_run {
            return Ok(merged);
        }
        self.commit(name, &current, merged)
    }

    async fn delete_object(&self, ctx: &Context, name: &str, opts: DeleteOptions) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let key = self.key(ctx, name);
        let current = self.cache.get(&key).ok_or_else(|| ApiError::not_found(self.gr(), name))?;
        if opts.uid.as_deref().is_some_and(|u| u != current["metadata"]["uid"].as_str().unwrap_or("")) {
            return Err(ApiError::conflict_message(
                self.gr(),
                name,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
        if opts
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv != current["metadata"]["resourceVersion"].as_str().unwrap_or(""))
        {
            return Err(ApiError::conflict(self.gr(), name));
        }
        if finalizers(&current) {
            if !current["metadata"]["deletionTimestamp"].is_null() {
                return Ok((*current).clone());
            }
            let mut marked = (*current).clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if ctx.dry_run {
                return Ok(marked);
            }
            return self
                .cache
                .upsert_if(marked, Some(rv_of(&current)))
                .map(|o| (*o).clone())
                .map_err(|_| ApiError::conflict(self.gr(), name));
        }
        if ctx.dry_run {
            return Ok((*current).clone());
        }
        self.cache.remove(&key).map(|o| (*o).clone()).ok_or_else(|| ApiError::not_found(self.gr(), name))
    }
}

impl Storage for MemStorage {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.create_object(ctx, obj))
    }

    fn update<'a>(&'a self, ctx: &'a Context, name: &'a str, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.update_object(ctx, name, obj))
    }

    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.delete_object(ctx, name, opts))
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

    fn update_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.update_status(ctx, name, sub, obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_skip_taken_ones() {
        let tries = std::cell::Cell::new(0);
        let name = generate_name("csr-", |_| {
            tries.set(tries.get() + 1);
            tries.get() < 4
        });
        assert_eq!(tries.get(), 4, "drawn again while taken");
        assert!(name.starts_with("csr-") && name.len() == 9, "{name}");
        assert!(name[4..].bytes().all(|b| NAME_CHARS.contains(&b)), "{name}");
        let tries = std::cell::Cell::new(0);
        generate_name("csr-", |_| {
            tries.set(tries.get() + 1);
            true
        });
        assert_eq!(tries.get(), GENERATE_NAME_ATTEMPTS, "bounded: then AlreadyExists, as kube-apiserver");
    }
}
