//! The contract between the generic HTTP layer and a resource's storage.
//!
//! Objects cross it as JSON values with `apiVersion`, `kind` and `metadata`;
//! every error is an `ApiError`. Reads and watches are served from an
//! [`ObjectCache`] the storage keeps current. What a kind can do follows from
//! what its storage implements, as in k8s.io/apiserver: a [`Creater`], an
//! [`Updater`], a [`Deleter`]; discovery's verbs are derived from them.
//! Creates and updates go through one pipeline ([`super::write`]) that runs the
//! kind's [`Strategy`](super::strategy::Strategy) before the storage stores.

use std::sync::Arc;

use serde_json::Value;

use super::cache::ObjectCache;
use super::resource::ResourceDef;
use super::status::ApiResult;
use super::strategy::Strategy;

pub use super::context::{BoxFuture, Context};

/// `DeleteOptions` the storage honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`, for kinds deleted gracefully (Pods).
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: what becomes of the object's dependents.
    pub propagation: Option<Propagation>,
}

impl DeleteOptions {
    /// Takes the fields of a `DeleteOptions` body the storages honour over the current ones.
    pub fn apply_json(&mut self, v: &Value) -> ApiResult<()> {
        if let Some(uid) = v["preconditions"]["uid"].as_str() {
            self.uid = Some(uid.to_owned());
        }
        if let Some(rv) = v["preconditions"]["resourceVersion"].as_str() {
            self.resource_version = Some(rv.to_owned());
        }
        match &v["gracePeriodSeconds"] {
            Value::Null => {}
            g => {
                let bad = || super::status::ApiError::bad_request(format!("gracePeriodSeconds: not an integer: {g}"));
                self.grace_period_seconds = Some(g.as_i64().ok_or_else(bad)?);
            }
        }
        if let Some(p) = v["propagationPolicy"].as_str() {
            self.propagation = Some(Propagation::parse(p)?);
        }
        Ok(())
    }
}

/// `propagationPolicy`: how the garbage collector treats an object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the object, in the background (the default).
    Background,
    /// Dependents are deleted first; the object waits (`foregroundDeletion` finalizer).
    Foreground,
    /// Dependents are kept, their reference to the object removed (`orphan` finalizer).
    Orphan,
}

impl Propagation {
    /// Reads a `propagationPolicy` value.
    pub fn parse(s: &str) -> Result<Self, super::status::ApiError> {
        match s {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(super::status::ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// Makes the new version of an object (or subresource) from its current one:
/// the request's object, or a patch applied to the current version, already
/// prepared and validated by the write pipeline.
pub type Transform<'a> = Box<dyn FnOnce(&Value) -> ApiResult<Value> + Send + 'a>;

/// A resource's storage.
pub trait Storage: Send + Sync {
    /// What the resource is (its verbs are filled by the server from the capabilities below).
    fn def(&self) -> &ResourceDef;

    /// The cache reads and watches are served from.
    fn cache(&self) -> &Arc<ObjectCache>;

    /// Whether objects can be read back (get, list, watch); false for kinds
    /// whose objects are answered once and never kept (reviews, requests).
    fn readable(&self) -> bool {
        true
    }

    /// Creates objects, if the kind can be created.
    fn creater(&self) -> Option<&dyn Creater> {
        None
    }

    /// Changes objects (update, patch, subresource writes), if the kind can be changed.
    fn updater(&self) -> Option<&dyn Updater> {
        None
    }

    /// Deletes objects, if the kind can be deleted.
    fn deleter(&self) -> Option<&dyn Deleter> {
        None
    }

    /// Reads a subresource (e.g. `scale`, `status`).
    fn get_subresource<'a>(&'a self, ctx: &'a Context, name: &'a str, sub: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, sub);
        Box::pin(async { Err(super::status::ApiError::no_route()) })
    }

    /// Posts to a subresource (e.g. `eviction`).
    fn create_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, sub, obj);
        Box::pin(async { Err(super::status::ApiError::no_route()) })
    }

    /// Whether the storage can serve requests now (its cache is filled).
    fn ready(&self) -> bool {
        true
    }
}

/// The verbs of a storage's resource (subresources declare theirs), from what it implements.
pub fn verbs_of(storage: &dyn Storage) -> Vec<&'static str> {
    let mut verbs = Vec::new();
    if storage.creater().is_some() {
        verbs.push("create");
    }
    if storage.deleter().is_some() {
        verbs.push("delete");
    }
    if storage.readable() {
        verbs.extend(["get", "list"]);
    }
    if storage.updater().is_some() {
        verbs.push("patch");
    }
    if storage.updater().is_some() {
        verbs.push("update");
    }
    if storage.readable() {
        verbs.push("watch");
    }
    verbs
}

/// A storage that creates objects.
pub trait Creater: Send + Sync {
    /// How new objects are prepared and validated; `None` for kinds that are
    /// not stored objects (reviews), which get the request body as it came.
    fn create_strategy(&self) -> Option<&dyn Strategy>;

    /// Stores a prepared, valid object; answers the stored (or, dry-run,
    /// would-be) object. 409 AlreadyExists when its name is taken: the pipeline
    /// then draws another name if the name was generated.
    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>>;
}

/// A storage that changes objects.
pub trait Updater: Send + Sync {
    /// How changes are prepared and validated.
    fn update_strategy(&self) -> &dyn Strategy;

    /// Replaces object `name` (or its subresource `sub`) with what `transform`
    /// makes of its current version, atomically: no other write lands between
    /// the read `transform` sees and the store. 404 when there is no object.
    fn update<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: Option<&'a str>,
        transform: Transform<'a>,
    ) -> BoxFuture<'a, ApiResult<Value>>;
}

/// A storage that deletes objects.
pub trait Deleter: Send + Sync {
    /// Deletes an object; answers it (with `deletionTimestamp` when deletion is not immediate).
    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemStorage, NoHooks};
    use crate::strategy::Plain;

    struct CreateOnly(ResourceDef, Arc<ObjectCache>);

    impl Storage for CreateOnly {
        fn def(&self) -> &ResourceDef {
            &self.0
        }
        fn cache(&self) -> &Arc<ObjectCache> {
            &self.1
        }
        fn readable(&self) -> bool {
            false
        }
        fn creater(&self) -> Option<&dyn Creater> {
            Some(self)
        }
    }

    impl Creater for CreateOnly {
        fn create_strategy(&self) -> Option<&dyn Strategy> {
            None
        }
        fn create<'a>(&'a self, _ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
            Box::pin(std::future::ready(Ok(obj)))
        }
    }

    #[test]
    fn verbs_follow_from_what_the_storage_implements() {
        let cache = || Arc::new(ObjectCache::new(0, 10));
        let full = MemStorage::new(ResourceDef::default(), Arc::new(Plain), cache(), Arc::new(NoHooks), None);
        assert_eq!(verbs_of(&full), ["create", "delete", "get", "list", "patch", "update", "watch"]);
        assert_eq!(verbs_of(&CreateOnly(ResourceDef::default(), cache())), ["create"]);
    }
}
