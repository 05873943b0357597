//! The `scale` subresource: an `autoscaling/v1` Scale view of a NodePool; a
//! change of it is a change of the NodePool's replicas, checked as any update.

use serde_json::{Value, json};
use sks_rest::status::{ApiResult, Cause};
use sks_rest::storage::{Context, Transform};
use sks_rest::write;

use super::NodePools;

/// The Scale of a NodePool object.
pub(super) fn scale_of(obj: &Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"]},
        "status": {"replicas": obj["status"]["replicas"], "selector": obj["status"]["selector"]},
    })
}

impl NodePools {
    /// Applies a change of the Scale of nodepool `name`.
    pub(super) async fn scale(&self, ctx: &Context, name: &str, transform: Transform<'_>) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (current, np) = self.current(name)?;
        let scale = transform(&scale_of(&current))?;
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(self.invalid(name, vec![Cause::required("spec.replicas")]));
        };
        let mut obj = (*current).clone();
        obj["spec"]["replicas"] = json!(replicas);
        let obj = write::prepare_update(&self.def, self, ctx, None, obj, &current)?;
        let updated = self.apply(ctx, name, &current, &np, obj).await?;
        Ok(scale_of(&updated))
    }
}
