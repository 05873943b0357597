//! The contract between the generic HTTP layer and a resource's storage.
//!
//! Objects cross it as JSON values with `apiVersion`, `kind` and `metadata`;
//! every error is an `ApiError`. Reads and watches are served from an
//! [`ObjectCache`](super::cache::ObjectCache) the storage keeps current.

use std::sync::Arc;

use serde_json::Value;

use super::authn::UserInfo;
use super::cache::ObjectCache;
use super::resource::ResourceDef;
use super::status::ApiResult;

pub use super::authn::BoxFuture;

/// Who asks, and how.
#[derive(Debug, Clone)]
pub struct Context {
    /// The authenticated user.
    pub user: UserInfo,
    /// Namespace of the request, for namespaced resources.
    pub namespace: Option<String>,
    /// Validate only, change nothing.
    pub dry_run: bool,
}

/// `DeleteOptions` the storage honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// A resource's storage.
pub trait Storage: Send + Sync {
    /// What the resource is.
    fn def(&self) -> &ResourceDef;

    /// The cache reads and watches are served from.
    fn cache(&self) -> &Arc<ObjectCache>;

    /// Creates an object; answers the stored (or, dry-run, would-be) object.
    /// Kinds that cannot be created keep this 405.
    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, obj);
        Box::pin(async move { Err(super::status::ApiError::method_not_allowed("create", self.def().group_resource())) })
    }

    /// Replaces an object; `obj.metadata.resourceVersion`, when set, must be current (409 otherwise).
    /// Kinds that cannot be changed keep this 405.
    fn update<'a>(&'a self, ctx: &'a Context, name: &'a str, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, obj);
        Box::pin(async move { Err(super::status::ApiError::method_not_allowed("update", self.def().group_resource())) })
    }

    /// Deletes an object; answers it (with `deletionTimestamp` when deletion is not immediate).
    /// Kinds that cannot be deleted keep this 405.
    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, opts);
        Box::pin(async move { Err(super::status::ApiError::method_not_allowed("delete", self.def().group_resource())) })
    }

    /// Reads a subresource (e.g. `scale`, `status`).
    fn get_subresource<'a>(&'a self, ctx: &'a Context, name: &'a str, sub: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, sub);
        Box::pin(async { Err(super::status::ApiError::no_route()) })
    }

    /// Replaces a subresource.
    fn update_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        let _ = (ctx, name, sub, obj);
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
