//! `pods/binding`: assigning a pod to a node (kube-apiserver's
//! `BindingREST`), the one way kube-scheduler, and the stand-in's
//! scheduler, bind: the pod's `spec.nodeName` set, `PodScheduled=True`, in
//! one store write that fails with 409 if it is already bound or being deleted.

use serde_json::{Map, Value, json};
use sks_rest::memory::MemStorage;
use sks_rest::status::{ApiError, ApiResult, GroupResource};
use sks_rest::storage::{Context, Transform, Updater as _};

use crate::conditions;
use crate::validation::pod;

const BINDING: GroupResource<'static> = GroupResource { group: "", resource: "pods/binding" };

/// Binds pod `name` of `ctx`'s namespace to `node`, merging `annotations` into its own.
pub async fn bind(
    pods: &MemStorage,
    ctx: &Context,
    name: &str,
    node: &str,
    annotations: Map<String, Value>,
) -> ApiResult<Value> {
    let (name_owned, node) = (name.to_owned(), node.to_owned());
    let transform: Transform<'_> = Box::new(move |current: &Value| {
        let conflict = |why: String| ApiError::conflict_message(BINDING, &name_owned, &why);
        if !current["metadata"]["deletionTimestamp"].is_null() {
            return Err(conflict(format!("pod {name_owned} is being deleted, cannot be assigned to a host")));
        }
        let assigned = current["spec"]["nodeName"].as_str().unwrap_or("");
        if !assigned.is_empty() {
            return Err(conflict(format!("pod {name_owned} is already assigned to node {assigned:?}")));
        }
        let mut pod = current.clone();
        pod["spec"]["nodeName"] = json!(node);
        if !annotations.is_empty() && !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        for (k, v) in annotations {
            pod["metadata"]["annotations"][k] = v;
        }
        conditions::set(&mut pod, "PodScheduled", "True", "", "");
        Ok(pod)
    });
    pods.update(ctx, name, None, transform).await
}

/// `POST pods/<name>/binding` with `body`, a Binding: validated, then bound;
/// answers a Success Status.
pub async fn create(pods: &MemStorage, ctx: &Context, name: &str, body: &Value) -> ApiResult<Value> {
    if body["metadata"]["name"].as_str().unwrap_or("") != name {
        return Err(ApiError::bad_request("name in URL does not match name in Binding object"));
    }
    let causes = pod::binding(body);
    if !causes.is_empty() {
        // ValidatePodBinding's aggregate is not a Status error: kube-apiserver answers it as an internal error.
        let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let list = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        return Err(ApiError::internal(format!("Internal error occurred: {list}")));
    }
    let annotations = body["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    bind(pods, ctx, name, body["target"]["name"].as_str().unwrap_or(""), annotations).await?;
    Ok(success())
}

/// The Status a successful binding or eviction answers (201).
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}
