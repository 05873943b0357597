//! The `scale` subresource of Deployments and ReplicaSets: an
//! `autoscaling/v1` Scale view of the object (`spec.replicas`,
//! `status.replicas`, `status.selector` as text); a change of it is a
//! change of the object's `spec.replicas`, prepared and validated as any
//! update of the object, in the same store write.

use std::sync::Arc;

use serde_json::{Value, json};
use sks_rest::cache::ObjectCache;
use sks_rest::memory::MemStorage;
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Creater, Deleter, Storage, Transform, Updater};
use sks_rest::strategy::Strategy;
use sks_rest::write;

use crate::selector;

/// The Scale of a Deployment or ReplicaSet object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector::format(&obj["spec"]["selector"])},
    })
}

/// A kind with a `scale` subresource, stored in `store`.
pub struct Scaled {
    store: Arc<MemStorage>,
}

impl Scaled {
    /// The kind kept in `store`.
    pub fn new(store: Arc<MemStorage>) -> Self {
        Scaled { store }
    }
}

impl Storage for Scaled {
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
        Some(self)
    }

    fn deleter(&self) -> Option<&dyn Deleter> {
        self.store.deleter()
    }

    fn get_subresource<'a>(&'a self, ctx: &'a Context, name: &'a str, sub: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            let obj = self.store.get_subresource(ctx, name, "status").await?;
            match sub {
                "scale" => Ok(scale_of(&obj)),
                "status" => Ok(obj),
                _ => Err(ApiError::no_route()),
            }
        })
    }
}

impl Updater for Scaled {
    fn update_strategy(&self) -> &dyn Strategy {
        self.store.update_strategy()
    }

    fn update<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: Option<&'a str>,
        transform: Transform<'a>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        if sub != Some("scale") {
            return self.store.update(ctx, name, sub, transform);
        }
        let def = self.store.def();
        let strategy = self.store.update_strategy();
        let on_object: Transform<'a> = Box::new(move |current: &Value| {
            let scale = transform(&scale_of(current))?;
            let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
                let causes = vec![Cause::required("spec.replicas")];
                return Err(ApiError::invalid("Scale", "autoscaling", "scale", name, causes));
            };
            let mut obj = current.clone();
            obj["spec"]["replicas"] = json!(replicas);
            write::prepare_update(def, strategy, ctx, None, obj, current)
        });
        Box::pin(async move { Ok(scale_of(&self.store.update(ctx, name, None, on_object).await?)) })
    }
}
